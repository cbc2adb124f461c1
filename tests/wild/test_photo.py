"""demo.py on a picture with two hands, one near the left edge and one mirrored (a left hand):
from a --boxes file and from the MediaPipe detector (skipped only where its extra is not
installed and $SAR_REQUIRE_DETECTOR is unset), two records with the right sides and boxes on the
hands; without the extra the error names the install command."""
import json

import numpy as np
import pytest
import torch

import config
import demo
from run.network import build_model
from utils.runtime.launch import run_main
from wild.boxes import box_iou, box_of
from tests.wild.scenes import write_picture
from utils.mano import MANO
from wild.detector import INSTALL_COMMAND, PYTHON_ENV, load_detector

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory, standin_mano):
    """A randomly initialised small network whose checkpoint stores its configuration."""
    cfg = config.resolve(['--device', 'cpu', '--backbone', 'resnet18', '--input_img_shape', '64,64',
                          '--num_stage', '1', '--pretrained_backbone', 'false',
                          '--mano_root', standin_mano])
    torch.manual_seed(0)
    model = build_model(cfg, MANO(cfg.mano_root), torch.device('cpu'))
    path = tmp_path_factory.mktemp('photo_ckpt') / 'snapshot_0.pth.tar'
    torch.save({'net': model.state_dict(), 'config': cfg.to_dict()}, path)
    return str(path)


@pytest.fixture(scope='module')
def picture(tmp_path_factory, standin_mano):
    """(path, truth) of the two-hand picture (tests/wild/scenes.py)."""
    return write_picture(str(tmp_path_factory.mktemp('two_hands')), standin_mano)


def check_records(record, truth, min_iou):
    """Two hands, left to right as in the truth, each with its side and a box on it."""
    hands = sorted(record['hands'], key=lambda h: h['box'][0])
    assert [h['hand'] for h in hands] == [t['side'] for t in truth]
    for hand, true in zip(hands, truth):
        assert box_iou(box_of(hand['box']), box_of(true['box'])) >= min_iou, (hand['box'], true['box'])
        x, y, w, h = hand['box']
        inside = ((true['joints_uv'] >= [x, y]) & (true['joints_uv'] <= [x + w, y + h])).all(1)
        assert inside.mean() >= 0.9  # the hand is in its box
    return hands


def test_boxes_file_gives_one_record_per_hand(checkpoint, picture, tmp_path):
    path, truth = picture
    boxes = tmp_path / 'boxes.json'
    boxes.write_text(json.dumps({'two_hands.png': [
        {'box': t['box'], 'side': t['side'], 'score': 0.9 - 0.1 * k} for k, t in enumerate(truth)]}))
    out = tmp_path / 'out'
    demo.main(['--input', path, '--out', str(out), '--checkpoint', checkpoint, '--boxes', str(boxes),
               '--root_depth', '0.7', '--outputs', 'overlay,obj,ply,json'])
    record = json.loads((out / 'two_hands.json').read_text())
    hands = check_records(record, truth, min_iou=0.99)
    assert [h['box_source'] for h in hands] == ['boxes', 'boxes']
    assert [h['score'] for h in hands] == [0.9, 0.8]
    assert sorted(p.name for p in out.iterdir()) == ['two_hands.json', 'two_hands.obj',
                                                      'two_hands.ply', 'two_hands_mesh.png']
    # The right hand keeps MANO's faces, the left one (second in the file) has them re-wound.
    faces = np.array([line.split()[1:] for line in open(out / 'two_hands.obj')
                      if line.startswith('f ')], dtype=np.int64) - 1
    half = len(faces) // 2
    np.testing.assert_array_equal(faces[half:], faces[:half, ::-1] + 778)


def test_detector_finds_both_hands_with_their_sides(detector_extra, checkpoint, picture, tmp_path):
    path, truth = picture
    out = tmp_path / 'out'
    demo.main(['--input', path, '--out', str(out), '--checkpoint', checkpoint, '--detector',
               'mediapipe', '--max_hands', '2', '--root_depth', '0.7', '--outputs', 'json'])
    hands = check_records(json.loads((out / 'two_hands.json').read_text()), truth, min_iou=0.6)
    assert all(h['box_source'] == 'detector' and 0.5 <= h['score'] <= 1 for h in hands)


def test_without_the_extra_the_error_names_the_install_command(checkpoint, picture, monkeypatch,
                                                               capsys, tmp_path):
    path, _ = picture
    monkeypatch.setenv(PYTHON_ENV, str(tmp_path / 'no-venv' / 'bin' / 'python'))
    load_detector.cache_clear()
    args = ['--input', path, '--checkpoint', checkpoint, '--detector', 'mediapipe']
    with pytest.raises(config.ConfigError, match='make detector'):
        demo.main(args)
    assert run_main(demo.main, args, 'demo.py') == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith('demo.py: error:')]
    assert len(errors) == 1 and INSTALL_COMMAND in errors[0], errors
    load_detector.cache_clear()
