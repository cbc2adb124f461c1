"""demo.py on images: outputs per image, and --left as the mirror image of a right-hand run."""
import json

import cv2
import numpy as np
import pytest
import torch

import config
import demo
from engine.build import build_model
from synthetic.mano_file import save_mano
from tests.helpers import random_mano_data
from utils.mano import MANO

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """A randomly initialised small network saved with its config.json, as train.py does."""
    root = tmp_path_factory.mktemp('demo')
    save_mano(root / 'mano' / 'MANO_RIGHT.pkl', random_mano_data(0))
    cfg = config.resolve(['--device', 'cpu', '--backbone', 'resnet18', '--input_img_shape', '64,64',
                          '--pretrained_backbone', 'false', '--mano_root', str(root / 'mano')])
    torch.manual_seed(0)
    model = build_model(cfg, MANO(cfg.mano_root), torch.device('cpu'))
    folder = root / 'ckpt'
    folder.mkdir()
    torch.save({'net': model.state_dict()}, folder / 'snapshot_0.pth.tar')
    (folder / 'config.json').write_text(json.dumps(cfg.to_dict()))
    return str(folder / 'snapshot_0.pth.tar')


def read_obj(path):
    verts, faces = [], []
    for line in open(path):
        kind, *values = line.split()
        (verts if kind == 'v' else faces).append([float(v) for v in values])
    return np.array(verts), np.array(faces, dtype=np.int64) - 1


def test_outputs_and_left_hand_mirror(checkpoint, tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, size=(180, 240, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'hand.png'), img)
    cv2.imwrite(str(tmp_path / 'mirrored.png'), img[:, ::-1])
    common = ['--checkpoint', checkpoint, '--bbox', '60,30,110,120', '--focal', '400']
    demo.main(['--input', str(tmp_path / 'hand.png'), '--out', str(tmp_path / 'right'), *common])
    # The mirrored image with the mirrored box, as a left hand, must give the mirror image of
    # the right-hand result: x -> -x about the principal point's column, faces re-wound.
    demo.main(['--input', str(tmp_path / 'mirrored.png'), '--out', str(tmp_path / 'left'), '--left',
               '--checkpoint', checkpoint, '--bbox', f'{240 - 1 - 60 - 110},30,110,120', '--focal', '400'])
    verts_r, faces_r = read_obj(tmp_path / 'right' / 'hand.obj')
    verts_l, faces_l = read_obj(tmp_path / 'left' / 'mirrored.obj')
    assert verts_r.shape == (778, 3) and faces_r.shape == (1538, 3)
    np.testing.assert_allclose(verts_l, verts_r * [-1, 1, 1], atol=2e-6)
    np.testing.assert_array_equal(faces_l, faces_r[:, ::-1])
    for name in ('hand_mesh.png', 'hand_skeleton.png'):
        shown = cv2.imread(str(tmp_path / 'right' / name))
        assert shown.shape == (180, 240, 3)


def test_missing_input_is_named(checkpoint, tmp_path):
    with pytest.raises(FileNotFoundError, match='nothing.png'):
        demo.main(['--input', str(tmp_path / 'nothing.png'), '--checkpoint', checkpoint])
