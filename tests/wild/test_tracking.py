"""wild/boxes.py and wild/tracking.py: boxes from joints, box tracking, --bbox auto refinement,
One Euro filter."""
import math
import re

import numpy as np
import pytest

from utils.transforms import BOX_ENLARGE, HandBox, box_from_joints
from wild.boxes import box_iou, refine_box, update_box
from wild.tracking import OneEuroFilter, TrackState

IMAGE_SIZE = (480, 640)  # height, width


def _joints_around(center, extent):
    """21 joints whose bounding rectangle is `extent` px wide and tall around `center`."""
    rng = np.random.default_rng(0)
    joints = rng.uniform(-0.5, 0.5, size=(21, 2))
    joints[0], joints[1] = (-0.5, -0.5), (0.5, 0.5)  # the extremes, so the extent is exact
    return np.asarray(center, dtype=np.float64) + extent * joints


# ---- One Euro filter ------------------------------------------------------------------------

def test_one_euro_hand_worked_three_steps():
    # rate 2 pi Hz: dt = 1 / (2 pi), so a cutoff f gives tau / dt = 1 / f and a(f) = f / (f + 1).
    # a(d_cutoff = 1) = 1/2; beta = 1 / pi.
    # t0: x = 0 passes: x_hat = 0, dx_hat = 0.
    # t1: x = 1: dx = (1 - 0) / dt = 2 pi; dx_hat = 1/2 * 2 pi = pi; cutoff = 1 + pi / pi = 2;
    #     a = 2/3; x_hat = 2/3.
    # t2: x = 1: dx = (1 - 2/3) * 2 pi = 2 pi / 3; dx_hat = 1/2 * 2 pi / 3 + 1/2 * pi = 5 pi / 6;
    #     cutoff = 1 + 5/6 = 11/6; a = (11/6) / (17/6) = 11/17;
    #     x_hat = 11/17 + 6/17 * 2/3 = 15/17.
    # The second element is constant (5): it passes unchanged, whatever the first does.
    samples = [np.array([0.0, 5.0]), np.array([1.0, 5.0]), np.array([1.0, 5.0])]
    expected = [[0.0, 5.0], [2 / 3, 5.0], [15 / 17, 5.0]]
    fixed = OneEuroFilter(min_cutoff=1.0, beta=1 / math.pi, d_cutoff=1.0, rate=2 * math.pi)
    timed = OneEuroFilter(min_cutoff=1.0, beta=1 / math.pi, d_cutoff=1.0, rate=1000.0)
    for k, (x, want) in enumerate(zip(samples, expected)):
        np.testing.assert_allclose(fixed(x), want, rtol=1e-12, atol=1e-15)
        # Timestamps k / (2 pi) s (plus an offset): the same dt, so the same numbers.
        np.testing.assert_allclose(timed(x, t=3.0 + k / (2 * math.pi)), want, rtol=1e-12,
                                   atol=1e-15)


def test_one_euro_constant_signal_passes_unchanged():
    points = np.random.default_rng(1).normal(size=(799, 3))
    smoother = OneEuroFilter()
    for _ in range(5):
        out = smoother(points)
        np.testing.assert_array_equal(out, points)
        assert out.shape == (799, 3) and out is not points


def test_one_euro_smooths_a_small_step_and_follows_a_large_one():
    def response(step):
        smoother = OneEuroFilter()  # defaults: 30 frames/s, meters
        return np.array([smoother(np.array([0.0 if k < 10 else step]))[0] for k in range(70)])

    small = response(0.005)  # 5 mm: jitter-sized, smoothed hard
    assert np.all(small[:10] == 0)
    assert 0 < small[10] < 0.5 * 0.005
    assert np.all(np.diff(small) >= 0) and np.all(small <= 0.005)
    assert small[-1] > 0.99 * 0.005  # reaches the new level within 2 s
    large = response(0.2)  # 20 cm in one frame: the filter opens (beta)
    assert 0.8 * 0.2 < large[10] < 0.2
    assert large[10] / 0.2 > 3 * small[10] / 0.005


def test_one_euro_errors_and_reset():
    smoother = OneEuroFilter()
    smoother(np.zeros(3), t=1.0)
    with pytest.raises(ValueError, match='timestamps must increase'):
        smoother(np.ones(3), t=1.0)
    with pytest.raises(ValueError, match=r'shape \(2,\) differs .* \(3,\)'):
        smoother(np.ones(2), t=2.0)
    smoother.reset()
    np.testing.assert_array_equal(smoother(np.ones(2)), np.ones(2))  # the first sample again
    with pytest.raises(ValueError, match='min_cutoff must be > 0'):
        OneEuroFilter(min_cutoff=0.0)


# ---- boxes ----------------------------------------------------------------------------------

def test_box_from_joints_hand_made():
    # u spans 100..180, v spans 50..110: centre (140, 80), larger side 80 px.
    joints = np.array([[100.0, 60.0], [180.0, 50.0], [150.0, 110.0], [120.0, 90.0]])
    box = box_from_joints(joints)
    np.testing.assert_allclose(box.center, [140.0, 80.0])
    assert box.side == pytest.approx(BOX_ENLARGE * 80.0) == pytest.approx(125.6)
    assert box_from_joints(joints, enlarge=1.5).side == pytest.approx(120.0)
    # Capped at twice the longer image side.
    assert box_from_joints(joints, image_size=(40, 50)).side == pytest.approx(100.0)
    center, side = box  # a (center, side) pair like wild.boxes.box_of
    assert isinstance(box, HandBox) and side == box.side
    with pytest.raises(ValueError, match=r'J x 2 .* \(21, 3\)'):
        box_from_joints(np.zeros((21, 3)))


def test_box_iou_hand_worked():
    unit = ((0.0, 0.0), 2.0)  # spans [-1, 1] on both axes
    # Shifted by 1 on u: overlap 1 x 2 = 2, union 4 + 4 - 2 = 6.
    assert box_iou(unit, ((1.0, 0.0), 2.0)) == pytest.approx(1 / 3)
    # Shifted by (1, 1): overlap 1 x 1, union 7.
    assert box_iou(unit, ((1.0, 1.0), 2.0)) == pytest.approx(1 / 7)
    # Inside a box of side 4: overlap 4, union 16.
    assert box_iou(unit, ((0.0, 0.0), 4.0)) == pytest.approx(0.25)
    assert box_iou(unit, unit) == pytest.approx(1.0)
    assert box_iou(unit, ((3.0, 0.0), 2.0)) == 0.0  # disjoint
    assert box_iou(unit, ((2.0, 0.0), 2.0)) == 0.0  # touching edges


def test_update_box_follows_a_good_box():
    prev = ((320.0, 240.0), 150.0)
    box, reason = update_box(prev, _joints_around((300.0, 250.0), 80.0), IMAGE_SIZE)
    assert reason is None
    np.testing.assert_allclose(box.center, [300.0, 250.0])
    assert box.side == pytest.approx(BOX_ENLARGE * 80.0)


@pytest.mark.parametrize('center, extent, message', [
    ((700.0, 240.0), 60.0, r'box centre \(700.0, 240.0\) px outside the 640 x 480 image'),
    ((320.0, -5.0), 60.0, r'box centre \(320.0, -5.0\) px outside'),
    # Centre (630, 470) inside, side 100: 60 x 60 of 100 x 100 inside the image = 36 %.
    ((630.0, 470.0), 100.0 / BOX_ENLARGE, r'mostly outside the image: 36 % of it inside, at '
                                          r'least 50 % needed'),
    # 10 px of joints -> a 15.7 px box.
    ((320.0, 240.0), 10.0, r'box collapsed: side 15.7 px < 32 px'),
])
def test_update_box_resets_to_the_last_good_box(center, extent, message):
    prev = HandBox(np.array([320.0, 240.0]), 150.0)
    box, reason = update_box(prev, _joints_around(center, extent), IMAGE_SIZE)
    assert reason is not None and re.search(message, reason), reason
    np.testing.assert_array_equal(box.center, prev.center)
    assert box.side == prev.side


def test_update_box_resets_on_non_finite_joints():
    joints = _joints_around((320.0, 240.0), 80.0)
    joints[3, 1] = np.nan
    box, reason = update_box(((100.0, 100.0), 90.0), joints, IMAGE_SIZE)
    assert reason == 'non-finite joints' and box.side == 90.0


def test_track_state_counts_resets_and_keeps_the_last_good_box():
    track = TrackState(((320.0, 240.0), 150.0), IMAGE_SIZE)
    box, reason = track.update(_joints_around((330.0, 250.0), 80.0))
    assert reason is None
    good = track.box
    box, reason = track.update(_joints_around((900.0, 250.0), 80.0))  # lost: off the image
    assert 'outside' in reason
    np.testing.assert_array_equal(box.center, good.center)
    assert box.side == good.side
    box, reason = track.update(_joints_around((340.0, 250.0), 80.0))
    assert reason is None and box.center[0] == pytest.approx(340.0)
    assert (track.frames, track.resets) == (3, 1)


# ---- --bbox auto ----------------------------------------------------------------------------

TRUE_CENTER = np.array([400.0, 300.0])
TRUE_EXTENT = 80.0
TRUE_JOINTS = _joints_around(TRUE_CENTER, TRUE_EXTENT)


def _biased_predictor(pull=0.3):
    """A fake network: the true joints, pulled by `pull` x the offset towards the box centre
    (a network sees a badly placed hand less well). Records the boxes it was called with."""
    calls = []

    def predict(image, box):
        calls.append(box)
        return TRUE_JOINTS + pull * (box.center - TRUE_CENTER)

    return predict, calls


def test_refine_box_converges_on_the_hand():
    predict, calls = _biased_predictor()
    image = np.zeros((*IMAGE_SIZE, 3), dtype=np.uint8)
    result = refine_box(predict, image, ((320.0, 240.0), 130.0), max_iter=6, tol=0.03)
    # Offset 100 px -> 30 -> 9 -> 2.7 -> 0.8: the moves are 70, 21, 6.3 and 1.9 px, relative to
    # the 125.6 px side 0.56, 0.17, 0.05 and 0.015 < 0.03: converged after 4 predictions.
    assert result.converged and result.reason is None
    assert result.iterations == len(calls) == 4
    assert np.linalg.norm(result.box.center - TRUE_CENTER) == pytest.approx(0.3 ** 4 * 100,
                                                                            rel=1e-9)
    assert result.box.side == pytest.approx(BOX_ENLARGE * TRUE_EXTENT)
    true_box = (TRUE_CENTER, BOX_ENLARGE * TRUE_EXTENT)
    assert box_iou(result.box, true_box) > 0.98


def test_refine_box_stops_at_max_iter_and_on_a_bad_box():
    predict, calls = _biased_predictor()
    image = np.zeros(IMAGE_SIZE, dtype=np.uint8)
    result = refine_box(predict, image, ((320.0, 240.0), 130.0), max_iter=2)
    assert (result.iterations, result.converged, len(calls)) == (2, False, 2)
    exact = refine_box(lambda img, box: TRUE_JOINTS, image, ((320.0, 240.0), 130.0))
    assert exact.converged and exact.iterations == 2  # the second re-box does not move

    def lost(img, box):
        return np.full((21, 2), np.nan)

    result = refine_box(lost, image, ((320.0, 240.0), 130.0))
    assert (result.iterations, result.converged, result.reason) == (1, False, 'non-finite joints')
    np.testing.assert_array_equal(result.box.center, [320.0, 240.0])
    with pytest.raises(ValueError, match='max_iter must be >= 1'):
        refine_box(lost, image, ((320.0, 240.0), 130.0), max_iter=0)
