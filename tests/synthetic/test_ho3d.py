"""Tests for synthetic/ho3d.py: the written set checked against HO3D's conventions recomputed
here (MANO with flat_hand_mean=True, the OpenGL frame, HO3D's joint order with manopth's tip
vertices, the tight handBoundingBox) and, on a rendered set, the pictures against the numpy
rasteriser's silhouette of the annotated hand."""
import json
import os

import cv2
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from dataset.ho3d import read_meta
from manopth.manolayer import ManoLayer
from synthetic.ho3d import generate
from synthetic.workers import Run
from utils.vis.render import close_renderers, rasterize_mask

NUM_TRAIN, NUM_EVAL = 3, 2
FLIP = np.array([1.0, -1.0, -1.0])  # OpenGL <-> OpenCV camera frame
TO_HO3D = [0, 5, 6, 7, 9, 10, 11, 17, 18, 19, 13, 14, 15, 1, 2, 3, 4, 8, 12, 16, 20]  # from FreiHAND's order
TIPS = [745, 317, 444, 556, 673]  # manopth's tips: thumb, index, middle, ring, pinky
TRAIN_SHAPES = {'handPose': (48,), 'handBeta': (10,), 'handTrans': (3,), 'handJoints3D': (21, 3),
                'camMat': (3, 3), 'objRot': (3, 1), 'objTrans': (3,), 'objCorners3D': (8, 3),
                'objCorners3DRest': (8, 3)}
EVAL_SHAPES = {'handBoundingBox': (4,), 'handJoints3D': (3,), 'camMat': (3, 3), 'objRot': (3, 1),
               'objTrans': (3,)}


@pytest.fixture(scope='module')
def grey_set(tmp_path_factory, standin_mano):
    root = tmp_path_factory.mktemp('ho3d_grey') / 'HO3D'
    summary = generate(str(root), NUM_TRAIN, NUM_EVAL, standin_mano, seed=5, version='v2', run=Run(progress=False, render=False))
    return str(root), summary


def lines(root, split):
    with open(os.path.join(root, f'{split}.txt')) as f:
        return f.read().split()


def frame_paths(root, split, name, extension):
    seq, frame = name.split('/')
    return (os.path.join(root, split, seq, 'rgb', frame + extension),
            os.path.join(root, split, seq, 'meta', frame + '.pkl'))


def mano_gl(mano_root, meta):
    """(verts 778 x 3, joints 21 x 3 HO3D order) of a training meta, OpenGL frame, m."""
    layer = ManoLayer(mano_root=mano_root, use_pca=False, flat_hand_mean=True)
    verts, joints = layer(torch.tensor(meta['handPose'][None]), torch.tensor(meta['handBeta'][None]))
    trans = meta['handTrans'].astype(np.float64)
    return verts[0].double().numpy() / 1000 + trans, joints[0].double().numpy()[TO_HO3D] / 1000 + trans


def project(points_cam, K):
    return np.stack([K[0, 0] * points_cam[:, 0] / points_cam[:, 2] + K[0, 2],
                     K[1, 1] * points_cam[:, 1] / points_cam[:, 2] + K[1, 2]], axis=1)


def test_layout_and_meta_pickles(grey_set):
    root, _ = grey_set
    for split, count, shapes in (('train', NUM_TRAIN, TRAIN_SHAPES), ('evaluation', NUM_EVAL, EVAL_SHAPES)):
        names = lines(root, split)
        assert len(names) == count and len(set(names)) == count
        for name in names:
            image, meta_path = frame_paths(root, split, name, '.png')  # v2: PNG frames
            assert cv2.imread(image).shape == (480, 640, 3)
            with open(meta_path, 'rb') as f:
                assert f.read(2) == b'\x80\x02'  # protocol 2, as the official files
            meta = read_meta(meta_path)  # the loader's restricted unpickler takes it
            for key, shape in shapes.items():
                assert meta[key].shape == shape and meta[key].dtype == np.float32, key
            assert meta['objName'].startswith('synthetic_') and isinstance(meta['objLabel'], int)


def test_training_joints_are_the_flat_mean_mano_joints_in_ho3d_order(grey_set, standin_mano):
    root, _ = grey_set
    for name in lines(root, 'train'):
        meta = read_meta(frame_paths(root, 'train', name, '.png')[1])
        verts, joints = mano_gl(standin_mano, meta)
        np.testing.assert_allclose(meta['handJoints3D'], joints, atol=2e-6)
        np.testing.assert_allclose(joints[16:], verts[TIPS], atol=1e-7)
        assert np.all(verts[:, 2] < 0)  # OpenGL: in front of the camera at negative z
        # The object fields: its corners are its rest corners under objRot, objTrans.
        rotation = Rotation.from_rotvec(meta['objRot'][:, 0]).as_matrix()
        np.testing.assert_allclose(meta['objCorners3D'],
                                   meta['objCorners3DRest'] @ rotation.T + meta['objTrans'], atol=1e-6)


def test_evaluation_ground_truth_and_boxes(grey_set):
    root, _ = grey_set
    with open(os.path.join(root, 'evaluation_xyz.json')) as f:
        xyz = np.asarray(json.load(f))
    with open(os.path.join(root, 'evaluation_verts.json')) as f:
        verts = np.asarray(json.load(f))
    assert xyz.shape == (NUM_EVAL, 21, 3) and verts.shape == (NUM_EVAL, 778, 3)
    assert np.all(xyz[..., 2] < 0) and np.all(verts[..., 2] < 0)
    np.testing.assert_allclose(xyz[:, 16:], verts[:, TIPS], atol=1e-9)
    for i, name in enumerate(lines(root, 'evaluation')):
        meta = read_meta(frame_paths(root, 'evaluation', name, '.png')[1])
        np.testing.assert_allclose(meta['handJoints3D'], xyz[i, 0], atol=1e-6)  # the root only
        uv = project(verts[i] * FLIP, meta['camMat'].astype(np.float64))
        np.testing.assert_allclose(meta['handBoundingBox'], [*uv.min(0), *uv.max(0)], atol=1e-3)


def test_overwrite_replaces_only_the_generators_files(grey_set, standin_mano, tmp_path):
    root = tmp_path / 'HO3D'
    generate(str(root), 2, 1, standin_mano, seed=1, run=Run(progress=False, render=False))
    with pytest.raises(FileExistsError, match='--overwrite'):
        generate(str(root), 1, 1, standin_mano, run=Run(progress=False, render=False))
    (root / 'notes.txt').write_text('mine')
    os.makedirs(root / 'train' / 'ABF10' / 'rgb')
    (root / 'train' / 'ABF10' / 'rgb' / '0000.png').write_bytes(b'mine')
    generate(str(root), 1, 1, standin_mano, seed=2, run=Run(progress=False, render=False, overwrite=True))
    assert (root / 'notes.txt').read_text() == 'mine'
    assert (root / 'train' / 'ABF10' / 'rgb' / '0000.png').read_bytes() == b'mine'
    assert sorted(os.listdir(root / 'train' / 'SYNT10' / 'meta')) == ['0000.pkl']
    assert lines(str(root), 'train') == ['SYNT10/0000']


@pytest.mark.slow
def test_rendered_frames_show_the_annotated_hand_behind_the_object(tmp_path_factory, standin_mano):
    """Inside the silhouette of the annotated hand (numpy rasteriser), away from the object's
    projected box, the pixels are skin (red above blue); the object hides part of the hand."""
    os.environ.setdefault('PYOPENGL_PLATFORM', 'osmesa')
    root = str(tmp_path_factory.mktemp('ho3d_rendered') / 'HO3D')
    summary = generate(root, NUM_TRAIN, 1, standin_mano, seed=8, version='v3', run=Run(progress=False))
    close_renderers()
    assert 0.0 < summary['mean_hidden'] < 0.9
    faces = ManoLayer(mano_root=standin_mano).th_faces.numpy()
    overlaps = 0
    for name in lines(root, 'train'):
        image_path, meta_path = frame_paths(root, 'train', name, '.jpg')
        img = cv2.imread(image_path)[..., ::-1].astype(np.int64)
        meta = read_meta(meta_path)
        K = meta['camMat'].astype(np.float64)
        verts_cam = mano_gl(standin_mano, meta)[0] * FLIP
        hand = rasterize_mask(verts_cam, faces, K, (480, 640))
        corners = project(meta['objCorners3D'].astype(np.float64) * FLIP, K)
        obj = np.zeros((480, 640), np.uint8)
        cv2.fillConvexPoly(obj, cv2.convexHull(np.round(corners).astype(np.int32)), 1)
        visible = hand & ~obj.astype(bool)
        assert visible.sum() > 200, name
        assert np.median(img[visible][:, 0] - img[visible][:, 2]) > 10, name
        overlaps += bool((hand & obj.astype(bool)).any())
    assert overlaps >= 1
