"""Hand boxes: what a hand is cropped with, wherever it comes from.

A box is `utils.transforms.HandBox(center, side)`: the centre (2,) in image pixels (u right,
v down) and the side of the square crop in pixels (docs/method.md §2 step 3); the files and
records give boxes as [x, y, w, h] (top-left corner, width, height; `box_of`, `box_xywh`).
Boxes come from
- a `--bbox x,y,w,h` (`parse_bbox`) or a `--boxes FILE` of your own detector (ViTDet, YOLO,
  ...; `read_boxes`, `boxes_for`);
- predicted or detected joints: FreiHAND's framing (the rule itself:
  utils.transforms.box_from_joints, which the data-set readers crop with too; `update_box`
  checks the result, `landmark_box` frames a detector's landmarks);
- the centred FreiHAND box (`centred_box`), and `--bbox auto`, which re-crops around the
  predicted joints from there (`refine_box`, `auto_box`).
`box_problem` says why a box is unusable. Tracking a box over video frames: wild.tracking.

The --boxes file is JSON: per image file name, a list of hands,

    {"photo.jpg": [{"box": [x, y, w, h], "side": "left", "score": 0.93}, ...], ...}

box in pixels (w, h > 0), side 'left' or 'right', score optional (a number in [0, 1]). Images
are matched by file name (`photo.jpg`), or by the name without its extension (`photo`).
"""
import json
import logging
import math
import os
from typing import NamedTuple, Optional

import numpy as np

from utils.constants import TRAINING_BOX_SIZE, TRAINING_IMAGE_SIZE
from utils.errors import ConfigError, DataError
from utils.transforms import BOX_ENLARGE, HandBox, box_from_joints
from wild.records import SIDES

logger = logging.getLogger(__name__)

MIN_BOX_SIDE_PX = 32.0  # a smaller box (a quarter of FreiHAND's 130 px) is a collapsed track
MIN_INSIDE_FRACTION = 0.5  # a box with less of its area inside the image has left it
AUTO_MAX_ITER = 4  # --bbox auto: at most this many predictions before the final one
AUTO_TOL = 0.03  # --bbox auto: stop when the box moves less than 3 % of its side


class BoxSpec(NamedTuple):
    """One given hand box: box_xywh [x, y, w, h] px, side 'left'|'right', score or None, and
    where it came from (the record's box_source: 'boxes' for a --boxes file, 'bbox')."""

    box_xywh: tuple
    side: str
    score: Optional[float] = None
    source: str = 'boxes'


def as_box(box):
    """HandBox from any (center, side) pair."""
    center, side = box
    return HandBox(np.asarray(center, dtype=np.float64).reshape(2), float(side))


def box_of(box_xywh):
    """The square crop (HandBox) of an [x, y, w, h] box: its centre, its longer side."""
    x, y, w, h = (float(v) for v in box_xywh)
    return HandBox(np.array([x + w / 2, y + h / 2]), max(w, h))


def box_xywh(box):
    """[x, y, w, h] (px, top-left corner and size) of a square (center, side) box, as --bbox."""
    center, side = as_box(box)
    return [float(center[0] - side / 2), float(center[1] - side / 2), float(side), float(side)]


def centred_box(width, height):
    """The centred FreiHAND box: 130/224 of the shorter image side, around the image centre."""
    side = TRAINING_BOX_SIZE / TRAINING_IMAGE_SIZE * min(width, height)
    return HandBox(np.array([(width - 1) / 2, (height - 1) / 2]), side)


def parse_bbox(text):
    """--bbox x,y,w,h (pixels) as four floats."""
    try:
        x, y, w, h = (float(v) for v in text.split(','))
    except ValueError:
        raise ConfigError(f"--bbox {text!r}: expected four numbers x,y,w,h or 'auto'") from None
    if w <= 0 or h <= 0:
        raise ConfigError(f"--bbox {text!r}: width and height must be positive")
    return x, y, w, h


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _parse_hand(path, where, entry):
    """BoxSpec of one entry of the file; DataError naming the file and the field."""
    if not isinstance(entry, dict):
        raise DataError(f'--boxes {path}: {where}: expected an object {{"box": [x, y, w, h], '
                        f'"side": "left"|"right", "score": s}}, got {json.dumps(entry)[:80]}')
    unknown = sorted(set(entry) - {'box', 'side', 'score'})
    if unknown:
        raise DataError(f'--boxes {path}: {where}: unknown field(s) {unknown}; the fields are '
                        f'box, side, score')
    box = entry.get('box')
    if not (isinstance(box, list) and len(box) == 4 and all(_number(v) for v in box)):
        raise DataError(f'--boxes {path}: {where}.box: expected four numbers [x, y, w, h] in '
                        f'pixels, got {json.dumps(box)}')
    if not (box[2] > 0 and box[3] > 0):
        raise DataError(f'--boxes {path}: {where}.box: width and height must be positive, got '
                        f'{box}')
    side = entry.get('side')
    if side not in SIDES:
        raise DataError(f'--boxes {path}: {where}.side: expected "left" or "right", got '
                        f'{json.dumps(side)}')
    score = entry.get('score')
    if score is not None and not (_number(score) and 0 <= score <= 1):
        raise DataError(f'--boxes {path}: {where}.score: expected a number in [0, 1], got '
                        f'{json.dumps(score)}')
    return BoxSpec(tuple(float(v) for v in box), side, None if score is None else float(score))


def read_boxes(path):
    """{image name: [BoxSpec, ...]} of a --boxes file (module docstring).

    Raises:
        FileNotFoundError: no such file; DataError: not JSON, or a field that is not as
            described (the message names the file, the image and the field).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'--boxes {path}: no such file')
    try:
        with open(path) as f:
            value = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f'--boxes {path}: not valid JSON ({err})') from None
    if not isinstance(value, dict):
        raise DataError(f'--boxes {path}: expected an object {{"image name": [{{"box": [x, y, w, '
                        f'h], "side": ..., "score": ...}}, ...]}}, got a {type(value).__name__}')
    boxes = {}
    for name, hands in value.items():
        if not isinstance(hands, list):
            raise DataError(f'--boxes {path}: "{name}": expected a list of hands, got '
                            f'{json.dumps(hands)[:80]}')
        boxes[name] = [_parse_hand(path, f'"{name}"[{k}]', hand) for k, hand in enumerate(hands)]
    return boxes


def boxes_for(boxes, image_path):
    """The BoxSpecs of an image (matched by file name, then by stem), or None if it is absent."""
    name = os.path.basename(image_path)
    if name in boxes:
        return boxes[name]
    return boxes.get(os.path.splitext(name)[0])


def inside_fraction(box, image_size):
    """Fraction of the box's area that lies inside the image (0..1).

    Args:
        box: (center, side) in px.
        image_size: (height, width), px; the image spans [0, width] x [0, height].
    """
    center, side = as_box(box)
    height, width = image_size
    if side <= 0:
        return 0.0
    overlap = [max(0.0, min(c + side / 2, limit) - max(c - side / 2, 0.0))
               for c, limit in zip(center, (width, height))]
    return overlap[0] * overlap[1] / side ** 2


def box_problem(box, image_size, min_side=MIN_BOX_SIDE_PX, min_inside=MIN_INSIDE_FRACTION):
    """Why `box` is unusable in an image of `image_size` (height, width), or None if it is fine.

    Unusable: a non-finite centre or side, a side below `min_side` px (collapsed), a centre
    outside the image, or less than `min_inside` of its area inside the image.
    """
    center, side = as_box(box)
    height, width = image_size
    if not (np.all(np.isfinite(center)) and math.isfinite(side)):
        return f'non-finite box (centre {center.tolist()}, side {side})'
    if side < min_side:
        return f'box collapsed: side {side:.1f} px < {min_side:g} px'
    if not (0 <= center[0] <= width and 0 <= center[1] <= height):
        return (f'box centre ({center[0]:.1f}, {center[1]:.1f}) px outside the {width} x '
                f'{height} image')
    fraction = inside_fraction((center, side), image_size)
    if fraction < min_inside:
        return (f'box mostly outside the image: {100 * fraction:.0f} % of it inside, at least '
                f'{100 * min_inside:.0f} % needed')
    return None


def box_iou(box_a, box_b):
    """Intersection over union of two square (center, side) boxes."""
    a, b = as_box(box_a), as_box(box_b)
    overlap = np.clip(np.minimum(a.center + a.side / 2, b.center + b.side / 2)
                      - np.maximum(a.center - a.side / 2, b.center - b.side / 2), 0.0, None)
    intersection = float(overlap[0] * overlap[1])
    union = a.side ** 2 + b.side ** 2 - intersection
    return intersection / union if union > 0 else 0.0


def update_box(prev_box, joints_uv, image_size, enlarge=BOX_ENLARGE, min_side=MIN_BOX_SIDE_PX,
               min_inside=MIN_INSIDE_FRACTION):
    """The next frame's box from this frame's joints, or the previous box if that one is bad.

    Args:
        prev_box: (center, side), the last good box (px).
        joints_uv: J x 2 predicted joint pixels in the image (NaN allowed: a reset).
        image_size: (height, width), px.
        enlarge, min_side, min_inside: see box_from_joints and box_problem.
    Returns:
        (HandBox, reason): the new box and None, or prev_box and why the new one was
        rejected (a string for the log).
    """
    joints_uv = np.asarray(joints_uv, dtype=np.float64)
    if not np.all(np.isfinite(joints_uv)):
        return as_box(prev_box), 'non-finite joints'
    box = box_from_joints(joints_uv, image_size, enlarge)
    reason = box_problem(box, image_size, min_side, min_inside)
    if reason is not None:
        return as_box(prev_box), reason
    return box, None


def landmark_box(landmarks_uv, image_size):
    """[x, y, w, h] px of a detector's hand: FreiHAND's framing of its 21 landmarks (J x 2 px)
    in an image of image_size (height, width)."""
    return tuple(box_xywh(box_from_joints(landmarks_uv, image_size)))


def box_motion(old_box, new_box):
    """How far a box moved, relative to the old side: max(|centre shift|, |side change|) / side."""
    old, new = as_box(old_box), as_box(new_box)
    return max(float(np.linalg.norm(new.center - old.center)), abs(new.side - old.side)) / old.side


class RefineResult(NamedTuple):
    box: HandBox  # the box to predict at
    iterations: int  # predictions made
    converged: bool  # the last re-box moved less than tol
    reason: Optional[str]  # why a re-box was rejected (the loop stopped there), else None


def refine_box(predict_fn, image, start_box, max_iter=4, tol=0.03, enlarge=BOX_ENLARGE,
               min_side=MIN_BOX_SIDE_PX, min_inside=MIN_INSIDE_FRACTION):
    """`--bbox auto`: predict at the box, re-box around the predicted joints, repeat.

    Stops when a re-box moves the box by less than `tol` (box_motion: centre shift and side
    change relative to the side), after `max_iter` predictions, or when the re-boxed box is
    unusable (update_box; the previous box is kept).

    Args:
        predict_fn: (image, HandBox) -> J x 2 predicted joint pixels in the image.
        image: H x W (x C) array; only its size is read here.
        start_box: (center, side) to start from (e.g. the centred default box), px.
        max_iter: at most this many predictions (>= 1).
        tol: relative motion below which the box has converged.
    Returns:
        RefineResult(box, iterations, converged, reason). `box` is the last re-box: predict
        there for the final output.
    """
    if max_iter < 1:
        raise ValueError(f'max_iter must be >= 1, got {max_iter}')
    image_size = np.shape(image)[:2]
    box = as_box(start_box)
    for iteration in range(1, max_iter + 1):
        new_box, reason = update_box(box, predict_fn(image, box), image_size, enlarge,
                                     min_side, min_inside)
        if reason is not None:
            return RefineResult(box, iteration, False, reason)
        moved = box_motion(box, new_box)
        box = new_box
        if moved < tol:
            return RefineResult(box, iteration, True, None)
    return RefineResult(box, max_iter, False, None)


def auto_box(predict, img_bgr, start_box, max_iter=AUTO_MAX_ITER, tol=AUTO_TOL):
    """`--bbox auto`: the box found by re-cropping around the predicted joints (refine_box).

    Args:
        predict: (img_bgr, box) -> (xyz_cam, joints_uv), e.g. inference.predictor.HandPredictor.
        img_bgr: H x W x 3 image (a still image or a video's first frame).
        start_box: (center, side) to start from (the default centred box), px.
    Returns:
        HandBox to predict at. The search is logged (iterations, convergence, box).
    """
    result = refine_box(lambda img, box: predict(img, box)[1], img_bgr, start_box,
                        max_iter=max_iter, tol=tol)
    x, y, w, _ = box_xywh(result.box)
    if result.reason is not None:
        state = f'stopped after {result.iterations} predictions ({result.reason})'
    elif result.converged:
        state = f'converged after {result.iterations} predictions'
    else:
        state = f'not converged after {result.iterations} predictions (moved >= {100 * tol:g} %)'
    logger.info('--bbox auto: %s: box %.1f,%.1f,%.1f,%.1f', state, x, y, w, w)
    return result.box
