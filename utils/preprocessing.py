"""Image preprocessing as pure functions of explicit parameters (docs/method.md §2 steps 3-5).

The random part is only `augment_params`, which takes the generator as an argument, so a
crop is reproducible from its parameters alone.
"""
import cv2
import numpy as np

from utils.constants import IMAGENET_MEAN, IMAGENET_STD
from utils.transforms import get_affine

# Training augmentation ranges (docs/method.md §2 step 4), uniform draws.
AUG_SCALE_RANGE = (0.9, 1.1)  # multiplies the source box side
AUG_ROT_RANGE = (-180.0, 180.0)  # degrees
AUG_TRANSL_RANGE = (-10.0, 10.0)  # pixels, x and y drawn independently
AUG_COLOR_GAIN_RANGE = (0.8, 1.2)  # per channel, order B, G, R

# The identity augmentation, used at test time.
NO_AUGMENTATION = dict(scale=1.0, rot=0.0, transl=(0.0, 0.0), color_gain=(1.0, 1.0, 1.0))


def augment_params(rng):
    """Draw one set of training augmentation parameters (docs/method.md §2 step 4).

    Args:
        rng: numpy Generator; the draws happen in the order scale, rot, transl, color_gain.

    Returns:
        dict(scale=float, rot=float degrees, transl=(2,) float64 pixels,
             color_gain=(3,) float64 in B, G, R order).
    """
    return dict(
        scale=float(rng.uniform(*AUG_SCALE_RANGE)),
        rot=float(rng.uniform(*AUG_ROT_RANGE)),
        transl=rng.uniform(*AUG_TRANSL_RANGE, size=2),
        color_gain=rng.uniform(*AUG_COLOR_GAIN_RANGE, size=3),
    )


def crop_and_augment(img_bgr, center, box_size, out_size, scale=1.0, rot=0.0, transl=(0.0, 0.0),
                     color_gain=(1.0, 1.0, 1.0)):
    """Affine crop with bilinear sampling and a zero border, then a per-channel colour gain.

    Args:
        img_bgr: H x W x 3 uint8 image, BGR as read by OpenCV.
        center: (cx, cy) hand box centre, image pixels.
        box_size: hand box side, image pixels (number or (width, height)).
        out_size: crop size, an int or (height, width).
        scale, rot, transl: see `utils.transforms.get_affine`.
        color_gain: (3,) gains for the B, G, R channels of the crop; the result is clipped
            to [0, 255] and truncated (not rounded) to uint8.

    Returns:
        (crop_bgr out_h x out_w x 3 uint8, img2crop 2 x 3, crop2img 2 x 3).
    """
    img2crop, crop2img = get_affine(center, box_size, out_size, scale=scale, rot=rot, transl=transl)
    out_h, out_w = (out_size, out_size) if np.ndim(out_size) == 0 else out_size
    crop = cv2.warpAffine(img_bgr, img2crop, (int(out_w), int(out_h)), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    gain = np.asarray(color_gain, dtype=np.float64)
    if not np.all(gain == 1.0):
        # A per-channel lookup table of the 256 levels: the same values as applying the
        # gain to every pixel, about 10x faster.
        crop = cv2.LUT(crop, gain_table(gain).reshape(256, 1, 3))
    return crop, img2crop, crop2img


def gain_table(gain):
    """The colour gain of every 8-bit level: 256 x 3 uint8, column c = level * gain[c].

    float64 arithmetic, clipped to [0, 255], then truncated towards zero (docs/method.md §2 step 4).
    """
    levels = np.arange(256, dtype=np.float64)[:, None]
    return np.clip(levels * np.asarray(gain, dtype=np.float64)[None, :], 0.0, 255.0).astype(
        np.uint8)


def normalize(crop_bgr):
    """Network input from a BGR uint8 crop: RGB, / 255, ImageNet mean/std, channels first.

    Args:
        crop_bgr: H x W x 3 uint8 BGR.

    Returns:
        3 x H x W float32 (RGB channel order).
    """
    if crop_bgr.dtype != np.uint8 or crop_bgr.ndim != 3 or crop_bgr.shape[2] != 3:
        raise ValueError(f'normalize expects an H x W x 3 uint8 BGR crop; got dtype '
                         f'{crop_bgr.dtype}, shape {crop_bgr.shape}')
    table = _NORMALIZE_TABLE  # (3, 256): RGB channel, 8-bit level
    out = np.empty((3, *crop_bgr.shape[:2]), dtype=np.float32)
    for channel in range(3):
        np.take(table[channel], crop_bgr[..., 2 - channel], out=out[channel])
    return out


def _normalize_table():
    """Network value of each 8-bit level per RGB channel, float32 arithmetic as if per pixel:
    (level / 255 - mean) / std."""
    levels = np.arange(256, dtype=np.float32)[None, :] / np.float32(255.0)
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)[:, None]
    std = np.asarray(IMAGENET_STD, dtype=np.float32)[:, None]
    return (levels - mean) / std


_NORMALIZE_TABLE = _normalize_table()
