"""The inference loop and HandPredictor split the output at cfg.num_joint (not a constant 21)."""
import numpy as np
import torch
from torch.utils.data import DataLoader

from inference.decoding import Decoding
from inference.predict import predict
from inference.predictor import HandPredictor
from model import NetworkSpec, SAR
from tests.helpers import random_mano_data
from utils.preprocessing import crop_and_augment, normalize
from utils.transforms import project

NUM_JOINT = 5


def _network():
    data = random_mano_data(0)
    torch.manual_seed(0)
    model = SAR(data['v_template'], data['f'].astype(np.int64), NetworkSpec(backbone='resnet18', num_stage=1, feature_size=4, heatmap_size=8, num_joint=NUM_JOINT, input_img_shape=(64, 64)), pretrained_backbone=False)
    return model.eval()


def test_hand_predictor_and_predict_split_vertices_and_joints_at_num_joint():
    model = _network()
    K = np.array([[480.0, 0.0, 112.0], [0.0, 481.0, 112.0], [0.0, 0.0, 1.0]])
    img = np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    decoding = Decoding(crop_size=(64, 64), depth_box=0.3, num_joint=NUM_JOINT)
    predictor = HandPredictor(model, decoding).for_image(K, root_depth=0.7)
    xyz_cam, joints_uv = predictor(img, (np.array([112.0, 112.0]), 130.0))
    assert xyz_cam.shape == (778 + NUM_JOINT, 3) and joints_uv.shape == (NUM_JOINT, 2)
    np.testing.assert_allclose(joints_uv, project(xyz_cam[778:], K)[:, :2], atol=1e-9)

    crop, _, crop2img = crop_and_augment(img, np.array([112.0, 112.0]), 130.0, (64, 64))
    item = ({'img': normalize(crop)}, {}, {'idx': 0, 'root_depth': np.float32(0.7),
                                            'bb2img_trans': crop2img.astype(np.float32),
                                            'K': K.astype(np.float32)})
    out = predict(model, DataLoader([item], batch_size=1), decoding, torch.device('cpu'),
                  show_progress=False)
    joints, verts = out[0]
    assert joints.shape == (NUM_JOINT, 3) and verts.shape == (778, 3)
    np.testing.assert_allclose(np.concatenate([verts, joints]), xyz_cam, atol=1e-5)


def test_decoding_moves_the_wrist_of_its_own_joint_rows():
    # 3 vertices then NUM_JOINT joints; the wrist is row 3 (= -NUM_JOINT), not row -21.
    K = np.array([[500.0, 0.0, 100.0], [0.0, 520.0, 90.0], [0.0, 0.0, 1.0]])
    xyz = np.random.default_rng(1).uniform([-0.05, -0.05, 0.5], [0.05, 0.05, 0.7],
                                           (2, 3 + NUM_JOINT, 3))
    decoding = Decoding(crop_size=(64, 64), depth_box=0.3, num_joint=NUM_JOINT)
    moved = decoding.place_at(xyz, np.array([1.5, 2.0]), K)
    np.testing.assert_allclose(moved[:, 3, 2], [1.5, 2.0], atol=1e-12)
    # every point keeps its pixel and its depth relative to the wrist
    np.testing.assert_allclose(project(moved, K)[..., :2], project(xyz, K)[..., :2], atol=1e-9)
    np.testing.assert_allclose(moved[..., 2] - moved[:, 3:4, 2], xyz[..., 2] - xyz[:, 3:4, 2],
                               atol=1e-12)
