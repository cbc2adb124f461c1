"""Hand boxes from predicted joints (the rule itself: utils.transforms.box_from_joints), box
tracking over video frames, the `--bbox auto` refinement and the One Euro filter for the decoded points (docs/method.md §2, §7).

Boxes are `HandBox(center, side)`: centre (2,) in image pixels (u right, v down) and the side
of the square box in pixels, as the crop of docs/method.md §2 step 3 takes them (the demo's
`hand_box` returns the same pair). Pure numpy.
"""
import math
from typing import NamedTuple, Optional

import numpy as np

# The box rule of FreiHAND's framing lives in utils.transforms (the HO3D loader crops with it
# too); imported here for the tracking loop and its callers.
from utils.transforms import BOX_ENLARGE, MAX_SIDE_IMAGE_RATIO, HandBox, box_from_joints  # noqa: F401

MIN_BOX_SIDE_PX = 32.0  # a smaller box (a quarter of FreiHAND's 130 px) is a collapsed track
MIN_INSIDE_FRACTION = 0.5  # a box with less of its area inside the image has left it
# One Euro filter defaults for the decoded 3D points (meters; see OneEuroFilter).
DEFAULT_MIN_CUTOFF_HZ = 1.0  # Hz
DEFAULT_BETA = 20.0  # Hz of cutoff per m/s of speed
DEFAULT_D_CUTOFF_HZ = 1.0  # Hz, the derivative's low-pass
DEFAULT_RATE = 30.0  # samples/s when no timestamps are given


def as_box(box):
    """HandBox from any (center, side) pair."""
    center, side = box
    return HandBox(np.asarray(center, dtype=np.float64).reshape(2), float(side))


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


def box_iou(box_a, box_b):
    """Intersection over union of two square (center, side) boxes."""
    a, b = as_box(box_a), as_box(box_b)
    overlap = np.clip(np.minimum(a.center + a.side / 2, b.center + b.side / 2)
                      - np.maximum(a.center - a.side / 2, b.center - b.side / 2), 0.0, None)
    intersection = float(overlap[0] * overlap[1])
    union = a.side ** 2 + b.side ** 2 - intersection
    return intersection / union if union > 0 else 0.0


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
