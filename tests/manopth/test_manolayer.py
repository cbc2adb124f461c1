import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from manopth import constants, lbs
from manopth.manolayer import ManoLayer


@pytest.fixture(scope='module')
def layers(random_mano_dir):
    def make(**kwargs):
        return ManoLayer(mano_root=str(random_mano_dir), **kwargs).double()
    return make


def _tips_and_order(verts16_joints, verts):
    tips = verts[:, list(constants.TIP_VERTS_MANOPTH_RIGHT)]
    return np.concatenate([verts16_joints, tips], axis=1)[:, list(constants.MANO_TO_FREIHAND)]


def test_rodrigues_matches_scipy():
    rotvecs = np.random.default_rng(0).normal(size=(50, 3))
    ours = lbs.batch_rodrigues(torch.as_tensor(rotvecs)).numpy()
    np.testing.assert_allclose(ours, Rotation.from_rotvec(rotvecs).as_matrix(), atol=1e-7)


def test_rigid_chain_worked_by_hand():
    # Three joints on a line along x, each 1 apart; rotate joint 1 by 90 deg about z.
    # Joint 2 (child of 1) must move from (2, 0, 0) to (1, 1, 0); a rest point at (3, 0, 0)
    # attached to joint 2 goes to (1, 2, 0).
    joints = torch.tensor([[[0., 0, 0], [1, 0, 0], [2, 0, 0]]], dtype=torch.float64)
    rots = torch.eye(3, dtype=torch.float64).repeat(1, 3, 1, 1)
    rots[0, 1] = torch.tensor([[0., -1, 0], [1, 0, 0], [0, 0, 1]])
    posed, transforms = lbs.batch_rigid_transform(rots, joints, [-1, 0, 1])
    np.testing.assert_allclose(posed[0].numpy(), [[0, 0, 0], [1, 0, 0], [1, 1, 0]], atol=1e-12)
    point = transforms[0, 2] @ torch.tensor([3., 0, 0, 1], dtype=torch.float64)
    np.testing.assert_allclose(point[:3].numpy(), [1, 2, 0], atol=1e-12)


def test_zero_pose_flat_mean_gives_template_in_mm(layers, random_mano):
    layer = layers(flat_hand_mean=True, use_pca=False)
    verts, joints = layer(torch.zeros(1, 48, dtype=torch.float64))
    template = random_mano['v_template']
    np.testing.assert_allclose(verts[0].numpy(), template * 1000, atol=1e-5)
    expected = _tips_and_order((random_mano['J_regressor'] @ template)[None], template[None])
    np.testing.assert_allclose(joints.numpy(), expected * 1000, atol=1e-5)


def test_global_rotation_is_rigid_about_the_wrist(layers, random_mano):
    layer = layers(flat_hand_mean=True, use_pca=False)
    rotvec = np.array([0.3, -1.1, 0.7])
    pose = torch.zeros(1, 48, dtype=torch.float64)
    pose[0, :3] = torch.as_tensor(rotvec)
    verts = layer(pose)[0][0].numpy() / 1000
    template = random_mano['v_template']
    wrist = random_mano['J_regressor'][0] @ template
    expected = (template - wrist) @ Rotation.from_rotvec(rotvec).as_matrix().T + wrist
    np.testing.assert_allclose(verts, expected, atol=1e-8)


def test_translation_adds_in_meters(layers):
    layer = layers(flat_hand_mean=False, ncomps=10)
    pose = torch.randn(3, 13, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    trans = torch.tensor([[0.1, -0.2, 0.5], [0, 0, 1], [-1, 0, 0]], dtype=torch.float64)
    v0, j0 = layer(pose)
    v1, j1 = layer(pose, th_trans=trans)
    np.testing.assert_allclose((v1 - v0).numpy(), np.broadcast_to(trans[:, None].numpy() * 1000, v0.shape), atol=1e-5)
    np.testing.assert_allclose((j1 - j0).numpy(), np.broadcast_to(trans[:, None].numpy() * 1000, j0.shape), atol=1e-5)


def test_pca_with_45_components_equals_axis_angle(layers, random_mano):
    pca = layers(flat_hand_mean=False, use_pca=True, ncomps=45)
    axisang = layers(flat_hand_mean=False, use_pca=False)
    g = torch.Generator().manual_seed(1)
    coeffs = torch.randn(4, 48, dtype=torch.float64, generator=g) * 0.5
    joint_values = coeffs[:, 3:] @ torch.as_tensor(random_mano['hands_components'])
    v_pca, j_pca = pca(coeffs)
    v_aa, j_aa = axisang(torch.cat([coeffs[:, :3], joint_values], dim=1))
    np.testing.assert_allclose(v_pca.numpy(), v_aa.numpy(), atol=1e-5)
    np.testing.assert_allclose(j_pca.numpy(), j_aa.numpy(), atol=1e-5)


def test_hands_mean_is_added_unless_flat(layers, random_mano):
    mean_layer = layers(flat_hand_mean=False, use_pca=False)
    flat_layer = layers(flat_hand_mean=True, use_pca=False)
    pose = torch.zeros(1, 48, dtype=torch.float64)
    explicit = pose.clone()
    explicit[0, 3:] = torch.as_tensor(random_mano['hands_mean'])
    np.testing.assert_allclose(mean_layer(pose)[0].numpy(), flat_layer(explicit)[0].numpy(), atol=1e-5)


def test_batch_of_n_equals_n_batches_of_one(layers):
    layer = layers(flat_hand_mean=False, ncomps=12)
    g = torch.Generator().manual_seed(2)
    pose = torch.randn(5, 15, dtype=torch.float64, generator=g)
    betas = torch.randn(5, 10, dtype=torch.float64, generator=g)
    trans = torch.randn(5, 3, dtype=torch.float64, generator=g)
    verts, joints = layer(pose, betas, trans)
    for i in range(5):
        v, j = layer(pose[i:i + 1], betas[i:i + 1], trans[i:i + 1])
        np.testing.assert_allclose(v[0].numpy(), verts[i].numpy(), atol=1e-5)
        np.testing.assert_allclose(j[0].numpy(), joints[i].numpy(), atol=1e-5)


def test_gradients_match_finite_differences(layers):
    layer = layers(flat_hand_mean=False, ncomps=6)
    g = torch.Generator().manual_seed(3)
    pose = (torch.randn(2, 9, dtype=torch.float64, generator=g) * 0.5).requires_grad_()
    betas = torch.randn(2, 10, dtype=torch.float64, generator=g).requires_grad_()
    trans = torch.randn(2, 3, dtype=torch.float64, generator=g).requires_grad_()
    # Project to a few random directions to keep gradcheck's Jacobian small.
    proj = torch.randn(778 * 3 + 21 * 3, 4, dtype=torch.float64, generator=g)

    def f(p, b, t):
        v, j = layer(p, b, t)
        return torch.cat([v.flatten(1), j.flatten(1)], dim=1) @ proj

    assert torch.autograd.gradcheck(f, (pose, betas, trans), eps=1e-6, atol=1e-5)


def test_center_idx_centres_on_that_joint(layers):
    layer = layers(center_idx=9, flat_hand_mean=False, ncomps=6)
    pose = torch.randn(2, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    _, joints = layer(pose)
    np.testing.assert_allclose(joints[:, 9].numpy(), 0, atol=1e-5)
    _, joints_zero_trans = layer(pose, th_trans=torch.zeros(2, 3, dtype=torch.float64))
    np.testing.assert_allclose(joints_zero_trans[:, 9].numpy(), 0, atol=1e-5)
    trans = torch.ones(2, 3, dtype=torch.float64)
    _, joints_trans = layer(pose, th_trans=trans)
    uncentered = layers(flat_hand_mean=False, ncomps=6)(pose, th_trans=trans)[1]
    np.testing.assert_allclose(joints_trans.numpy(), uncentered.numpy(), atol=1e-5)


def test_rot6d_and_rotmat_modes_agree_with_axisang(layers):
    g = torch.Generator().manual_seed(5)
    axisang = torch.randn(3, 48, dtype=torch.float64, generator=g) * 0.6
    reference = layers(use_pca=False, flat_hand_mean=True)(axisang)[0]
    rots = lbs.batch_rodrigues(axisang.view(-1, 3)).view(3, 16, 3, 3)
    rotmat = layers(use_pca=False, flat_hand_mean=True, joint_rot_mode='rotmat')(rots)[0]
    np.testing.assert_allclose(rotmat.numpy(), reference.numpy(), atol=1e-5)
    six = torch.cat([rots[:, 0, :, 0], rots[:, 0, :, 1]], dim=1) * 2.5  # scale must not matter
    for robust in (False, True):
        layer = layers(use_pca=False, flat_hand_mean=True, root_rot_mode='rot6d', robust_rot=robust)
        out = layer(torch.cat([six, axisang[:, 3:]], dim=1))[0]
        np.testing.assert_allclose(out.numpy(), reference.numpy(), atol=1e-5)


def test_follows_input_dtype(random_mano_dir):
    layer = ManoLayer(mano_root=str(random_mano_dir), use_pca=False)
    for dtype in (torch.float32, torch.float64):
        verts, joints = layer(torch.zeros(2, 48, dtype=dtype))
        assert verts.dtype == dtype and joints.dtype == dtype
        assert verts.shape == (2, 778, 3) and joints.shape == (2, 21, 3)


def test_buffers_and_bad_arguments(random_mano_dir, random_mano):
    layer = ManoLayer(mano_root=str(random_mano_dir), side='left')
    assert layer.th_faces.shape == (1538, 3) and layer.th_faces.dtype == torch.long
    assert layer.th_v_template.shape == (1, 778, 3)
    assert layer.th_J_regressor.shape == (16, 778)
    assert not torch.allclose(layer.th_v_template[0].double(), torch.as_tensor(random_mano['v_template']))
    with pytest.raises(ValueError, match='th_pose_coeffs must be B x 9'):
        ManoLayer(mano_root=str(random_mano_dir))(torch.zeros(1, 48))
    with pytest.raises(ValueError, match='root_rot_mode'):
        ManoLayer(mano_root=str(random_mano_dir), root_rot_mode='quat')
