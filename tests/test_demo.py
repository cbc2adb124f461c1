"""demo.py on images: outputs per image, and --left as the mirror image of a right-hand run."""
import json

import cv2
import numpy as np
import pytest
import torch

import config
import demo
from run.network import build_model
from manopth.manolayer import ManoLayer
from synthetic.geometry import GeometrySampler, sample_generators
from synthetic.mano_file import save_mano
from tests.helpers import random_mano_data
from utils.constants import SKELETON
from utils.errors import DataError
from utils.mano import MANO
from utils.transforms import encode_uvd, get_affine

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
    common = ['--checkpoint', checkpoint, '--bbox', '60,30,110,120', '--focal', '400',
              '--root_depth', '0.7']
    demo.main(['--input', str(tmp_path / 'hand.png'), '--out', str(tmp_path / 'right'), *common])
    # The mirrored image with the mirrored box, as a left hand, must give the mirror image of
    # the right-hand result: x -> -x about the principal point's column, faces re-wound.
    demo.main(['--input', str(tmp_path / 'mirrored.png'), '--out', str(tmp_path / 'left'), '--left',
               '--checkpoint', checkpoint, '--bbox', f'{240 - 1 - 60 - 110},30,110,120', '--focal', '400',
               '--root_depth', '0.7'])
    verts_r, faces_r = read_obj(tmp_path / 'right' / 'hand.obj')
    verts_l, faces_l = read_obj(tmp_path / 'left' / 'mirrored.obj')
    assert verts_r.shape == (778, 3) and faces_r.shape == (1538, 3)
    np.testing.assert_allclose(verts_l, verts_r * [-1, 1, 1], atol=2e-6)
    np.testing.assert_array_equal(faces_l, faces_r[:, ::-1])
    # The overlay draws the hand where its box is: pixels change inside the box (the mesh,
    # the outline and the label), none outside it (1 px for the anti-aliased outline). (This
    # untrained network's mesh is a dot: test_the_overlay_draws_the_hand_in_its_box shows a
    # whole hand.)
    record = json.loads((tmp_path / 'right' / 'hand.json').read_text())['hands'][0]
    assert record['box'] == [55.0, 30.0, 120.0, 120.0] and record['box_source'] == 'bbox'
    for side, name, image in (('right', 'hand', img), ('left', 'mirrored', img[:, ::-1])):
        record = json.loads((tmp_path / side / f'{name}.json').read_text())['hands'][0]
        assert record['hand'] == side
        for suffix in ('_mesh.png', '_skeleton.png'):
            shown = cv2.imread(str(tmp_path / side / f'{name}{suffix}'))
            assert shown.shape == (180, 240, 3)
            changed = np.any(shown != image, axis=2)
            assert changed.any() and not changed[~box_mask(record['box'], (180, 240), 1)].any()


def box_mask(box, image_size, margin):
    """H x W bool: the pixels of box [x, y, w, h] and `margin` px around it."""
    x, y, w, h = box
    mask = np.zeros(image_size, bool)
    mask[max(int(y) - margin, 0):int(np.ceil(y + h)) + margin + 1,
         max(int(x) - margin, 0):int(np.ceil(x + w)) + margin + 1] = True
    return mask


def test_the_overlay_draws_the_hand_in_its_box(ground_truth_network, standin_mano, tmp_path):
    """With the true stand-in hand as the prediction: the overlay changes the pixels of the
    hand's silhouette (rasterised from the record's mesh) and its box outline and label only."""
    from utils.vis.render import rasterize_mask
    checkpoint, truth = ground_truth_network
    write_noise(tmp_path / 'hand.png', (224, 224))
    img = cv2.imread(str(tmp_path / 'hand.png'))
    demo.main(['--input', str(tmp_path / 'hand.png'), '--out', str(tmp_path / 'out'),
               '--checkpoint', checkpoint, '--bbox', ','.join(map(str, BOX)), '--focal', '300',
               '--root_depth', '0.6'])
    record = json.loads((tmp_path / 'out' / 'hand.json').read_text())['hands'][0]
    changed = np.any(cv2.imread(str(tmp_path / 'out' / 'hand_mesh.png')) != img, axis=2)
    silhouette = rasterize_mask(np.array(record['verts_cam']), MANO(standin_mano).faces, np.array(record['K']),
                                (224, 224))
    outline = box_mask(record['box'], (224, 224), 1) & ~box_mask(
        [record['box'][0] + 2, record['box'][1] + 2, record['box'][2] - 4, record['box'][3] - 4],
        (224, 224), 0)
    label = box_mask([record['box'][0], record['box'][1], 30, 20], (224, 224), 0)
    assert silhouette.sum() > 1000  # a whole hand, inside the box
    assert not (silhouette & ~box_mask(record['box'], (224, 224), 0)).any()
    edge = np.ones((3, 3), np.uint8)  # the two rasterisers may differ by a pixel at the edges
    grown = cv2.dilate(silhouette.astype(np.uint8), edge).astype(bool)
    assert changed[cv2.erode(silhouette.astype(np.uint8), edge).astype(bool)].mean() > 0.99
    assert not (changed & ~(grown | outline | label)).any()  # the mesh, the box: nothing else


def test_missing_input_is_named(checkpoint, tmp_path):
    with pytest.raises(FileNotFoundError, match='nothing.png'):
        demo.main(['--input', str(tmp_path / 'nothing.png'), '--checkpoint', checkpoint])


RECORD_FIELDS = {'hand', 'score', 'box', 'box_source', 'K', 'K_source', 'root_depth_m',
                 'root_depth_source', 'hand_scale_m', 'joints_cam', 'joints_2d', 'verts_cam', 'mano'}
MANO_FIELDS = {'global_orient', 'hand_pose', 'betas', 'transl', 'flat_hand_mean', 'side',
               'model', 'fit_mean_mm'}
BOX = (40.0, 40.0, 144.0, 144.0)  # x, y, w, h: the box the ground-truth network is told


@pytest.fixture()
def ground_truth_network(tmp_path, standin_mano, monkeypatch):
    """demo.py with a network that outputs the encoded truth of one stand-in hand (a 224 px
    FreiHAND-framed sample) for the crop of BOX, or collapsed joints for a black image.
    Returns (checkpoint path, truth dict)."""
    cfg = config.resolve(['--device', 'cpu', '--backbone', 'resnet18', '--input_img_shape',
                          '64,64', '--pretrained_backbone', 'false', '--mano_root', standin_mano])
    folder = tmp_path / 'ckpt'
    folder.mkdir()
    # a loadable file with its configuration; its (absent) weights are never used
    torch.save({'net': {}, 'config': cfg.to_dict()}, folder / 'snapshot_0.pth.tar')
    sampler = GeometrySampler(standin_mano, max_tilt=50.0)
    truth = sampler.sample([sample_generators(11, 1, 0)[0]])
    x, y, w, _ = BOX
    img2crop = get_affine((x + w / 2, y + w / 2), w, cfg.input_img_shape)[0]
    coords = encode_uvd(truth['verts'][0], truth['xyz'][0], truth['K'][0], img2crop,
                        cfg.input_img_shape, cfg.depth_box)

    def network(inputs):
        img = inputs['img']
        out = np.zeros_like(coords) if bool(img[0, 0].max() == img[0, 0].min()) else coords
        return {'coords': torch.as_tensor(out, dtype=torch.float32)[None]}
    network.eval = lambda: network
    monkeypatch.setattr(demo, 'load_inference_model', lambda cfg, mano, device: network)
    return str(folder / 'snapshot_0.pth.tar'), {k: v[0] for k, v in truth.items()}


def write_noise(path, size):
    rng = np.random.default_rng(0)
    cv2.imwrite(str(path), rng.integers(0, 255, size=(*size, 3), dtype=np.uint8))


def test_record_auto_depth_and_mano_fit_from_the_ground_truth(ground_truth_network, tmp_path,
                                                              standin_mano, caplog):
    """With the hand's own skeleton length as the prior the auto depth is the true one (the
    size prior is the only unknown); the fit recovers the stand-in mesh and manopth's layer
    rebuilds it from the record."""
    checkpoint, truth = ground_truth_network
    write_noise(tmp_path / 'hand.png', (224, 224))
    K = truth['K']
    mano = MANO(standin_mano)
    template = mano.joints_from_verts(mano.template)
    parents, children = (list(p) for p in zip(*SKELETON))

    def skeleton(j):
        return np.linalg.norm(j[children] - j[parents], axis=-1).sum()
    ratio = skeleton(template) / np.linalg.norm(template[9] - template[10])
    own_scale = skeleton(truth['xyz']) / ratio
    out = tmp_path / 'out'
    demo.main(['--input', str(tmp_path / 'hand.png'), '--out', str(out), '--checkpoint', checkpoint,
               '--K', f'{K[0, 0]},{K[1, 1]},{K[0, 2]},{K[1, 2]}', '--bbox', ','.join(map(str, BOX)),
               '--fit_mano', '--hand_scale_m', repr(float(own_scale))])
    image = json.loads((out / 'hand.json').read_text())
    assert image['image'] == 'hand.png' and image['image_size'] == [224, 224]
    (record,) = image['hands']
    assert set(record) == RECORD_FIELDS and set(record['mano']) == MANO_FIELDS
    assert record['root_depth_source'] == 'auto' and record['K_source'] == 'K'
    assert record['hand'] == 'right' and record['box'] == list(BOX)
    assert record['root_depth_m'] == pytest.approx(truth['xyz'][0, 2], abs=2e-6)
    np.testing.assert_allclose(record['joints_cam'], truth['xyz'], atol=1e-5)
    uv = truth['xyz'][:, :2] / truth['xyz'][:, 2:] * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]
    np.testing.assert_allclose(record['joints_2d'], uv, atol=0.01)
    fit = record['mano']
    assert fit['fit_mean_mm'] <= 1.0 and fit['flat_hand_mean'] is True
    layer = ManoLayer(mano_root=standin_mano, use_pca=False, flat_hand_mean=True).double()
    verts_mm, _ = layer(torch.tensor([fit['global_orient'] + fit['hand_pose']], dtype=torch.float64),
                        torch.tensor([fit['betas']], dtype=torch.float64),
                        torch.tensor([fit['transl']], dtype=torch.float64))
    assert np.linalg.norm(verts_mm[0].numpy() / 1000 - truth['verts'], axis=-1).mean() <= 1e-3
    obj_verts, _ = read_obj(out / 'hand.obj')
    np.testing.assert_allclose(obj_verts, truth['verts'], atol=2e-5)
    np.testing.assert_allclose(record['verts_cam'], truth['verts'], atol=2e-5)
    assert cv2.imread(str(out / 'hand_mano_mesh.png')).shape == (224, 224, 3)


def test_bad_K_and_degenerate_depth_skip_only_their_image(ground_truth_network, tmp_path):
    checkpoint, _ = ground_truth_network
    photos = tmp_path / 'photos'
    photos.mkdir()
    write_noise(photos / 'a_hand.png', (224, 224))
    write_noise(photos / 'b_small.png', (100, 100))  # the K's principal point lies outside it
    cv2.imwrite(str(photos / 'c_black.png'), np.zeros((224, 224, 3), np.uint8))  # collapsed joints
    out = tmp_path / 'out'
    with pytest.raises(DataError) as err:
        demo.main(['--input', str(photos), '--out', str(out), '--checkpoint', checkpoint,
                   '--K', '500,500,112,112', '--bbox', ','.join(map(str, BOX))])
    message = str(err.value)
    assert '2 of 3 image(s) skipped' in message
    assert 'b_small.png: principal point (112, 112) px is outside the 100 x 100 image' in message
    assert 'c_black.png: --root_depth auto: the predicted joints collapse' in message
    assert sorted(p.name for p in out.iterdir()) == ['a_hand.json', 'a_hand.obj',
                                                      'a_hand_mesh.png', 'a_hand_skeleton.png']
    with pytest.raises(config.ConfigError, match='--focal -5: the focal length must be a positive'):
        demo.main(['--input', str(photos), '--checkpoint', checkpoint, '--focal', '-5'])
