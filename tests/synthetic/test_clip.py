"""synthetic/clip.py: the clip's files, its ground truth and the motion the tracking tests need."""
import json
import os

import cv2
import numpy as np
import pytest

from synthetic.clip import TruthPredictor, clip_geometry
from synthetic.geometry import GeometrySampler
from tests.helpers import CLIP_FRAMES, CLIP_SIZE
from utils.transforms import box_from_joints
from wild.boxes import box_iou
from utils.transforms import project

pytestmark = pytest.mark.slow


def test_files_and_ground_truth_agree(clip):
    folder, truth = clip
    height, width = CLIP_SIZE
    meta = json.load(open(os.path.join(folder, 'clip.json')))
    assert meta['num_frames'] == CLIP_FRAMES == len(meta['frames']) == len(truth['files'])
    assert truth['verts'].shape == (CLIP_FRAMES, 778, 3) and truth['xyz'].shape == (CLIP_FRAMES, 21, 3)
    np.testing.assert_allclose(truth['K'], [[500, 0, (width - 1) / 2], [0, 500, (height - 1) / 2],
                                            [0, 0, 1]])
    capture = cv2.VideoCapture(truth['video'])
    decoded = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        decoded.append(frame)
    assert len(decoded) == CLIP_FRAMES and capture.get(cv2.CAP_PROP_FPS) == meta['fps']
    for k, (path, frame) in enumerate(zip(truth['files'], decoded)):
        png = cv2.imread(path)
        assert png.shape == frame.shape == (height, width, 3)
        # mp4v is lossy; the video shows the same picture as the lossless frame.
        assert np.abs(png.astype(int) - frame).mean() < 4, k
        # The box is box_from_joints of the projected true joints.
        box = box_from_joints(project(truth['xyz'][k], truth['K'])[:, :2])
        np.testing.assert_allclose(meta['frames'][k]['box'],
                                   [*(box.center - box.side / 2), box.side, box.side], atol=1e-9)
        # Every vertex projects inside the frame.
        uv = project(truth['verts'][k], truth['K'])[:, :2]
        assert uv.min() >= 0 and np.all(uv.max(axis=0) <= [width - 1, height - 1])


def test_the_rendered_hand_is_where_the_ground_truth_says(clip):
    folder, truth = clip
    # The middle MCP (keypoint 9) lies on the palm: in frame 0 its pixels show the hand, in the
    # last frame (the hand far to the right) the background.
    first, last = (cv2.imread(truth['files'][k]).astype(int) for k in (0, -1))
    u, v = np.rint(truth['joints_uv'][0, 9]).astype(int)
    patch = (slice(v - 2, v + 3), slice(u - 2, u + 3))
    assert np.abs(first[patch] - last[patch]).mean() > 20
    # The truth predictor hands out the frames in order.
    predict = TruthPredictor(truth)
    for k in range(CLIP_FRAMES):
        xyz, uv = predict(None, None)
        np.testing.assert_array_equal(xyz[:778], truth['verts'][k])
        np.testing.assert_array_equal(uv, truth['joints_uv'][k])
    with pytest.raises(IndexError, match=f'frame {CLIP_FRAMES}'):
        predict(None, None)


def test_the_hand_crosses_the_frame_slowly_enough_to_follow(clip):
    _, truth = clip
    boxes = truth['boxes']
    centres = np.array([box.center for box in boxes])
    assert centres[-1, 0] - centres[0, 0] > 0.4 * CLIP_SIZE[1]  # about 140 of 320 px
    assert np.all(np.diff(centres[:, 0]) > 0)
    steps = [box_iou(a, b) for a, b in zip(boxes, boxes[1:])]
    assert min(steps) > 0.75  # consecutive frames overlap: a tracker can follow
    assert box_iou(boxes[0], boxes[-1]) == 0.0  # a fixed box cannot


def test_a_hand_that_does_not_fit_is_refused(standin_mano):
    sampler = GeometrySampler(standin_mano)
    with pytest.raises(ValueError, match=r'leaves the 320 x 240 frame at frame \d+'):
        clip_geometry(sampler, 4, (240, 320), extent_px=260.0, focal_px=500.0,
                      rng=np.random.default_rng(0))
