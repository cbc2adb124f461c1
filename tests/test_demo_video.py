"""demo.py on videos and image sequences (tracking, smoothing, outputs, errors) and --bbox auto
on a still image, with a small randomly initialised network and the synthetic clip."""
import json
import os

import cv2
import numpy as np
import pytest
import torch

import config
import demo
from run.network import build_model
from utils.runtime.launch import run_main
from tests.helpers import CLIP_FRAMES, CLIP_SIZE
from utils.errors import DataError
from utils.mano import MANO
from wild.boxes import auto_box, box_iou, centred_box

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory, standin_mano):
    """A randomly initialised small network saved with its config.json, as train.py does."""
    cfg = config.resolve(['--device', 'cpu', '--backbone', 'resnet18', '--input_img_shape', '64,64',
                          '--pretrained_backbone', 'false', '--mano_root', standin_mano])
    torch.manual_seed(0)
    model = build_model(cfg, MANO(cfg.mano_root), torch.device('cpu'))
    folder = tmp_path_factory.mktemp('video_ckpt')
    torch.save({'net': model.state_dict()}, folder / 'snapshot_0.pth.tar')
    (folder / 'config.json').write_text(json.dumps(cfg.to_dict()))
    return str(folder / 'snapshot_0.pth.tar')


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def decode(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def test_video_and_sequence_give_complete_outputs(checkpoint, clip, tmp_path, monkeypatch):
    folder, truth = clip
    demo.main(['--input', truth['video'], '--checkpoint', checkpoint, '--out', str(tmp_path / 'v')])
    records = read_jsonl(tmp_path / 'v' / 'clip.jsonl')
    assert [r['frame'] for r in records] == list(range(CLIP_FRAMES))
    for r in records:
        assert set(r) == {'frame', 'time', 'box', 'box_reset', 'reset_reason', 'box_source',
                          'score', 'K', 'K_source', 'hand', 'root_depth_m', 'root_depth_source',
                          'hand_scale_m', 'joints_cam', 'joints_2d', 'verts_cam'}
        assert r['K_source'] == 'default_fov'
        assert r['box_source'] == ('centre' if r['frame'] == 0 else 'tracked')
        assert r['root_depth_source'] in ('auto', 'previous_frame', 'fallback')
        assert r['root_depth_m'] == r['joints_cam'][0][2]
        assert np.array(r['joints_cam']).shape == (21, 3)
        assert np.array(r['verts_cam']).shape == (778, 3)
        assert len(r['box']) == 4 and isinstance(r['box_reset'], bool)
    assert records[1]['time'] == pytest.approx(0.1)  # the clip's 10 frames/s
    overlay = decode(tmp_path / 'v' / 'clip_mesh.mp4')
    assert len(overlay) == CLIP_FRAMES and overlay[0].shape == (*CLIP_SIZE, 3)
    assert sorted(os.listdir(tmp_path / 'v')) == ['clip.jsonl', 'clip_mesh.mp4']

    # The frame folder: as many lines, per-frame OBJs, and every prediction made by the model
    # object that load_inference_model returned (the one --onnx swaps for ONNX Runtime).
    calls = []

    def recording_loader(cfg, mano, device):
        model = load(cfg, mano, device)

        def run(inputs):
            calls.append(inputs['img'].shape)
            return model(inputs)
        run.eval = lambda: run
        return run

    load = demo.load_inference_model
    monkeypatch.setattr(demo, 'load_inference_model', recording_loader)
    demo.main(['--sequence', os.path.join(folder, 'frames'), '--checkpoint', checkpoint,
               '--out', str(tmp_path / 's'), '--save_obj', '--fps', '25'])
    records = read_jsonl(tmp_path / 's' / 'frames.jsonl')
    assert len(records) == CLIP_FRAMES == len(calls) and records[1]['time'] == pytest.approx(0.04)
    assert len(os.listdir(tmp_path / 's' / 'frames_obj')) == CLIP_FRAMES
    assert len(decode(tmp_path / 's' / 'frames_mesh.mp4')) == CLIP_FRAMES


def test_smooth_changes_the_points_but_not_the_boxes(checkpoint, clip, tmp_path):
    _, truth = clip
    common = ['--input', truth['video'], '--checkpoint', checkpoint]
    demo.main([*common, '--out', str(tmp_path / 'raw')])
    demo.main([*common, '--out', str(tmp_path / 'smooth'), '--smooth', '--smooth_min_cutoff', '0.5',
               '--smooth_beta', '5'])
    raw = read_jsonl(tmp_path / 'raw' / 'clip.jsonl')
    smooth = read_jsonl(tmp_path / 'smooth' / 'clip.jsonl')
    assert raw[0]['verts_cam'] == smooth[0]['verts_cam']  # the filter passes its first sample
    assert all(r['box'] == s['box'] for r, s in zip(raw, smooth))  # tracking uses the raw joints
    moved = [not np.allclose(r['verts_cam'], s['verts_cam'], atol=1e-6) for r, s in zip(raw, smooth)]
    assert sum(moved) >= CLIP_FRAMES // 2, moved
    with pytest.raises(config.ConfigError, match='--smooth: beta must be >= 0'):
        demo.main([*common, '--out', str(tmp_path / 'bad'), '--smooth', '--smooth_beta', '-1'])


def test_an_unreadable_video_is_one_clear_error(checkpoint, tmp_path, capsys):
    broken = tmp_path / 'broken.mp4'
    broken.write_bytes(b'\x00\x01 this is not a video ' * 100)
    with pytest.raises(DataError, match=f'cannot open video {broken}'):
        demo.main(['--input', str(broken), '--checkpoint', checkpoint])
    assert run_main(demo.main, ['--input', str(broken), '--checkpoint', checkpoint], 'demo.py') == 1
    err = capsys.readouterr().err.strip().splitlines()
    ours = [line for line in err if line.startswith('demo.py: error:')]
    assert len(ours) == 1 and str(broken) in ours[0], err
    empty = tmp_path / 'no_frames'
    empty.mkdir()
    with pytest.raises(DataError, match='no_frames holds no images'):
        demo.main(['--sequence', str(empty), '--checkpoint', checkpoint])


def test_flags_that_cannot_apply_are_refused(checkpoint, clip, tmp_path):
    _, truth = clip
    still = truth['files'][0]
    with pytest.raises(config.ConfigError, match='--smooth, --save_obj: for videos only'):
        demo.main(['--input', still, '--checkpoint', checkpoint, '--smooth', '--save_obj'])
    with pytest.raises(config.ConfigError, match='--fps -2.0: must be a positive frame rate'):
        demo.main(['--input', truth['video'], '--checkpoint', checkpoint, '--fps', '-2'])
    with pytest.raises(config.ConfigError, match=r'--bbox 400,10,50,50: box centre \(425.0, 35.0\) '
                                                 r'px outside the 320 x 240 image'):
        demo.main(['--input', truth['video'], '--checkpoint', checkpoint, '--bbox', '400,10,50,50',
                   '--out', str(tmp_path)])


def test_bbox_auto_finds_an_off_centre_hand(checkpoint, clip, tmp_path):
    _, truth = clip
    still = truth['files'][0]  # the hand in the left part of the frame
    img = cv2.imread(still)
    height, width = img.shape[:2]
    start = centred_box(width, height)
    true_box = truth['boxes'][0]
    assert box_iou(start, true_box) < 0.3  # the default centred box misses most of the hand

    # The truth standing in for the network, which places joints inside its crop only.
    def predict(img_bgr, box):
        center, side = box
        joints = np.clip(truth['joints_uv'][0], center - side / 2, center + side / 2)
        return np.zeros((799, 3)), joints

    found = auto_box(predict, img, start)
    print(f'--bbox auto with the truth: IoU {box_iou(found, true_box):.3f} with the true box')
    assert box_iou(found, true_box) >= 0.5

    # The real (small, untrained) network: it runs and writes the still-image outputs (at a
    # given depth: its collapsed joints give no --root_depth auto).
    demo.main(['--input', still, '--checkpoint', checkpoint, '--bbox', 'auto',
               '--out', str(tmp_path / 'auto'), '--root_depth', '0.7'])
    assert sorted(os.listdir(tmp_path / 'auto')) == ['00000.json', '00000.obj', '00000_mesh.png',
                                                      '00000_skeleton.png']
