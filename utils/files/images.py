"""Image files: reading as OpenCV does (BGR, with a check for truncated JPEGs) and atomic
writing of RGB or grey images.

Channel order: `read_image` returns BGR (what OpenCV and the training pipeline use, docs/method.md
§2); `save_image` takes RGB, the order of every picture the project draws.
"""
import os

import cv2
import numpy as np

from utils.files.atomic import atomic_open

JPEG_START, JPEG_END = b'\xff\xd8', b'\xff\xd9'  # start- and end-of-image markers


def read_image(path):
    """Read an image file as OpenCV does (BGR uint8), and say whether it is damaged.

    libjpeg decodes a truncated JPEG without an error (it fills the missing rows with grey and
    prints an anonymous "Premature end of JPEG file"), so a JPEG is also checked for its
    end-of-image marker. The file is read once; only a truncated JPEG is decoded again by
    cv2.imread (cv2.imdecode refuses it, cv2.imread decodes it as the training always did).

    Returns:
        (img, damage): img H x W x 3 uint8 BGR, or None when the file cannot be read or decoded;
        damage None, or a sentence saying what is wrong with the file and what the decoder did.
    """
    path = os.fspath(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None, None
    if data.size == 0:
        return None, None
    head, tail = data[:2].tobytes(), data[-64:].tobytes().rstrip(b'\x00')
    if head == JPEG_START and JPEG_END not in tail:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            return None, None
        return img, ('is truncated (no JPEG end-of-image marker): the decoder filled the '
                     'missing part of the image with grey')
    return cv2.imdecode(data, cv2.IMREAD_COLOR), None


def save_image(path, img_rgb):
    """Write an RGB (H x W x 3) or grey (H x W) uint8 image; format from the extension.

    Atomic (temporary file then rename), creates missing folders.
    """
    img = np.asarray(img_rgb)
    if img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise ValueError(f'save_image({path!r}): need an H x W x 3 RGB or H x W grey uint8 '
                         f'image, got shape {img.shape} dtype {img.dtype}')
    extension = os.path.splitext(os.fspath(path))[1]
    bgr = img[:, :, ::-1] if img.ndim == 3 else img  # cv2 stores BGR
    try:
        ok, encoded = cv2.imencode(extension, np.ascontiguousarray(bgr))
    except cv2.error as err:
        raise ValueError(f'save_image({path!r}): cannot encode an image with extension '
                         f'{extension!r}; use .png or .jpg') from err
    if not ok:
        raise ValueError(f'save_image({path!r}): cv2 failed to encode the image as {extension!r}; '
                         f'use .png or .jpg')
    with atomic_open(path, 'wb') as f:
        f.write(encoded.tobytes())
