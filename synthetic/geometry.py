"""Geometry of the synthetic FreiHAND-format samples (docs/method.md §1): per-sample seeds,
cameras, rotations, the placement that lets the fixed centred hand box frame the hand, and the
FreiHAND-convention MANO fits with their camera-frame meshes. See synthetic/freihand.py for
the whole recipe."""
import os

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from manopth import constants as mano_constants
from manopth.constants import NUM_BETAS
from manopth.io import load_mano
from utils.constants import ROOT_JOINT_IDX, TRAINING_BOX_CENTER, TRAINING_BOX_SIZE
from utils.mano import MANO, mano_meters

TRAIN_SPLIT, EVAL_SPLIT = 0, 1  # spawn_key[0] of the per-sample SeedSequence
MANO_KEYPOINT_ANCHOR = 9  # training_mano.json's uv and scale locate keypoint 9 (middle MCP)

# Camera (docs/method.md §1: principal point (112, 112), fx and fy within 0.3 % of each other).
FX_RANGE = (250.0, 900.0)  # px
FY_REL_JITTER = 0.002  # fy = fx * (1 + U(-j, j))

# Shape and articulation.
BETA_CLIP = 2.5  # betas ~ N(0, 1) clipped to [-BETA_CLIP, BETA_CLIP]
NUM_POSE_COMPONENTS = 12  # PCA components drawn; the rest are zero
POSE_SPREAD = 0.8  # times the per-component std of the model's hands_coeffs
MAX_POINTING_COS = 0.8  # max |z| of the unit wrist -> middle-MCP direction (camera frame)
MAX_ROTATION_DRAWS = 1000  # rejection sampling bound (acceptance is about 80 %)

# Placement (docs/method.md §2: fixed hand box of TRAINING_BOX_SIZE px centred at TRAINING_BOX_CENTER).
ANCHOR_JITTER_PX = 3.0  # keypoint 9 pixel = image centre + U(-j, j) on u and v
EXTENT_RANGE_PX = (90.0, 125.0)  # side of the projected hand's bounding box
BOX_MARGIN_PX = 1.0  # the hand stays this far inside the centre box
DEPTH_BISECTION_STEPS = 60  # halves the depth bracket 60 times: exact to float64 precision
MIN_DEPTH_M = 0.01  # the nearest vertex stays at least this far in front of the camera

# ---------------------------------------------------------------------------------------------
# Seeds
# ---------------------------------------------------------------------------------------------

def sample_generators(seed, split, index):
    """Three independent generators (geometry, appearance, root noise) of one sample.

    Args:
        seed: non-negative int, the data set seed.
        split: TRAIN_SPLIT or EVAL_SPLIT.
        index: sample index within the split.
    """
    children = np.random.SeedSequence(seed, spawn_key=(split, index)).spawn(3)
    return tuple(np.random.default_rng(child) for child in children)


# ---------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------

def random_intrinsics(rng):
    """3 x 3 FreiHAND-like intrinsics: principal point (112, 112), fx ~ U(FX_RANGE), fy ~ fx."""
    fx = rng.uniform(*FX_RANGE)
    fy = fx * (1.0 + rng.uniform(-FY_REL_JITTER, FY_REL_JITTER))
    cx, cy = TRAINING_BOX_CENTER
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def random_rotation(rng, direction, max_pointing_cos=MAX_POINTING_COS, normal=None,
                    min_facing_cos=None):
    """Uniform random rotation, redrawn until `direction` does not point along the optical axis
    (and, with `normal`, until `normal` faces the camera).

    Args:
        rng: numpy Generator.
        direction: (3,) unit vector in the model frame (the wrist -> middle-MCP direction).
        max_pointing_cos: accept when |z| of the rotated direction is at most this.
        normal: None, or a (3,) unit vector in the model frame (the hand's normal).
        min_facing_cos: with `normal`, accept only when the rotated normal points towards the
            camera within acos(min_facing_cos): -z of it at least min_facing_cos.
    Returns:
        3 x 3 rotation matrix (model -> camera frame).
    """
    for _ in range(MAX_ROTATION_DRAWS):
        # A normalised 4D Gaussian is a uniform unit quaternion, i.e. uniform on SO(3).
        rotation = Rotation.from_quat(rng.standard_normal(4)).as_matrix()
        if normal is not None and -(rotation[2] @ normal) < min_facing_cos:
            continue
        if abs(rotation[2] @ direction) <= max_pointing_cos:
            return rotation
    raise RuntimeError(f'no rotation with |cos| <= {max_pointing_cos} in {MAX_ROTATION_DRAWS} draws '
                       f'for direction {direction}: is it a unit vector?')


def hand_normals(xyz):
    """Unit normal of the hand: (index MCP - wrist) x (little MCP - wrist), FreiHAND order.

    For a right hand this points out of the palm (palm towards the camera, fingers up: the
    index MCP is right of the wrist, the little MCP left, and the cross product points at -z).

    Args:
        xyz: B x 21 x 3 keypoints (FreiHAND order: 0 wrist, 5 index MCP, 17 little MCP).
    Returns:
        B x 3.
    """
    normal = np.cross(xyz[:, 5] - xyz[:, 0], xyz[:, 17] - xyz[:, 0])
    return normal / np.linalg.norm(normal, axis=1, keepdims=True)


def _project_relative(points_rel, anchor_uv, K, depth):
    """Project points given relative to keypoint 9 placed by the docs/method.md §1 rule at `depth`.

    Args:
        points_rel: B x P x 3 camera-frame offsets from keypoint 9, meters.
        anchor_uv: B x 2 pixel (u, v) of keypoint 9 in the 61-value entry.
        K: B x 3 x 3 intrinsics.
        depth: B keypoint-9 depths z9 (m); keypoint 9 sits at [u - cx, v - cy, f] * z9 / f.
    Returns:
        B x P x 2 pixels.
    """
    fx, fy, cx, cy = K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2]
    focal = (fx + fy) / 2
    anchor = np.stack([(anchor_uv[:, 0] - cx) * depth / focal,
                       (anchor_uv[:, 1] - cy) * depth / focal, depth], axis=1)  # (B, 3)
    cam = points_rel + anchor[:, None]
    return np.stack([fx[:, None] * cam[..., 0] / cam[..., 2] + cx[:, None],
                     fy[:, None] * cam[..., 1] / cam[..., 2] + cy[:, None]], axis=-1)


def _bisect_depth(too_near, depth_lo, depth_hi):
    """Smallest depth (B,) where `too_near(depth)` (B bool) turns False, by bisection."""
    lo, hi = depth_lo.copy(), depth_hi.copy()
    for _ in range(DEPTH_BISECTION_STEPS):
        mid = (lo + hi) / 2
        near = too_near(mid)
        lo = np.where(near, mid, lo)
        hi = np.where(near, hi, mid)
    return hi


def solve_anchor_depth(points_rel, anchor_uv, K, extent_px, box_center=TRAINING_BOX_CENTER,
                       box_size=TRAINING_BOX_SIZE, margin_px=BOX_MARGIN_PX):
    """Keypoint-9 depth giving the projected hand a target size, inside the centre box.

    The depth is the larger of: the one where the projected points' bounding box side
    (max of width and height) equals `extent_px`, and the smallest one that keeps every
    projected point `margin_px` inside the square box (`box_center`, `box_size`).

    Args:
        points_rel: B x P x 3 camera-frame offsets from keypoint 9, meters.
        anchor_uv: B x 2 pixel (u, v) of keypoint 9 (within the box, away from its edge).
        K: B x 3 x 3 intrinsics.
        extent_px: B target bounding-box sides, pixels.
    Returns:
        B depths z9, meters.
    """
    points_rel = np.asarray(points_rel, dtype=np.float64)
    near_limit = np.maximum(-points_rel[..., 2].min(axis=1), 0.0) + MIN_DEPTH_M
    far_limit = np.full_like(near_limit, 1e3)
    half = box_size / 2 - margin_px
    box_lo = np.asarray(box_center, dtype=np.float64) - half
    box_hi = np.asarray(box_center, dtype=np.float64) + half

    def too_big(depth):
        uv = _project_relative(points_rel, anchor_uv, K, depth)
        side = np.max(uv.max(axis=1) - uv.min(axis=1), axis=1)
        return side > extent_px

    def outside_box(depth):
        uv = _project_relative(points_rel, anchor_uv, K, depth)
        return np.any((uv < box_lo) | (uv > box_hi), axis=(1, 2))

    return np.maximum(_bisect_depth(too_big, near_limit, far_limit),
                      _bisect_depth(outside_box, near_limit, far_limit))


class GeometrySampler:
    """Draws FreiHAND-convention MANO fits (docs/method.md §1) and their camera-frame meshes.

    Args:
        mano_root: folder with MANO_RIGHT.pkl (the real model or the stand-in).
        max_tilt: None (global rotations uniform as described above), or degrees: keep only
            rotations whose palm normal (`hand_normals`) points within max_tilt of the
            direction to the camera. Every in-plane orientation remains.
    """

    def __init__(self, mano_root, max_tilt=None):
        if max_tilt is not None and not (0 < max_tilt <= 180):
            raise ValueError(f'max_tilt must be an angle in (0, 180] degrees or None, got {max_tilt!r}')
        self.max_tilt = max_tilt
        data = load_mano(mano_root)
        if 'hands_coeffs' not in data or np.ndim(data['hands_coeffs']) != 2 \
                or np.shape(data['hands_coeffs'])[1] != 45:
            raise ValueError(f'{os.path.join(mano_root, "MANO_RIGHT.pkl")} has no hands_coeffs '
                             f'(K x 45 PCA coefficients of the MANO training poses), which set the '
                             f'spread of the synthetic poses; use the official MANO_RIGHT.pkl or the '
                             f'stand-in written by `python -m synthetic.standin --out DIR`.')
        self.coeff_std = np.asarray(data['hands_coeffs'], dtype=np.float64).std(axis=0)
        self.components = np.asarray(data['hands_components'], dtype=np.float64)
        self.mano = MANO(mano_root)
        # The layer of the FreiHAND fits: 45 joint values without PCA, hands_mean added.
        self.layer = self.mano.layer(use_pca=False, flat_hand_mean=False, center_idx=None)
        self.is_standin = self.mano.is_standin

    def random_joint_pose(self, rng):
        """45 joint axis-angle values (hands_mean not included): the first NUM_POSE_COMPONENTS
        PCA coefficients drawn with POSE_SPREAD x the spread of the model's hands_coeffs."""
        coeffs = rng.standard_normal(NUM_POSE_COMPONENTS) * POSE_SPREAD * self.coeff_std[:NUM_POSE_COMPONENTS]
        return coeffs @ self.components[:NUM_POSE_COMPONENTS]

    def _draw_unposed(self, rng):
        """K, joint pose (45), betas (10), keypoint-9 pixel (2), target extent (px) of one sample."""
        K = random_intrinsics(rng)
        betas = np.clip(rng.standard_normal(NUM_BETAS), -BETA_CLIP, BETA_CLIP)
        joint_pose = self.random_joint_pose(rng)
        anchor_uv = np.asarray(TRAINING_BOX_CENTER) + rng.uniform(-ANCHOR_JITTER_PX, ANCHOR_JITTER_PX, size=2)
        extent_px = rng.uniform(*EXTENT_RANGE_PX)
        return K, joint_pose, betas, anchor_uv, extent_px

    def sample(self, rngs):
        """Geometry of a batch of samples, each drawn from its own generator.

        Args:
            rngs: list of B numpy Generators (one per sample; advanced by the draws).
        Returns:
            dict of float64 arrays: 'K' B x 3 x 3, 'mano' B x 61 (docs/method.md §1 entry), 'verts'
            B x 778 x 3 and 'xyz' B x 21 x 3 (camera frame, meters, FreiHAND tips).
        """
        draws = [self._draw_unposed(rng) for rng in rngs]
        K = np.stack([d[0] for d in draws])
        joint_pose = np.stack([d[1] for d in draws])
        betas = np.stack([d[2] for d in draws])
        anchor_uv = np.stack([d[3] for d in draws])
        extent_px = np.array([d[4] for d in draws])

        verts, anchor, pointing = self.unrotated(joint_pose, betas)
        normals, min_facing_cos = [None] * len(rngs), None
        if self.max_tilt is not None:
            normals = hand_normals(self.mano.joints_from_verts(verts))
            min_facing_cos = np.cos(np.radians(self.max_tilt))
        rotations = np.stack([random_rotation(rng, p, normal=n, min_facing_cos=min_facing_cos)
                              for rng, p, n in zip(rngs, pointing, normals)])
        return self.place((verts, anchor, joint_pose, betas), rotations, anchor_uv, K, extent_px)

    def unrotated(self, joint_pose, betas):
        """The articulated, shaped hands before their global rotation, MANO model frame.

        Args:
            joint_pose: B x 45 joint axis-angle values (hands_mean not included).
            betas: B x 10 shape values.
        Returns:
            verts B x 778 x 3 (m), keypoint 9 B x 3 (m, the anchor of docs/method.md §1) and
            the unit wrist -> keypoint-9 direction B x 3.
        """
        joint_pose, betas = np.asarray(joint_pose), np.asarray(betas)
        pose_unrotated = np.concatenate([np.zeros((len(joint_pose), 3)), joint_pose], axis=1)
        verts, joints = mano_meters(self.layer, torch.as_tensor(pose_unrotated), torch.as_tensor(betas))
        anchor = self.mano.joints_from_verts(verts)[:, MANO_KEYPOINT_ANCHOR]  # (B, 3), as docs/method.md §1
        pointing = anchor - joints[:, ROOT_JOINT_IDX]
        pointing /= np.linalg.norm(pointing, axis=1, keepdims=True)
        return verts, anchor, pointing

    def place(self, hands, rotations, anchor_uv, K, extent_px,
              box=(TRAINING_BOX_CENTER, TRAINING_BOX_SIZE)):
        """Rotate the unrotated hands and place them in front of the camera (docs/method.md §1).

        Keypoint 9 goes to pixel `anchor_uv`, at the depth where the projected mesh's bounding
        box side is `extent_px`, or farther if needed to keep it inside the square box
        (`box` = (centre, side) px; solve_anchor_depth).

        Args:
            hands: (verts, anchor, joint_pose, betas): verts and anchor from `unrotated`
                (B x 778 x 3 and B x 3, m), joint_pose and betas as given to it (B x 45, B x 10).
            rotations: B x 3 x 3 global rotations (model -> camera frame).
            anchor_uv: B x 2 keypoint-9 pixels; K: B x 3 x 3 intrinsics; extent_px: B pixels.
        Returns:
            dict of float64 arrays: 'K' B x 3 x 3, 'mano' B x 61 (docs/method.md §1 entry),
            'verts' B x 778 x 3 and 'xyz' B x 21 x 3 (camera frame, meters, FreiHAND tips).
        """
        verts, anchor, joint_pose, betas = hands
        box_center, box_size = box
        # MANO's global rotation turns the hand about the wrist joint, so offsets from
        # keypoint 9 just rotate.
        points_rel = np.einsum('bij,bvj->bvi', rotations, verts - anchor[:, None])
        depth = solve_anchor_depth(points_rel, anchor_uv, K, extent_px, box_center, box_size)
        focal = (K[:, 0, 0] + K[:, 1, 1]) / 2
        mano_params = np.concatenate([
            Rotation.from_matrix(rotations).as_rotvec(), joint_pose, betas, anchor_uv,
            (focal / depth)[:, None]], axis=1)  # (B, 61)
        verts_cam = freihand_mano_to_verts(mano_params, K, self.layer)
        return {'K': K, 'mano': mano_params, 'verts': verts_cam,
                'xyz': self.mano.joints_from_verts(verts_cam)}


def freihand_mano_to_verts(mano_params, K, layer):
    """Camera-frame vertices from `training_mano.json` entries (docs/method.md §1).

    The 61 values are 48 axis-angle pose values (hands_mean added, no PCA), 10 betas, the
    pixel (u, v) of keypoint 9 and a scale (pixels per meter at its depth); keypoint 9 sits at
    [u - cx, v - cy, f] / scale with f = (fx + fy) / 2 and the posed mesh is translated there.
    Keypoint 9 (middle MCP) is the ground-truth keypoint: the MANO joint regressor applied to
    the posed mesh (docs/method.md §1), so training_xyz.json's keypoint 9 lands on (u, v).

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
    verts = mano_meters(layer, params[:, :48], params[:, 48:58])[0]
    regressor_row = layer.th_J_regressor[mano_constants.MANO_TO_FREIHAND[MANO_KEYPOINT_ANCHOR]]
    keypoint9 = np.einsum('v,nvc->nc', regressor_row.double().numpy(), verts)
    uv, scale = params[:, 58:60].numpy(), params[:, 60].numpy()
    focal = (K[:, 0, 0] + K[:, 1, 1]) / 2
    anchor = np.stack([uv[:, 0] - K[:, 0, 2], uv[:, 1] - K[:, 1, 2], focal], axis=1) / scale[:, None]
    return verts + (anchor - keypoint9)[:, None]
