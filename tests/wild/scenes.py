"""A picture with two stand-in hands, one near the left edge (a right hand) and one mirrored (a
left hand), and its ground truth: each hand rendered as the synthetic FreiHAND generator does
(synthetic.geometry, synthetic.appearance), pasted into a wider picture."""
import os

import numpy as np

from synthetic.appearance import composite, render_hand, textured_background
from synthetic.geometry import GeometrySampler, sample_generators
from utils.constants import TRAINING_IMAGE_SIZE
from utils.transforms import box_from_joints, project

PICTURE_SIZE = (300, 520)  # height, width, px
TILE_SCALE = 1.5  # each 224 px sample is enlarged to 336 px before pasting
# (left, top) of each enlarged tile in the picture, px: the first reaches past the left edge
TILE_OFFSETS = ((-90, -10), (200, -30))
SEED = 7  # the picture whose two hands MediaPipe finds, with the right sides


def _tile(sampler, index, seed, mirror):
    """(hand_rgb, alpha, joints_uv 21 x 2, verts, xyz) of one sample, enlarged, maybe mirrored."""
    import cv2
    geometry_rng, appearance_rng, _ = sample_generators(seed, 1, index)
    truth = {k: v[0] for k, v in sampler.sample([geometry_rng]).items()}
    hand_rgb, alpha = render_hand(truth['verts'], sampler.mano.faces, truth['K'], appearance_rng)
    uv = project(truth['xyz'], truth['K'])[:, :2]
    if mirror:
        hand_rgb, alpha = hand_rgb[:, ::-1], alpha[:, ::-1]
        uv[:, 0] = TRAINING_IMAGE_SIZE - 1 - uv[:, 0]
    side = int(round(TRAINING_IMAGE_SIZE * TILE_SCALE))
    hand_rgb = cv2.resize(np.ascontiguousarray(hand_rgb), (side, side), interpolation=cv2.INTER_LINEAR)
    alpha = cv2.resize(np.ascontiguousarray(alpha), (side, side), interpolation=cv2.INTER_LINEAR)
    # pixel centres: u_big + 0.5 = s (u + 0.5)
    uv = TILE_SCALE * (uv + 0.5) - 0.5
    return hand_rgb, alpha, uv


def two_hand_picture(mano_root, seed=SEED):
    """(image_bgr H x W x 3 uint8, truth): truth is a list of two dicts, left to right in the
    picture: 'side' ('right', then 'left': the mirrored one), 'joints_uv' 21 x 2 px, 'box'
    (FreiHAND framing of the true joints, [x, y, w, h] px)."""
    rng = np.random.default_rng(seed)
    height, width = PICTURE_SIZE
    background = textured_background(rng, 'smooth', max(PICTURE_SIZE))[:height, :width]
    hand = np.zeros((height, width, 3), np.float32)
    alpha = np.zeros((height, width), np.float32)
    sampler = GeometrySampler(mano_root, max_tilt=40.0)
    truth = []
    for index, ((left, top), mirror) in enumerate(zip(TILE_OFFSETS, (False, True))):
        tile_rgb, tile_alpha, uv = _tile(sampler, index, seed, mirror)
        size = tile_alpha.shape[0]
        rows = slice(max(top, 0), min(top + size, height))
        cols = slice(max(left, 0), min(left + size, width))
        tile_rows = slice(rows.start - top, rows.stop - top)
        tile_cols = slice(cols.start - left, cols.stop - left)
        a = tile_alpha[tile_rows, tile_cols]
        hand[rows, cols] = a[..., None] * tile_rgb[tile_rows, tile_cols] + (1 - a[..., None]) * hand[rows, cols]
        alpha[rows, cols] = a + (1 - a) * alpha[rows, cols]
        uv = uv + [left, top]
        center, side = box_from_joints(uv)
        truth.append({'side': 'left' if mirror else 'right', 'joints_uv': uv,
                      'box': [center[0] - side / 2, center[1] - side / 2, side, side]})
    rgb = composite(hand / np.maximum(alpha, 1e-6)[..., None], alpha, background, 1.0, rng)
    return np.ascontiguousarray(rgb[:, :, ::-1]), truth


def write_picture(folder, mano_root, name='two_hands.png'):
    """two_hand_picture written as a PNG; returns (path, truth)."""
    import cv2
    image_bgr, truth = two_hand_picture(mano_root)
    path = os.path.join(folder, name)
    cv2.imwrite(path, image_bgr)
    return path, truth
