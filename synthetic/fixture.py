"""A tiny FreiHAND-layout folder (docs/method.md §1), for the tests and the benchmarks.

Vertices and joints are a random point cloud about 0.5 m in front of the camera; each image
shows their projections as white dots on a uniform grey background whose level identifies
the file (level = 10 + 7 * file index), so tests can tell which file an item read.
"""
import json
import os

import cv2
import numpy as np

DOT_RADIUS_PX = 1.5
DOT_SHIFT = 4  # cv2 fixed-point bits, so dots sit at sub-pixel projections


def background_level(file_index):
    return 10 + 7 * file_index


def _random_K(rng):
    f = rng.uniform(450.0, 550.0)
    return np.array([[f, 0.0, 112.0], [0.0, f * rng.uniform(0.998, 1.002), 112.0], [0.0, 0.0, 1.0]])


def _random_hand(rng):
    """(verts 778 x 3, joints 21 x 3) meters: a point cloud 0.5 m in front of the camera."""
    center = np.array([rng.uniform(-0.01, 0.01), rng.uniform(-0.01, 0.01), 0.5])
    half_extent = np.array([0.05, 0.05, 0.03])
    verts = center + rng.uniform(-1.0, 1.0, size=(778, 3)) * half_extent
    joints = center + rng.uniform(-1.0, 1.0, size=(21, 3)) * half_extent
    return verts, joints


def _uv(points, K):
    """Pinhole projection written out independently of utils.transforms."""
    return np.stack([K[0, 0] * points[:, 0] / points[:, 2] + K[0, 2],
                     K[1, 1] * points[:, 1] / points[:, 2] + K[1, 2]], axis=1)


def paint_dots(uv, level):
    """224 x 224 x 3 uint8 grey image with white dots at the pixel positions uv (P x 2)."""
    img = np.full((224, 224, 3), level, dtype=np.uint8)
    scale = 1 << DOT_SHIFT
    for u, v in uv:
        cv2.circle(img, (int(round(u * scale)), int(round(v * scale))), int(DOT_RADIUS_PX * scale),
                   (255, 255, 255), thickness=-1, lineType=cv2.LINE_8, shift=DOT_SHIFT)
    return img


def _write_json(path, obj):
    with open(path, 'w') as f:
        json.dump(obj, f)


def make_freihand(root, num_samples=3, num_eval=2, seed=0, root_depth_mm=False):
    """Write a FreiHAND-layout folder at `root`; return the ground truth as numpy arrays."""
    rng = np.random.default_rng(seed)
    for folder in ('training/rgb', 'training/mask', 'evaluation/rgb'):
        os.makedirs(os.path.join(root, folder), exist_ok=True)

    def draw(count):
        """(K, verts, joints, uv) of `count` samples, in the generator's order."""
        samples = []
        for _ in range(count):
            K = _random_K(rng)
            verts, joints = _random_hand(rng)
            samples.append((K, verts, joints, _uv(np.concatenate([verts, joints]), K)))
        return samples

    train, evaluation = draw(num_samples), draw(num_eval)
    for i, (_, _, _, uv) in enumerate(train):
        for version in range(4):
            file_index = i + num_samples * version
            cv2.imwrite(os.path.join(root, 'training/rgb/%08d.jpg' % file_index),
                        paint_dots(uv, background_level(file_index)), [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(os.path.join(root, 'training/mask/%08d.jpg' % i), paint_dots(uv, 0))
    for j, (_, _, _, uv) in enumerate(evaluation):
        cv2.imwrite(os.path.join(root, 'evaluation/rgb/%08d.jpg' % j),
                    paint_dots(uv, background_level(j)), [cv2.IMWRITE_JPEG_QUALITY, 95])
    train_K, train_verts, train_xyz, _ = zip(*train)
    eval_K, eval_verts, eval_xyz, _ = zip(*evaluation)

    train_scale = [float(np.linalg.norm(x[9] - x[10])) for x in train_xyz]
    eval_scale = [float(np.linalg.norm(x[9] - x[10])) for x in eval_xyz]
    _write_json(os.path.join(root, 'training_K.json'), [k.tolist() for k in train_K])
    _write_json(os.path.join(root, 'training_xyz.json'), [x.tolist() for x in train_xyz])
    _write_json(os.path.join(root, 'training_verts.json'), [v.tolist() for v in train_verts])
    _write_json(os.path.join(root, 'training_scale.json'), train_scale)
    _write_json(os.path.join(root, 'training_mano.json'), [[[0.0] * 61] for _ in range(num_samples)])
    _write_json(os.path.join(root, 'evaluation_K.json'), [k.tolist() for k in eval_K])
    _write_json(os.path.join(root, 'evaluation_xyz.json'), [x.tolist() for x in eval_xyz])
    _write_json(os.path.join(root, 'evaluation_verts.json'), [v.tolist() for v in eval_verts])
    _write_json(os.path.join(root, 'evaluation_scale.json'), eval_scale)

    root_depth_m = np.array([x[0, 2] for x in eval_xyz]) + 0.01  # a slightly wrong estimate
    unit = 1000.0 if root_depth_mm else 1.0
    _write_json(os.path.join(root, 'bbox_root_freihand_output.json'), [
        {'image_id': 100 + j, 'bbox': [47.0, 47.0, 130.0, 130.0],
         'root_cam': [float(eval_xyz[j][0, 0] * unit), float(eval_xyz[j][0, 1] * unit),
                      float(root_depth_m[j] * unit)]}
        for j in range(num_eval)])
    return {
        'train_K': np.array(train_K), 'train_verts': np.array(train_verts), 'train_xyz': np.array(train_xyz),
        'eval_K': np.array(eval_K), 'eval_verts': np.array(eval_verts), 'eval_xyz': np.array(eval_xyz),
        'eval_scale': np.array(eval_scale), 'root_depth_m': root_depth_m,
    }
