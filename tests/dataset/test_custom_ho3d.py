"""dataset.custom.convert ho3d: the lines of a synthetic HO3D set hold what HO3D's pickles say
(joints reordered to FreiHAND's and flipped from OpenGL's camera frame, the MANO mesh of the
frame's parameters, the camera), and the custom reader then gives the HO3D reader's training
targets for the same item and augmentation."""
import os
import pickle

import numpy as np
import pytest
import torch

from dataset import get_dataset
from dataset.base import Preprocessing
from dataset.custom import Custom, read_labels
from dataset.custom import convert
from manopth.manolayer import ManoLayer
from synthetic.ho3d import generate
from synthetic.workers import Run

NUM_TRAIN, NUM_EVAL = 3, 2
# FreiHAND order from HO3D's (MANO's 16 joints, then the tips of thumb, index, middle, ring, pinky).
TO_FREIHAND = [0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20]
FLIP = np.array([1.0, -1.0, -1.0])  # OpenGL -> OpenCV camera frame


@pytest.fixture(scope='module')
def converted(tmp_path_factory, standin_mano):
    """(HO3D root, MANO root, the converted folder) of a v3-layout set with grey frames."""
    base = tmp_path_factory.mktemp('ho3d_custom')
    root, out = str(base / 'HO3D'), str(base / 'own')
    generate(root, NUM_TRAIN, NUM_EVAL, standin_mano, seed=4, version='v3',
             run=Run(progress=False, render=False))
    assert convert.main(['ho3d', '--root', root, '--version', 'v3', '--mano_root', standin_mano,
                         '--out', out]) == 0
    return root, standin_mano, out


def test_ho3d_lines_hold_the_pickles_annotations(converted):
    root, mano, out = converted
    hands = read_labels(out, mano)
    with open(os.path.join(root, 'train.txt')) as f:
        names = f.read().split()
    assert len(hands) == NUM_TRAIN and all(h.split == 'train' and h.side == 'right' for h in hands)
    layer = ManoLayer(mano_root=mano, use_pca=False, flat_hand_mean=True)
    for hand, name in zip(hands, names):
        seq, frame = name.split('/')
        with open(os.path.join(root, 'train', seq, 'meta', frame + '.pkl'), 'rb') as f:
            meta = pickle.load(f, encoding='latin1')
        verts_mm, _ = layer(torch.tensor(meta['handPose'][None]),
                            torch.tensor(meta['handBeta'][None]))
        verts = (verts_mm[0].double().numpy() / 1000 + meta['handTrans']) * FLIP
        joints = (meta['handJoints3D'].astype(np.float64) * FLIP)[TO_FREIHAND]
        np.testing.assert_allclose(hand.joints, joints, atol=1e-6)
        np.testing.assert_allclose(hand.verts, verts, atol=1e-5)
        np.testing.assert_allclose(hand.K, meta['camMat'], atol=1e-9)
        image = os.path.normpath(os.path.join(out, hand.image))
        assert os.path.samefile(image, os.path.join(root, 'train', seq, 'rgb', frame + '.jpg')) \
            or os.path.samefile(image, os.path.join(root, 'train', seq, 'rgb', frame + '.png'))


def test_converted_items_train_as_the_ho3d_items(converted):
    root, mano, out = converted
    ho3d = get_dataset('HO3D', 'training', root=root, version='v3', mano_root=mano,
                       input_img_shape=(64, 64))
    custom = Custom('training', out, Preprocessing(input_img_shape=(64, 64)), mano_root=mano)
    for idx in range(NUM_TRAIN):
        draw = dict(scale=1.1, rot=20.0, transl=np.array([2.0, -3.0]))
        inputs_h, targets_h, _ = ho3d.get_item_with_aug(idx, **draw)
        inputs_c, targets_c, _ = custom.get_item_with_aug(idx, **draw)
        np.testing.assert_allclose(targets_c['mesh_pose_uvd'], targets_h['mesh_pose_uvd'],
                                   atol=2e-5)
        np.testing.assert_array_equal(inputs_c['img'], inputs_h['img'])
