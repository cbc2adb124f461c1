"""MANO parameters for predicted meshes: an analytic start from the joints, then Levenberg-Marquardt on
the vertices, batched, on the project's own ManoLayer (manopth's API and convention).

The parameters are manopth's, so `ManoLayer(use_pca=False, flat_hand_mean=F, side=S)` rebuilds
the fitted mesh:

    verts_mm, joints_mm = layer(cat([global_orient, hand_pose], 1), betas, transl)
    verts_m = verts_mm / 1000          # manopth's layer speaks millimeters

- global_orient (3): axis-angle (radians) of the wrist, rotating the hand about the shaped
  rest-pose wrist joint, MANO's model frame -> camera frame (x right, y down, z forward, m);
- hand_pose (45): axis-angle of the 15 finger joints in MANO's internal order (index, middle,
  pinky, ring, thumb; 3 each, from the base), each relative to its parent; with
  flat_hand_mean=False the layer adds MANO's hands_mean to them (the FreiHAND convention),
  with True (the default here, manopth's default) zero is the flat hand;
- betas (10): shape coefficients;
- transl (3): meters, added to every vertex after posing.

Left hands: with MANO_LEFT.pkl in the MANO folder the left model is fitted directly. Without
it, the right model is fitted to the mirror image (x -> -x) and the parameters are mirrored
(`mirror_params`): axis-angles (x, y, z) -> (x, -y, -z), transl x -> -x, betas unchanged. That
is exact for a left model that is the mirror image of the right one (the stand-in's
MANO_LEFT.pkl is built that way); pass the official MANO_LEFT.pkl for exact left parameters.
"""
import functools
import logging
import os

import numpy as np
import torch

from manopth import constants as mano_constants
from manopth import lbs
from manopth.manolayer import ManoLayer
from utils.mano import MM_PER_M

logger = logging.getLogger(__name__)

FIT_ITERATIONS = 30  # Levenberg-Marquardt steps at most (stops earlier once converged)
BETA_WEIGHT = 1e-4  # mm^2 per unit beta^2: keeps an ill-posed shape near the mean, ~0 bias
FD_STEP = 1e-3  # float32 forward-difference step of the Jacobian (radians, beta units, m)
LM_DAMPING_START = 1e-3  # Marquardt damping (relative to the Hessian's diagonal)
LM_DAMPING_FACTOR = 4.0  # damping / 4 after a successful step, x 4 after a rejected one
LM_STOP_GAIN = 1e-5  # a mesh is done when an accepted step lowers its cost by less than this (relative)
LM_DONE_COST = 1e-6  # ... or when its cost is below this (mm^2 summed over the fitted vertices)
FIT_CHUNK = 16  # meshes per batched Jacobian (16 x 62 hands in one forward: ~20 MB a tensor)
FIT_ROW_STRIDE = 4  # the iterations fit every 4th vertex (195); fit_mean_mm uses all 778
PARAM_SIZES = (('global_orient', 3), ('hand_pose', 45), ('betas', 10), ('transl', 3))
BETA_SLICE = slice(48, 58)
# MANO internal joints of the palm: wrist and the five finger bases (index, middle, pinky,
# ring, thumb); rigid enough to give the global rotation.
PALM_JOINTS = (0, 1, 4, 7, 10, 13)
MIRROR = np.array([-1.0, 1.0, 1.0])  # x -> -x: a right hand's mirror image is a left hand
AXISANG_MIRROR = np.array([1.0, -1.0, -1.0])  # M R M for M = diag(-1, 1, 1), in axis-angle


def mirror_params(params):
    """Parameters of the mirror-image hand (x -> -x) under a mirrored MANO model.

    Args:
        params: dict with global_orient B x 3, hand_pose B x 45, betas B x 10, transl B x 3 (m).
    Returns:
        the same keys, mirrored (other keys copied).
    """
    out = dict(params)
    out['global_orient'] = params['global_orient'] * AXISANG_MIRROR
    out['hand_pose'] = (params['hand_pose'].reshape(-1, 15, 3) * AXISANG_MIRROR).reshape(-1, 45)
    out['transl'] = params['transl'] * MIRROR
    return out


def _flatten(params):
    return torch.cat([params[k] for k, _ in PARAM_SIZES], dim=1)


def _unflatten(flat):
    out, first = {}, 0
    for key, size in PARAM_SIZES:
        out[key] = flat[:, first:first + size]
        first += size
    return out


def _kabsch(src, dst):
    """Rotations R (B x 3 x 3) minimising |R src_c - dst_c| for B x N x 3 point sets (centred
    here); no reflection."""
    src_c = src - src.mean(dim=1, keepdim=True)
    dst_c = dst - dst.mean(dim=1, keepdim=True)
    u, _, vh = torch.linalg.svd(dst_c.transpose(1, 2) @ src_c)
    d = torch.sign(torch.linalg.det(u @ vh))
    u = torch.cat([u[:, :, :2], u[:, :, 2:] * d[:, None, None]], dim=2)
    return u @ vh


def _rotation_between(a, b):
    """Smallest rotations (N x 3 axis-angle) turning directions a onto b (N x 3 each)."""
    a = a / torch.linalg.vector_norm(a, dim=1, keepdim=True)
    b = b / torch.linalg.vector_norm(b, dim=1, keepdim=True)
    axis = torch.cross(a, b, dim=1)
    sin = torch.linalg.vector_norm(axis, dim=1, keepdim=True)
    cos = (a * b).sum(dim=1, keepdim=True)
    return axis / sin.clamp_min(1e-12) * torch.atan2(sin, cos)


def _rotvec(rotmats):
    """Axis-angle (N x 3) of rotation matrices (N x 3 x 3), via scipy (float64, any angle)."""
    from scipy.spatial.transform import Rotation
    return torch.as_tensor(Rotation.from_matrix(rotmats.detach().cpu().double().numpy()).as_rotvec(),
                           dtype=rotmats.dtype)


class ManoFitter:
    """Fits MANO (manopth convention, module docstring) to meshes in MANO's topology.

    Args:
        mano_root: folder with MANO_RIGHT.pkl (and MANO_LEFT.pkl for exact left hands).
        side: 'right' or 'left': the hand the meshes show.
        flat_hand_mean: the layer convention of the returned hand_pose (module docstring).
        iterations: Levenberg-Marquardt steps at most.
    """

    def __init__(self, mano_root, side='right', flat_hand_mean=True, iterations=FIT_ITERATIONS):
        if side not in ('right', 'left'):
            raise ValueError(f"side must be 'right' or 'left', got {side!r}")
        self.side, self.flat_hand_mean, self.iterations = side, flat_hand_mean, iterations
        left_file = os.path.join(mano_root, 'MANO_LEFT.pkl')
        # Without the left model, fit the right one to the mirror image (module docstring).
        self.mirrored = side == 'left' and not os.path.isfile(left_file)
        model_side = 'right' if self.mirrored else side
        self.model = (f"MANO_RIGHT.pkl mirrored (no MANO_LEFT.pkl in {mano_root})"
                      if self.mirrored else f'MANO_{side.upper()}.pkl')
        self.layer = ManoLayer(mano_root=mano_root, side=model_side, use_pca=False,
                               flat_hand_mean=flat_hand_mean, center_idx=None).double()
        layer = self.layer
        self.rest_joints = (layer.th_J_regressor @ layer.th_v_template[0])  # 16 x 3, m
        self.rest_tips = layer.th_v_template[0, layer.th_tip_verts]  # 5 x 3 (thumb .. pinky)
        self.joint_shapedirs = torch.einsum('jv,vcs->jcs', layer.th_J_regressor, layer.th_shapedirs)
        self.rows = torch.arange(0, mano_constants.NUM_VERTS, FIT_ROW_STRIDE)
        self._buffers = {}

    # ---- analytic start -------------------------------------------------------------------
    def _mano_points(self, verts):
        """The 16 MANO joints regressed from meshes and the 5 tips: B x 21 x 3, MANO order
        followed by (thumb, index, middle, ring, pinky) tips."""
        joints = torch.einsum('jv,bvc->bjc', self.layer.th_J_regressor, verts)
        return torch.cat([joints, verts[:, self.layer.th_tip_verts]], dim=1)

    def _children(self):
        """Child point (index into _mano_points) of each of the 16 joints; the root has none."""
        parents = self.layer.kintree_parents
        child = {}
        for j, p in enumerate(parents):
            if p > 0:
                child[p] = j
        # Finger ends: the last joint of each finger points at its tip (tips in thumb, index,
        # middle, ring, pinky order; MANO's fingers are index, middle, pinky, ring, thumb).
        tip_of = {3: 16 + 1, 6: 16 + 2, 9: 16 + 4, 12: 16 + 3, 15: 16 + 0}
        return {j: child.get(j, tip_of.get(j)) for j in range(1, 16)}

    def initial_params(self, verts):
        """Global rotation and translation by Procrustes on the palm joints, each finger joint
        the smallest rotation turning its rest bone onto the target bone; mean shape.

        Args:
            verts: B x 778 x 3 target meshes, meters (float64).
        Returns:
            dict of B x 3, B x 45, B x 10, B x 3 tensors (float64).
        """
        B = verts.shape[0]
        target = self._mano_points(verts)
        rest = torch.cat([self.rest_joints, self.rest_tips])  # 21 x 3
        palm = list(PALM_JOINTS)
        root_rot = _kabsch(rest[palm].expand(B, -1, -1), target[:, palm])
        wrist = rest[0]
        # R (x - J0) + J0 + t matches the palm's centroids.
        transl = target[:, palm].mean(1) - (root_rot @ (rest[palm].mean(0) - wrist)) - wrist
        world = [None] * 16
        world[0] = root_rot
        local = torch.zeros(B, 15, 3, dtype=verts.dtype)
        parents = self.layer.kintree_parents
        for j, c in self._children().items():
            parent_rot = world[parents[j]]
            bone = target[:, c] - target[:, j]
            in_parent = torch.einsum('bji,bj->bi', parent_rot, bone)  # R_parent^T bone
            axisang = _rotation_between((rest[c] - rest[j]).expand(B, -1), in_parent)
            local[:, j - 1] = axisang
            world[j] = parent_rot @ lbs.batch_rodrigues(axisang)
        hand_pose = local.reshape(B, 45) - self.layer.th_hands_mean.to(verts.dtype)
        return {'global_orient': _rotvec(root_rot), 'hand_pose': hand_pose,
                'betas': torch.zeros(B, mano_constants.NUM_BETAS, dtype=verts.dtype),
                'transl': transl}

    # ---- refinement -----------------------------------------------------------------------
    def forward_mm(self, params):
        """Vertices (B x 778 x 3, mm) of parameters (dict of tensors)."""
        pose = torch.cat([params['global_orient'], params['hand_pose']], dim=1)
        return self.layer(pose, params['betas'], params['transl'])[0]

    def _subset_buffers(self, dtype):
        """The layer's buffers restricted to the fitted rows, in `dtype` (cached)."""
        if dtype not in self._buffers:
            layer, rows = self.layer, self.rows
            self._buffers[dtype] = {k: v.to(dtype) for k, v in {
                'v_template': layer.th_v_template[0, rows], 'shapedirs': layer.th_shapedirs[rows],
                'posedirs': layer.th_posedirs[rows], 'weights': layer.th_weights[rows],
                'hands_mean': layer.th_hands_mean.view(1, 15, 3), 'rest_joints': self.rest_joints,
                'joint_shapedirs': self.joint_shapedirs}.items()}
        return self._buffers[dtype]

    def _subset_mm(self, flat):
        """Vertices of the fitted rows (b x R x 3, mm) of flat parameters (b x 61), in their
        dtype: the layer's forward (manopth.lbs on its buffers) restricted to those rows."""
        buffers = self._subset_buffers(flat.dtype)
        params = _unflatten(flat)
        pose = torch.cat([params['global_orient'], params['hand_pose']], dim=1)
        axisang = pose.view(-1, 16, 3).clone()
        axisang[:, 1:] = axisang[:, 1:] + buffers['hands_mean']
        rot_mats = lbs.batch_rodrigues(axisang.reshape(-1, 3)).view(-1, 16, 3, 3)
        betas = params['betas']
        v_shaped = buffers['v_template'] + lbs.blend_shapes(betas, buffers['shapedirs'])
        joints = buffers['rest_joints'] + lbs.blend_shapes(betas, buffers['joint_shapedirs'])
        v_posed = v_shaped + torch.einsum('vcp,bp->bvc', buffers['posedirs'],
                                          lbs.pose_features(rot_mats))
        _, transforms = lbs.batch_rigid_transform(rot_mats, joints, self.layer.kintree_parents,
                                                  self.layer.levels)
        verts = lbs.skin(buffers['weights'], transforms, v_posed)
        return (verts + params['transl'][:, None]) * MM_PER_M

    def _residuals(self, flat, target_mm):
        """Offsets (b x 3R, mm) of vertices FIT_ROW_STRIDE's rows of flat parameters (b x 61) from the
        targets' (b x R x 3)."""
        return (self._subset_mm(flat) - target_mm).flatten(1)

    def _cost(self, flat, target_mm, prior):
        return (self._residuals(flat, target_mm) ** 2).sum(1) + (prior * flat ** 2).sum(1)

    def _jacobian(self, flat, target_mm):
        """Residuals (b x 3R, float64) and their Jacobian (b x 3R x 61) by forward differences
        in float32: one batched forward of the b x 62 perturbed parameter sets. (The Jacobian
        only steers the steps; the costs that accept them are float64.)"""
        b, n = flat.shape
        steps = torch.cat([torch.zeros(1, n), torch.eye(n) * FD_STEP])  # (62, 61)
        probes = (flat.float()[:, None] + steps).reshape(-1, n)  # (b * 62, 61)
        moved = self._subset_mm(probes).view(b, n + 1, -1)
        jac = ((moved[:, 1:] - moved[:, :1]) / FD_STEP).transpose(1, 2).double()
        return self._residuals(flat, target_mm), jac

    def _refine(self, verts, params):
        """Levenberg-Marquardt per mesh (batched): the mean squared distance of vertices
        FIT_ROW_STRIDE's rows plus BETA_WEIGHT |betas|^2, FIT_ITERATIONS steps at most."""
        target_mm = verts[:, self.rows] * MM_PER_M
        flat = _flatten(params)
        b, n = flat.shape
        prior = torch.zeros(n, dtype=flat.dtype)
        prior[BETA_SLICE] = BETA_WEIGHT * target_mm.shape[1]  # per vertex mean -> sum scale
        damping = torch.full((b,), LM_DAMPING_START, dtype=flat.dtype)
        with torch.no_grad():
            cost = self._cost(flat, target_mm, prior)
            active = torch.ones(b, dtype=torch.bool)  # meshes still improving
            for _ in range(self.iterations):
                idx = torch.nonzero(active)[:, 0]
                if len(idx) == 0:
                    break
                res, jac = self._jacobian(flat[idx], target_mm[idx])
                hess = jac.transpose(1, 2) @ jac + torch.diag(prior)
                grad = (jac.transpose(1, 2) @ res[..., None])[..., 0] + prior * flat[idx]
                diag = torch.diagonal(hess, dim1=1, dim2=2)
                lhs = hess + torch.diag_embed(damping[idx, None] * (diag + 1e-9))
                trial = flat[idx] - torch.linalg.solve(lhs, grad)
                trial_cost = self._cost(trial, target_mm[idx], prior)
                better = trial_cost < cost[idx]
                gain = (cost[idx] - trial_cost) / cost[idx].clamp_min(1e-30)
                flat[idx] = torch.where(better[:, None], trial, flat[idx])
                cost[idx] = torch.where(better, trial_cost, cost[idx])
                damping[idx] = torch.where(better, damping[idx] / LM_DAMPING_FACTOR,
                                           damping[idx] * LM_DAMPING_FACTOR).clamp(1e-12, 1e6)
                done = (better & (gain < LM_STOP_GAIN)) | (cost[idx] < LM_DONE_COST)
                active[idx[done]] = False
        return _unflatten(flat)

    def fit(self, verts):
        """Fit MANO to meshes.

        Args:
            verts: B x 778 x 3 meshes (meters, any frame; camera frame x right, y down, z
                forward for the predictions) in MANO's vertex order, of `side` hands.
        Returns:
            dict of NumPy arrays: global_orient B x 3, hand_pose B x 45, betas B x 10,
            transl B x 3 (m), fit_mean_mm B (mean vertex distance of the fit, mm), verts B x
            778 x 3 (the fitted meshes, m); plus flat_hand_mean, side and model.
        """
        verts = torch.as_tensor(np.asarray(verts, dtype=np.float64))
        if verts.dim() != 3 or verts.shape[1:] != (mano_constants.NUM_VERTS, 3):
            raise ValueError(f'meshes must be B x {mano_constants.NUM_VERTS} x 3, got '
                             f'{tuple(verts.shape)}')
        if not torch.isfinite(verts).all():
            bad = sorted(set(torch.nonzero(~torch.isfinite(verts))[:, 0].tolist()))
            raise ValueError(f'meshes {bad[:10]} hold non-finite coordinates: nothing to fit')
        if self.mirrored:
            verts = verts * torch.as_tensor(MIRROR)
        parts = []
        for first in range(0, len(verts), FIT_CHUNK):
            chunk = verts[first:first + FIT_CHUNK]
            params = self._refine(chunk, self.initial_params(chunk))
            with torch.no_grad():
                fitted = self.forward_mm(params) / MM_PER_M
            params['fit_mean_mm'] = torch.linalg.vector_norm(fitted - chunk, dim=-1).mean(-1) * MM_PER_M
            params['verts'] = fitted
            parts.append(params)
        out = {k: torch.cat([p[k] for p in parts]).numpy() for k in parts[0]}
        if self.mirrored:
            out = mirror_params(out)
            out['verts'] = out['verts'] * MIRROR
        out.update(flat_hand_mean=self.flat_hand_mean, side=self.side, model=self.model)
        return out


@functools.lru_cache(maxsize=None)
def fitter_for(mano_root, side):
    """The ManoFitter of `side` hands of the MANO folder mano_root, made once per process (and
    logged): photos, videos and the web app share it."""
    fitter = ManoFitter(mano_root, side=side)
    logger.info('--fit_mano (%s hands): %s, flat_hand_mean=%s', side, fitter.model,
                fitter.flat_hand_mean)
    return fitter


def fit_record(fit, index, decimals=6):
    """The `mano` object of one hand's JSON record (lists, rounded; docs/own_images.md)."""
    def values(key):
        return np.round(fit[key][index], decimals).tolist()
    return {'global_orient': values('global_orient'), 'hand_pose': values('hand_pose'),
            'betas': values('betas'), 'transl': values('transl'),
            'flat_hand_mean': bool(fit['flat_hand_mean']), 'side': fit['side'],
            'model': fit['model'], 'fit_mean_mm': round(float(fit['fit_mean_mm'][index]), 3)}
