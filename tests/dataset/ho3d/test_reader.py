"""Tests for dataset/ho3d/reader.py on a tiny HO3D-layout set (synthetic/ho3d.py with grey frames, made
once per session). Expected values are recomputed here from HO3D's conventions: the meta
pickles read with plain pickle (trusted test files), MANO with flat_hand_mean=True, the OpenGL
flip, the joint order and FreiHAND's 1.57 box written out."""
import logging
import os
import pickle
import shutil

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import ConcatDataset, default_collate

import config
from dataset import entry, get_dataset
from dataset.ho3d import reader as ho3d_module
from dataset.ho3d import HO3D, read_meta
from manopth.manolayer import ManoLayer
from synthetic.fixture import make_freihand
from synthetic.ho3d import generate
from synthetic.workers import Run
from utils.errors import DataError

NUM_TRAIN, NUM_EVAL = 4, 3
CROP = (64, 64)
# FreiHAND order from HO3D's (MANO's 16 joints, then the tips of thumb, index, middle, ring, pinky).
TO_FREIHAND = [0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20]
FLIP = np.array([1.0, -1.0, -1.0])  # OpenGL -> OpenCV camera frame


@pytest.fixture(scope='session')
def ho3d_set(tmp_path_factory, standin_mano):
    """(root, mano_root) of a v3-layout set with grey frames."""
    root = tmp_path_factory.mktemp('ho3d') / 'HO3D'
    generate(str(root), NUM_TRAIN, NUM_EVAL, standin_mano, seed=3, version='v3', run=Run(progress=False, render=False))
    return str(root), standin_mano


@pytest.fixture
def ho3d_copy(ho3d_set, tmp_path):
    """A private copy of the set, for tests that change files."""
    root, mano = ho3d_set
    copy = tmp_path / 'HO3D'
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns('.sar_cache'))
    return str(copy), mano


def open_set(root, mano, mode='training', **kwargs):
    return get_dataset('HO3D', mode, root=root, version='v3', mano_root=mano, input_img_shape=CROP,
                       **kwargs)


def plain_meta(root, split, name):
    seq, frame = name.split('/')
    with open(os.path.join(root, split, seq, 'meta', frame + '.pkl'), 'rb') as f:
        return pickle.load(f, encoding='latin1')


def names(root, split):
    with open(os.path.join(root, f'{split}.txt')) as f:
        return f.read().split()


def expected_affine(center, side, rot_deg, transl, out=64):
    """img -> crop affine of docs/method.md §2 step 3, solved from its three point pairs."""
    c = np.asarray(center, dtype=np.float64) + transl
    a = np.radians(rot_deg)
    down = np.array([-np.sin(a), np.cos(a)]) * side / 2
    right = np.array([np.cos(a), np.sin(a)]) * side / 2
    src = np.array([c, c + down, c + right])
    dst = np.array([[out / 2, out / 2], [out / 2, out], [out, out / 2]])
    A = np.linalg.solve(np.c_[src, np.ones(3)], dst)
    return A.T  # 2 x 3


def test_training_targets_follow_the_ho3d_conventions(ho3d_set):
    """mesh_pose_uvd recomputed from the pickle: MANO(flat_hand_mean=True) + handTrans, OpenGL
    flip, joints reordered to FreiHAND's, crop box 1.57 x the projected joints' extent."""
    root, mano = ho3d_set
    dataset = open_set(root, mano)
    scale, rot, transl = 1.05, 30.0, np.array([3.0, -2.0])
    _, targets, meta_info = dataset.get_item_with_aug(1, scale=scale, rot=rot, transl=transl)
    meta = plain_meta(root, 'train', names(root, 'train')[1])
    layer = ManoLayer(mano_root=mano, use_pca=False, flat_hand_mean=True)
    verts_mm, _ = layer(torch.tensor(meta['handPose'][None]), torch.tensor(meta['handBeta'][None]))
    verts = (verts_mm[0].double().numpy() / 1000 + meta['handTrans']) * FLIP
    joints = (meta['handJoints3D'].astype(np.float64) * FLIP)[TO_FREIHAND]
    K = meta['camMat'].astype(np.float64)

    def uv(points):
        return np.stack([K[0, 0] * points[:, 0] / points[:, 2] + K[0, 2],
                         K[1, 1] * points[:, 1] / points[:, 2] + K[1, 2]], axis=1)

    joints_uv = uv(joints)
    center = (joints_uv.min(0) + joints_uv.max(0)) / 2
    side = 1.57 * (joints_uv.max(0) - joints_uv.min(0)).max() * scale
    A = expected_affine(center, side, rot, transl)
    np.testing.assert_allclose(meta_info['img2bb_trans'], A, rtol=1e-5, atol=1e-4)
    points = np.concatenate([verts, joints])
    crop_uv = uv(points) @ A[:, :2].T + A[:, 2]
    expected = np.c_[crop_uv / 32 - 1, (points[:, 2] - joints[0, 2]) / 0.3]
    np.testing.assert_allclose(targets['mesh_pose_uvd'], expected, atol=2e-5)
    assert meta_info['root_depth'] == pytest.approx(joints[0, 2], abs=1e-6)
    assert meta_info['sample_idx'] == 1 and dataset.frame_names[1] == names(root, 'train')[1]


def test_evaluation_items_use_the_given_box_and_root(ho3d_set):
    root, mano = ho3d_set
    dataset = open_set(root, mano, 'evaluation')
    assert len(dataset) == NUM_EVAL and dataset.frame_names == names(root, 'evaluation')
    for idx in range(NUM_EVAL):
        meta = plain_meta(root, 'evaluation', dataset.frame_names[idx])
        x0, y0, x1, y1 = meta['handBoundingBox'].astype(np.float64)
        inputs, targets, meta_info = dataset[idx]
        assert targets == {} and inputs['img'].shape == (3, 64, 64)
        A = expected_affine([(x0 + x1) / 2, (y0 + y1) / 2], 1.34 * max(x1 - x0, y1 - y0), 0.0, 0.0)
        np.testing.assert_allclose(meta_info['img2bb_trans'], A, rtol=1e-5, atol=1e-4)
        root_cam = meta['handJoints3D'].astype(np.float64) * FLIP
        np.testing.assert_allclose(meta_info['root_cam'], root_cam, atol=1e-6)
        assert meta_info['root_depth'] == pytest.approx(root_cam[2], abs=1e-6) and root_cam[2] > 0
    np.testing.assert_allclose(dataset.root_cam()[0],
                               plain_meta(root, 'evaluation', dataset.frame_names[0])['handJoints3D'] * FLIP,
                               atol=1e-6)


def test_a_code_executing_meta_pickle_is_refused_and_nothing_runs(ho3d_copy, tmp_path):
    root, mano = ho3d_copy
    marker = tmp_path / 'ran'

    class Exploit:
        def __reduce__(self):
            return (os.system, (f'touch {marker}',))

    seq, frame = names(root, 'train')[0].split('/')
    path = os.path.join(root, 'train', seq, 'meta', frame + '.pkl')
    with open(path, 'wb') as f:
        pickle.dump({'handPose': Exploit()}, f, protocol=2)
    with pytest.raises(DataError, match='refusing to load global') as err:
        open_set(root, mano)
    assert path in str(err.value) and 'nothing in it was executed' in str(err.value)
    assert not marker.exists()
    # The same with a global the pickle calls through builtins (exec of a string).
    with open(path, 'wb') as f:
        f.write(b"cbuiltins\nexec\n(Vopen(%r, 'w')\ntR." % str(marker).encode())
    with pytest.raises(DataError, match="builtins.exec"):
        read_meta(path)
    assert not marker.exists()


def test_frames_with_none_fields_are_skipped_and_counted(ho3d_copy, caplog):
    root, mano = ho3d_copy
    name = names(root, 'train')[2]
    meta = plain_meta(root, 'train', name)
    meta['handPose'] = None
    seq, frame = name.split('/')
    with open(os.path.join(root, 'train', seq, 'meta', frame + '.pkl'), 'wb') as f:
        pickle.dump(meta, f, protocol=2)
    with caplog.at_level(logging.WARNING, logger='dataset.ho3d'):
        dataset = open_set(root, mano)
    assert len(dataset) == NUM_TRAIN - 1 and dataset.num_skipped == 1
    assert name not in dataset.frame_names
    assert f'skipped 1 of {NUM_TRAIN} frames' in caplog.text and name in caplog.text
    # The remaining items keep their own frames: item 2 is the list's line 3.
    assert dataset[2][2]['sample_idx'] == 3


@pytest.mark.parametrize('field, value, message', [
    ('handJoints3D', np.zeros((20, 3), np.float32), r"'handJoints3D' has shape \(20, 3\), expected \(21, 3\)"),
    ('camMat', 'not numbers', "'camMat' is str"),
    ('handTrans', np.array([0.0, 0.0, np.nan]), "'handTrans' has non-finite values"),
])
def test_a_meta_pickle_with_a_wrong_field_is_named(ho3d_copy, field, value, message):
    root, mano = ho3d_copy
    name = names(root, 'train')[0]
    meta = plain_meta(root, 'train', name)
    meta[field] = value
    seq, frame = name.split('/')
    path = os.path.join(root, 'train', seq, 'meta', frame + '.pkl')
    with open(path, 'wb') as f:
        pickle.dump(meta, f, protocol=2)
    with pytest.raises(DataError, match=message) as err:
        open_set(root, mano, cache_dir=None)
    assert path in str(err.value)


def test_points_behind_the_opengl_camera_are_refused(ho3d_copy):
    root, mano = ho3d_copy
    name = names(root, 'train')[0]
    meta = plain_meta(root, 'train', name)
    meta['handJoints3D'] = meta['handJoints3D'] * FLIP.astype(np.float32)  # the OpenCV frame by mistake
    seq, frame = name.split('/')
    with open(os.path.join(root, 'train', seq, 'meta', frame + '.pkl'), 'wb') as f:
        pickle.dump(meta, f, protocol=2)
    with pytest.raises(DataError, match='OpenGL camera frame'):
        open_set(root, mano)


def test_a_missing_sequence_folder_is_named(ho3d_copy):
    root, mano = ho3d_copy
    with open(os.path.join(root, 'train.txt'), 'a') as f:
        f.write('ABF10/0000\n')
    with pytest.raises(DataError, match="names sequence 'ABF10'") as err:
        open_set(root, mano)
    assert os.path.join(root, 'train', 'ABF10') in str(err.value)


def test_a_list_of_another_size_warns_with_both_counts(ho3d_set, caplog):
    root, mano = ho3d_set
    with caplog.at_level(logging.WARNING, logger='dataset.ho3d'):
        open_set(root, mano, 'evaluation')
    assert f'lists {NUM_EVAL} frames, HO3D v3 has 20137 evaluation frames' in caplog.text


def test_the_cache_is_mapped_then_rebuilt_when_a_pickle_changes(ho3d_copy, monkeypatch):
    root, mano = ho3d_copy
    first = open_set(root, mano)
    assert isinstance(first.table, np.memmap) and isinstance(first.verts_cam, np.memmap)
    calls = []
    real = ho3d_module.read_meta
    monkeypatch.setattr(ho3d_module, 'read_meta', lambda path: calls.append(path) or real(path))
    second = open_set(root, mano)
    assert calls == []  # a second start reads no pickle
    np.testing.assert_array_equal(second.verts_cam, first.verts_cam)
    name = names(root, 'train')[0]
    seq, frame = name.split('/')
    path = os.path.join(root, 'train', seq, 'meta', frame + '.pkl')
    meta = plain_meta(root, 'train', name)
    meta['handTrans'] = meta['handTrans'] + np.float32(0.01)
    with open(path, 'wb') as f:
        pickle.dump(meta, f, protocol=2)
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10 ** 9))
    third = open_set(root, mano)
    assert len(calls) == NUM_TRAIN
    shift = np.asarray(third.verts_cam[0]) - np.asarray(first.verts_cam[0])
    np.testing.assert_allclose(shift, np.broadcast_to([0.01, -0.01, -0.01], shift.shape), atol=1e-5)


def test_png_frames_are_read_too(ho3d_copy):
    root, mano = ho3d_copy
    seq, frame = names(root, 'train')[0].split('/')
    stem = os.path.join(root, 'train', seq, 'rgb', frame)
    img = cv2.imread(stem + '.jpg')
    os.remove(stem + '.jpg')
    cv2.imwrite(stem + '.png', img)
    dataset = open_set(root, mano)
    assert dataset.image_path(0) == stem + '.png'
    assert dataset[0][0]['img'].shape == (3, 64, 64)


def test_mixed_training_concatenates_and_collates(ho3d_set, tmp_path):
    root, mano = ho3d_set
    freihand_root = str(tmp_path / 'FreiHAND')
    make_freihand(freihand_root, num_samples=2, num_eval=1)
    cfg = config.resolve(['--dataset', 'FreiHAND+HO3D', '--data_root', freihand_root,
                          '--ho3d_root', root, '--ho3d_version', 'v3', '--mano_root', mano,
                          '--input_img_shape', f'{CROP[0]},{CROP[1]}', '--annotation_cache', 'off'])
    mixed = entry('FreiHAND+HO3D').build('training', cfg)
    assert isinstance(mixed, ConcatDataset) and len(mixed) == 4 * 2 + NUM_TRAIN
    batch = default_collate([mixed[0], mixed[len(mixed) - 1]])  # one item of each set
    assert batch[1]['mesh_pose_uvd'].shape == (2, 799, 3)
    evaluation = entry('FreiHAND+HO3D').build('evaluation', cfg)
    assert type(evaluation).__name__ == 'FreiHAND'  # evaluation stays FreiHAND's


def test_bad_arguments_are_named(ho3d_set, tmp_path):
    root, mano = ho3d_set
    with pytest.raises(ValueError, match="version must be one of"):
        HO3D('training', root=root, version='v4', mano_root=mano)
    with pytest.raises(DataError, match='does not exist'):
        HO3D('training', root=str(tmp_path / 'nowhere'), mano_root=mano)
    with pytest.raises(DataError, match='MANO_RIGHT.pkl'):
        HO3D('training', root=root, version='v3', mano_root=str(tmp_path), cache_dir=None)
