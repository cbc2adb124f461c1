"""FreiHAND loader on a tiny FreiHAND-layout folder (see conftest.py)."""
import json
import logging
import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import dataset.freihand.json_numbers
from dataset import DataError, FreiHAND, get_dataset, Preprocessing
from synthetic.fixture import background_level, make_freihand

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def crop_grey(img_chw):
    """Grey level (0..255) per crop pixel of a normalised 3 x H x W input (mean of R, G, B)."""
    rgb = img_chw.transpose(1, 2, 0) * STD + MEAN
    return rgb.mean(axis=2) * 255.0


def projected_uv(xyz, K):
    return np.stack([K[0, 0] * xyz[:, 0] / xyz[:, 2] + K[0, 2], K[1, 1] * xyz[:, 1] / xyz[:, 2] + K[1, 2]], 1)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def write_json(path, obj):
    with open(path, 'w') as f:
        json.dump(obj, f)


# --- training ---------------------------------------------------------------------------------

def test_training_length_and_version_mapping(freihand):
    root, gt = freihand
    ds = FreiHAND('training', root=root, preprocessing=Preprocessing(augment=False))
    assert len(ds) == 4 * 3
    for k in range(len(ds)):
        inputs, targets, meta = ds[k]
        assert inputs['img'].shape == (3, 256, 256) and inputs['img'].dtype == np.float32
        assert targets['mesh_pose_uvd'].shape == (799, 3) and targets['mesh_pose_uvd'].dtype == np.float32
        assert (meta['sample_idx'], meta['version']) == (k % 3, k // 3)
        # The crop corner region [0, 25]^2 is image [47, 60]^2: background only, whose level names the file.
        assert abs(np.median(crop_grey(inputs['img'])[2:20, 2:20]) - background_level(k)) < 3
        np.testing.assert_allclose(meta['K'], gt['train_K'][k % 3], rtol=1e-6)
    # The four versions share the sample's annotations.
    np.testing.assert_array_equal(ds[1][1]['mesh_pose_uvd'], ds[1 + 3 * 3][1]['mesh_pose_uvd'])


def test_training_sizes_come_from_the_annotations(tmp_path):
    root = str(tmp_path / 'FreiHAND')
    make_freihand(root, num_samples=5, num_eval=1)
    assert len(FreiHAND('training', root=root)) == 20
    assert len(FreiHAND('evaluation', root=root)) == 1


def test_training_target_maps_back_onto_the_projection(freihand):
    root, gt = freihand
    ds = FreiHAND('training', root=root)
    _, targets, meta = ds.get_item_with_aug(4)
    coords = targets['mesh_pose_uvd'].astype(np.float64)
    # No augmentation: crop = (img - 47) * 256 / 130, so img = crop * 130 / 256 + 47.
    uv_img = (coords[:, :2] + 1.0) * 128.0 * 130.0 / 256.0 + 47.0
    xyz = np.concatenate([gt['train_verts'][1], gt['train_xyz'][1]])
    np.testing.assert_allclose(uv_img, projected_uv(xyz, gt['train_K'][1]), atol=1e-3)
    np.testing.assert_allclose(coords[:, 2], (xyz[:, 2] - xyz[778, 2]) / 0.3, atol=1e-6)
    assert meta['root_depth'] == pytest.approx(gt['train_xyz'][1][0, 2], abs=1e-7)


def test_fx_as_fy_targets_use_fx_for_v(freihand):
    root, gt = freihand
    _, targets, _ = FreiHAND('training', root=root, preprocessing=Preprocessing(fx_as_fy=True)).get_item_with_aug(4)
    coords = targets['mesh_pose_uvd'].astype(np.float64)
    uv_img = (coords[:, :2] + 1.0) * 128.0 * 130.0 / 256.0 + 47.0
    xyz = np.concatenate([gt['train_verts'][1], gt['train_xyz'][1]])
    K = gt['train_K'][1].copy()
    assert K[0, 0] != K[1, 1]
    K[1, 1] = K[0, 0]  # the published projection: fx on both axes
    np.testing.assert_allclose(uv_img, projected_uv(xyz, K), atol=1e-3)


def _fraction_on_dots(grey, coords):
    """Fraction of target points (crop-normalised, inside the crop) whose nearest crop pixel is bright."""
    pix = np.rint((coords[:, :2] + 1.0) * 128.0).astype(int)
    inside = np.all((pix >= 0) & (pix < 256), axis=1)
    assert inside.sum() > 500
    pix = pix[inside]
    return np.mean(grey[pix[:, 1], pix[:, 0]] > 170)


def test_augmented_image_and_targets_move_together(freihand):
    root, _ = freihand
    ds = FreiHAND('training', root=root)
    aug = dict(scale=1.08, rot=73.0, transl=(6.0, -4.0), color_gain=(1.0, 1.0, 1.0))
    inputs, targets, _ = ds.get_item_with_aug(2, **aug)
    grey = crop_grey(inputs['img'])
    assert _fraction_on_dots(grey, targets['mesh_pose_uvd']) > 0.99
    # Control: the unaugmented targets on the augmented image mostly miss the dots.
    _, plain_targets, _ = ds.get_item_with_aug(2)
    assert _fraction_on_dots(grey, plain_targets['mesh_pose_uvd']) < 0.7


def test_color_gain_reaches_the_input(freihand):
    root, _ = freihand
    ds = FreiHAND('training', root=root)
    img = ds.get_item_with_aug(0, color_gain=(1.0, 1.0, 0.5))[0]['img']  # gain order B, G, R: halves red
    rgb = (img.transpose(1, 2, 0) * STD + MEAN)[2:20, 2:20] * 255.0
    level = background_level(0)
    assert abs(np.median(rgb[..., 0]) - level // 2) <= 2
    assert abs(np.median(rgb[..., 2]) - level) <= 2


# --- evaluation -------------------------------------------------------------------------------

def test_evaluation_items(freihand):
    root, gt = freihand
    ds = FreiHAND('evaluation', root=root)
    assert len(ds) == 2 and not ds.augment
    inputs, targets, meta = ds[1]
    assert targets == {}
    assert inputs['img'].shape == (3, 256, 256)
    assert abs(np.median(crop_grey(inputs['img'])[2:20, 2:20]) - background_level(1)) < 3
    assert meta['root_depth'] == pytest.approx(gt['root_depth_m'][1], abs=1e-6)
    assert meta['scale'] == pytest.approx(gt['eval_scale'][1], abs=1e-7)
    np.testing.assert_allclose(meta['K'], gt['eval_K'][1], rtol=1e-6)
    np.testing.assert_allclose(meta['img2bb_trans'], [[256 / 130, 0, -47 * 256 / 130], [0, 256 / 130, -47 * 256 / 130]],
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(meta['bb2img_trans'], [[130 / 256, 0, 47], [0, 130 / 256, 47]], rtol=1e-6, atol=1e-6)


def test_evaluation_root_depth_in_millimeters_is_converted_and_logged(tmp_path, caplog):
    root = str(tmp_path / 'FreiHAND')
    gt = make_freihand(root, root_depth_mm=True)
    with caplog.at_level(logging.WARNING, logger='dataset.freihand'):
        ds = FreiHAND('evaluation', root=root)
    np.testing.assert_allclose(ds.root_depth, gt['root_depth_m'], atol=1e-6)
    mm_lines = [r for r in caplog.records if 'millimeters' in r.getMessage()]
    assert len(mm_lines) == 1 and 'bbox_root_freihand_output.json' in mm_lines[0].getMessage()


def test_evaluation_root_depths_mixing_units_are_refused(tmp_path):
    # One unit per file: a mm entry among meters is a corrupt file, not something to repair.
    root = str(tmp_path / 'FreiHAND')
    make_freihand(root, num_eval=3)
    path = os.path.join(root, 'bbox_root_freihand_output.json')
    with open(path) as f:
        entries = json.load(f)
    depth_m = entries[1]['root_cam'][2]
    entries[1]['root_cam'] = [v * 1000.0 for v in entries[1]['root_cam']]
    with open(path, 'w') as f:
        json.dump(entries, f)
    with pytest.raises(DataError) as err:
        FreiHAND('evaluation', root=root)
    message = str(err.value)
    assert path in message and 'entry 1' in message and f'{depth_m * 1000:g}' in message
    assert 'entry 0' in message and 'mix' in message


def test_evaluation_root_depths_in_meters_are_kept_without_a_message(tmp_path, caplog):
    root = str(tmp_path / 'FreiHAND')
    gt = make_freihand(root, num_eval=3)
    with caplog.at_level(logging.INFO, logger='dataset.freihand'):
        ds = FreiHAND('evaluation', root=root)
    np.testing.assert_allclose(ds.root_depth, gt['root_depth_m'], atol=1e-6)
    assert not [r for r in caplog.records if 'millimeters' in r.getMessage()]


def test_default_collate_batches(freihand):
    root, _ = freihand
    inputs, targets, meta = next(iter(DataLoader(FreiHAND('training', root=root), batch_size=4)))
    assert inputs['img'].shape == (4, 3, 256, 256) and inputs['img'].dtype == torch.float32
    assert targets['mesh_pose_uvd'].shape == (4, 799, 3)
    assert meta['bb2img_trans'].shape == (4, 2, 3)
    inputs, targets, meta = next(iter(DataLoader(FreiHAND('evaluation', root=root), batch_size=2)))
    assert targets == {} and meta['root_depth'].shape == (2,) and meta['K'].shape == (2, 3, 3)


# --- augmentation draws: a function of (seed, epoch, item) ----------------------------------------

def _rot(ds, key):
    return float(ds[key][2]['aug_rot'])


def test_augmentation_is_drawn_from_seed_epoch_and_item_alone(freihand):
    root, _ = freihand
    ds = FreiHAND('training', root=root, preprocessing=Preprocessing(seed=7))
    # Independently: the generator seeded with [seed, stream 1, epoch, item], drawing scale
    # then rot (docs/method.md §2 step 4 order).
    rng = np.random.default_rng([7, 1, 3, 5])
    rng.uniform(0.9, 1.1)
    expected_rot = rng.uniform(-180.0, 180.0)
    assert _rot(ds, (3, 5)) == pytest.approx(expected_rot, abs=1e-4)  # stored as float32
    assert _rot(ds, (3, 5)) == _rot(ds, (3, 5))  # no generator state advances
    assert _rot(ds, 5) == _rot(ds, (0, 5))  # a plain index: the epoch of set_epoch, 0 so far
    ds.set_epoch(3)
    assert _rot(ds, 5) == _rot(ds, (3, 5))
    draws = {(e, i): _rot(ds, (e, i)) for e in range(2) for i in range(4)}
    assert len(set(draws.values())) == len(draws)  # epochs and items all differ
    assert _rot(FreiHAND('training', root=root, preprocessing=Preprocessing(seed=8)), (3, 5)) != _rot(ds, (3, 5))


def test_dataloader_workers_draw_what_the_main_process_draws(freihand):
    root, _ = freihand
    ds = FreiHAND('training', root=root, preprocessing=Preprocessing(seed=0))
    keys = [(e, i) for e in (0, 1) for i in range(6)]
    main = [_rot(ds, key) for key in keys]
    for workers in (1, 2):
        loader = DataLoader(ds, batch_sampler=[keys[k:k + 3] for k in range(0, len(keys), 3)],
                            num_workers=workers)
        assert [float(r) for _, _, meta in loader for r in meta['aug_rot']] == main


# --- registry ---------------------------------------------------------------------------------

def test_get_dataset(freihand):
    root, _ = freihand
    ds = get_dataset('FreiHAND', 'evaluation', root=root)
    assert isinstance(ds, FreiHAND) and len(ds) == 2
    with pytest.raises(ValueError, match="FreiHAND"):
        get_dataset('HO3D', 'training', root=root)
    with pytest.raises(ValueError, match="training"):
        FreiHAND('test', root=root)


# --- annotation cache -------------------------------------------------------------------------

def test_annotation_cache_round_trip(freihand, tmp_path, monkeypatch):
    root, gt = freihand
    cache = tmp_path / 'cache'
    first = FreiHAND('training', root=root, cache_dir=cache)
    assert sorted(p.name for p in cache.glob('*.npy')) == ['training_K.npy', 'training_verts.npy', 'training_xyz.npy']

    def no_parse(*args, **kwargs):
        raise AssertionError('JSON parsed despite the cache')
    monkeypatch.setattr(dataset.freihand.json_numbers, 'iter_values', no_parse)
    cached = FreiHAND('training', root=root, cache_dir=cache)
    assert isinstance(cached.verts_cam, np.memmap) and not cached.verts_cam.flags.writeable
    np.testing.assert_array_equal(cached.verts_cam, first.verts_cam)
    np.testing.assert_allclose(cached.verts_cam, gt['train_verts'], atol=1e-7)
    assert not [p for p in os.listdir(cache) if p.endswith('.tmp')]


def test_default_cache_is_in_the_root(freihand):
    root, _ = freihand
    ds = get_dataset('FreiHAND', 'training', root=root)
    assert ds.cache_dir == os.path.join(root, '.sar_cache')
    assert os.path.isfile(os.path.join(root, '.sar_cache', 'training_verts.npy'))
    assert isinstance(get_dataset('FreiHAND', 'training', root=root).verts_cam, np.memmap)


@pytest.mark.parametrize('mode, indices', [('training', [0, 4, 11]), ('evaluation', [0, 1])])
def test_cached_items_equal_uncached_items(freihand, mode, indices):
    root, _ = freihand
    uncached = FreiHAND(mode, root=root, cache_dir=None)
    FreiHAND(mode, root=root)  # builds the cache
    cached = FreiHAND(mode, root=root)
    assert isinstance(cached.K, np.memmap) and not isinstance(uncached.K, np.memmap)
    aug = dict(scale=1.05, rot=-40.0, transl=(3.0, -2.0), color_gain=(0.9, 1.1, 1.0))
    for idx in indices:
        for a, b in zip(cached.get_item_with_aug(idx, **aug), uncached.get_item_with_aug(idx, **aug)):
            assert a.keys() == b.keys()
            for key in a:
                assert type(a[key]) is type(b[key]), key
                np.testing.assert_array_equal(a[key], b[key], err_msg=key, strict=True)


# --- bad data ---------------------------------------------------------------------------------

def test_missing_root(tmp_path):
    root = str(tmp_path / 'nowhere')
    with pytest.raises(DataError, match='nowhere') as err:
        FreiHAND('training', root=root)
    assert 'Freiburg' in str(err.value) and 'training/rgb' in str(err.value)


@pytest.mark.parametrize('mode, name', [('training', 'training_K.json'), ('training', 'training_verts.json'),
                                        ('evaluation', 'evaluation_scale.json'),
                                        ('evaluation', 'bbox_root_freihand_output.json')])
def test_missing_annotation_file(freihand, mode, name):
    root, _ = freihand
    os.remove(os.path.join(root, name))
    with pytest.raises(DataError, match=name) as err:
        FreiHAND(mode, root=root)
    assert 'Freiburg' in str(err.value)


def test_annotation_files_of_different_lengths(freihand):
    root, _ = freihand
    path = os.path.join(root, 'training_xyz.json')
    write_json(path, read_json(path)[:2])
    with pytest.raises(DataError) as err:
        FreiHAND('training', root=root)
    message = str(err.value)
    assert 'training_K.json: 3' in message and 'training_xyz.json: 2' in message and 'training_verts.json: 3' in message


def test_missing_and_unreadable_images(freihand):
    root, _ = freihand
    last = os.path.join(root, 'training', 'rgb', '%08d.jpg' % 11)
    os.remove(last)
    with pytest.raises(DataError, match='00000011.jpg'):
        FreiHAND('training', root=root)

    root2 = root + '_2'
    make_freihand(root2)
    ds = FreiHAND('training', root=root2)
    middle = os.path.join(root2, 'training', 'rgb', '%08d.jpg' % 5)
    os.remove(middle)
    with pytest.raises(DataError, match='00000005.jpg.*missing'):
        ds[5]
    with open(middle, 'wb') as f:
        f.write(b'not a jpeg')
    with pytest.raises(DataError, match='00000005.jpg.*not a readable image'):
        ds[5]


@pytest.mark.parametrize('entry, index, reason', [
    ([[500.0, 0.0, 112.0], [0.0, 500.0, 112.0]], 1, r'of shape \(2, 3\), not \(3, 3\), at byte'),
    ([[0.0, 0.0, 112.0], [0.0, 500.0, 112.0], [0.0, 0.0, 1.0]], 1, 'not invertible'),
    ([[500.0, 0.0, 900.0], [0.0, 500.0, 112.0], [0.0, 0.0, 1.0]], 1, 'principal point'),
    ([[500.0, 3.0, 112.0], [0.0, 500.0, 112.0], [0.0, 0.0, 1.0]], 1, 'skew'),
    ([[500.0, 0.0, 112.0], [0.0, 500.0, 112.0], [0.0, 0.0, 2.0]], 1, r'last row'),
])
def test_malformed_intrinsics(freihand, entry, index, reason):
    root, _ = freihand
    path = os.path.join(root, 'evaluation_K.json')
    Ks = read_json(path)
    Ks[index] = entry
    write_json(path, Ks)
    with pytest.raises(DataError, match=f'evaluation_K.json.*entry {index}.*{reason}'):
        FreiHAND('evaluation', root=root)


def test_invalid_json(freihand):
    root, _ = freihand
    with open(os.path.join(root, 'training_K.json'), 'w') as f:
        f.write('[[1, 2')
    with pytest.raises(DataError, match='training_K.json.*not valid JSON'):
        FreiHAND('training', root=root)


def test_points_behind_the_camera(freihand):
    root, _ = freihand
    path = os.path.join(root, 'training_verts.json')
    verts = read_json(path)
    verts[2][10][2] = -0.1
    write_json(path, verts)
    with pytest.raises(DataError, match='training_verts.json.*entry 2'):
        FreiHAND('training', root=root)


def test_root_file_with_wrong_count(freihand):
    root, _ = freihand
    path = os.path.join(root, 'bbox_root_freihand_output.json')
    write_json(path, read_json(path)[:1])
    with pytest.raises(DataError, match='bbox_root_freihand_output.json holds 1 entries.*2 evaluation images'):
        FreiHAND('evaluation', root=root)


def test_root_file_with_non_consecutive_image_ids(tmp_path):
    root = str(tmp_path / 'FreiHAND')
    make_freihand(root, num_eval=4)
    path = os.path.join(root, 'bbox_root_freihand_output.json')
    entries = read_json(path)
    del entries[1]['image_id']  # absent ids are allowed
    entries[3]['image_id'] = entries[2]['image_id'] + 2
    write_json(path, entries)
    with pytest.raises(DataError, match='bbox_root_freihand_output.json: entry 3 has image_id 104.*entry 2'):
        FreiHAND('evaluation', root=root)


def test_root_file_without_root_cam(freihand):
    root, _ = freihand
    path = os.path.join(root, 'bbox_root_freihand_output.json')
    entries = read_json(path)
    entries[1]['root_cam'] = [1.0, 2.0]
    write_json(path, entries)
    with pytest.raises(DataError, match='bbox_root_freihand_output.json: entry 1 has no numeric "root_cam"'):
        FreiHAND('evaluation', root=root)


def test_evaluation_scale_must_be_positive(freihand):
    root, _ = freihand
    path = os.path.join(root, 'evaluation_scale.json')
    scales = read_json(path)
    scales[1] = -0.01
    write_json(path, scales)
    with pytest.raises(DataError, match='evaluation_scale.json: entry 1'):
        FreiHAND('evaluation', root=root)
