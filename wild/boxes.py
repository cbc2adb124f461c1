"""Hand boxes from outside: a `--boxes FILE` of your own detector (ViTDet, YOLO, ...).

The file is JSON: per image file name, a list of hands,

    {"photo.jpg": [{"box": [x, y, w, h], "side": "left", "score": 0.93}, ...], ...}

box in pixels (top-left corner, width, height; w, h > 0), side 'left' or 'right', score
optional (a number in [0, 1]). Images are matched by file name (`photo.jpg`), or by the name
without its extension (`photo`).
"""
import json
import math
import os
from typing import NamedTuple, Optional

from utils.errors import DataError
from wild.records import SIDES


class BoxSpec(NamedTuple):
    """One given hand box: box_xywh [x, y, w, h] px, side 'left'|'right', score or None, and
    where it came from (the record's box_source: 'boxes' for a --boxes file, 'bbox')."""

    box_xywh: tuple
    side: str
    score: Optional[float] = None
    source: str = 'boxes'


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
