"""The MANO pieces the network and the data use, built from a configurable MANO folder.

A thin wrapper over `manopth`: faces, the template in meters and a 21 x 778 joint regressor in
the FreiHAND order (the 16 regressed joints plus one-hot rows for FreiHAND's fingertip
vertices, docs/method.md §1 and §9).
"""
import os

import numpy as np
import torch

from manopth import constants as mano_constants
from manopth.io import load_mano
from manopth.manolayer import ManoLayer

DEFAULT_MANO_ROOT = 'manopth/mano/models'  # where docs/data.md puts MANO_RIGHT.pkl (config.py's)
MM_PER_M = 1000.0  # ManoLayer speaks millimeters (manopth's convention); the project meters


def mano_meters(layer, *args):
    """Run a `ManoLayer` without gradients and return its outputs in meters, as NumPy.

    Args:
        layer: a ManoLayer; args: its forward arguments (pose coefficients, optional betas and
            translation in mm), tensors.
    Returns:
        verts B x 778 x 3 and joints B x 21 x 3, meters, in the layer's dtype.
    """
    with torch.no_grad():
        verts_mm, joints_mm = layer(*args)
    return verts_mm.numpy() / MM_PER_M, joints_mm.numpy() / MM_PER_M


class MANO:
    """MANO model data for one side.

    Args:
        mano_root: folder holding MANO_RIGHT.pkl / MANO_LEFT.pkl (real model or stand-in).
        side: 'right' or 'left'.
    Attributes:
        faces: 1538 x 3 int64.
        template: 778 x 3 float32, meters (MANO template frame).
        joint_regressor: 21 x 778 float32; rows in FreiHAND order, fingertip rows one-hot at
            FreiHAND's tip vertices (docs/method.md §1).
        num_verts: 778. is_standin: True for the procedural stand-in.
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
        self.num_verts = mano_constants.NUM_VERTS

    def layer(self, **kwargs):
        """A `ManoLayer` for this model (millimeter outputs, see its docstring)."""
        return ManoLayer(mano_root=self.mano_root, side=self.side, **kwargs)

    def joints_from_verts(self, verts):
        """FreiHAND-order joints from vertices: ... x 778 x 3 -> ... x 21 x 3 (same unit)."""
        return np.einsum('jv,...vc->...jc', self.joint_regressor, verts)
