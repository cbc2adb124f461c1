"""train.py and test.py with --dataset HO3D end to end on a tiny synthetic HO3D set (CPU), and
the submission file they write scored by `python -m dataset.ho3d.eval`."""
import json

import numpy as np
import pytest
import torch

import test as test_script
import train
from dataset import get_dataset
from inference import network
from synthetic.ho3d import generate
from synthetic.workers import Run
from tests.helpers import GroundTruthModel
from dataset.ho3d import eval as ho3d_eval
from utils.transforms import encode_uvd

pytestmark = pytest.mark.slow
TO_FREIHAND = [0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20]
FLIP = np.array([1.0, -1.0, -1.0])


@pytest.fixture(scope='module')
def ho3d_root(tmp_path_factory, standin_mano):
    root = tmp_path_factory.mktemp('ho3d_scripts') / 'HO3D'
    generate(str(root), 4, 3, standin_mano, seed=4, version='v3', run=Run(progress=False, render=False))
    return str(root)


def small_args(root, mano, out, *extra):
    return ['--dataset', 'HO3D', '--data_root', root, '--ho3d_version', 'v3', '--mano_root', mano,
            '--device', 'cpu', '--backbone', 'resnet18', '--input_img_shape', '64,64',
            '--pretrained_backbone', 'false', '--batch_size', '2', '--num_worker', '0',
            '--total_epoch', '1', '--print_iter', '1', '--amp', 'off', '--tensorboard', 'false',
            '--output_root', str(out), '--experiment_name', 'ho3d', *extra]


def test_test_py_writes_the_ground_truth_as_a_submission(ho3d_root, standin_mano, tmp_path, monkeypatch):
    """A model that outputs the encoding of the evaluation ground truth (in the network's frame
    and joint order) gives back evaluation_xyz.json / evaluation_verts.json: OpenGL frame, HO3D
    order, evaluation.txt order, placed at the given roots."""
    with open(f'{ho3d_root}/evaluation_xyz.json') as f:
        xyz_gt = np.asarray(json.load(f))
    with open(f'{ho3d_root}/evaluation_verts.json') as f:
        verts_gt = np.asarray(json.load(f))
    dataset = get_dataset('HO3D', 'evaluation', root=ho3d_root, version='v3', input_img_shape=(64, 64))
    targets = np.stack([encode_uvd(verts_gt[j] * FLIP, (xyz_gt[j] * FLIP)[TO_FREIHAND],
                                   dataset[j][2]['K'], dataset[j][2]['img2bb_trans'], crop_size=(64, 64))
                        for j in range(len(dataset))])

    monkeypatch.setattr(network, 'build_network', lambda *a, **k: GroundTruthModel(targets))
    monkeypatch.setattr(network, 'load_net_state', lambda *a, **k: None)
    ckpt = tmp_path / 'any.pth.tar'
    torch.save({'net': {}}, ckpt)
    out = tmp_path / 'out'
    test_script.main(small_args(ho3d_root, standin_mano, out, '--checkpoint', str(ckpt),
                                '--test_batch_size', '2'))
    xyz, verts = json.loads((out / 'pred.json').read_text())
    np.testing.assert_allclose(np.array(xyz), xyz_gt, atol=1e-5)
    np.testing.assert_allclose(np.array(verts), verts_gt, atol=1e-5)
    scores = dict(line.split(': ') for line in (out / 'eval_ho3d' / 'scores.txt').read_text().splitlines())
    assert float(scores['xyz_mean3d']) < 1e-3 and float(scores['f_score_5']) == 1.0


def test_train_then_test_then_score(ho3d_root, standin_mano, tmp_path, capsys):
    out = tmp_path / 'out'
    train.main(small_args(ho3d_root, standin_mano, out))
    checkpoint = out / 'checkpoint' / 'ho3d' / 'snapshot_0.pth.tar'
    assert checkpoint.is_file()
    capsys.readouterr()
    test_script.main(['--checkpoint', str(checkpoint), '--output_root', str(out)])  # config.json: HO3D
    log = capsys.readouterr().out  # the run's logger writes to stdout
    assert 'zip -j pred.zip pred.json' in log and 'HO3D v3 competition' in log
    xyz, verts = (np.array(a) for a in json.loads((out / 'pred.json').read_text()))
    with open(f'{ho3d_root}/evaluation.txt') as f:
        assert len(xyz) == len(verts) == len(f.read().split())
    assert np.all(xyz[..., 2] < 0) and np.all(verts[..., 2] < 0)
    scores = ho3d_eval.main(['--gt', ho3d_root, '--pred', str(out / 'pred.json'), '--out',
                             str(tmp_path / 'eval')])
    assert all(np.isfinite(scores[key]) for key in ho3d_eval.SCORE_KEYS if 'scale_trans' not in key)
    assert (tmp_path / 'eval' / 'scores.txt').read_text().count('\n') == 14
