"""Tests for synthetic/freihand.py: independent checks of a generated FreiHAND-layout set.

One small set is rendered per session from the MANO stand-in (`python -m synthetic.standin`).
The checks recompute everything from first principles: the mesh silhouette with the numpy
rasteriser, the docs/method.md §1 root rule written out here, projections, bone lengths and the
loader's crops. This module must not import torchvision (see utils/vis/render.py).
"""
import json
import os

import cv2
import numpy as np
import pytest
import torch

from dataset import get_dataset
from manopth.io import load_mano
from manopth.manolayer import ManoLayer
from synthetic.freihand import generate
from synthetic.workers import Run
from synthetic.geometry import GeometrySampler, random_rotation, solve_anchor_depth
from utils.vis.render import close_renderers, rasterize_mask

NUM_TRAIN, NUM_EVAL, SEED = 5, 3, 7
IMG = 224
VERSIONS = 4
FREIHAND_TIPS = (744, 320, 443, 555, 672)  # thumb, index, middle, ring, pinky (docs/method.md §1)
ANNOTATIONS = {  # file -> (split, per-entry shape)
    'training_K.json': ('train', (3, 3)), 'training_mano.json': ('train', (1, 61)),
    'training_xyz.json': ('train', (21, 3)), 'training_verts.json': ('train', (778, 3)),
    'training_scale.json': ('train', ()), 'evaluation_K.json': ('eval', (3, 3)),
    'evaluation_scale.json': ('eval', ()), 'evaluation_xyz.json': ('eval', (21, 3)),
    'evaluation_verts.json': ('eval', (778, 3)),
}
ROOTNET = 'bbox_root_freihand_output.json'


def read_json(root, name):
    with open(os.path.join(root, name)) as f:
        return json.load(f)


def read_mask(root, index):
    mask = cv2.imread(os.path.join(root, 'training', 'mask', '%08d.jpg' % index), cv2.IMREAD_GRAYSCALE)
    return mask > 127  # FreiHAND's masks are JPEGs: threshold them


def project(points, K):
    """Pinhole projection (P x 3 meters -> P x 2 pixels), written out here."""
    return np.stack([K[0, 0] * points[:, 0] / points[:, 2] + K[0, 2],
                     K[1, 1] * points[:, 1] / points[:, 2] + K[1, 2]], axis=1)


@pytest.fixture(scope='session')
def synthetic_set(tmp_path_factory, standin_mano):
    """(root, summary) of a small synthetic set rendered in this process."""
    os.environ.setdefault('PYOPENGL_PLATFORM', 'osmesa')
    root = str(tmp_path_factory.mktemp('synthetic') / 'FreiHAND')
    summary = generate(root, NUM_TRAIN, NUM_EVAL, standin_mano, seed=SEED, run=Run(progress=False))
    yield root, summary
    close_renderers()


@pytest.fixture(scope='session')
def annotations(synthetic_set):
    root, _ = synthetic_set
    return {name: np.asarray(read_json(root, name), dtype=np.float64) for name in ANNOTATIONS}


# ---------------------------------------------------------------------------------------------
# Placement maths (no rendering)
# ---------------------------------------------------------------------------------------------

def test_anchor_depth_gives_the_target_extent():
    """Two points 0.05 m either side of keypoint 9 (at the principal point) along x: at depth z
    they span fx * 0.1 / z pixels, so a 100 px target needs z = fx * 0.1 / 100."""
    fx = 500.0
    K = np.array([[[fx, 0.0, 112.0], [0.0, fx, 112.0], [0.0, 0.0, 1.0]]])
    points = np.array([[[-0.05, 0.0, 0.0], [0.05, 0.0, 0.0], [0.0, 0.01, 0.0]]])
    depth = solve_anchor_depth(points, np.array([[112.0, 112.0]]), K, np.array([100.0]))
    np.testing.assert_allclose(depth, [fx * 0.1 / 100.0], rtol=1e-9)


def test_anchor_depth_moves_the_hand_back_into_the_box():
    """Keypoint 9 at the centre, one point 0.1 m to its right: a 100 px side would put that
    point 100 px right of the centre, outside the box (edge 65 px away, 1 px margin), so the
    depth becomes the one that puts it 64 px away: z = fx * 0.1 / 64."""
    fx = 500.0
    K = np.array([[[fx, 0.0, 112.0], [0.0, fx, 112.0], [0.0, 0.0, 1.0]]])
    points = np.array([[[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]]])
    depth = solve_anchor_depth(points, np.array([[112.0, 112.0]]), K, np.array([100.0]))
    np.testing.assert_allclose(depth, [fx * 0.1 / 64.0], rtol=1e-9)


def test_random_rotations_are_rotations_that_keep_the_hand_off_the_optical_axis():
    rng = np.random.default_rng(0)
    direction = np.array([-1.0, 0.0, 0.0])  # MANO's fingers point to -x
    rotations = np.stack([random_rotation(rng, direction) for _ in range(500)])
    np.testing.assert_allclose(rotations @ rotations.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (500, 3, 3)),
                               atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0, atol=1e-12)
    z = rotations[:, 2] @ direction
    assert np.abs(z).max() <= 0.8
    # Uniform rotations spread the direction's z uniformly on [-1, 1]; the accepted part
    # stays uniform on [-0.8, 0.8]: each half holds about half of the samples.
    assert 0.4 < np.mean(z > 0) < 0.6


def test_max_tilt_turns_the_palms_to_the_camera(standin_mano):
    # The palm normal written out here from the camera-frame keypoints: for a right hand,
    # (index MCP - wrist) x (little MCP - wrist) leaves the palm. With max_tilt 40 it points
    # at the camera (-z) within 40 degrees; without, both sides of the hand are seen.
    rngs = lambda: [np.random.default_rng(i) for i in range(64)]  # noqa: E731
    tilted = GeometrySampler(standin_mano, max_tilt=40.0).sample(rngs())['xyz']
    uniform = GeometrySampler(standin_mano).sample(rngs())['xyz']

    def facing_cos(xyz):
        normal = np.cross(xyz[:, 5] - xyz[:, 0], xyz[:, 17] - xyz[:, 0])
        return -normal[:, 2] / np.linalg.norm(normal, axis=1)

    assert facing_cos(tilted).min() >= np.cos(np.radians(40.0)) - 1e-9
    assert facing_cos(uniform).min() < 0 < facing_cos(uniform).max()
    # In-plane orientations stay spread: the wrist -> middle MCP image direction takes every
    # quadrant.
    pointing = tilted[:, 9, :2] - tilted[:, 0, :2]
    quadrants = {(bool(x > 0), bool(y > 0)) for x, y in pointing}
    assert len(quadrants) == 4
    with pytest.raises(ValueError, match='max_tilt'):
        GeometrySampler(standin_mano, max_tilt=0.0)


# ---------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------

def test_layout_has_every_file_with_consistent_counts(synthetic_set, annotations):
    root, summary = synthetic_set
    listing = {folder: sorted(os.listdir(os.path.join(root, folder)))
               for folder in ('training/rgb', 'training/mask', 'evaluation/rgb')}
    assert listing['training/rgb'] == ['%08d.jpg' % i for i in range(VERSIONS * NUM_TRAIN)]
    assert listing['training/mask'] == ['%08d.jpg' % i for i in range(NUM_TRAIN)]
    assert listing['evaluation/rgb'] == ['%08d.jpg' % i for i in range(NUM_EVAL)]
    assert sorted(os.listdir(os.path.join(root, 'evaluation'))) == ['rgb']  # no evaluation masks
    written = sorted(set(os.listdir(root)) - {'.sar_cache'})  # the loader's annotation cache, once a test loaded
    assert written == sorted(list(ANNOTATIONS) + [ROOTNET, 'training', 'evaluation'])
    for name, (split, shape) in ANNOTATIONS.items():
        count = NUM_TRAIN if split == 'train' else NUM_EVAL
        assert annotations[name].shape == (count, *shape), name
    for folder in listing:
        for name in listing[folder]:
            img = cv2.imread(os.path.join(root, folder, name), cv2.IMREAD_UNCHANGED)
            expected = (IMG, IMG) if folder == 'training/mask' else (IMG, IMG, 3)
            assert img.shape == expected, (folder, name)
    assert summary['num_train'] == NUM_TRAIN and summary['num_eval'] == NUM_EVAL
    assert summary['num_images'] == 5 * NUM_TRAIN + NUM_EVAL
    assert summary['samples_per_second'] > 0 and summary['mano_standin']


def test_masks_are_binary_jpegs(synthetic_set):
    root, _ = synthetic_set
    for i in range(NUM_TRAIN):
        mask = cv2.imread(os.path.join(root, 'training', 'mask', '%08d.jpg' % i), cv2.IMREAD_GRAYSCALE)
        # JPEG blurs the edge a little; nearly every pixel stays near 0 or 255.
        assert np.mean((mask < 30) | (mask > 225)) > 0.97
        assert 0.03 < np.mean(mask > 127) < 0.5


def test_intrinsics_shape_and_pose_follow_the_recipe(synthetic_set, annotations, standin_mano):
    K = np.concatenate([annotations['training_K.json'], annotations['evaluation_K.json']])
    np.testing.assert_array_equal(K[:, :2, 2], 112.0)
    np.testing.assert_array_equal(K[:, 2], np.tile([0.0, 0.0, 1.0], (len(K), 1)))
    np.testing.assert_array_equal(K[:, [0, 1], [1, 0]], 0.0)
    assert np.all((K[:, 0, 0] >= 250) & (K[:, 0, 0] <= 900))
    assert np.all(np.abs(K[:, 1, 1] / K[:, 0, 0] - 1) <= 0.002 + 1e-12)

    mano = annotations['training_mano.json'][:, 0]
    betas = mano[:, 48:58]
    assert np.all(np.abs(betas) <= 2.5) and np.any(betas != 0)
    # The 45 joint values are a combination of the first 12 PCA components, stored without
    # hands_mean: the least-squares residual in that span vanishes.
    components = load_mano(standin_mano)['hands_components'][:12]
    joint_values = mano[:, 3:48]
    coeffs, *_ = np.linalg.lstsq(components.T, joint_values.T, rcond=None)
    np.testing.assert_allclose(components.T @ coeffs, joint_values.T, atol=1e-9)
    assert np.abs(coeffs).max() > 1e-3


# ---------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------

def test_rendered_masks_match_the_projected_mesh(synthetic_set, annotations, standin_mano):
    root, _ = synthetic_set
    faces = load_mano(standin_mano)['f'].astype(np.int64)
    for i in range(NUM_TRAIN):
        expected = rasterize_mask(annotations['training_verts.json'][i], faces,
                                  annotations['training_K.json'][i], (IMG, IMG))
        mask = read_mask(root, i)
        iou = np.sum(mask & expected) / np.sum(mask | expected)
        assert iou > 0.9, f'sample {i}: silhouette IoU {iou:.3f}'


def test_mano_entries_reproduce_the_vertices(annotations, standin_mano):
    """docs/method.md §1 root rule, written out here: keypoint 9 (regressed from the posed mesh, as the
    ground-truth keypoints) at [u - cx, v - cy, f] / scale."""
    layer = ManoLayer(mano_root=standin_mano, flat_hand_mean=False, use_pca=False)
    mano = torch.as_tensor(annotations['training_mano.json'][:, 0])
    with torch.no_grad():
        verts = layer(mano[:, :48], mano[:, 48:58])[0].numpy() / 1000
    K = annotations['training_K.json']
    u, v, scale = mano[:, 58].numpy(), mano[:, 59].numpy(), mano[:, 60].numpy()
    focal = (K[:, 0, 0] + K[:, 1, 1]) / 2
    keypoint9 = np.stack([(u - K[:, 0, 2]) / scale, (v - K[:, 1, 2]) / scale, focal / scale], axis=1)
    middle_mcp = load_mano(standin_mano)['J_regressor'].toarray()[4]  # MANO order: 4 = middle MCP
    expected = verts - np.einsum('v,nvc->nc', middle_mcp, verts)[:, None] + keypoint9[:, None]
    np.testing.assert_allclose(annotations['training_verts.json'], expected, rtol=0, atol=1e-6)

    # Keypoint 9 of the fit projects to the stored (u, v) up to the f / fx factor of the rule:
    # u_proj - cx = (u - cx) * fx / f, a 0.2 % difference at most.
    uv = np.stack([K[:, 0, 0] * keypoint9[:, 0] / keypoint9[:, 2] + K[:, 0, 2],
                   K[:, 1, 1] * keypoint9[:, 1] / keypoint9[:, 2] + K[:, 1, 2]], axis=1)
    np.testing.assert_allclose((uv[:, 0] - K[:, 0, 2]) * focal / K[:, 0, 0], u - K[:, 0, 2], atol=1e-9)
    np.testing.assert_allclose((uv[:, 1] - K[:, 1, 2]) * focal / K[:, 1, 1], v - K[:, 1, 2], atol=1e-9)
    np.testing.assert_allclose(uv, np.stack([u, v], axis=1), atol=0.02)
    # ... and so does the annotated keypoint 9 of training_xyz.json.
    xyz9 = annotations['training_xyz.json'][:, 9]
    uv_xyz = np.stack([K[:, 0, 0] * xyz9[:, 0] / xyz9[:, 2] + K[:, 0, 2],
                       K[:, 1, 1] * xyz9[:, 1] / xyz9[:, 2] + K[:, 1, 2]], axis=1)
    np.testing.assert_allclose(uv_xyz, np.stack([u, v], axis=1), atol=0.02)


def test_joints_use_freihand_tips_and_regressor(annotations, standin_mano):
    regressor = load_mano(standin_mano)['J_regressor'].toarray()  # MANO order
    for split in ('training', 'evaluation'):
        verts, xyz = annotations[f'{split}_verts.json'], annotations[f'{split}_xyz.json']
        np.testing.assert_allclose(xyz[:, [4, 8, 12, 16, 20]], verts[:, FREIHAND_TIPS], atol=1e-12)
        np.testing.assert_allclose(xyz[:, 0], verts.transpose(0, 2, 1) @ regressor[0], atol=1e-7)
        # FreiHAND keypoints 9, 10 = middle MCP, PIP = MANO joints 4, 5.
        np.testing.assert_allclose(xyz[:, 9], verts.transpose(0, 2, 1) @ regressor[4], atol=1e-7)
        np.testing.assert_allclose(xyz[:, 10], verts.transpose(0, 2, 1) @ regressor[5], atol=1e-7)


def test_scale_is_the_middle_mcp_pip_bone(annotations):
    for split in ('training', 'evaluation'):
        xyz = annotations[f'{split}_xyz.json']
        bone = np.sqrt(np.sum((xyz[:, 9] - xyz[:, 10]) ** 2, axis=1))
        np.testing.assert_allclose(annotations[f'{split}_scale.json'], bone, rtol=1e-12)
        assert np.all((bone > 0.01) & (bone < 0.1))


def test_hands_are_framed_by_the_centre_box(annotations):
    for split in ('training', 'evaluation'):
        for verts, K in zip(annotations[f'{split}_verts.json'], annotations[f'{split}_K.json']):
            uv = project(verts, K)
            assert uv.min() >= 47.0 and uv.max() <= 177.0  # inside the 130 px box at (112, 112)
            side = np.max(uv.max(axis=0) - uv.min(axis=0))
            assert 50.0 < side <= 125.0 + 1e-6
            assert np.all(verts[:, 2] > 0.1)


def test_rootnet_file_holds_boxes_and_wrists(synthetic_set, annotations):
    root, _ = synthetic_set
    entries = read_json(root, ROOTNET)
    assert [e['image_id'] for e in entries] == list(range(NUM_EVAL))
    for entry, verts, xyz, K in zip(entries, annotations['evaluation_verts.json'],
                                    annotations['evaluation_xyz.json'], annotations['evaluation_K.json']):
        uv = project(verts, K)
        x, y, w, h = entry['bbox']
        np.testing.assert_allclose([x, y, x + w, y + h], [*uv.min(axis=0), *uv.max(axis=0)], atol=1e-9)
        np.testing.assert_allclose(entry['root_cam'], xyz[0], atol=1e-12)  # root_noise = 0


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------

def test_green_screen_version_has_a_green_background(synthetic_set):
    root, _ = synthetic_set
    for i in range(NUM_TRAIN):
        bgr = cv2.imread(os.path.join(root, 'training', 'rgb', '%08d.jpg' % i)).astype(np.float64)
        background = ~cv2.dilate(read_mask(root, i).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        b, g, r = bgr[background].mean(axis=0)
        assert g > r + 20 and g > b + 20, f'gs sample {i}: background BGR mean {b:.0f} {g:.0f} {r:.0f}'


def test_versions_differ_in_background_but_share_the_hand(synthetic_set):
    root, _ = synthetic_set
    for i in range(NUM_TRAIN):
        images = [cv2.imread(os.path.join(root, 'training', 'rgb', '%08d.jpg' % (i + NUM_TRAIN * v)))
                  for v in range(VERSIONS)]
        mask = read_mask(root, i)
        for v in range(1, VERSIONS):
            difference = np.abs(images[v].astype(np.int64) - images[0]).mean(axis=2)
            assert difference[~mask].mean() > 10, (i, v)
        # One render behind all versions: the shading inside the hand stays correlated across
        # versions (their colour changes are monotone per channel).
        interior = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        grey = [cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[interior].astype(np.float64) for img in images]
        for v in range(1, VERSIONS):
            assert np.corrcoef(grey[0], grey[v])[0, 1] > 0.6, (i, v)


# ---------------------------------------------------------------------------------------------
# Loader
# ---------------------------------------------------------------------------------------------

def test_loader_reads_the_set_in_both_modes(synthetic_set, annotations):
    root, _ = synthetic_set
    train = get_dataset('FreiHAND', 'training', root=root)
    assert len(train) == VERSIONS * NUM_TRAIN
    evaluation = get_dataset('FreiHAND', 'evaluation', root=root)
    assert len(evaluation) == NUM_EVAL
    entries = read_json(root, ROOTNET)
    for j in range(NUM_EVAL):
        inputs, _, meta = evaluation[j]
        assert inputs['img'].shape == (3, 256, 256)
        np.testing.assert_allclose(meta['root_depth'], entries[j]['root_cam'][2], rtol=1e-6)
        np.testing.assert_allclose(meta['scale'], annotations['evaluation_scale.json'][j], rtol=1e-6)


@pytest.mark.parametrize('rot', [90.0, -35.0])
def test_augmented_joint_targets_fall_on_the_augmented_hand(synthetic_set, rot):
    root, _ = synthetic_set
    train = get_dataset('FreiHAND', 'training', root=root)
    for idx in range(len(train)):
        _, targets, meta = train.get_item_with_aug(idx, rot=rot)
        sample = idx % NUM_TRAIN
        assert meta['sample_idx'] == sample and meta['version'] == idx // NUM_TRAIN
        joints_px = (targets['mesh_pose_uvd'][778:, :2].astype(np.float64) + 1) * 128
        mask = read_mask(root, sample).astype(np.uint8) * 255
        crop_mask = cv2.warpAffine(mask, meta['img2bb_trans'].astype(np.float64), (256, 256),
                                   flags=cv2.INTER_LINEAR, borderValue=0) > 127
        # A 2 px tolerance (about 1 px in the image) for joints on the silhouette's edge.
        crop_mask = cv2.dilate(crop_mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        cols, rows = np.round(joints_px).astype(int).T
        assert np.all((cols >= 0) & (cols < 256) & (rows >= 0) & (rows < 256)), idx
        on_hand = crop_mask[rows, cols]
        assert on_hand.all(), f'item {idx}, rot {rot}: joints {np.flatnonzero(~on_hand)} off the hand'


# ---------------------------------------------------------------------------------------------
# Determinism and the output folder
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_same_seed_gives_identical_files_with_parallel_workers(synthetic_set, standin_mano, tmp_path):
    root, _ = synthetic_set
    again = str(tmp_path / 'again')
    generate(again, NUM_TRAIN, NUM_EVAL, standin_mano, seed=SEED, run=Run(workers=2, progress=False))
    names = ['training/rgb/%08d.jpg' % 0, 'training/rgb/%08d.jpg' % (VERSIONS * NUM_TRAIN - 1),
             'training/mask/%08d.jpg' % (NUM_TRAIN - 1), 'evaluation/rgb/%08d.jpg' % 1,
             'training_mano.json', 'training_verts.json', 'evaluation_xyz.json', ROOTNET]
    for name in names:
        with open(os.path.join(root, name), 'rb') as f, open(os.path.join(again, name), 'rb') as g:
            assert f.read() == g.read(), name


def test_a_sample_does_not_depend_on_the_set_sizes(synthetic_set, standin_mano, tmp_path):
    """Per-sample seeds: sample 0 of a 1 + 1 set has the images of sample 0 of the big set and
    its annotations up to float64 rounding (batched MANO evaluation rounds by batch size)."""
    root, _ = synthetic_set
    small = str(tmp_path / 'small')
    generate(small, 1, 1, standin_mano, seed=SEED, run=Run(progress=False))
    for name in ('training/rgb/00000000.jpg', 'training/mask/00000000.jpg', 'evaluation/rgb/00000000.jpg'):
        with open(os.path.join(root, name), 'rb') as f, open(os.path.join(small, name), 'rb') as g:
            assert f.read() == g.read(), name
    for name in ('training_mano.json', 'evaluation_verts.json'):
        np.testing.assert_allclose(read_json(small, name)[0], read_json(root, name)[0], rtol=1e-12, atol=1e-15)


def test_other_seed_and_root_noise_change_the_set(synthetic_set, standin_mano, tmp_path):
    root, _ = synthetic_set
    other = str(tmp_path / 'other')
    generate(other, 1, 2, standin_mano, seed=SEED + 1, root_noise=0.05, run=Run(progress=False))
    with open(os.path.join(root, 'training/rgb/00000000.jpg'), 'rb') as f, \
            open(os.path.join(other, 'training/rgb/00000000.jpg'), 'rb') as g:
        assert f.read() != g.read()
    xyz = np.asarray(read_json(other, 'evaluation_xyz.json'))
    root_cam = np.asarray([e['root_cam'] for e in read_json(other, ROOTNET)])
    offset = root_cam - xyz[:, 0]
    assert np.all(np.abs(offset) > 0) and np.all(np.abs(offset) < 0.3)  # N(0, 5 cm) per coordinate


def test_refuses_a_non_empty_root(tmp_path):
    (tmp_path / 'notes.txt').write_text('keep me')
    with pytest.raises(FileExistsError, match='--overwrite'):
        generate(str(tmp_path), 1, 1, str(tmp_path / 'no_mano_needed_before_this_check'))
    assert (tmp_path / 'notes.txt').read_text() == 'keep me'


def test_overwrite_replaces_the_layout_and_keeps_other_files(standin_mano, tmp_path):
    root = tmp_path / 'set'
    generate(str(root), 2, 2, standin_mano, seed=0, run=Run(progress=False))
    (root / 'notes.txt').write_text('keep me')
    generate(str(root), 1, 1, standin_mano, seed=0, run=Run(overwrite=True, progress=False))
    assert sorted(os.listdir(root / 'training' / 'rgb')) == ['%08d.jpg' % i for i in range(4)]
    assert sorted(os.listdir(root / 'training' / 'mask')) == ['00000000.jpg']
    assert sorted(os.listdir(root / 'evaluation' / 'rgb')) == ['00000000.jpg']
    assert len(read_json(str(root), 'training_K.json')) == 1
    assert (root / 'notes.txt').read_text() == 'keep me'


def test_a_missing_mano_model_leaves_no_output_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match='standin'):
        generate(str(tmp_path / 'out'), 1, 1, str(tmp_path / 'no_mano_here'))
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('kwargs, message', [
    (dict(num_train=0), 'num_train'), (dict(num_eval=-1), 'num_eval'), (dict(run=Run(workers=0)), 'workers'),
    (dict(root_noise=-0.1), 'root_noise'), (dict(seed=-1), 'seed')])
def test_rejects_bad_arguments(tmp_path, kwargs, message):
    args = dict(root=str(tmp_path / 'out'), num_train=1, num_eval=1, mano_root=str(tmp_path))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        generate(**args)
    assert not (tmp_path / 'out').exists()
