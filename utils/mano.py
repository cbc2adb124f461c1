"""The MANO pieces the network and the data use, built from a configurable MANO folder.

A thin wrapper over `manopth`: faces, the template in meters, a 21 x 778 joint regressor in
the FreiHAND order (the 16 regressed joints plus one-hot rows for FreiHAND's fingertip
vertices), skeleton, joint names and the root index.
"""
import os

import numpy as np
import torch

from manopth import constants as mano_constants
from manopth.io import load_mano
from manopth.manolayer import ManoLayer
from utils import constants

MANO_KEYPOINT_ANCHOR = 9  # training_mano.json's uv and scale locate keypoint 9 (middle MCP)


class MANO:
    """MANO model data for one side.

    Args:
        mano_root: folder holding MANO_RIGHT.pkl / MANO_LEFT.pkl (real model or stand-in).
        side: 'right' or 'left'.
    Attributes:
        faces: 1538 x 3 int64.
        template: 778 x 3 float32, meters (MANO template frame).
        joint_regressor: 21 x 778 float32; rows in FreiHAND order, fingertip rows one-hot at
            FreiHAND's tip vertices (SPEC 1).
        skeleton, joint_names, root_joint_idx, num_verts, num_joints, is_standin.
    """

    def __init__(self, mano_root, side='right'):
        self.mano_root = mano_root
        self.side = side
        data = load_mano(os.path.join(mano_root, f'MANO_{side.upper()}.pkl'))
        self.is_standin = data['standin']
        self.faces = data['f'].astype(np.int64)
        self.template = data['v_template'].astype(np.float32)
        tips = np.zeros((5, mano_constants.NUM_VERTS))
        tips[np.arange(5), mano_constants.TIP_VERTS_FREIHAND] = 1.0
        regressor = np.concatenate([data['J_regressor'].toarray(), tips])
        self.joint_regressor = regressor[list(mano_constants.MANO_TO_FREIHAND)].astype(np.float32)
        self.skeleton = constants.SKELETON
        self.joint_names = constants.JOINT_NAMES
        self.root_joint_idx = constants.ROOT_JOINT_IDX
        self.num_verts = mano_constants.NUM_VERTS
        self.num_joints = mano_constants.NUM_JOINTS

    def layer(self, **kwargs):
        """A `ManoLayer` for this model (millimeter outputs, see its docstring)."""
        return ManoLayer(mano_root=self.mano_root, side=self.side, **kwargs)

    def joints_from_verts(self, verts):
        """FreiHAND-order joints from vertices: ... x 778 x 3 -> ... x 21 x 3 (same unit)."""
        return np.einsum('jv,...vc->...jc', self.joint_regressor, verts)


def freihand_mano_to_verts(mano_params, K, layer):
    """Camera-frame vertices from `training_mano.json` entries (SPEC 1).

    The 61 values are 48 axis-angle pose values (hands_mean added, no PCA), 10 betas, the
    pixel (u, v) of keypoint 9 and a scale (pixels per meter at its depth); keypoint 9 sits at
    [u - cx, v - cy, f] / scale with f = (fx + fy) / 2 and the posed mesh is translated there.
    Keypoint 9 (middle MCP) is the ground-truth keypoint: the MANO joint regressor applied to
    the posed mesh (SPEC 1), so training_xyz.json's keypoint 9 lands on (u, v).

    Args:
        mano_params: N x 61 (or N x 1 x 61) array.
        K: N x 3 x 3 intrinsics (pixels).
        layer: a ManoLayer with use_pca=False, flat_hand_mean=False, center_idx=None.
    Returns:
        verts: N x 778 x 3, meters, camera frame (float64).
    """
    if layer.use_pca or layer.flat_hand_mean or layer.center_idx is not None:
        raise ValueError("freihand_mano_to_verts needs ManoLayer(use_pca=False, "
                         "flat_hand_mean=False, center_idx=None), the form FreiHAND's fits use")
    params = torch.as_tensor(np.asarray(mano_params, dtype=np.float64).reshape(-1, 61))
    K = np.asarray(K, dtype=np.float64).reshape(-1, 3, 3)
    with torch.no_grad():
        verts = layer(params[:, :48], params[:, 48:58])[0].numpy() / 1000
    regressor_row = layer.th_J_regressor[mano_constants.MANO_TO_FREIHAND[MANO_KEYPOINT_ANCHOR]]
    keypoint9 = np.einsum('v,nvc->nc', regressor_row.double().numpy(), verts)
    uv, scale = params[:, 58:60].numpy(), params[:, 60].numpy()
    focal = (K[:, 0, 0] + K[:, 1, 1]) / 2
    anchor = np.stack([uv[:, 0] - K[:, 0, 2], uv[:, 1] - K[:, 1, 2], focal], axis=1) / scale[:, None]
    return verts + (anchor - keypoint9)[:, None]
