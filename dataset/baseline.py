"""The mean-hand baseline of a data set (tools/run_demo.py for FreiHAND, tools/ho3d_baseline.py
for HO3D): the training set's mean joints and mesh relative to the wrist, placed at every
evaluation sample's root. What a network must beat to have learnt more than the average hand."""
import numpy as np

from utils.constants import ROOT_JOINT_IDX


def mean_hand(joints_cam, verts_cam, roots):
    """The mean hand at each root.

    joints_cam: N x 21 x 3, verts_cam: N x V x 3, the training set (camera frame, m; the mean
    is taken in their dtype); roots: M x 3, the evaluation samples' wrist positions (m).
    Returns (xyz M x 21 x 3, verts M x V x 3): the mean relative to the wrist plus each root.
    """
    wrist = joints_cam[:, ROOT_JOINT_IDX:ROOT_JOINT_IDX + 1]
    mean_xyz, mean_verts = (joints_cam - wrist).mean(axis=0), (verts_cam - wrist).mean(axis=0)
    roots = np.asarray(roots)[:, None]
    return mean_xyz + roots, mean_verts + roots
