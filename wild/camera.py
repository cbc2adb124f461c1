"""Your own images in metric camera space: the intrinsics of an image (given, from a JSON file,
from the EXIF focal length or a stated default field of view), their checks, and the JSON record of a hand
(the wrist depth from the hand's size: inference.root_depth).

Camera frame everywhere: x right, y down, z forward (the optical axis), meters; pixels (u
right, v down) with u = fx x / z + cx, v = fy y / z + cy (docs/method.md §3).
"""
import json
import logging
import math
import os

import numpy as np

from utils.errors import ImageInputError

logger = logging.getLogger(__name__)

DEFAULT_FOV_DEG = 60.0  # field of view across the longer image side when nothing else is known
FILM_LONG_SIDE_MM = 36.0  # 35 mm film frame 36 x 24 mm: its long side maps to the image's long side
EXIF_IFD = 0x8769  # Exif sub-IFD pointer tag
EXIF_FOCAL_35MM = 0xA405  # FocalLengthIn35mmFilm, mm


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
