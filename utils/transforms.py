"""Pure camera and crop geometry for SAR (docs/method.md §2 step 3, docs/method.md §3, docs/method.md §7).

Frames and units used in names:
- `img`: pixel coordinates (u right, v down) of the original 224x224 FreiHAND image.
- `crop`: pixel coordinates of the network input crop (256x256 by default).
- `cam`: camera frame, meters (x right, y down, z forward).
- `uvd`: pixels (u, v) plus depth d = z in meters.
- `mesh_pose_uvd`: 799 rows (778 MANO vertices then 21 joints) of crop-normalised u, v in
  [-1, 1] across the crop and wrist-relative depth divided by the depth box.

All functions are stateless numpy functions that accept leading batch dimensions (`...`) and
compute in float64, so that decoding is the exact inverse of encoding up to rounding.
"""
from typing import NamedTuple

import numpy as np

from utils.constants import DEPTH_BOX_M, ROOT_JOINT_IDX
from utils.network_spec import NetworkFields

# Box side = BOX_ENLARGE x the larger side of the joints' 2D extent. FreiHAND frames every
# hand with the fixed 130 px box on the 224 px image (docs/method.md §2 step 2); on 2000
# training samples of the synthetic set (synthetic/freihand.py, whose placement reproduces that
# framing: keypoint 9 at the image centre, projected mesh extent mostly 90-125 px; stand-in
# hand, uniform rotations) the 21 joints span a median of 82.6 px (5-95 %: 63-100 px), and
# 130 px / joint extent has median 1.57 (quartiles 1.44 and 1.74; 1.57 with --max-tilt 50
# as well). So a box of 1.57 x the joint extent gives the network the scale it was trained at.
BOX_ENLARGE = 1.57
MAX_SIDE_IMAGE_RATIO = 2.0  # box side at most this x the longer image side (the rest is border)


class HandBox(NamedTuple):
    """Square hand box in image pixels."""

    center: np.ndarray  # (2,) u, v of the box centre, px
    side: float  # px


def box_from_joints(joints_uv, image_size=None, enlarge=BOX_ENLARGE):
    """Square box around the 2D extent of the joints, FreiHAND's framing.

    centre = middle of the joints' bounding rectangle; side = enlarge x max(width, height) of
    that rectangle (BOX_ENLARGE: see its comment), capped at MAX_SIDE_IMAGE_RATIO x the longer
    image side when image_size is given.

    Args:
        joints_uv: J x 2 joint pixels (u, v) in the image (21 predicted joints).
        image_size: optional (height, width) of the image, px.
        enlarge: box side per pixel of joint extent.
    Returns:
        HandBox.
    """
    joints_uv = np.asarray(joints_uv, dtype=np.float64)
    if joints_uv.ndim != 2 or joints_uv.shape[1] != 2 or len(joints_uv) == 0:
        raise ValueError(f'joints_uv must be J x 2 pixel coordinates; got shape {joints_uv.shape}')
    low, high = joints_uv.min(axis=0), joints_uv.max(axis=0)
    side = enlarge * float(np.max(high - low))
    if image_size is not None:
        side = min(side, MAX_SIDE_IMAGE_RATIO * max(image_size))
    return HandBox((low + high) / 2, side)


def _size_hw(size):
    """Return (height, width) from an int (square) or a (height, width) pair."""
    if np.ndim(size) == 0:
        return int(size), int(size)
    height, width = size
    return int(height), int(width)


def _solve_affine(src_points, dst_points):
    """2x3 affine A with A @ [src; 1] = dst for three point pairs (3 x 2 each), in float64.

    cv2.getAffineTransform would round the points to float32 first (about 1e-5 px at these
    magnitudes), which would make the forward and inverse matrices disagree; solving the
    3x3 system in float64 keeps them exact inverses up to 1e-12.
    """
    src_h = np.concatenate([src_points, np.ones((3, 1))], axis=1)  # (3, 3)
    # Rows of src_h times A^T give dst: src_h @ A^T = dst.
    return np.linalg.solve(src_h, dst_points).T  # (2, 3)


def get_affine(center, box_size, out_size, scale=1.0, rot=0.0, transl=(0.0, 0.0)):
    """Affine crop matrices of docs/method.md §2 step 3 between the image and the crop.

    The source box (centre `center` + `transl`, side `box_size` * `scale`, rotated by `rot`)
    is mapped onto the whole output crop, from three point pairs:
    source centre -> output centre; centre + rotated half-height "down" vector -> output
    centre + (0, out_h / 2); centre + rotated half-width "right" vector -> output centre +
    (out_w / 2, 0).

    Args:
        center: (cx, cy) box centre in image pixels.
        box_size: box side in image pixels, a number or (width, height).
        out_size: crop size in pixels, an int or (height, width).
        scale: multiplies the source box side (> 1 zooms out).
        rot: degrees; positive is the rotation [[c, -s], [s, c]] applied to the source
            vectors (clockwise on screen, since v points down).
        transl: (dx, dy) pixels added to the source centre.

    Returns:
        (img2crop, crop2img): two 2 x 3 float64 matrices, inverse of each other.
    """
    if np.ndim(box_size) == 0:
        box_w = box_h = float(box_size)
    else:
        box_w, box_h = (float(s) for s in box_size)
    out_h, out_w = _size_hw(out_size)
    src_center = np.asarray(center, dtype=np.float64) + np.asarray(transl, dtype=np.float64)
    rad = np.deg2rad(float(rot))
    cos, sin = np.cos(rad), np.sin(rad)
    rotation = np.array([[cos, -sin], [sin, cos]])
    src_down = rotation @ np.array([0.0, box_h * scale * 0.5])
    src_right = rotation @ np.array([box_w * scale * 0.5, 0.0])
    src = np.stack([src_center, src_center + src_down, src_center + src_right])  # (3, 2)

    dst_center = np.array([out_w * 0.5, out_h * 0.5])
    dst = np.stack([dst_center,
                    dst_center + np.array([0.0, out_h * 0.5]),
                    dst_center + np.array([out_w * 0.5, 0.0])])  # (3, 2)
    return _solve_affine(src, dst), _solve_affine(dst, src)


def apply_affine(points, affine):
    """Apply 2 x 3 affine matrices to 2D points.

    Args:
        points: ... x N x 2 pixel coordinates.
        affine: ... x 2 x 3 (or one 2 x 3 for all), broadcast against the batch dims.

    Returns:
        ... x N x 2 float64.
    """
    points = np.asarray(points, dtype=np.float64)
    affine = np.asarray(affine, dtype=np.float64)
    linear = affine[..., :, :2]  # (..., 2, 2)
    offset = affine[..., None, :, 2]  # (..., 1, 2)
    return np.einsum('...ij,...nj->...ni', linear, points) + offset


def _intrinsics(K, fx_as_fy=False):
    """fx, fy, cx, cy of ... x 3 x 3 intrinsics, each shaped ... x 1 for broadcasting over N.

    fx_as_fy: return fx in place of fy, as the published code does (it reads K[0][0] for both
    axes; docs/method.md §11).
    """
    K = np.asarray(K, dtype=np.float64)
    fx = K[..., 0, 0, None]
    fy = fx if fx_as_fy else K[..., 1, 1, None]
    return fx, fy, K[..., 0, 2, None], K[..., 1, 2, None]


def project(xyz_cam, K, fx_as_fy=False):
    """Pinhole projection u = fx*x/z + cx, v = fy*y/z + cy, d = z (docs/method.md §3).

    Args:
        xyz_cam: ... x N x 3 camera-frame points, meters, z > 0.
        K: ... x 3 x 3 intrinsics (fx, fy on the diagonal, principal point in column 2).
        fx_as_fy: use fx for both axes, as the published code does (docs/method.md §11).

    Returns:
        uvd: ... x N x 3 float64 (pixels, pixels, meters).
    """
    xyz_cam = np.asarray(xyz_cam, dtype=np.float64)
    fx, fy, cx, cy = _intrinsics(K, fx_as_fy)
    x, y, z = xyz_cam[..., 0], xyz_cam[..., 1], xyz_cam[..., 2]
    return np.stack([fx * x / z + cx, fy * y / z + cy, z], axis=-1)


def backproject(uvd, K, fx_as_fy=False):
    """Inverse of `project`: x = (u - cx)*z/fx, y = (v - cy)*z/fy, z = d (docs/method.md §7).

    Args:
        uvd: ... x N x 3 (pixels, pixels, meters).
        K: ... x 3 x 3 intrinsics.
        fx_as_fy: use fx for both axes, as the published code does (docs/method.md §11).

    Returns:
        xyz_cam: ... x N x 3 float64, meters.
    """
    uvd = np.asarray(uvd, dtype=np.float64)
    fx, fy, cx, cy = _intrinsics(K, fx_as_fy)
    u, v, z = uvd[..., 0], uvd[..., 1], uvd[..., 2]
    return np.stack([(u - cx) * z / fx, (v - cy) * z / fy, z], axis=-1)


def encode_uvd(verts_cam, joints_cam, K, img2crop, crop_size=NetworkFields.input_img_shape,
               depth_box=DEPTH_BOX_M, fx_as_fy=False):
    """Training target `mesh_pose_uvd` from camera-frame vertices and joints (docs/method.md §3).

    Stack vertices then joints, project with K, map (u, v) through img2crop, normalise
    (u, v) to value / (size // 2) - 1 and depth to (z - z_wrist) / depth_box, with the
    wrist at row V + ROOT_JOINT_IDX (778 for MANO), V the number of vertices given.

    Args:
        verts_cam: ... x V x 3 mesh vertices (V = 778 for MANO), camera frame, meters.
        joints_cam: ... x 21 x 3 joints (FreiHAND order, wrist first), meters.
        K: ... x 3 x 3 intrinsics of the original image.
        img2crop: ... x 2 x 3 image -> crop affine (from `get_affine`).
        crop_size: crop size, an int or (height, width) in pixels.
        depth_box: meters of depth that map to one normalised unit.
        fx_as_fy: project with fx for both axes, as the published code does (§11).

    Returns:
        mesh_pose_uvd: ... x (V + 21) x 3 float64, crop-normalised.
    """
    crop_h, crop_w = _size_hw(crop_size)
    root_row = np.shape(verts_cam)[-2] + ROOT_JOINT_IDX  # the wrist, after the V vertices
    xyz_cam = np.concatenate([np.asarray(verts_cam, dtype=np.float64),
                              np.asarray(joints_cam, dtype=np.float64)], axis=-2)  # (..., 799, 3)
    uvd_img = project(xyz_cam, K, fx_as_fy)
    uv_crop = apply_affine(uvd_img[..., :2], img2crop)
    half = np.array([crop_w // 2, crop_h // 2], dtype=np.float64)
    uv_norm = uv_crop / half - 1.0
    depth_rel = (uvd_img[..., 2] - uvd_img[..., root_row, None, 2]) / depth_box
    return np.concatenate([uv_norm, depth_rel[..., None]], axis=-1)


def floor_to_crop_pixels(uv_norm, crop_size):
    """The published decoding of crop-normalised (u, v): `(value + 1) * size // 2`, i.e.
    floor((value + 1) * size / 2), whole crop pixels (docs/method.md §7, §11).

    As written in the published code, `size` is input_img_shape[0] (the crop height) for both
    axes, and the arithmetic is that of the network's float32 output, in the same order:
    value + 1 and the product are rounded to float32 before the floor (value + 1 can round
    up to the next pixel where float64 would not, e.g. value = -1e-9 gives 128, not 127).

    Args:
        uv_norm: ... x 2 crop-normalised (u, v), [-1, 1] across the crop.
        crop_size: crop size, an int or (height, width) in pixels.
    Returns:
        ... x 2 float64 crop pixels, whole numbers.
    """
    crop_h, _ = _size_hw(crop_size)
    uv32 = np.asarray(uv_norm, dtype=np.float32)
    scaled = (uv32 + np.float32(1)) * np.float32(crop_h)  # float32, as the network output
    return np.floor_divide(scaled, np.float32(2)).astype(np.float64)


def decode_uvd(mesh_pose_uvd, root_depth, crop2img, K, crop_size=NetworkFields.input_img_shape,
               depth_box=DEPTH_BOX_M, fx_as_fy=False, floor_uv=False):
    """Camera-frame points from crop-normalised coordinates (docs/method.md §7), inverse of `encode_uvd`.

    d = d_norm * depth_box + root_depth; (u, v) = (value + 1) * (size // 2) mapped through
    crop2img; back-projected with K.

    Args:
        mesh_pose_uvd: ... x P x 3 crop-normalised coordinates (P = 799 for the network
            output: rows 0..777 vertices, 778..798 joints).
        root_depth: ... wrist depth in meters (a number, or one per batch element).
        crop2img: ... x 2 x 3 crop -> image affine (from `get_affine`).
        K: ... x 3 x 3 intrinsics of the original image.
        crop_size: crop size, an int or (height, width) in pixels.
        depth_box: meters of depth per normalised unit.
        fx_as_fy: back-project with fx for both axes, as the published code does (§11).
        floor_uv: floor (u, v) to whole crop pixels before the affine, as the published code
            does (`floor_to_crop_pixels`, §11). Not the inverse of `encode_uvd` then: on
            average half a crop pixel up and left of it (towards smaller u and v).

    Returns:
        xyz_cam: ... x P x 3 float64, meters.
    """
    crop_h, crop_w = _size_hw(crop_size)
    coords = np.asarray(mesh_pose_uvd, dtype=np.float64)
    root_depth = np.asarray(root_depth, dtype=np.float64)
    if floor_uv:
        uv_crop = floor_to_crop_pixels(coords[..., :2], crop_size)  # float64 -> float32 is exact for network output
    else:
        half = np.array([crop_w // 2, crop_h // 2], dtype=np.float64)
        uv_crop = (coords[..., :2] + 1.0) * half
    uv_img = apply_affine(uv_crop, crop2img)
    depth = coords[..., 2] * depth_box + root_depth[..., None]
    return backproject(np.concatenate([uv_img, depth[..., None]], axis=-1), K, fx_as_fy)
