"""`ManoLayer`: the MANO hand model as a differentiable PyTorch layer (manopth-compatible).

UNITS: the outputs are in MILLIMETERS (the model and `th_trans` are in meters and the
result is multiplied by 1000), exactly as manopth's layer, so existing code drops in.
Joints come out in the FreiHAND order (wrist; thumb, index, middle, ring, pinky; 4 each).
"""
import os

import numpy as np
import torch

from manopth import constants, lbs
from manopth.io import load_mano

ROOT_ROT_MODES = ('axisang', 'rot6d')
JOINT_ROT_MODES = ('axisang', 'rotmat')


class ManoLayer(torch.nn.Module):
    """MANO forward kinematics with linear blend skinning.

    Args:
        center_idx: joint (FreiHAND order, 0..20) to centre outputs on when no translation
            is given; None keeps the model's own origin.
        flat_hand_mean: if False, `hands_mean` (the mean pose) is added to the 45 joint values,
            so zero coefficients give the mean hand; if True zero gives the flat template.
        ncomps: number of PCA pose components used when `use_pca`.
        side: 'right' or 'left' (reads MANO_RIGHT.pkl / MANO_LEFT.pkl).
        mano_root: folder holding the MANO pickles.
        use_pca: joint values given as PCA coefficients (else 45 axis-angle values).
        root_rot_mode: 'axisang' (3 values) or 'rot6d' (6 values) for the global rotation.
        joint_rot_mode: 'axisang' or 'rotmat' (input B x 16 x 3 x 3 rotation matrices, root
            first; then neither PCA nor hands_mean applies).
        robust_rot: for 'rot6d', orthogonalise both columns symmetrically.
    """

    def __init__(self, center_idx=None, flat_hand_mean=True, ncomps=6, side='right',
                 mano_root='mano/models', use_pca=True, root_rot_mode='axisang',
                 joint_rot_mode='axisang', robust_rot=False):
        super().__init__()
        if side not in ('right', 'left'):
            raise ValueError(f"side must be 'right' or 'left', got {side!r}")
        if root_rot_mode not in ROOT_ROT_MODES:
            raise ValueError(f"root_rot_mode must be one of {ROOT_ROT_MODES}, got {root_rot_mode!r}")
        if joint_rot_mode not in JOINT_ROT_MODES:
            raise ValueError(f"joint_rot_mode must be one of {JOINT_ROT_MODES}, got {joint_rot_mode!r}")
        if joint_rot_mode == 'rotmat' and (use_pca or root_rot_mode != 'axisang'):
            raise ValueError("joint_rot_mode='rotmat' takes all 16 rotations as matrices: "
                             "set use_pca=False (and leave root_rot_mode='axisang')")
        if use_pca and not 1 <= ncomps <= 45:
            raise ValueError(f"ncomps must be in 1..45 with use_pca, got {ncomps}")
        if center_idx is not None and not 0 <= center_idx < constants.NUM_JOINTS:
            raise ValueError(f"center_idx must be a joint index 0..20 or None, got {center_idx}")
        self.center_idx = center_idx
        self.flat_hand_mean = flat_hand_mean
        self.ncomps = ncomps if use_pca else 45
        self.side = side
        self.use_pca = use_pca
        self.root_rot_mode = root_rot_mode
        self.joint_rot_mode = joint_rot_mode
        self.robust_rot = robust_rot
        self.rot = 6 if root_rot_mode == 'rot6d' else 3

        self.mano_path = os.path.join(mano_root, f'MANO_{side.upper()}.pkl')
        data = load_mano(self.mano_path)
        self.is_standin = data['standin']
        parents = data['kintree_table'][0].astype(np.int64)
        parents[0] = -1  # stored as 2**32 - 1 (uint32 -1)
        self.kintree_parents = [int(p) for p in parents]
        self.levels = lbs.kinematic_levels(self.kintree_parents)
        tips = constants.TIP_VERTS_MANOPTH_RIGHT if side == 'right' else constants.TIP_VERTS_MANOPTH_LEFT
        hands_mean = np.zeros(45) if flat_hand_mean else data['hands_mean']

        def buffer(name, array, dtype=torch.float32):
            self.register_buffer(name, torch.as_tensor(np.asarray(array), dtype=dtype))

        buffer('th_faces', data['f'].astype(np.int64), torch.long)
        buffer('th_v_template', data['v_template'][None])
        buffer('th_J_regressor', data['J_regressor'].toarray())
        buffer('th_shapedirs', data['shapedirs'])
        buffer('th_posedirs', data['posedirs'])
        buffer('th_weights', data['weights'])
        buffer('th_betas', np.zeros((1, constants.NUM_BETAS)))
        buffer('th_hands_mean', np.asarray(hands_mean)[None])
        buffer('th_comps', data['hands_components'])
        buffer('th_selected_comps', data['hands_components'][:self.ncomps])
        buffer('th_tip_verts', np.asarray(tips), torch.long)
        buffer('th_joint_order', np.asarray(constants.MANO_TO_FREIHAND), torch.long)

    def forward(self, th_pose_coeffs, th_betas=None, th_trans=None):
        """Pose and shape the hand.

        Args:
            th_pose_coeffs: B x (rot + ncomps) with PCA, B x (rot + 45) without, rot = 3 for
                'axisang' and 6 for 'rot6d'; or B x 16 x 3 x 3 with joint_rot_mode='rotmat'.
            th_betas: B x 10 shape coefficients, or None / a 1-element tensor for the mean shape.
            th_trans: B x 3 translation in METERS, or None / a 1-element tensor for none.
        Returns:
            verts: B x 778 x 3 and joints: B x 21 x 3 (FreiHAND order), in MILLIMETERS.
        """
        dtype, device = th_pose_coeffs.dtype, th_pose_coeffs.device
        B = th_pose_coeffs.shape[0]

        def buf(t):
            return t.to(device=device, dtype=dtype)

        if self.joint_rot_mode == 'rotmat':
            if th_pose_coeffs.shape[1:] != (16, 3, 3):
                raise ValueError(f"joint_rot_mode='rotmat' expects B x 16 x 3 x 3 rotations, "
                                 f"got {tuple(th_pose_coeffs.shape)}")
            rot_mats = th_pose_coeffs
        else:
            expected = self.rot + self.ncomps
            if th_pose_coeffs.dim() != 2 or th_pose_coeffs.shape[1] != expected:
                raise ValueError(f"th_pose_coeffs must be B x {expected} ({self.rot} root "
                                 f"rotation + {self.ncomps} joint values), got "
                                 f"{tuple(th_pose_coeffs.shape)}")
            root, joint_coeffs = th_pose_coeffs[:, :self.rot], th_pose_coeffs[:, self.rot:]
            if self.use_pca:
                joint_axisang = joint_coeffs @ buf(self.th_selected_comps)
            else:
                joint_axisang = joint_coeffs
            joint_axisang = joint_axisang + buf(self.th_hands_mean)  # B x 45
            joint_rots = lbs.batch_rodrigues(joint_axisang.reshape(-1, 3)).view(B, 15, 3, 3)
            if self.root_rot_mode == 'rot6d':
                root_rot = lbs.rot6d_to_rotmat(root, robust=self.robust_rot)
            else:
                root_rot = lbs.batch_rodrigues(root)
            rot_mats = torch.cat([root_rot[:, None], joint_rots], dim=1)  # B x 16 x 3 x 3

        if th_betas is None or th_betas.numel() == 1:
            th_betas = buf(self.th_betas).expand(B, -1)
        verts, joints16 = lbs.lbs(
            buf(th_betas), rot_mats, buf(self.th_v_template[0]), buf(self.th_shapedirs),
            buf(self.th_posedirs), buf(self.th_J_regressor), self.kintree_parents,
            buf(self.th_weights), self.levels)
        tips = verts[:, self.th_tip_verts.to(device)]
        joints = torch.cat([joints16, tips], dim=1)[:, self.th_joint_order.to(device)]

        no_trans = th_trans is None or th_trans.numel() == 1
        if not no_trans:
            th_trans = buf(th_trans)
        if self.center_idx is not None:
            # manopth centres whenever the translation is absent or all zero. Decided without
            # a host sync: both candidates are computed and one is selected on the device.
            center = joints[:, self.center_idx:self.center_idx + 1]
            if no_trans:
                verts, joints = verts - center, joints - center
            else:
                is_zero = (th_trans == 0).all()
                offset = torch.where(is_zero, -center, th_trans[:, None])
                verts, joints = verts + offset, joints + offset
        elif not no_trans:
            verts, joints = verts + th_trans[:, None], joints + th_trans[:, None]
        return verts * 1000, joints * 1000
