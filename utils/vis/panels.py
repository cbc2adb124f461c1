"""Pictures of predictions: the mesh over the network's crop, two other views of the mesh and
the 2D skeleton, one labelled PNG per sample (test.py --vis, demo.py)."""
import logging
import math
import os

import cv2
import numpy as np

from utils.constants import IMAGENET_MEAN, IMAGENET_STD
from utils.vis.render import VIEW_NAMES, render_views
from utils.transforms import project
from utils.vis.drawing import draw_skeleton, make_grid
from utils.files.images import save_image

logger = logging.getLogger(__name__)


def denormalize(img_chw):
    """Network input (3 x H x W float, ImageNet-normalised RGB) -> H x W x 3 uint8 RGB."""
    img = np.asarray(img_chw, dtype=np.float32).transpose(1, 2, 0)
    img = img * np.asarray(IMAGENET_STD, np.float32) + np.asarray(IMAGENET_MEAN, np.float32)
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def crop_intrinsics(K, img2crop):
    """Intrinsics of the crop camera: the img->crop affine (no rotation) composed with K."""
    affine = np.vstack([np.asarray(img2crop, np.float64), [0.0, 0.0, 1.0]])
    return affine @ np.asarray(K, np.float64)


MIN_PANEL_SIDE = 256  # px: smaller crops (the 96 px CPU demo) are enlarged to stay readable


def enlarge(crop_rgb, K_crop, min_side=MIN_PANEL_SIDE):
    """The crop scaled up by a whole factor s so its shorter side is >= min_side, with the
    intrinsics that go with it (pixel centres: u' = s (u + 0.5) - 0.5). s = 1 leaves both."""
    height, width = crop_rgb.shape[:2]
    factor = max(1, math.ceil(min_side / min(height, width)))
    if factor == 1:
        return crop_rgb, np.asarray(K_crop, np.float64)
    scaling = np.array([[factor, 0.0, (factor - 1) / 2], [0.0, factor, (factor - 1) / 2],
                        [0.0, 0.0, 1.0]])
    big = cv2.resize(crop_rgb, (width * factor, height * factor), interpolation=cv2.INTER_LINEAR)
    return big, scaling @ np.asarray(K_crop, np.float64)


def result_panel(crop_rgb, K_crop, verts_cam, joints_cam, faces):
    """One labelled row: mesh over the crop, side view, top view, 2D skeleton.

    Args:
        crop_rgb: H x W x 3 uint8 network input crop (enlarged to MIN_PANEL_SIDE if smaller).
        K_crop: 3 x 3 intrinsics of the crop.
        verts_cam: 778 x 3, joints_cam: 21 x 3, meters, camera frame.
        faces: 1538 x 3.
    """
    crop_rgb, K_crop = enlarge(crop_rgb, K_crop)
    size = crop_rgb.shape[:2]
    views = render_views(verts_cam, faces, K_crop, size, background=crop_rgb)
    joints_uv = project(joints_cam, K_crop)[:, :2]
    skeleton = draw_skeleton(crop_rgb, joints_uv)
    return make_grid(views + [skeleton], ncols=4, labels=list(VIEW_NAMES) + ['skeleton'])


def render_results(dataset, xyz, verts, faces, out_dir, num):
    """Render the first `num` predictions of an evaluation data set into out_dir/%08d.png.

    Args:
        dataset: evaluation data set (items with inputs['img'], meta K and img2bb_trans).
        xyz: M x 21 x 3 and verts: M x 778 x 3 predictions, meters, camera frame.
        faces: MANO faces.
    Returns:
        list of written paths. A prediction that cannot be drawn (e.g. vertices behind the
        camera, as an early checkpoint can predict) is skipped with a warning naming it.
    """
    paths = []
    for idx in range(min(num, len(dataset))):
        path = os.path.join(out_dir, f'{idx:08d}.png')
        try:
            panel = dataset_panel(dataset, idx, xyz, verts, faces)
        except ValueError as err:
            logger.warning('not rendering prediction %d: %s', idx, err)
            continue
        save_image(path, panel)
        paths.append(path)
    return paths


def dataset_panel(dataset, idx, xyz, verts, faces):
    """`result_panel` of prediction `idx` over item `idx` of an evaluation data set
    (arguments as in render_results). Returns an H x 4W x 3 uint8 RGB image."""
    inputs, _, meta = dataset[idx]
    crop = denormalize(inputs['img'])
    K_crop = crop_intrinsics(meta['K'], meta['img2bb_trans'])
    return result_panel(crop, K_crop, verts[idx], xyz[idx], faces)
