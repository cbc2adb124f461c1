"""Drawing helpers (cv2 + numpy): hand skeletons and image grids (files: utils.files.images).

Images are RGB uint8 arrays (H x W x 3); pixel coordinates (u, v) follow OpenCV: u is the
column, v the row, pixel (row i, column j) centred on (u, v) = (j, i).
"""
import math

import cv2
import numpy as np

from utils.constants import JOINT_NAMES, SKELETON

# One colour per finger (thumb, index, middle, ring, pinky), RGB; ColorBrewer Set1, chosen to
# stay distinct from each other and from skin and green-screen backgrounds.
FINGER_COLORS = ((228, 26, 28), (255, 127, 0), (77, 175, 74), (55, 126, 184), (152, 78, 163))
WRIST_COLOR = (160, 160, 160)  # RGB, the wrist joint belongs to no finger
_NUM_JOINTS = len(JOINT_NAMES)  # 21, FreiHAND order
_JOINTS_PER_FINGER = 4
_SUBPIXEL_SHIFT = 4  # cv2 fixed-point fractional bits: joints drawn at 1/16 px precision

_LABEL_FONT = cv2.FONT_HERSHEY_SIMPLEX
_LABEL_SCALE = 0.5
_LABEL_ORIGIN = (4, 16)  # px from the cell's top-left corner to the text baseline start


def _check_rgb(img, name):
    """Validate an H x W x 3 uint8 image."""
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f'{name} must be an H x W x 3 uint8 RGB image, got shape {img.shape} '
                         f'dtype {img.dtype}')
    return img


def _joint_color(joint, colors, wrist_color):
    """Colour of FreiHAND joint `joint`: its finger's colour, `wrist_color` for the wrist."""
    return wrist_color if joint == 0 else colors[(joint - 1) // _JOINTS_PER_FINGER]


def draw_skeleton(img_rgb, joints_uv, skeleton=SKELETON, colors=FINGER_COLORS, radius=3,
                  thickness=2, wrist_color=WRIST_COLOR):
    """Draw a 21-joint hand skeleton on a copy of an image (the input is not modified).

    Bones are drawn first, then joints as filled discs on top. A bone takes the colour of the
    finger of its child joint; a joint the colour of its finger (the wrist `wrist_color`).

    Args:
        img_rgb: H x W x 3 uint8 RGB image.
        joints_uv: 21 x 2 pixel coordinates (u column, v row), FreiHAND joint order.
        skeleton: (parent, child) joint index pairs, default utils.constants.SKELETON.
        colors: 5 RGB triples (0..255) for thumb, index, middle, ring, pinky.
        radius: joint disc radius, pixels (0 draws no joints).
        thickness: bone line width, pixels (0 draws no bones).
        wrist_color: RGB triple for the wrist joint.

    Returns:
        H x W x 3 uint8 RGB image.
    """
    img = _check_rgb(img_rgb, 'img_rgb').copy()
    joints_uv = np.asarray(joints_uv, dtype=np.float64)
    if joints_uv.shape != (_NUM_JOINTS, 2):
        raise ValueError(f'joints_uv must be {_NUM_JOINTS} x 2 pixels (FreiHAND order), got '
                         f'shape {joints_uv.shape}')
    bad = np.flatnonzero(~np.all(np.isfinite(joints_uv), axis=1))
    if bad.size:
        raise ValueError(f'joints_uv has non-finite coordinates for joints {bad.tolist()} '
                         f'({[JOINT_NAMES[j] for j in bad]})')
    if len(colors) != 5:
        raise ValueError(f'colors must hold 5 RGB triples (thumb..pinky), got {len(colors)}')
    # cv2 wants integer coordinates; the shift argument keeps 1/16 px precision.
    points = np.round(joints_uv * 2 ** _SUBPIXEL_SHIFT).astype(np.int64)
    if thickness > 0:
        for parent, child in skeleton:
            color = _joint_color(child, colors, wrist_color)
            cv2.line(img, tuple(int(c) for c in points[parent]), tuple(int(c) for c in points[child]),
                     tuple(int(c) for c in color), thickness, cv2.LINE_AA, _SUBPIXEL_SHIFT)
    if radius > 0:
        for joint in range(_NUM_JOINTS):
            color = _joint_color(joint, colors, wrist_color)
            cv2.circle(img, tuple(int(c) for c in points[joint]), int(radius * 2 ** _SUBPIXEL_SHIFT),
                       tuple(int(c) for c in color), -1, cv2.LINE_AA, _SUBPIXEL_SHIFT)
    return img


def _as_rgb_uint8(img, index):
    """Grid cell image as H x W x 3 uint8: grey H x W repeated, bool masks to 0 / 255."""
    img = np.asarray(img)
    if img.dtype == np.bool_:
        img = img.astype(np.uint8) * 255
    if img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise ValueError(f'images[{index}] must be uint8 (H x W or H x W x 3) or a bool H x W mask, '
                         f'got shape {img.shape} dtype {img.dtype}')
    return np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img


def put_label(cell, text):
    """Write `text` in the top-left corner of `cell` (in place): black with a white outline.

    The outline is the black text's own coverage grown by one pixel, not a second, thicker
    putText: OpenCV advances each glyph by its stroke width, so a thicker copy drifts right
    letter by letter and reads as a doubled last letter.
    """
    coverage = np.zeros(cell.shape[:2], np.uint8)
    cv2.putText(coverage, text, _LABEL_ORIGIN, _LABEL_FONT, _LABEL_SCALE, 255, 1, cv2.LINE_AA)
    outline = cv2.dilate(coverage, np.ones((3, 3), np.uint8))
    for alpha, value in ((outline, 255.0), (coverage, 0.0)):
        a = alpha[:, :, None] / 255.0
        cell[:] = np.rint(cell * (1.0 - a) + value * a).astype(np.uint8)


def make_grid(images, ncols, labels=None, pad_value=255):
    """Tile images row by row into one image.

    Every cell is max(H) x max(W) of the inputs; each image sits in its cell's top-left corner
    and the rest of the cell (and any empty cell in the last row) is `pad_value`. The grid has
    min(ncols, len(images)) columns and ceil(len(images) / ncols) rows.

    Args:
        images: non-empty sequence of uint8 images, H x W x 3 RGB or H x W grey (bool masks
            become 0 / 255); sizes may differ.
        ncols: maximum number of columns (>= 1).
        labels: optional sequence of strings, one per image, written in the cell's top-left
            corner (cv2 Hershey font, ASCII only).
        pad_value: 0..255 grey level of the padding.

    Returns:
        (rows * max H) x (cols * max W) x 3 uint8 image.
    """
    if len(images) == 0:
        raise ValueError('make_grid needs at least one image, got none')
    if int(ncols) != ncols or ncols < 1:
        raise ValueError(f'ncols must be a positive integer, got {ncols}')
    if labels is not None and len(labels) != len(images):
        raise ValueError(f'labels must hold one string per image: {len(labels)} labels for '
                         f'{len(images)} images')
    images = [_as_rgb_uint8(img, i) for i, img in enumerate(images)]
    cell_h = max(img.shape[0] for img in images)
    cell_w = max(img.shape[1] for img in images)
    ncols = min(int(ncols), len(images))
    nrows = math.ceil(len(images) / ncols)
    grid = np.full((nrows * cell_h, ncols * cell_w, 3), pad_value, dtype=np.uint8)
    for i, img in enumerate(images):
        top, left = (i // ncols) * cell_h, (i % ncols) * cell_w
        cell = grid[top:top + cell_h, left:left + cell_w]  # a view: drawing writes into grid
        cell[:img.shape[0], :img.shape[1]] = img
        if labels is not None:
            put_label(cell, str(labels[i]))
    return grid
