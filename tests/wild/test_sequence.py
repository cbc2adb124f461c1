"""wild/sequence.py and the video writers of wild/outputs.py: the JSON lines (the shared hand
record), the overlay video, per-frame meshes, and nothing left under the final names when a
run is interrupted (the truth standing in for the network)."""
import json
import logging
import os

import cv2
import numpy as np
import pytest

from utils.transforms import HandBox
from wild.tracking import track
from utils.files.video import FolderFrames, VideoFrames
from synthetic.clip import TruthPredictor
from tests.wild.test_video import IMAGE_SIZE, ScriptedPredictor, blank_frames
from tests.helpers import CLIP_FRAMES
from wild.sequence import VideoJob, plain_hand, run_video
from wild.records import frame_record


def decode(path):
    capture = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames, capture.get(cv2.CAP_PROP_FPS)
        frames.append(frame)


def test_frame_record_keys_units_and_rounding():
    xyz = np.arange(799 * 3, dtype=np.float64).reshape(799, 3) * 1e-7 + 0.5
    predict = ScriptedPredictor([(160.0, 120.0)], xyz=[xyz])
    _, result = next(track(blank_frames(1), predict, ((160.0, 120.0), 100.0)))
    K = np.array([[300.0, 0.0, 160.0], [0.0, 300.0, 120.0], [0.0, 0.0, 1.0]])
    job = VideoJob('out', 'clip', 25.0, np.zeros((1, 3), int), K, 'focal', first_source='bbox')
    record = frame_record(result.index, 25.0, plain_hand(result, job))
    assert list(record)[:4] == ['frame', 'time', 'box_reset', 'reset_reason']
    assert record['box'] == [110.0, 70.0, 100.0, 100.0] and record['box_source'] == 'bbox'
    assert record['hand'] == 'right' and record['K_source'] == 'focal' and record['score'] is None
    assert np.array(record['joints_cam']).shape == (21, 3)
    assert np.array(record['verts_cam']).shape == (778, 3)
    np.testing.assert_allclose(record['verts_cam'], xyz[:778], atol=5e-7)
    np.testing.assert_allclose(record['joints_cam'], xyz[778:], atol=5e-7)
    assert record['root_depth_m'] == round(xyz[778, 2], 6)
    assert frame_record(0, None, plain_hand(result, job))['time'] is None
    json.dumps(record)  # plain JSON types


def job_for(tmp_path, name, faces, K, **fields):
    return VideoJob(str(tmp_path), name, 10.0, faces, K, progress=False, **fields)


@pytest.mark.slow
def test_run_video_writes_complete_outputs(clip, standin_mano, tmp_path):
    from utils.mano import MANO
    folder, truth = clip
    frames = FolderFrames(os.path.join(folder, 'frames'))
    job = job_for(tmp_path, 'walk', MANO(standin_mano).faces, truth['K'],
                  outputs=('json', 'overlay', 'obj'))
    summary = run_video(frames, TruthPredictor(truth), truth['boxes'][0], job)
    assert (summary['frames'], summary['resets']) == (CLIP_FRAMES, 0)
    lines = open(tmp_path / 'walk.jsonl').read().splitlines()
    assert [json.loads(line)['frame'] for line in lines] == list(range(CLIP_FRAMES))
    np.testing.assert_allclose(json.loads(lines[3])['joints_cam'], truth['xyz'][3], atol=5e-7)
    assert sorted(os.listdir(tmp_path / 'walk_obj')) == [f'{k:05d}.obj' for k in range(CLIP_FRAMES)]
    overlay, fps = decode(str(tmp_path / 'walk_mesh.mp4'))
    assert len(overlay) == CLIP_FRAMES and fps == 10.0 and overlay[0].shape == (240, 320, 3)
    # The true mesh is drawn over the hand in light blue: at the middle MCP the overlay is
    # bluer than red, the frame itself (skin) redder than blue.
    u, v = np.rint(truth['joints_uv'][0, 9]).astype(int)
    shown, original = overlay[0][v, u].astype(int), frames.first_frame[v, u].astype(int)
    assert shown[0] > shown[2] and original[2] > original[0]  # BGR


@pytest.mark.slow
def test_an_interrupted_run_leaves_no_output_under_the_final_names(clip, standin_mano, tmp_path):
    from utils.mano import MANO
    _, truth = clip
    truth_predict = TruthPredictor(truth)

    def failing(img, box):
        if truth_predict.calls == 3:
            raise KeyboardInterrupt
        return truth_predict(img, box)

    with pytest.raises(KeyboardInterrupt):
        run_video(VideoFrames(truth['video']), failing, truth['boxes'][0],
                  job_for(tmp_path, 'cut', MANO(standin_mano).faces, truth['K']))
    assert os.listdir(tmp_path) == []  # no JSONL, no video, no temporaries


@pytest.mark.slow
def test_a_mesh_behind_the_camera_is_not_drawn_and_the_run_goes_on(standin_mano, tmp_path, caplog):
    from utils.mano import MANO
    count = 3
    xyz = np.full((count, 799, 3), 0.5)
    xyz[1, :, 2] = -0.5  # frame 1: a wild prediction behind the camera
    predictor = ScriptedPredictor([(160.0, 120.0)] * count, xyz=xyz)
    K = np.array([[300.0, 0.0, 160.0], [0.0, 300.0, 120.0], [0.0, 0.0, 1.0]])

    class Frames(list):
        image_size = IMAGE_SIZE

    with caplog.at_level(logging.WARNING):
        summary = run_video(Frames(blank_frames(count)), predictor,
                            HandBox(np.array([160.0, 120.0]), 94.0),
                            job_for(tmp_path, 'wild', MANO(standin_mano).faces, K))
    assert summary['frames'] == count
    assert any(r.getMessage().startswith('mesh not drawn') for r in caplog.records)
    assert len(decode(str(tmp_path / 'wild_mesh.mp4'))[0]) == count
