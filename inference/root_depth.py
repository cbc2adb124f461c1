"""The wrist depth of a predicted hand from its own size (`--root_depth auto`, test.py
--root_source auto).

Root depth from the hand's size. The network predicts the joints' pixels (u_j, v_j) and their
depths relative to the wrist, d_j (meters). At wrist depth Z joint j sits at r_j (Z + d_j),
r_j = ((u_j - cx) / fx, (v_j - cy) / fy, 1), so it projects onto its pixel for every Z; only
the size changes with Z. `solve_root_depth` picks the Z where the skeleton's total bone length
L(Z) = sum_k |r_c (Z + d_c) - r_p (Z + d_p)| (20 bones, parent p -> child c) equals a metric
prior. L is convex in Z (a sum of norms of affine functions), so Newton's method started to
the right of the largest root descends onto it monotonically; the solution is unique on the
branch where L grows with Z.

The prior: L* = hand_scale_m x (the MANO template's total bone length / its bone 9-10), where
hand_scale_m is the length of the middle finger's MCP -> PIP bone (keypoints 9 -> 10, the
bone of FreiHAND's `scale` annotation).
"""
import math

import numpy as np

from utils.constants import SCALE_BONE, SKELETON
from utils.errors import ImageInputError
from utils.transforms import backproject, project

MIN_SKELETON_PX = 4.0  # predicted bones shorter than this in total (px): collapsed joints


MIN_JOINT_DEPTH_M = 0.01  # every joint at least this far in front of the camera


NEWTON_STEPS = 50  # Newton iterations of the root-depth solve (converges in < 10 in practice)


NEWTON_TOL = 1e-10  # relative step at which the solve stops


def bone_pairs(bones=SKELETON):
    parents, children = zip(*bones)
    return np.array(parents), np.array(children)


def skeleton_ratio(joints, bones=SKELETON):
    """Total bone length / bone 9-10 of a 21 x 3 skeleton (FreiHAND order), e.g. the MANO
    template's joints."""
    joints = np.asarray(joints, dtype=np.float64)
    parents, children = bone_pairs(bones)
    total = np.linalg.norm(joints[children] - joints[parents], axis=-1).sum()
    return float(total / np.linalg.norm(joints[SCALE_BONE[1]] - joints[SCALE_BONE[0]]))


def _length_terms(joints_uv, depth_rel, K, fx_as_fy, bones):
    """Per bone k, a_k and b_k (... x 20 x 3) with bone_k(Z) = a_k Z + b_k (module docstring)."""
    rays = backproject(np.concatenate([joints_uv, np.ones_like(joints_uv[..., :1])], -1), K,
                       fx_as_fy)  # (..., 21, 3): r_j
    parents, children = bone_pairs(bones)
    a = rays[..., children, :] - rays[..., parents, :]
    b = (rays[..., children, :] * depth_rel[..., children, None]
         - rays[..., parents, :] * depth_rel[..., parents, None])
    return a, b


def _newton_root_depth(joints_uv, depth_rel, K, skeleton_m, fx_as_fy, bones):
    """(depths, bad mask, total 2D bone length px, targets) of solve_root_depth, not raising."""
    joints_uv = np.asarray(joints_uv, dtype=np.float64)
    depth_rel = np.asarray(depth_rel, dtype=np.float64)
    a, b = _length_terms(joints_uv, depth_rel, K, fx_as_fy, bones)
    target = np.broadcast_to(np.asarray(skeleton_m, dtype=np.float64), a.shape[:-2])
    parents, children = bone_pairs(bones)
    skeleton_px = np.linalg.norm(joints_uv[..., children, :] - joints_uv[..., parents, :],
                                 axis=-1).sum(-1)
    floor = np.maximum(-depth_rel.min(-1), 0.0) + MIN_JOINT_DEPTH_M
    norm_a = np.linalg.norm(a, axis=-1).sum(-1)
    with np.errstate(divide='ignore', invalid='ignore', over='ignore'):
        # L(Z) >= Z sum|a_k| - sum|b_k|: from here L >= L*, right of every root.
        depth = (target + np.linalg.norm(b, axis=-1).sum(-1)) / norm_a
        depth = np.maximum(depth, floor)
        for _ in range(NEWTON_STEPS):
            bone = a * depth[..., None, None] + b
            length = np.linalg.norm(bone, axis=-1)
            slope = (np.einsum('...kc,...kc->...k', a, bone) / length).sum(-1)
            step = (length.sum(-1) - target) / np.where(slope > 0, slope, np.inf)
            depth = depth - step
            if np.all(~(np.abs(step) > NEWTON_TOL * np.abs(depth))):
                break
        residual = np.abs(np.linalg.norm(a * depth[..., None, None] + b, axis=-1).sum(-1) - target)
        bad = ~(np.isfinite(depth) & (skeleton_px >= MIN_SKELETON_PX) & (depth >= floor)
                & (residual <= 1e-6 * target))
    return depth, bad, skeleton_px, target


def solve_root_depth(joints_uv, depth_rel, K, skeleton_m, fx_as_fy=False, bones=SKELETON,
                     names=None):
    """Wrist depth Z where the skeleton's total bone length equals `skeleton_m` (module docstring).

    Args:
        joints_uv: ... x 21 x 2 joint pixels (FreiHAND order).
        depth_rel: ... x 21 joint depths relative to the wrist, meters.
        K: ... x 3 x 3 intrinsics (px).
        skeleton_m: ... target total bone length, meters.
        fx_as_fy: back-project with fx on both axes (as the decoding did).
        bones: (parent, child) pairs whose lengths are summed.
        names: optional per-sample names for the error message.
    Returns:
        ... wrist depths, meters (float64).
    Raises:
        ImageInputError: collapsed joints (total 2D bone length < MIN_SKELETON_PX), a
            non-finite prediction, or no depth with every joint in front of the camera.
    """
    depth, bad, skeleton_px, target = _newton_root_depth(joints_uv, depth_rel, K, skeleton_m,
                                                         fx_as_fy, bones)
    if np.any(bad):
        first = np.flatnonzero(np.ravel(bad))[0]
        name = names[first] if names is not None else f'sample {first}'
        raise ImageInputError(f'{name}: --root_depth auto: '
                              f'{degenerate_reason(np.ravel(skeleton_px)[first], np.ravel(depth)[first], np.ravel(target)[first])}; '
                              f'check the hand box (--bbox) or give the depth (--root_depth METERS)')
    return depth


def degenerate_reason(skeleton_px, depth, target):
    if not skeleton_px >= MIN_SKELETON_PX:
        return (f'the predicted joints collapse (total 2D bone length {skeleton_px:.2f} px < '
                f'{MIN_SKELETON_PX:g} px)')
    return (f'no wrist depth puts a skeleton of {target:.3f} m on these joints with every joint '
            f'in front of the camera (got {depth:.4g} m)')


def place_at_root_depth(xyz_cam, root_depth, K, fx_as_fy=False, *, num_joint):
    """The same prediction with the wrist moved to depth `root_depth` along its ray: every
    point keeps its pixel and its depth relative to the wrist (use Decoding.place_at, which
    knows the rows).

    Args:
        xyz_cam: ... x P x 3, meters; the joints in the last `num_joint` rows, the wrist first.
        root_depth: ... new wrist depths, meters.
    """
    uvd = project(xyz_cam, K, fx_as_fy)
    depth_rel = uvd[..., 2] - uvd[..., -num_joint, None, 2]
    uvd[..., 2] = np.asarray(root_depth, dtype=np.float64)[..., None] + depth_rel
    return backproject(uvd, K, fx_as_fy)


def root_prior_for(mano, hand_scale_m):
    """The RootDepthPrior of a utils.mano.MANO model (its template's proportions)."""
    return RootDepthPrior(hand_scale_m, mano.joints_from_verts(mano.template))


class RootDepthPrior:
    """The metric size `--root_depth auto` places hands with (module docstring).

    Args:
        hand_scale_m: length of bone 9-10 (middle MCP -> PIP), meters.
        template_joints: 21 x 3 joints of the MANO template (FreiHAND order), for the ratio of
            the whole skeleton to that bone.
    """

    def __init__(self, hand_scale_m, template_joints):
        if not (math.isfinite(hand_scale_m) and hand_scale_m > 0):
            raise ValueError(f'hand_scale_m must be a positive length in meters, got {hand_scale_m!r}')
        self.hand_scale_m = float(hand_scale_m)
        self.ratio = skeleton_ratio(template_joints)
        self.skeleton_m = self.hand_scale_m * self.ratio

    def root_depth(self, joints_cam, K, fx_as_fy=False, names=None):
        """Wrist depths (...) of predicted joints (... x 21 x 3, meters); raises
        ImageInputError for a degenerate one (`names` says which)."""
        uvd = project(np.asarray(joints_cam, dtype=np.float64), K, fx_as_fy)
        return solve_root_depth(uvd[..., :2], uvd[..., 2] - uvd[..., :1, 2], K, self.skeleton_m,
                                fx_as_fy, names=names)

    def root_depth_or_keep(self, joints_cam, K, fx_as_fy=False):
        """Batch form for evaluation: the wrist depths (B) of B x 21 x 3 predicted joints, a
        degenerate one keeping its given depth. Returns (depths B, bad mask B)."""
        uvd = project(np.asarray(joints_cam, dtype=np.float64), K, fx_as_fy)
        depth, bad, _, _ = _newton_root_depth(uvd[..., :2], uvd[..., 2] - uvd[..., :1, 2], K,
                                              self.skeleton_m, fx_as_fy, SKELETON)
        return np.where(bad, uvd[..., 0, 2], depth), bad
