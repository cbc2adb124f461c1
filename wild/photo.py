"""Every hand of one photo: its boxes (given, detected or the centred default), SAR on each
crop (left hands through the mirrored path), the wrist depth, MANO with fit_mano, and the
records. demo.py and the web app both call `process_photo`; wild.outputs writes the files.

    predictor = load_predictor(cfg, device)  # inference.predictor, once
    result = process_photo(image_bgr, predictor, PhotoOptions(detector='mediapipe'))
    write_outputs(out_dir, 'photo.jpg', image_bgr, result, predictor.faces, ('overlay', 'glb'))
"""
import logging
from dataclasses import dataclass
from typing import NamedTuple, Optional, Sequence

import numpy as np

from utils.errors import ImageInputError
from wild.camera import K_from_values, check_intrinsics, default_focal, image_intrinsics
from wild.mano_fit import fit_record, fitter_for
from wild.boxes import BoxSpec, auto_box, box_of, box_problem, box_xywh, centred_box
from wild.detector import DETECTORS, load_detector
from wild.outputs import AXES
from wild.records import SIDES, Hand, hand_record

logger = logging.getLogger(__name__)

BOX_SEARCH_DEPTH_M = 0.7  # m: --bbox auto searches at this depth (the 2D joints do not depend on it)


@dataclass(frozen=True)
class PhotoOptions:
    """How to process a photo.

    Intrinsics, in this order: K ((3 x 3 px, source) of wild.camera.parse_K), focal (px,
    principal point at the centre), fov_deg (degrees across the longer side), else the EXIF
    focal length of image_path, else a 60 degree field of view. root_depth: 'auto' or meters.
    Boxes: `boxes` (BoxSpecs: --bbox, --boxes FILE) when given; else detector 'mediapipe'
    (up to max_hands); else the centred FreiHAND box of a `side` hand, re-cropped around the
    prediction with auto_box (--bbox auto). fit_mano: fit MANO to each mesh. axes: 'opencv' or
    'opengl', the OBJ and PLY files' convention (wild.outputs; a GLB is always in glTF's).
    """

    K: Optional[tuple] = None
    focal: Optional[float] = None
    fov_deg: Optional[float] = None
    root_depth: object = 'auto'
    detector: str = 'none'
    max_hands: int = 2
    boxes: Optional[Sequence[BoxSpec]] = None
    auto_box: bool = False
    side: str = 'right'
    fit_mano: bool = False
    axes: str = 'opencv'

    def __post_init__(self):
        if self.detector not in DETECTORS:
            raise ValueError(f'detector {self.detector!r}: expected one of {DETECTORS}')
        if self.side not in SIDES:
            raise ValueError(f'side {self.side!r}: expected one of {SIDES}')
        if self.axes not in AXES:
            raise ValueError(f'axes {self.axes!r}: expected one of {AXES}')
        if not (isinstance(self.max_hands, int) and self.max_hands >= 1):
            raise ValueError(f'max_hands must be an integer >= 1, got {self.max_hands!r}')
        if self.fov_deg is not None and not 0 < self.fov_deg < 180:
            raise ValueError(f'fov_deg {self.fov_deg}: a field of view in (0, 180) degrees')


class PhotoResult(NamedTuple):
    """hands: list of wild.records.Hand, in box order (given, or detector score); records:
    their JSON records (wild.records.hand_record); K (3 x 3 px) and K_source of the photo."""

    hands: list
    records: list
    K: np.ndarray
    K_source: str


def photo_intrinsics(options, width, height, image_path=None):
    """(K, K_source, detail) of a photo (PhotoOptions' order)."""
    if options.K is None and options.focal is None and options.fov_deg is not None:
        f = default_focal(width, height, options.fov_deg)
        return (K_from_values(f, f, (width - 1) / 2, (height - 1) / 2), 'fov',
                f'field of view {options.fov_deg:g} deg across the longer side: {f:.1f} px')
    return image_intrinsics(width, height, K=options.K, focal=options.focal, image_path=image_path)


def find_boxes(image_bgr, predictor, options, K, name):
    """[(HandBox, side, score, box_source)] of the hands to predict (PhotoOptions)."""
    height, width = image_bgr.shape[:2]
    if options.boxes is not None:
        found = []
        for k, spec in enumerate(options.boxes):
            box = box_of(spec.box_xywh)
            problem = box_problem(box, (height, width))
            if problem is not None:
                raise ImageInputError(f'{name}: box {k} {list(spec.box_xywh)}: {problem}; give a '
                                      f'box on the hand (x, y, w, h in pixels)')
            found.append((box, spec.side, spec.score, spec.source))
        return found
    if options.detector != 'none':
        detections = load_detector(options.detector, options.max_hands)(image_bgr)
        return [(box_of(d.box_xywh), d.side, d.score, 'detector') for d in detections]
    box = centred_box(width, height)
    if not options.auto_box:
        return [(box, options.side, None, 'centre')]
    # The 2D joints do not depend on the depth (decoding and projecting with one K cancel).
    search = predictor.for_image(K, BOX_SEARCH_DEPTH_M, left=options.side == 'left')
    return [(auto_box(search, image_bgr, box), options.side, None, 'auto')]


def _fit_hands(hands, mano_root, fitter):
    """Fill in each hand's mano record and fitted mesh, one batched fit per side (fitter, else
    wild.mano_fit.fitter_for(mano_root, side))."""
    for side in SIDES:
        chosen = [hand for hand in hands if hand.side == side]
        if chosen:
            verts = np.stack([hand.verts_cam for hand in chosen])
            fit = (fitter.fit(verts, side) if fitter is not None
                   else fitter_for(mano_root, side).fit(verts))
            for k, hand in enumerate(chosen):
                hand.mano, hand.mano_verts_cam = fit_record(fit, k), fit['verts'][k]


def process_photo(image_bgr, predictor, options, fitter=None, image_path=None):
    """Every hand of one photo (module docstring).

    Args:
        image_bgr: H x W x 3 uint8 BGR image.
        predictor: an inference.predictor.HandPredictor (load_predictor).
        options: PhotoOptions.
        fitter: with options.fit_mano, an object with `fit(verts B x 778 x 3, side)` returning
            wild.mano_fit.ManoFitter.fit's dict (default: wild.mano_fit.fitter_for).
        image_path: the file, for its EXIF focal length and for messages.
    Returns:
        PhotoResult (no hands when the detector finds none).
    Raises:
        utils.errors.ImageInputError: this photo cannot be processed as asked (its K, a bad
            box, a degenerate auto depth); the message names it.
    """
    height, width = image_bgr.shape[:2]
    name = image_path or 'image'
    K, K_source, detail = photo_intrinsics(options, width, height, image_path)
    check_intrinsics(K, width, height, name)
    logger.info('%s: K from %s (%s)', name, K_source, detail)
    auto = options.root_depth == 'auto'
    hands = []
    for box, side, score, source in find_boxes(image_bgr, predictor, options, K, name):
        predict = predictor.for_image(K, options.root_depth, left=side == 'left')
        xyz_cam, joints_uv = predict(image_bgr, box, name=name)
        num_verts = len(xyz_cam) - len(joints_uv)
        hands.append(Hand(box_xywh=box_xywh(box), side=side, score=score, box_source=source,
                          K=K, K_source=K_source, root_depth=float(xyz_cam[num_verts, 2]),
                          root_depth_source='auto' if auto else 'given',
                          joints_cam=xyz_cam[num_verts:], verts_cam=xyz_cam[:num_verts],
                          joints_uv=joints_uv,
                          hand_scale_m=predictor.hand_scale_m if auto else None))
    if options.fit_mano and hands:
        _fit_hands(hands, predictor.mano_root, fitter)
    return PhotoResult(hands, [hand_record(hand) for hand in hands], K, K_source)
