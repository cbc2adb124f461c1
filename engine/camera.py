"""Your own images in metric camera space: the intrinsics of an image (given, from a JSON file,
from the EXIF focal length or a stated default field of view), their checks, and the wrist
depth from the hand's own size (`--root_depth auto`).

Camera frame everywhere: x right, y down, z forward (the optical axis), meters; pixels (u
right, v down) with u = fx x / z + cx, v = fy y / z + cy (docs/method.md §3).

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
import json
import logging
import math
import os

import numpy as np

from utils.constants import SCALE_BONE, SKELETON
from utils.errors import DataError
from utils.transforms import backproject, project

logger = logging.getLogger(__name__)

DEFAULT_FOV_DEG = 60.0  # field of view across the longer image side when nothing else is known
FILM_LONG_SIDE_MM = 36.0  # 35 mm film frame 36 x 24 mm: its long side maps to the image's long side
EXIF_IFD = 0x8769  # Exif sub-IFD pointer tag
EXIF_FOCAL_35MM = 0xA405  # FocalLengthIn35mmFilm, mm
MIN_SKELETON_PX = 4.0  # predicted bones shorter than this in total (px): collapsed joints
MIN_JOINT_DEPTH_M = 0.01  # every joint at least this far in front of the camera
NEWTON_STEPS = 50  # Newton iterations of the root-depth solve (converges in < 10 in practice)
NEWTON_TOL = 1e-10  # relative step at which the solve stops


class ImageInputError(DataError):
    """One image (or frame) cannot be processed as asked; the message names it, the bad value
    and the fix. demo.py reports it and goes on with the other images."""


# ---- intrinsics -----------------------------------------------------------------------------

def K_from_values(fx, fy, cx, cy):
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)


def _K_from_json(path):
    """3 x 3 K of a JSON file: {"fx", "fy", "cx", "cy"}, {"K": 3 x 3} or a 3 x 3 list."""
    try:
        with open(path) as f:
            value = json.load(f)
    except json.JSONDecodeError as err:
        raise ImageInputError(f'--K {path}: not valid JSON ({err}); write {{"fx": ..., "fy": ..., '
                              f'"cx": ..., "cy": ...}} in pixels, or {{"K": [[fx, 0, cx], [0, fy, '
                              f'cy], [0, 0, 1]]}}') from None
    if isinstance(value, dict) and all(k in value for k in ('fx', 'fy', 'cx', 'cy')):
        try:
            return K_from_values(*(float(value[k]) for k in ('fx', 'fy', 'cx', 'cy')))
        except (TypeError, ValueError):
            raise ImageInputError(f'--K {path}: fx, fy, cx, cy must be numbers (pixels), got '
                                  f'{[value[k] for k in ("fx", "fy", "cx", "cy")]}') from None
    matrix = value.get('K') if isinstance(value, dict) else value
    try:
        K = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        K = None
    if K is None or K.shape != (3, 3) or K[0, 1] != 0 or np.any(K[2] != (0, 0, 1)) or K[1, 0] != 0:
        raise ImageInputError(f'--K {path}: expected {{"fx", "fy", "cx", "cy"}} or a 3 x 3 '
                              f'intrinsic matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (under "K" '
                              f'or alone), got {json.dumps(value)[:200]}')
    return K


def parse_K(text):
    """`--K fx,fy,cx,cy` (pixels) or `--K FILE.json`: (3 x 3 K, source 'K' or 'K_file')."""
    if os.path.isfile(text) or text.endswith('.json'):
        if not os.path.isfile(text):
            raise FileNotFoundError(f'--K {text}: no such file (give fx,fy,cx,cy in pixels or a '
                                    f'JSON file)')
        return _K_from_json(text), 'K_file'
    try:
        values = [float(v) for v in text.split(',')]
    except ValueError:
        values = []
    if len(values) != 4:
        raise ImageInputError(f'--K {text!r}: expected four numbers fx,fy,cx,cy (pixels) or a '
                              f'JSON file')
    return K_from_values(*values), 'K'


def exif_focal_35mm(path):
    """FocalLengthIn35mmFilm (mm) of an image's EXIF, or None (no EXIF, no such tag, not read
    by Pillow)."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as img:
            value = img.getexif().get_ifd(EXIF_IFD).get(EXIF_FOCAL_35MM)
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def focal_from_35mm(focal_35mm, width, height):
    """Pixels of a 35 mm-equivalent focal length: the image's longer side spans the film's
    36 mm (exact for a 3:2 image; for a 4:3 one whose camera states the equivalent by the
    diagonal, this is 4 % longer than the diagonal rule)."""
    return focal_35mm / FILM_LONG_SIDE_MM * max(width, height)


def default_focal(width, height, fov_deg=DEFAULT_FOV_DEG):
    """Focal length (px) giving `fov_deg` across the longer image side."""
    return max(width, height) / 2 / math.tan(math.radians(fov_deg) / 2)


def image_intrinsics(width, height, K=None, focal=None, image_path=None):
    """K of one image and where it came from.

    Order: `K` (given, with its source), `focal` (px, principal point at the image centre),
    the EXIF FocalLengthIn35mmFilm of `image_path`, the default field of view.

    Returns:
        (3 x 3 K, source: 'K', 'K_file', 'focal', 'exif' or 'default_fov', detail text).
    """
    center = ((width - 1) / 2, (height - 1) / 2)
    if K is not None:
        matrix, source = K
        return np.array(matrix, dtype=np.float64), source, 'given'
    if focal is not None:
        return K_from_values(focal, focal, *center), 'focal', f'--focal {focal:g} px'
    focal_35mm = exif_focal_35mm(image_path) if image_path else None
    if focal_35mm is not None:
        f = focal_from_35mm(focal_35mm, width, height)
        return K_from_values(f, f, *center), 'exif', (
            f'EXIF FocalLengthIn35mmFilm {focal_35mm:g} mm: {f:.1f} px (longer side = 36 mm)')
    f = default_focal(width, height)
    return K_from_values(f, f, *center), 'default_fov', (
        f'default field of view {DEFAULT_FOV_DEG:g} deg across the longer side: {f:.1f} px')


def check_intrinsics(K, width, height, name):
    """Refuse a K that cannot belong to this image (ImageInputError naming `name`)."""
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if not np.all(np.isfinite(K)):
        raise ImageInputError(f'{name}: K has non-finite values {K.tolist()}')
    if fx <= 0 or fy <= 0:
        raise ImageInputError(f'{name}: focal length fx={fx:g}, fy={fy:g} px: both must be '
                              f'positive (pixels); fix --K / --focal')
    if not (0 <= cx <= width and 0 <= cy <= height):
        raise ImageInputError(f'{name}: principal point ({cx:g}, {cy:g}) px is outside the '
                              f'{width} x {height} image: this K belongs to another image size '
                              f'(for this one, cx, cy near {(width - 1) / 2:g}, '
                              f'{(height - 1) / 2:g}); fix --K or drop it')


# ---- root depth -----------------------------------------------------------------------------

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


def place_at_root_depth(xyz_cam, root_depth, K, fx_as_fy=False, root_row=-21):
    """The same prediction with the wrist moved to depth `root_depth` along its ray: every
    point keeps its pixel and its depth relative to the wrist.

    Args:
        xyz_cam: ... x P x 3, meters; the wrist at row `root_row` (the first joint row).
        root_depth: ... new wrist depths, meters.
    """
    uvd = project(xyz_cam, K, fx_as_fy)
    depth_rel = uvd[..., 2] - uvd[..., root_row, None, 2]
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

    def root_depth(self, xyz_cam, K, fx_as_fy=False, names=None):
        """Wrist depths (...) of predictions xyz_cam (... x P x 3, joints in the last 21 rows)."""
        joints = np.asarray(xyz_cam, dtype=np.float64)[..., -21:, :]
        uvd = project(joints, K, fx_as_fy)
        return solve_root_depth(uvd[..., :2], uvd[..., 2] - uvd[..., :1, 2], K, self.skeleton_m,
                                fx_as_fy, names=names)

    def place(self, xyz_cam, K, fx_as_fy=False, names=None):
        """(the predictions moved to their auto root depth, the depths); raises
        ImageInputError for a degenerate one."""
        depth = self.root_depth(xyz_cam, K, fx_as_fy, names)
        return place_at_root_depth(xyz_cam, depth, K, fx_as_fy), depth

    def place_or_keep(self, xyz_cam, K, fx_as_fy=False):
        """Batch form for evaluation: B x P x 3 predictions moved to their auto root depth;
        a degenerate one keeps its given depth. Returns (points, depths B, bad mask B)."""
        joints = np.asarray(xyz_cam, dtype=np.float64)[..., -21:, :]
        uvd = project(joints, K, fx_as_fy)
        depth, bad, _, _ = _newton_root_depth(uvd[..., :2], uvd[..., 2] - uvd[..., :1, 2], K,
                                              self.skeleton_m, fx_as_fy, SKELETON)
        depth = np.where(bad, uvd[..., 0, 2], depth)
        return place_at_root_depth(xyz_cam, depth, K, fx_as_fy), depth, bad


# ---- the JSON record of one hand --------------------------------------------------------------

DECIMALS_M = 6  # record coordinates rounded to 1e-6 m (as pred.json)
DECIMALS_PX = 2  # record pixels rounded to 0.01 px


def hand_record(K, K_source, box_xywh, side, joints_cam, root_depth_source, fx_as_fy=False,
                hand_scale_m=None, mano=None):
    """The JSON object of one hand (README "The JSON record").

    Args:
        K: 3 x 3 intrinsics (px); K_source: where K came from (`image_intrinsics`).
        box_xywh: [x, y, w, h] of the crop, px.
        side: 'right' or 'left'.
        joints_cam: 21 x 3 joints, m, camera frame (x right, y down, z forward).
        root_depth_source: 'auto' (from the hand's size) or 'given' (--root_depth METERS).
        hand_scale_m: the bone 9-10 prior of 'auto'.
        mano: engine.mano_fit.fit_record of the hand, when fitted.
    """
    joints_cam = np.asarray(joints_cam, dtype=np.float64)
    joints_2d = project(joints_cam, K, fx_as_fy)[:, :2]
    record = {
        'K': np.round(np.asarray(K, dtype=np.float64), 6).tolist(), 'K_source': K_source,
        'box': [round(float(v), DECIMALS_PX) for v in box_xywh], 'hand': side,
        'root_depth_m': round(float(joints_cam[0, 2]), DECIMALS_M),
        'root_depth_source': root_depth_source,
        'joints_cam': np.round(joints_cam, DECIMALS_M).tolist(),
        'joints_2d': np.round(joints_2d, DECIMALS_PX).tolist(),
    }
    if hand_scale_m is not None:
        record['hand_scale_m'] = hand_scale_m
    if mano is not None:
        record['mano'] = mano
    return record
