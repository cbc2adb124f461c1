"""wild/tracking.py: the tracking loop (with the truth standing in for the network), resets and
their log lines, re-detection, smoothing and --bbox auto (the files: tests/wild/test_sequence.py)."""
import logging

import numpy as np
import pytest

from wild.boxes import auto_box, box_iou
from synthetic.clip import TruthPredictor
from tests.helpers import CLIP_FRAMES
from utils.transforms import BOX_ENLARGE, HandBox
from wild.tracking import OneEuroFilter, track
from utils.files.video import VideoFrames

IMAGE_SIZE = (240, 320)  # height, width


def blank_frames(count, image_size=IMAGE_SIZE):
    return [(k, np.zeros((*image_size, 3), dtype=np.uint8)) for k in range(count)]


def square_joints(center, extent):
    """21 joints spanning an `extent` px square around `center` (its corners among them)."""
    rng = np.random.default_rng(0)
    joints = rng.uniform(-0.5, 0.5, size=(21, 2))
    joints[:4] = [(-0.5, -0.5), (0.5, -0.5), (-0.5, 0.5), (0.5, 0.5)]
    return np.asarray(center, dtype=np.float64) + extent * joints


class ScriptedPredictor:
    """Predicts the hand at centres[k] with extent 60 px on the k-th call; records the boxes."""

    def __init__(self, centres, extent=60.0, xyz=None):
        self.centres, self.extent, self.xyz = centres, extent, xyz
        self.boxes = []

    def __call__(self, img, box):
        k = len(self.boxes)
        self.boxes.append(box)
        xyz = self.xyz[k] if self.xyz is not None else np.full((799, 3), 0.5)
        return xyz, square_joints(self.centres[k], self.extent)


def test_the_box_of_each_frame_comes_from_the_previous_joints():
    centres = [(100.0, 120.0), (110.0, 118.0), (125.0, 115.0)]
    predict = ScriptedPredictor(centres)
    first = HandBox(np.array([90.0, 120.0]), 100.0)
    results = [result for _, result in track(blank_frames(3), predict, first)]
    assert [r.index for r in results] == [0, 1, 2] and not any(r.box_reset for r in results)
    np.testing.assert_array_equal(results[0].box.center, first.center)
    for k in (1, 2):
        np.testing.assert_allclose(results[k].box.center, centres[k - 1])
        assert results[k].box.side == pytest.approx(BOX_ENLARGE * 60.0)
    assert predict.boxes == [r.box for r in results]


@pytest.mark.slow
def test_ground_truth_tracking_follows_the_hand_across_the_clip(clip):
    folder, truth = clip
    frames = VideoFrames(truth['video'])
    results = [result for _, result in track(frames, TruthPredictor(truth), truth['boxes'][0])]
    assert len(results) == CLIP_FRAMES
    tracked = [box_iou(r.box, truth['boxes'][r.index]) for r in results]
    fixed = [box_iou(truth['boxes'][0], box) for box in truth['boxes']]
    print(f'tracked box IoU with the true box: min {min(tracked):.3f} over {len(tracked)} frames; '
          f'first frame\'s box held fixed: min {min(fixed):.3f}')
    assert min(tracked) >= 0.7
    assert min(fixed) < 0.1  # the hand moves: a fixed box loses it
    assert not any(r.box_reset for r in results)


def test_a_box_leaving_the_image_is_reset_and_logged_once(caplog):
    # The hand walks right; at frame 3 the prediction jumps off the image (to u = 1000) for
    # two frames, then comes back.
    centres = [(100.0, 120.0), (110.0, 120.0), (120.0, 120.0), (1000.0, 120.0), (1010.0, 120.0),
               (130.0, 120.0), (140.0, 120.0)]
    predict = ScriptedPredictor(centres)
    with caplog.at_level(logging.INFO, logger='wild.tracking'):
        results = [r for _, r in track(blank_frames(7), predict, ((100.0, 120.0), 94.2))]
    assert [r.box_reset for r in results] == [False, False, False, False, True, True, False]
    assert 'outside the 320 x 240 image' in results[4].reset_reason
    # Frames 4 and 5 keep frame 3's box (the last good one, from frame 2's joints).
    for k in (4, 5):
        np.testing.assert_allclose(results[k].box.center, centres[2])
    np.testing.assert_allclose(results[6].box.center, centres[5])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert message.startswith('frame 4: hand box reset to the last good box')
    assert "frame 3's joints" in message and 'outside the 320 x 240 image' in message
    recovered = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any(m.startswith('frame 6: the box follows the predicted joints again (frames 4-5')
               for m in recovered), recovered


def test_a_lost_box_is_re_detected_when_a_detector_is_given(caplog):
    # Frame 1's joints jump off the image: frame 2 takes the detector's box instead of the
    # last good one, and then follows the joints again.
    centres = [(100.0, 120.0), (1000.0, 120.0), (150.0, 100.0), (155.0, 100.0)]
    predict = ScriptedPredictor(centres)
    detected = HandBox(np.array([150.0, 100.0]), 90.0)
    calls = []

    def redetect(img):
        calls.append(img.shape)
        return detected
    with caplog.at_level(logging.INFO, logger='wild.tracking'):
        results = [r for _, r in track(blank_frames(4), predict, ((100.0, 120.0), 94.2),
                                       redetect=redetect)]
    assert len(calls) == 1  # only when the box was lost
    assert [r.box_source for r in results] == ['first', 'tracked', 'detector', 'tracked']
    assert not any(r.box_reset for r in results)
    np.testing.assert_array_equal(results[2].box.center, detected.center)
    assert results[2].box.side == 90.0
    np.testing.assert_allclose(results[3].box.center, centres[2])
    assert any(r.getMessage().startswith('frame 2: hand re-detected') for r in caplog.records)
    # A detector that finds nothing: the last good box, as without one.
    predict = ScriptedPredictor(centres)
    results = [r for _, r in track(blank_frames(4), predict, ((100.0, 120.0), 94.2),
                                   redetect=lambda img: None)]
    assert [r.box_reset for r in results] == [False, False, True, False]


def test_a_collapsing_box_is_reset_with_its_reason():
    predict = ScriptedPredictor([(160.0, 120.0)] * 3, extent=10.0)
    results = [r for _, r in track(blank_frames(3), predict, ((160.0, 120.0), 100.0))]
    assert [r.box_reset for r in results] == [False, True, True]
    assert results[1].reset_reason == 'box collapsed: side 15.7 px < 32 px'
    assert all(r.box.side == 100.0 for r in results)


def test_smoothing_changes_a_moving_signal_and_passes_a_constant_one():
    rng = np.random.default_rng(0)
    noisy = 0.6 + rng.normal(scale=0.005, size=(6, 799, 3))  # 5 mm jitter
    constant = np.repeat(noisy[:1], 6, axis=0)
    for xyz, changed in ((noisy, True), (constant, False)):
        raw = [r for _, r in track(blank_frames(6), ScriptedPredictor([(160.0, 120.0)] * 6, xyz=xyz),
                                   ((160.0, 120.0), 100.0))]
        smooth = [r for _, r in track(blank_frames(6), ScriptedPredictor([(160.0, 120.0)] * 6, xyz=xyz),
                                      ((160.0, 120.0), 100.0), smoother=OneEuroFilter(rate=30.0))]
        np.testing.assert_array_equal(raw[0].xyz_cam, smooth[0].xyz_cam)  # the first passes
        for a, b in zip(raw, smooth):
            np.testing.assert_array_equal(a.xyz_cam, xyz[a.index])  # off: the raw results
            assert (not np.array_equal(a.xyz_cam, b.xyz_cam)) == (changed and a.index > 0)
            np.testing.assert_array_equal(a.box.center, b.box.center)  # boxes follow raw joints
        if changed:  # smoothing reduces the frame-to-frame jitter
            assert (np.diff([b.xyz_cam for b in smooth], axis=0).std()
                    < 0.5 * np.diff(noisy, axis=0).std())


def test_auto_box_re_crops_around_the_hand(caplog):
    # The hand (extent 60 px) at (80, 100); a predictor that sees only its crop: the true
    # joints clamped into the box (a network places joints inside its crop).
    true_joints = square_joints((80.0, 100.0), 60.0)

    def predict(img, box):
        center, side = box
        return np.zeros((799, 3)), np.clip(true_joints, center - side / 2, center + side / 2)

    img = np.zeros((*IMAGE_SIZE, 3), dtype=np.uint8)
    with caplog.at_level(logging.INFO, logger='wild.boxes'):
        box = auto_box(predict, img, ((159.5, 119.5), 139.0))
    np.testing.assert_allclose(box.center, [80.0, 100.0])
    assert box.side == pytest.approx(BOX_ENLARGE * 60.0)
    assert any('--bbox auto: converged after' in r.getMessage() for r in caplog.records)
