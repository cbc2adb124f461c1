"""A synthetic data set in FreiHAND's exact layout (SPEC 1), rendered from a MANO model.

    python -m dataset.synthetic --root data/synthetic --num-train 2000 --num-eval 200 \\
        --mano-root manopth/mano/models --seed 0 [--root-noise 0.02] [--workers 2] \\
        [--max-tilt 50] [--overwrite] [--preview docs/synthetic_samples.png] [--no-progress]

Every file and folder of SPEC 1 is written: training/rgb (4 versions per sample at file
index i + N*v for v in gs, hom, sample, auto), training/mask, evaluation/rgb (gs only), the
training_* and evaluation_* annotation files and bbox_root_freihand_output.json. There are no
evaluation masks (FreiHAND has none). With the procedural stand-in
(`python -m manopth.standin --out DIR`) the set exercises the whole pipeline without the
licensed model; with the real MANO_RIGHT.pkl the hands are MANO hands.

How a sample is made (constants below):
- Camera: principal point (112, 112), fx ~ U(250, 900) px, fy = fx * (1 + U(-0.002, 0.002)).
- Shape: betas ~ N(0, 1) clipped to [-2.5, 2.5].
- Articulation: the first NUM_POSE_COMPONENTS PCA coefficients drawn with POSE_SPREAD times
  the per-component standard deviation of the model's own `hands_coeffs` (the coefficients of
  the MANO training poses), times `hands_components`. Stored WITHOUT hands_mean, which the
  FreiHAND convention (ManoLayer with flat_hand_mean=False) adds back (SPEC 1).
- Global rotation: uniform on SO(3), redrawn while the wrist -> middle-MCP direction points
  more than acos(MAX_POINTING_COS) ~ 37 deg towards or away from the camera. This removes the
  end-on views where the hand collapses to a blob (or shows the open wrist ring) but keeps
  palm, back and side views in every in-plane orientation, as in FreiHAND.
- Placement as FreiHAND's (so the fixed centred 130 px box frames the hand): keypoint 9
  (middle MCP) goes to a pixel within ANCHOR_JITTER_PX of the image centre, at the depth where
  the projected hand's bounding box side is U(90, 125) px -- or farther if needed for the hand
  to fit inside the centre box with BOX_MARGIN_PX to spare (keypoint 9 is not the hand's
  centre, so this binds often: with the stand-in, 2000 samples have a median side of 95 px,
  about 70 % in [90, 125] px and none below 70 px). The 61-value entry is then (48
  pose, 10 betas, u, v of keypoint 9, scale = f / z9), and the camera-frame vertices are
  generated from that entry with `utils.mano.freihand_mano_to_verts`, so training_mano.json
  reproduces training_verts.json. Joints: `MANO.joints_from_verts` (FreiHAND's tip vertices);
  scale: |xyz[9] - xyz[10]|.
- Appearance: one render per sample (utils.render.render_mesh, pyrender, at SUPERSAMPLE x the
  resolution and averaged down, so edges are anti-aliased); skin colour, light direction,
  light intensity and ambient light vary per sample. The versions composite that render over
  different backgrounds: gs a slightly uneven green screen (with a little green spill on the
  hand); hom an image-like procedural background with hand and background colours shifted
  towards each other; sample and auto textured procedural backgrounds (gradients, noise,
  random shapes) with a hue/saturation jitter (sample) or per-channel gain and gamma (auto) of
  the hand. Masks: the rendered silhouette (pixels at least half covered), grey JPEG like
  FreiHAND's (threshold > 127 when reading).
- Evaluation: the same recipe, gs version only; the RootNet file gets the projected box of the
  hand and the wrist position plus optional N(0, root_noise) noise per coordinate (meters).

Determinism: sample i of a split draws everything from its own generator,
np.random.SeedSequence(seed, spawn_key=(split, i)), so the output does not depend on the
number of workers, and sample i has the same images whatever the set sizes (its annotations
agree to float64 rounding: the batched MANO evaluation rounds by batch). Geometry is computed
in fixed chunks of GEOMETRY_CHUNK samples, so equal arguments give byte-identical files.
"""
import argparse
import json
import logging
import multiprocessing
import os
import re
import sys
import time

import cv2
import numpy as np
import torch
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from manopth.constants import NUM_BETAS
from manopth.io import load_mano
from utils.constants import (FREIHAND_IMG_SIZE, FREIHAND_VERSIONS, HAND_BOX_CENTER, HAND_BOX_SIZE,
                             ROOT_JOINT_IDX, ROOTNET_FILE, SCALE_BONE)
from utils.fileio import atomic_write_json
from utils.mano import MANO, MANO_KEYPOINT_ANCHOR, freihand_mano_to_verts

logger = logging.getLogger(__name__)

TRAIN_SPLIT, EVAL_SPLIT = 0, 1  # spawn_key[0] of the per-sample SeedSequence

# Camera (SPEC 1: principal point (112, 112), fx and fy within 0.3 % of each other).
FX_RANGE = (250.0, 900.0)  # px
FY_REL_JITTER = 0.002  # fy = fx * (1 + U(-j, j))

# Shape and articulation.
BETA_CLIP = 2.5  # betas ~ N(0, 1) clipped to [-BETA_CLIP, BETA_CLIP]
NUM_POSE_COMPONENTS = 12  # PCA components drawn; the rest are zero
POSE_SPREAD = 0.8  # times the per-component std of the model's hands_coeffs
MAX_POINTING_COS = 0.8  # max |z| of the unit wrist -> middle-MCP direction (camera frame)
MAX_ROTATION_DRAWS = 1000  # rejection sampling bound (acceptance is about 80 %)

# Placement (SPEC 2: fixed hand box of HAND_BOX_SIZE px centred at HAND_BOX_CENTER).
ANCHOR_JITTER_PX = 3.0  # keypoint 9 pixel = image centre + U(-j, j) on u and v
EXTENT_RANGE_PX = (90.0, 125.0)  # side of the projected hand's bounding box
BOX_MARGIN_PX = 1.0  # the hand stays this far inside the centre box
DEPTH_BISECTION_STEPS = 60  # halves the depth bracket 60 times: exact to float64 precision
MIN_DEPTH_M = 0.01  # the nearest vertex stays at least this far in front of the camera

# Rendering and images.
SUPERSAMPLE = 2  # render at 2x and average 2x2 blocks: anti-aliased edges, coverage masks
JPEG_QUALITY = 95
GEOMETRY_CHUNK = 256  # samples per batched MANO evaluation (fixed: see Determinism)

# Skin tones, displayed RGB in [0, 1], light to dark; a sample interpolates between two.
SKIN_TONES = np.array([(0.96, 0.80, 0.69), (0.90, 0.70, 0.58), (0.80, 0.58, 0.45),
                       (0.63, 0.44, 0.32), (0.45, 0.31, 0.23)])
SKIN_JITTER = 0.03
LIGHT_INTENSITY_RANGE = (2.0, 4.0)  # pyrender directional light, linear units
AMBIENT_RANGE = (0.25, 0.5)
SENSOR_NOISE_RANGE = (0.5, 2.5)  # std of the (uniform) pixel noise, 8-bit levels

ANNOTATION_FILES = (
    'training_K.json', 'training_mano.json', 'training_xyz.json', 'training_verts.json',
    'training_scale.json', 'evaluation_K.json', 'evaluation_scale.json', 'evaluation_xyz.json',
    'evaluation_verts.json', ROOTNET_FILE)
IMAGE_DIRS = ('training/rgb', 'training/mask', 'evaluation/rgb')
_IMAGE_NAME = re.compile(r'^\d{8}\.jpg$')


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
    cx, cy = HAND_BOX_CENTER
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
    """Project points given relative to keypoint 9 placed by the SPEC 1 rule at `depth`.

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


def solve_anchor_depth(points_rel, anchor_uv, K, extent_px, box_center=HAND_BOX_CENTER,
                       box_size=HAND_BOX_SIZE, margin_px=BOX_MARGIN_PX):
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
    """Draws FreiHAND-convention MANO fits (SPEC 1) and their camera-frame meshes.

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
                             f'stand-in written by `python -m manopth.standin --out DIR`.')
        self.coeff_std = np.asarray(data['hands_coeffs'], dtype=np.float64).std(axis=0)
        self.components = np.asarray(data['hands_components'], dtype=np.float64)
        self.mano = MANO(mano_root)
        # The layer of the FreiHAND fits: 45 joint values without PCA, hands_mean added.
        self.layer = self.mano.layer(use_pca=False, flat_hand_mean=False, center_idx=None)
        self.is_standin = self.mano.is_standin

    def _draw_unposed(self, rng):
        """K, joint pose (45), betas (10), keypoint-9 pixel (2), target extent (px) of one sample."""
        K = random_intrinsics(rng)
        betas = np.clip(rng.standard_normal(NUM_BETAS), -BETA_CLIP, BETA_CLIP)
        coeffs = rng.standard_normal(NUM_POSE_COMPONENTS) * POSE_SPREAD * self.coeff_std[:NUM_POSE_COMPONENTS]
        joint_pose = coeffs @ self.components[:NUM_POSE_COMPONENTS]
        anchor_uv = np.asarray(HAND_BOX_CENTER) + rng.uniform(-ANCHOR_JITTER_PX, ANCHOR_JITTER_PX, size=2)
        extent_px = rng.uniform(*EXTENT_RANGE_PX)
        return K, joint_pose, betas, anchor_uv, extent_px

    def sample(self, rngs):
        """Geometry of a batch of samples, each drawn from its own generator.

        Args:
            rngs: list of B numpy Generators (one per sample; advanced by the draws).
        Returns:
            dict of float64 arrays: 'K' B x 3 x 3, 'mano' B x 61 (SPEC 1 entry), 'verts'
            B x 778 x 3 and 'xyz' B x 21 x 3 (camera frame, meters, FreiHAND tips).
        """
        draws = [self._draw_unposed(rng) for rng in rngs]
        K = np.stack([d[0] for d in draws])
        joint_pose = np.stack([d[1] for d in draws])
        betas = np.stack([d[2] for d in draws])
        anchor_uv = np.stack([d[3] for d in draws])
        extent_px = np.array([d[4] for d in draws])
        batch = len(rngs)

        # Articulated and shaped hand without global rotation, model frame (meters).
        pose_unrotated = np.concatenate([np.zeros((batch, 3)), joint_pose], axis=1)
        with torch.no_grad():
            verts_mm, joints_mm = self.layer(torch.as_tensor(pose_unrotated), torch.as_tensor(betas))
        verts, joints = verts_mm.numpy() / 1000, joints_mm.numpy() / 1000
        anchor = self.mano.joints_from_verts(verts)[:, MANO_KEYPOINT_ANCHOR]  # (B, 3), as SPEC 1
        pointing = anchor - joints[:, ROOT_JOINT_IDX]
        pointing /= np.linalg.norm(pointing, axis=1, keepdims=True)
        normals, min_facing_cos = [None] * batch, None
        if self.max_tilt is not None:
            normals = hand_normals(self.mano.joints_from_verts(verts))
            min_facing_cos = np.cos(np.radians(self.max_tilt))
        rotations = np.stack([random_rotation(rng, p, normal=n, min_facing_cos=min_facing_cos)
                              for rng, p, n in zip(rngs, pointing, normals)])
        # MANO's global rotation turns the hand about the wrist joint, so offsets from
        # keypoint 9 just rotate.
        points_rel = np.einsum('bij,bvj->bvi', rotations, verts - anchor[:, None])
        depth = solve_anchor_depth(points_rel, anchor_uv, K, extent_px)
        focal = (K[:, 0, 0] + K[:, 1, 1]) / 2
        mano_params = np.concatenate([
            Rotation.from_matrix(rotations).as_rotvec(), joint_pose, betas, anchor_uv,
            (focal / depth)[:, None]], axis=1)  # (B, 61)
        verts_cam = freihand_mano_to_verts(mano_params, K, self.layer)
        return {'K': K, 'mano': mano_params, 'verts': verts_cam,
                'xyz': self.mano.joints_from_verts(verts_cam)}


# ---------------------------------------------------------------------------------------------
# Appearance
# ---------------------------------------------------------------------------------------------

def _value_noise(rng, size, cells, channels):
    """size x size x channels smooth noise in [0, 1]: a random (cells + 1)^2 grid, cubic-upsampled."""
    grid = rng.random((cells + 1, cells + 1, channels)).astype(np.float32)
    noise = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(noise.reshape(size, size, channels), 0.0, 1.0)


def _fractal_noise(rng, size, channels, octaves=(2, 4, 8, 16, 32), persistence=0.55):
    """Sum of value-noise octaves, rescaled to [-1, 1] (approximately zero mean)."""
    total = np.zeros((size, size, channels), dtype=np.float32)
    weight_sum = 0.0
    for k, cells in enumerate(octaves):
        weight = persistence ** k
        total += weight * (_value_noise(rng, size, cells, channels) - 0.5)
        weight_sum += weight
    return total * (2.0 / weight_sum)


def _gradient(rng, size):
    """size x size linear ramp in [0, 1] along a random direction."""
    angle = rng.uniform(0.0, 2.0 * np.pi)
    v, u = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    ramp = np.cos(angle) * u + np.sin(angle) * v
    return (ramp - ramp.min()) / (ramp.max() - ramp.min())


def _random_color(rng):
    return rng.uniform(0.0, 255.0, size=3).astype(np.float32)


def _draw_shapes(rng, img, count):
    """Blend `count` random filled shapes (ellipses, rectangles, polygons, thick lines) into img."""
    size = img.shape[0]
    for _ in range(count):
        overlay = img.copy()
        color = tuple(float(c) for c in _random_color(rng))
        kind = rng.integers(4)
        center = tuple(int(c) for c in rng.integers(0, size, size=2))
        if kind == 0:
            axes = tuple(int(a) for a in rng.integers(5, size // 2, size=2))
            cv2.ellipse(overlay, center, axes, float(rng.uniform(0, 180)), 0, 360, color, -1, cv2.LINE_AA)
        elif kind == 1:
            corner = tuple(int(c) for c in rng.integers(0, size, size=2))
            cv2.rectangle(overlay, center, corner, color, -1)
        elif kind == 2:
            points = rng.integers(-size // 4, size + size // 4, size=(int(rng.integers(3, 7)), 2))
            cv2.fillPoly(overlay, [points.astype(np.int32)], color, cv2.LINE_AA)
        else:
            end = tuple(int(c) for c in rng.integers(0, size, size=2))
            cv2.line(overlay, center, end, color, int(rng.integers(2, 12)), cv2.LINE_AA)
        alpha = rng.uniform(0.35, 1.0)
        img = (1.0 - alpha) * img + alpha * overlay
    return img


def green_screen_background(rng, size=FREIHAND_IMG_SIZE):
    """size x size x 3 float RGB (0..255): a green screen with uneven lighting."""
    hsv = np.array([[[rng.uniform(95.0, 145.0), rng.uniform(0.45, 0.8), rng.uniform(0.45, 0.8)]]],
                   dtype=np.float32)  # H in degrees, S and V in [0, 1]
    base = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0] * 255.0
    light = 1.0 + rng.uniform(0.05, 0.2) * _fractal_noise(rng, size, 1, octaves=(1, 2, 4))
    light = light + rng.uniform(-0.15, 0.15) * (_gradient(rng, size)[..., None] - 0.5)
    return (base[None, None] * light).astype(np.float32)


def textured_background(rng, style, size=FREIHAND_IMG_SIZE):
    """size x size x 3 float RGB (0..255) procedural 'image-like' background.

    Args:
        style: 'smooth' (gradient and soft noise, few shapes), 'shapes' (many overlapping
            shapes) or 'texture' (strong fine-grained noise over shapes).
    """
    ramp = _gradient(rng, size)[..., None]
    img = (1.0 - ramp) * _random_color(rng) + ramp * _random_color(rng)
    amplitude = {'smooth': 25.0, 'shapes': 20.0, 'texture': 60.0}[style]
    img = img + rng.uniform(0.5, 1.0) * amplitude * _fractal_noise(rng, size, 3)
    count = {'smooth': rng.integers(0, 4), 'shapes': rng.integers(6, 16), 'texture': rng.integers(2, 8)}[style]
    img = _draw_shapes(rng, img.astype(np.float32), int(count))
    if style == 'texture':
        img = img + rng.uniform(10.0, 40.0) * _fractal_noise(rng, size, 3, octaves=(32, 64, 112))
    blur = rng.uniform(0.0, 2.0)  # some backgrounds out of focus
    if blur > 0.3:
        img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), blur)
    return img


def _jitter_hue_saturation(rng, hand_rgb):
    """Hand colours (H x W x 3 float 0..255) with hue, saturation and value jittered."""
    hsv = cv2.cvtColor(np.clip(hand_rgb / 255.0, 0.0, 1.0).astype(np.float32), cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-15.0, 15.0)) % 360.0
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.7, 1.3), 0.0, 1.0)
    hsv[..., 2] = np.clip(hsv[..., 2] * rng.uniform(0.8, 1.15), 0.0, 1.0)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0


def _jitter_gain_gamma(rng, hand_rgb):
    """Hand colours with per-channel gains and a gamma curve."""
    gain = rng.uniform(0.85, 1.15, size=3)
    gamma = rng.uniform(0.8, 1.25)
    return 255.0 * np.clip(hand_rgb * gain / 255.0, 0.0, 1.0) ** gamma


def _masked_mean(img, weight):
    return (img * weight[..., None]).sum(axis=(0, 1)) / max(weight.sum(), 1e-6)


def render_hand(verts_cam, faces, K, rng, size=FREIHAND_IMG_SIZE):
    """Render the hand once with a random skin colour and lighting.

    Args:
        verts_cam: 778 x 3 camera-frame vertices, meters.
        faces: F x 3 vertex indices.
        K: 3 x 3 intrinsics of the size x size image.
        rng: numpy Generator (skin and light draws).
    Returns:
        hand_rgb: size x size x 3 float32 (0..255), the hand's colour where alpha > 0;
        alpha: size x size float32 in [0, 1], the fraction of each pixel the hand covers.
    """
    from utils.render import render_mesh  # imports pyrender lazily: only rendering needs OpenGL
    tone = rng.uniform(0.0, len(SKIN_TONES) - 1)
    low = int(np.floor(tone))
    high = min(low + 1, len(SKIN_TONES) - 1)
    skin = (1 - (tone - low)) * SKIN_TONES[low] + (tone - low) * SKIN_TONES[high]
    skin = np.clip(skin + rng.uniform(-SKIN_JITTER, SKIN_JITTER, size=3), 0.0, 1.0)
    # Light travelling into the scene (+z) from a random side of the camera.
    light_dir = np.array([rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 1.0), rng.uniform(0.6, 1.5)])
    s = SUPERSAMPLE
    # Pixel j of the fine image is centred on coarse coordinate (j + 0.5) / s - 0.5, so
    # u_fine = s * u + (s - 1) / 2.
    K_fine = np.array(K, dtype=np.float64)
    K_fine[:2] *= s
    K_fine[:2, 2] += (s - 1) / 2
    rgb, _, mask = render_mesh(verts_cam, faces, K_fine, (size * s, size * s), color=skin,
                               light_dir=light_dir, light_intensity=rng.uniform(*LIGHT_INTENSITY_RANGE),
                               ambient=rng.uniform(*AMBIENT_RANGE))
    coverage = mask.astype(np.float32)
    premultiplied = rgb.astype(np.float32) * coverage[..., None]
    # INTER_AREA with an integer factor averages s x s blocks.
    alpha = cv2.resize(coverage, (size, size), interpolation=cv2.INTER_AREA)
    averaged = cv2.resize(premultiplied, (size, size), interpolation=cv2.INTER_AREA)
    hand_rgb = averaged / np.maximum(alpha, 1e-6)[..., None]
    return hand_rgb, alpha


def compose_version(version, hand_rgb, alpha, rng):
    """One image version (SPEC 1) from a rendered hand.

    Args:
        version: one of FREIHAND_VERSIONS ('gs', 'hom', 'sample', 'auto').
        hand_rgb, alpha: from `render_hand`.
        rng: numpy Generator (background and colour draws).
    Returns:
        H x W x 3 uint8 RGB.
    """
    hand = hand_rgb.astype(np.float32)  # a copy: colour changes below stay local
    rows, cols = np.nonzero(alpha > 0)
    # Colour changes only where the hand is (cheaper than the whole image).
    region = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1)) if rows.size else \
        (slice(0, 0), slice(0, 0))
    if version == 'gs':
        background = green_screen_background(rng)
        spill = rng.uniform(0.0, 0.12)  # green light reflected by the screen onto the hand
        tint = np.array([0.6, 1.4, 0.6], dtype=np.float32)
        hand[region] = (1.0 - spill) * hand[region] + spill * hand[region].mean(axis=2, keepdims=True) * tint
    elif version == 'hom':
        background = textured_background(rng, 'smooth')
        # Shift hand and background mean colours towards each other.
        strength = rng.uniform(0.2, 0.5)
        hand_mean = _masked_mean(hand, alpha)
        background_mean = background.reshape(-1, 3).mean(axis=0)
        middle = (hand_mean + background_mean) / 2
        hand = hand + strength * (middle - hand_mean)
        background = background + strength * (middle - background_mean)
    elif version == 'sample':
        background = textured_background(rng, 'shapes')
        hand[region] = _jitter_hue_saturation(rng, hand[region])
    elif version == 'auto':
        background = textured_background(rng, 'texture')
        hand[region] = _jitter_gain_gamma(rng, hand[region])
    else:
        raise ValueError(f'unknown image version {version!r}; expected one of {FREIHAND_VERSIONS}')
    img = alpha[..., None] * hand + (1.0 - alpha[..., None]) * background
    # Sensor noise: uniform with the drawn standard deviation (uniform draws are much cheaper
    # than Gaussian ones, and after JPEG the difference is invisible).
    noise_std = rng.uniform(*SENSOR_NOISE_RANGE)
    img = img + np.float32(noise_std * np.sqrt(12.0)) * (rng.random(img.shape, dtype=np.float32) - 0.5)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def silhouette_mask(alpha):
    """uint8 mask (0 / 255) of the pixels the hand covers at least half (rasterize_mask's rule)."""
    return np.where(alpha >= 0.5, 255, 0).astype(np.uint8)


def _write_jpeg(path, img):
    """Write an RGB (H x W x 3) or grey (H x W) uint8 image as JPEG (not atomic: the annotation
    files, written last and atomically, mark a complete set)."""
    bgr = img[..., ::-1] if img.ndim == 3 else img
    ok, encoded = cv2.imencode('.jpg', np.ascontiguousarray(bgr), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f'cv2 could not encode {path} as JPEG')
    with open(path, 'wb') as f:
        f.write(encoded.tobytes())


# ---------------------------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------------------------

_worker_faces = None  # set per process by _init_worker


def _init_worker(faces, single_threaded=False):
    """Per-process setup; `single_threaded` for pool workers, which parallelise across samples."""
    global _worker_faces
    _worker_faces = faces
    if single_threaded:
        # Before this process creates its OpenGL context: Mesa's llvmpipe rasteriser and cv2
        # otherwise start one thread per core in every worker and oversubscribe the cores.
        os.environ.setdefault('LP_NUM_THREADS', '1')
        cv2.setNumThreads(1)


def _render_sample(task):
    """Render and write the images of one sample; runs in a worker (or the main process)."""
    root, split, index, num_train, seed, verts_cam, K = task
    _, appearance_rng, _ = sample_generators(seed, split, index)
    hand_rgb, alpha = render_hand(verts_cam, _worker_faces, K, appearance_rng)
    if split == TRAIN_SPLIT:
        for v, version in enumerate(FREIHAND_VERSIONS):
            img = compose_version(version, hand_rgb, alpha, appearance_rng)
            _write_jpeg(os.path.join(root, 'training', 'rgb', '%08d.jpg' % (index + num_train * v)), img)
        _write_jpeg(os.path.join(root, 'training', 'mask', '%08d.jpg' % index), silhouette_mask(alpha))
    else:
        img = compose_version('gs', hand_rgb, alpha, appearance_rng)
        _write_jpeg(os.path.join(root, 'evaluation', 'rgb', '%08d.jpg' % index), img)
    return index


# ---------------------------------------------------------------------------------------------
# Data set
# ---------------------------------------------------------------------------------------------

def _check_root(root, overwrite):
    """Refuse a file or a non-empty folder at `root` unless `overwrite`; changes nothing."""
    if os.path.exists(root) and not os.path.isdir(root):
        raise NotADirectoryError(f'--root {root} exists and is not a folder; choose a folder path')
    if os.path.isdir(root) and os.listdir(root) and not overwrite:
        raise FileExistsError(
            f'--root {os.path.abspath(root)} is not empty; choose an empty or new folder, or pass '
            f'--overwrite (generate(..., overwrite=True)) to replace the FreiHAND-layout files in it')


def _prepare_root(root):
    """Create the layout's folders in `root`, removing the old layout files of a non-empty one."""
    if os.path.isdir(root) and os.listdir(root):
        # Stale images beyond the new counts would break the layout's file counts.
        for folder in IMAGE_DIRS:
            path = os.path.join(root, folder)
            if os.path.isdir(path):
                for name in os.listdir(path):
                    if _IMAGE_NAME.match(name):
                        os.remove(os.path.join(path, name))
        for name in ANNOTATION_FILES:
            path = os.path.join(root, name)
            if os.path.isfile(path):
                os.remove(path)
    for folder in IMAGE_DIRS:
        os.makedirs(os.path.join(root, folder), exist_ok=True)


def _split_geometry(sampler, seed, split, count):
    """Geometry dict (see GeometrySampler.sample) of samples 0..count-1 plus their noise generators."""
    parts, noise_rngs = [], []
    for start in range(0, count, GEOMETRY_CHUNK):
        indices = range(start, min(start + GEOMETRY_CHUNK, count))
        generators = [sample_generators(seed, split, i) for i in indices]
        parts.append(sampler.sample([g[0] for g in generators]))
        noise_rngs.extend(g[2] for g in generators)
    geometry = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    return geometry, noise_rngs


def _projected_box(verts_cam, K):
    """[x, y, w, h] (pixels) of the projected vertices (778 x 3, meters)."""
    u = K[0, 0] * verts_cam[:, 0] / verts_cam[:, 2] + K[0, 2]
    v = K[1, 1] * verts_cam[:, 1] / verts_cam[:, 2] + K[1, 2]
    return [float(u.min()), float(v.min()), float(u.max() - u.min()), float(v.max() - v.min())]


def _bone_lengths(xyz):
    return np.linalg.norm(xyz[:, SCALE_BONE[0]] - xyz[:, SCALE_BONE[1]], axis=1)


def generate(root, num_train, num_eval, mano_root, seed=0, root_noise=0.0, workers=1,
             overwrite=False, progress=True, max_tilt=None):
    """Render a synthetic data set in FreiHAND's layout (SPEC 1) into `root`.

    Args:
        root: output folder (created; must be empty unless `overwrite`).
        num_train: N training samples (4 * N training images, N masks), >= 1.
        num_eval: M evaluation samples, >= 1.
        mano_root: folder with MANO_RIGHT.pkl (the real model or the stand-in).
        seed: non-negative int; equal arguments give byte-identical files.
        root_noise: std (meters) of the Gaussian noise added to each coordinate of the wrist
            position written as "root_cam" to bbox_root_freihand_output.json (0 = exact).
        workers: rendering processes (1 renders in this process; each worker process builds
            its own OpenGL renderer). The output does not depend on it.
        overwrite: allow a non-empty `root`; its FreiHAND-layout images (%08d.jpg in the three
            image folders) and annotation files are deleted first, nothing else.
        progress: show a tqdm progress bar.
        max_tilt: None, or the largest angle (degrees) between the palm normal and the
            direction to the camera (see GeometrySampler): palms towards the camera.
    Returns:
        dict: 'root', 'num_train', 'num_eval', 'num_images' (files written), 'seconds',
        'samples_per_second', 'workers', 'mano_standin'.
    """
    for name, value, minimum in (('num_train', num_train, 1), ('num_eval', num_eval, 1),
                                 ('workers', workers, 1), ('seed', seed, 0)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
            raise ValueError(f'{name} must be an integer >= {minimum}, got {value!r}')
    if not (np.isfinite(root_noise) and root_noise >= 0):
        raise ValueError(f'root_noise must be a standard deviation >= 0 (meters), got {root_noise!r}')
    root = os.fspath(root)
    _check_root(root, overwrite)
    start_time = time.perf_counter()
    sampler = GeometrySampler(mano_root, max_tilt)  # before touching `root`: a bad MANO folder leaves no trace
    _prepare_root(root)
    train, _ = _split_geometry(sampler, seed, TRAIN_SPLIT, num_train)
    evaluation, noise_rngs = _split_geometry(sampler, seed, EVAL_SPLIT, num_eval)

    tasks = [(root, TRAIN_SPLIT, i, num_train, seed, train['verts'][i], train['K'][i])
             for i in range(num_train)]
    tasks += [(root, EVAL_SPLIT, i, num_train, seed, evaluation['verts'][i], evaluation['K'][i])
              for i in range(num_eval)]
    faces = sampler.mano.faces
    bar = tqdm(total=len(tasks), unit='sample', desc='rendering', disable=not progress)
    if workers == 1:
        _init_worker(faces)
        for task in tasks:
            _render_sample(task)
            bar.update()
    else:
        # 'spawn': fresh processes, no OpenGL context or torch thread pool inherited by fork.
        context = multiprocessing.get_context('spawn')
        with context.Pool(workers, initializer=_init_worker, initargs=(faces, True)) as pool:
            for _ in pool.imap_unordered(_render_sample, tasks, chunksize=4):
                bar.update()
    bar.close()

    # Annotations last, atomically: their presence marks a complete set.
    def write(name, obj):
        atomic_write_json(os.path.join(root, name), obj)

    write('training_K.json', train['K'].tolist())
    write('training_mano.json', train['mano'][:, None].tolist())  # N x [1 x 61]
    write('training_xyz.json', train['xyz'].tolist())
    write('training_verts.json', train['verts'].tolist())
    write('training_scale.json', _bone_lengths(train['xyz']).tolist())
    write('evaluation_K.json', evaluation['K'].tolist())
    write('evaluation_xyz.json', evaluation['xyz'].tolist())
    write('evaluation_verts.json', evaluation['verts'].tolist())
    write('evaluation_scale.json', _bone_lengths(evaluation['xyz']).tolist())
    rootnet = []
    for i in range(num_eval):
        root_cam = evaluation['xyz'][i, ROOT_JOINT_IDX] + noise_rngs[i].normal(0.0, 1.0, size=3) * root_noise
        rootnet.append({'image_id': i, 'bbox': _projected_box(evaluation['verts'][i], evaluation['K'][i]),
                        'root_cam': root_cam.tolist()})
    write(ROOTNET_FILE, rootnet)

    seconds = time.perf_counter() - start_time
    summary = {
        'root': os.path.abspath(root), 'num_train': num_train, 'num_eval': num_eval,
        'num_images': 5 * num_train + num_eval, 'seconds': seconds,
        'samples_per_second': (num_train + num_eval) / seconds, 'workers': workers,
        'mano_standin': sampler.is_standin,
    }
    logger.info('wrote %d training samples (%d images, %d masks) and %d evaluation samples to %s in '
                '%.1f s: %.2f samples/s with %d worker(s)%s', num_train, 4 * num_train, num_train, num_eval,
                summary['root'], seconds, summary['samples_per_second'], workers,
                ' (MANO stand-in)' if sampler.is_standin else '')
    return summary


# ---------------------------------------------------------------------------------------------
# Preview picture
# ---------------------------------------------------------------------------------------------

def write_preview(root, out_path, samples=(0, 1, 2)):
    """A grid picture: per training sample its 4 versions and its mask (one row each).

    The gs image carries the projected skeleton (training_xyz.json with training_K.json); the
    mask shows the fixed centre hand box (SPEC 2) in grey.
    """
    from utils.vis import draw_skeleton, make_grid, save_image
    with open(os.path.join(root, 'training_K.json')) as f:
        K = np.asarray(json.load(f))
    with open(os.path.join(root, 'training_xyz.json')) as f:
        xyz = np.asarray(json.load(f))
    num_train = len(K)
    box_lo = tuple(int(round(c - HAND_BOX_SIZE / 2)) for c in HAND_BOX_CENTER)
    box_hi = tuple(int(round(c + HAND_BOX_SIZE / 2)) for c in HAND_BOX_CENTER)
    cells, labels = [], []
    for i in samples:
        if not 0 <= i < num_train:
            raise ValueError(f'preview sample {i} is not in the training set of {root} (N = {num_train})')
        for v, version in enumerate(FREIHAND_VERSIONS):
            img = cv2.imread(os.path.join(root, 'training', 'rgb', '%08d.jpg' % (i + num_train * v)))[..., ::-1]
            if v == 0:
                uv = xyz[i, :, :2] / xyz[i, :, 2:] * K[i, [0, 1], [0, 1]] + K[i, :2, 2]
                img = draw_skeleton(np.ascontiguousarray(img), uv, radius=2, thickness=1)
            cells.append(img)
            labels.append(f'{i} {version}' + (' +skel' if v == 0 else ''))
        mask = cv2.imread(os.path.join(root, 'training', 'mask', '%08d.jpg' % i), cv2.IMREAD_GRAYSCALE)
        mask = cv2.cvtColor(np.where(mask > 127, 255, 0).astype(np.uint8), cv2.COLOR_GRAY2RGB)
        cv2.rectangle(mask, box_lo, box_hi, (128, 128, 128), 1)
        cells.append(mask)
        labels.append(f'{i} mask+box')
    save_image(out_path, make_grid(cells, ncols=len(FREIHAND_VERSIONS) + 1, labels=labels))


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m dataset.synthetic',
        description='Render a synthetic hand data set in FreiHAND\'s exact layout from a MANO model.')
    parser.add_argument('--root', required=True, help='output folder (must be empty unless --overwrite)')
    parser.add_argument('--num-train', type=int, required=True, help='N training samples (4N images)')
    parser.add_argument('--num-eval', type=int, required=True, help='M evaluation samples')
    parser.add_argument('--mano-root', required=True,
                        help='folder with MANO_RIGHT.pkl (real or `python -m manopth.standin --out DIR`)')
    parser.add_argument('--seed', type=int, default=0, help='data set seed (default 0)')
    parser.add_argument('--root-noise', type=float, default=0.0,
                        help='std (m) of Gaussian noise on the RootNet-file wrist positions (default 0)')
    parser.add_argument('--workers', type=int, default=1, help='rendering processes (default 1)')
    parser.add_argument('--max-tilt', type=float, default=None,
                        help='degrees: palms face the camera within this angle (default: any '
                             'orientation)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace the FreiHAND-layout files of a non-empty --root')
    parser.add_argument('--preview', default=None,
                        help='also write a picture of training samples 0-2 (versions, skeleton, mask) here')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    args = parser.parse_args(argv)
    # INFO for this module only: PyOpenGL logs chatter at INFO.
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s', stream=sys.stdout)
    logger.setLevel(logging.INFO)
    try:
        generate(args.root, args.num_train, args.num_eval, args.mano_root, seed=args.seed,
                 root_noise=args.root_noise, workers=args.workers, overwrite=args.overwrite,
                 max_tilt=args.max_tilt,
                 progress=not args.no_progress)
    except (FileExistsError, FileNotFoundError, NotADirectoryError, ValueError) as err:
        parser.exit(2, f'error: {err}\n')
    if args.preview:
        write_preview(args.root, args.preview, samples=range(min(3, args.num_train)))
        logger.info('wrote the preview picture %s', args.preview)


if __name__ == '__main__':
    main()
