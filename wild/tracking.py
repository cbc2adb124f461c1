"""Following one hand over video frames: each frame's box comes from the joints predicted in
the previous one (wild.boxes.update_box), or from a detector when that box is lost (`track`),
and the One Euro filter smooths the decoded points (docs/method.md §2, §7).

The loop takes a `predict(img_bgr, box) -> (xyz_cam 799 x 3 m, joints_uv 21 x 2 px)` callable
(inference.predictor.HandPredictor.for_image runs the network; tests pass the ground truth), so
it runs without a network too. Frames come from utils.files.video (a video file or a folder of
images); wild.sequence writes the outputs frame by frame.
"""
import logging
import math
from typing import NamedTuple, Optional

import numpy as np

from utils.transforms import BOX_ENLARGE, HandBox
from wild.boxes import MIN_BOX_SIDE_PX, MIN_INSIDE_FRACTION, as_box, update_box

logger = logging.getLogger(__name__)

# One Euro filter defaults for the decoded 3D points (meters; see OneEuroFilter).
DEFAULT_MIN_CUTOFF_HZ = 1.0  # Hz
DEFAULT_BETA = 20.0  # Hz of cutoff per m/s of speed
DEFAULT_D_CUTOFF_HZ = 1.0  # Hz, the derivative's low-pass
DEFAULT_RATE = 30.0  # samples/s when no timestamps are given


class TrackState:
    """The box of a hand followed over video frames, with the last good box to fall back on.

    Args:
        initial_box: (center, side) of the first frame (e.g. the demo's centred box), px.
        image_size: (height, width) of the frames, px.
        enlarge, min_side, min_inside: see update_box.
    Attributes:
        box: the box to crop the next frame with.
        frames, resets: frames seen and how many of them fell back to the last good box.
    """

    def __init__(self, initial_box, image_size, enlarge=BOX_ENLARGE, min_side=MIN_BOX_SIDE_PX,
                 min_inside=MIN_INSIDE_FRACTION):
        self.box = as_box(initial_box)
        self.image_size = tuple(image_size)
        self.enlarge, self.min_side, self.min_inside = enlarge, min_side, min_inside
        self.frames = 0
        self.resets = 0

    def update(self, joints_uv):
        """Feed this frame's predicted joints (J x 2 px). Returns (next box, reason or None)."""
        self.box, reason = update_box(self.box, joints_uv, self.image_size, self.enlarge,
                                      self.min_side, self.min_inside)
        self.frames += 1
        self.resets += reason is not None
        return self.box, reason


def _smoothing_factor(cutoff_hz, dt):
    """Exponential smoothing factor of a first-order low-pass: 1 / (1 + tau / dt)."""
    tau = 1.0 / (2.0 * math.pi * cutoff_hz)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One Euro filter (Casiez, Roussel and Vogel, CHI 2012) over arrays, element-wise.

    Per sample x at time t (dt since the previous sample):
        dx      = (x - x_hat_prev) / dt
        dx_hat  = a(d_cutoff) dx + (1 - a(d_cutoff)) dx_hat_prev
        cutoff  = min_cutoff + beta |dx_hat|
        x_hat   = a(cutoff) x + (1 - a(cutoff)) x_hat_prev   (computed as
                  x_hat_prev + a (x - x_hat_prev), so a constant signal stays bit-exact)
    with a(f) = 1 / (1 + tau / dt), tau = 1 / (2 pi f); the first sample passes unchanged
    (dx_hat starts at 0). Every element (e.g. each coordinate of the 799 x 3 decoded points)
    is filtered on its own.

    Defaults, for the decoded 3D points in meters at video rates (docs/method.md §7):
    - min_cutoff = 1.0 Hz: a hand at rest is smoothed hard. At 30 frames/s a(1 Hz) = 0.17,
      which divides frame-to-frame white jitter by about 3 (std x sqrt(a / (2 - a)) = 0.31)
      at the price of a 0.16 s lag (tau) while the hand is still.
    - beta = 20 per meter (cutoff Hz per m/s of speed): a slow gesture at 0.25 m/s opens the
      filter to 6 Hz (a = 0.56, lag 27 ms), a fast one at 1 m/s to 21 Hz (a = 0.81), so
      motion is followed with little lag. Jitter of a few mm per frame reads as ~0.1 m/s of
      raw speed, ~0.03 m/s after the derivative's own 1 Hz smoothing: +0.6 Hz, the filter
      stays nearly closed at rest.
    - d_cutoff = 1.0 Hz: the paper's value for the derivative.
    - rate = 30 frames/s: dt when no timestamps are given.

    Args:
        min_cutoff: Hz; beta: Hz per (unit of x per second); d_cutoff: Hz; rate: samples/s.
    """

    def __init__(self, min_cutoff=DEFAULT_MIN_CUTOFF_HZ, beta=DEFAULT_BETA,
                 d_cutoff=DEFAULT_D_CUTOFF_HZ, rate=DEFAULT_RATE):
        for name, value in (('min_cutoff', min_cutoff), ('d_cutoff', d_cutoff), ('rate', rate)):
            if not value > 0:
                raise ValueError(f'{name} must be > 0, got {value!r}')
        if not beta >= 0:
            raise ValueError(f'beta must be >= 0, got {beta!r}')
        self.min_cutoff, self.beta, self.d_cutoff, self.rate = min_cutoff, beta, d_cutoff, rate
        self.reset()

    def reset(self):
        """Forget the history: the next sample passes unchanged."""
        self.x_hat = None
        self.dx_hat = None
        self.t_prev = None

    def __call__(self, x, t=None):
        """Filter one sample.

        Args:
            x: array of any shape (the same for every call), e.g. 799 x 3 points in meters.
            t: timestamp in seconds (strictly increasing), or None for 1 / rate after the
                previous sample.
        Returns:
            the filtered sample, float64, same shape as x.
        """
        x = np.array(x, dtype=np.float64)
        if self.x_hat is None:
            self.x_hat, self.dx_hat = x, np.zeros_like(x)
            self.t_prev = 0.0 if t is None else float(t)
            return x.copy()
        if x.shape != self.x_hat.shape:
            raise ValueError(f'sample shape {x.shape} differs from the first sample '
                             f'{self.x_hat.shape}; call reset() for a new signal')
        t = self.t_prev + 1.0 / self.rate if t is None else float(t)
        dt = t - self.t_prev
        if not dt > 0:
            raise ValueError(f'timestamps must increase: {t} after {self.t_prev}')
        dx = (x - self.x_hat) / dt
        a_d = _smoothing_factor(self.d_cutoff, dt)
        self.dx_hat = a_d * dx + (1.0 - a_d) * self.dx_hat
        cutoff = self.min_cutoff + self.beta * np.abs(self.dx_hat)
        a = _smoothing_factor(cutoff, dt)
        # a x + (1 - a) x_hat_prev, written as a step towards x: exact when x = x_hat_prev.
        self.x_hat = self.x_hat + a * (x - self.x_hat)
        self.t_prev = t
        return self.x_hat.copy()


class FrameResult(NamedTuple):
    """One frame of the tracking loop."""

    index: int  # frame index (0-based)
    box: HandBox  # the box the frame was cropped with (px)
    box_reset: bool  # the box from the previous frame's joints was rejected: this is the last good one
    reset_reason: Optional[str]  # why it was rejected, else None
    xyz_cam: np.ndarray  # 799 x 3, m, camera frame (smoothed when a filter was given)
    joints_uv: np.ndarray  # 21 x 2 px, the raw prediction's joints (the next box comes from them)
    box_source: str = 'tracked'  # 'first' (first_box), 'tracked' or 'detector' (re-detected)


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
