"""SAR over video frames: the box of each frame comes from the joints predicted in the
previous one (wild.tracking), or from a detector when that box is lost; and `--bbox auto`.
wild.sequence writes the outputs frame by frame.

The loop takes a `predict(img_bgr, box) -> (xyz_cam 799 x 3 m, joints_uv 21 x 2 px)` callable
(inference.predictor.HandPredictor runs the network; tests pass the ground truth), so it runs
without a network too. Frames come from utils.files.video (a video file or a folder of images).
"""
import logging
from typing import NamedTuple, Optional

import numpy as np

from wild.tracking import HandBox, TrackState, as_box, refine_box

logger = logging.getLogger(__name__)

AUTO_MAX_ITER = 4  # --bbox auto: at most this many predictions before the final one
AUTO_TOL = 0.03  # --bbox auto: stop when the box moves less than 3 % of its side


class FrameResult(NamedTuple):
    """One frame of the tracking loop."""

    index: int  # frame index (0-based)
    box: HandBox  # the box the frame was cropped with (px)
    box_reset: bool  # the box from the previous frame's joints was rejected: this is the last good one
    reset_reason: Optional[str]  # why it was rejected, else None
    xyz_cam: np.ndarray  # 799 x 3, m, camera frame (smoothed when a filter was given)
    joints_uv: np.ndarray  # 21 x 2 px, the raw prediction's joints (the next box comes from them)
    box_source: str = 'tracked'  # 'first' (first_box), 'tracked' or 'detector' (re-detected)


def box_xywh(box):
    """[x, y, w, h] (px, top-left corner and size) of a square (center, side) box, as --bbox."""
    center, side = as_box(box)
    return [float(center[0] - side / 2), float(center[1] - side / 2), float(side), float(side)]


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


def track(frames, predict, first_box, smoother=None, redetect=None):
    """Predict every frame at the box that the previous frame's joints give.

    The first frame is cropped with `first_box`; each next frame with the box around the
    joints just predicted (wild.tracking.update_box: the joints' extent enlarged by
    BOX_ENLARGE). A box that collapses or leaves the image is lost: with `redetect`, the
    detector's box of that frame replaces it (logged); without one, or when the detector finds
    nothing, the last good box does. Each run of frames on the last good box is logged once
    (a warning with the frame index and the reason) and its end once (info).

    Args:
        frames: iterable of (index, H x W x 3 uint8 BGR frame), one image size.
        predict: (img_bgr, box) -> (xyz_cam 799 x 3 m, joints_uv 21 x 2 px).
        first_box: (center, side) of the first frame, px.
        smoother: optional callable 799 x 3 -> 799 x 3 applied to each frame's xyz_cam in
            order (wild.tracking.OneEuroFilter); the boxes follow the raw joints.
        redetect: optional callable img_bgr -> HandBox or None (a hand detector).
    Yields:
        (img_bgr, FrameResult) per frame.
    """
    state = None
    pending = None  # why the box from the last frame's joints was rejected
    lost_since = None  # first frame of the current run on the last good box
    for index, img in frames:
        source = 'tracked'
        if state is None:
            state, source = TrackState(first_box, img.shape[:2]), 'first'
        found = redetect(img) if pending is not None and redetect is not None else None
        if found is not None:
            logger.info('frame %d: hand re-detected (the box around frame %d\'s joints was '
                        'rejected: %s)', index, index - 1, pending)
            state.box, pending, source, lost_since = as_box(found), None, 'detector', None
        elif pending is not None and lost_since is None:
            lost_since = index
            center, side = state.box
            logger.warning('frame %d: hand box reset to the last good box (centre %.1f, %.1f px, '
                           'side %.1f px): the box around frame %d\'s joints was rejected: %s',
                           index, center[0], center[1], side, index - 1, pending)
        elif pending is None and lost_since is not None:
            logger.info('frame %d: the box follows the predicted joints again (frames %d-%d '
                        'were cropped with the last good box)', index, lost_since, index - 1)
            lost_since = None
        box = state.box
        xyz_cam, joints_uv = predict(img, box)
        out = smoother(xyz_cam) if smoother is not None else np.asarray(xyz_cam)
        yield img, FrameResult(index, box, pending is not None, pending, out,
                               np.asarray(joints_uv), source)
        _, pending = state.update(joints_uv)
