"""A synthetic data set in FreiHAND's exact layout (docs/method.md §1), rendered from a MANO model.

    python -m synthetic.freihand --root data/synthetic --num-train 2000 --num-eval 200 \\
        --mano_root manopth/mano/models --seed 0 [--root-noise 0.02] [--workers 2] \\
        [--max-tilt 50] [--overwrite] [--preview docs/synthetic_samples.png] [--no-progress]

Every file and folder of docs/method.md §1 is written: training/rgb (4 versions per sample at file
index i + N*v for v in gs, hom, sample, auto), training/mask, evaluation/rgb (gs only), the
training_* and evaluation_* annotation files and bbox_root_freihand_output.json. There are no
evaluation masks (FreiHAND has none). With the procedural stand-in
(`python -m synthetic.standin --out DIR`) the set exercises the whole pipeline without the
licensed model; with the real MANO_RIGHT.pkl the hands are MANO hands.

How a sample is made (constants below):
- Camera: principal point (112, 112), fx ~ U(250, 900) px, fy = fx * (1 + U(-0.002, 0.002)).
- Shape: betas ~ N(0, 1) clipped to [-2.5, 2.5].
- Articulation: the first NUM_POSE_COMPONENTS PCA coefficients drawn with POSE_SPREAD times
  the per-component standard deviation of the model's own `hands_coeffs` (the coefficients of
  the MANO training poses), times `hands_components`. Stored WITHOUT hands_mean, which the
  FreiHAND convention (ManoLayer with flat_hand_mean=False) adds back (docs/method.md §1).
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
- Appearance: one render per sample (utils.vis.render.render_mesh, pyrender, at SUPERSAMPLE x the
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
import os
import re
import time

import cv2
import numpy as np

from dataset.freihand.constants import FREIHAND_VERSIONS, ROOTNET_FILE
from utils.constants import ROOT_JOINT_IDX, SCALE_BONE, TRAINING_BOX_CENTER, TRAINING_BOX_SIZE
from utils.files.atomic import atomic_write_json
from synthetic.appearance import compose_version, render_hand, silhouette_mask
from synthetic.geometry import EVAL_SPLIT, TRAIN_SPLIT, GeometrySampler, sample_generators
from synthetic.workers import (Run, check_counts, check_root, projected_bounds, render_all,
                               run_command, worker_faces)

logger = logging.getLogger(__name__)

JPEG_QUALITY = 95
GEOMETRY_CHUNK = 256  # samples per batched MANO evaluation (fixed: see Determinism)
ANNOTATION_FILES = (
    'training_K.json', 'training_mano.json', 'training_xyz.json', 'training_verts.json',
    'training_scale.json', 'evaluation_K.json', 'evaluation_scale.json', 'evaluation_xyz.json',
    'evaluation_verts.json', ROOTNET_FILE)
IMAGE_DIRS = ('training/rgb', 'training/mask', 'evaluation/rgb')
_IMAGE_NAME = re.compile(r'^\d{8}\.jpg$')


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

def _render_sample(task):
    """Render and write the images of one sample; runs in a worker (or the main process)."""
    root, split, index, num_train, seed, verts_cam, K = task
    _, appearance_rng, _ = sample_generators(seed, split, index)
    hand_rgb, alpha = render_hand(verts_cam, worker_faces(), K, appearance_rng)
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
    u_min, v_min, u_max, v_max = projected_bounds(verts_cam, K)
    return [float(u_min), float(v_min), float(u_max - u_min), float(v_max - v_min)]


def _bone_lengths(xyz):
    return np.linalg.norm(xyz[:, SCALE_BONE[0]] - xyz[:, SCALE_BONE[1]], axis=1)


def _write_annotations(root, train, evaluation, noise_rngs, root_noise):
    """The annotation JSON files of both splits and the RootNet file, each written atomically."""
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
    for i in range(len(evaluation['xyz'])):
        root_cam = evaluation['xyz'][i, ROOT_JOINT_IDX] + noise_rngs[i].normal(0.0, 1.0, size=3) * root_noise
        rootnet.append({'image_id': i, 'bbox': _projected_box(evaluation['verts'][i], evaluation['K'][i]),
                        'root_cam': root_cam.tolist()})
    write(ROOTNET_FILE, rootnet)


def generate(root, num_train, num_eval, mano_root, seed=0, root_noise=0.0, max_tilt=None,
             run=Run()):
    """Render a synthetic data set in FreiHAND's layout (docs/method.md §1) into `root`.

    Args:
        root: output folder (created; must be empty unless `overwrite`).
        num_train: N training samples (4 * N training images, N masks), >= 1.
        num_eval: M evaluation samples, >= 1.
        mano_root: folder with MANO_RIGHT.pkl (the real model or the stand-in).
        seed: non-negative int; equal arguments give byte-identical files.
        root_noise: std (meters) of the Gaussian noise added to each coordinate of the wrist
            position written as "root_cam" to bbox_root_freihand_output.json (0 = exact).
        max_tilt: None, or the largest angle (degrees) between the palm normal and the
            direction to the camera (see GeometrySampler): palms towards the camera.
        run: synthetic.workers.Run (workers, overwrite, progress; this generator always
            renders). With overwrite, a non-empty `root`'s FreiHAND-layout images (%08d.jpg in
            the three image folders) and annotation files are deleted first, nothing else.
    Returns:
        dict: 'root', 'num_train', 'num_eval', 'num_images' (files written), 'seconds',
        'samples_per_second', 'workers', 'mano_standin'.
    """
    workers = run.workers
    if not run.render:
        raise ValueError('the FreiHAND generator always renders: run.render must be True')
    check_counts(num_train=num_train, num_eval=num_eval, workers=workers, seed=seed)
    if not (np.isfinite(root_noise) and root_noise >= 0):
        raise ValueError(f'root_noise must be a standard deviation >= 0 (meters), got {root_noise!r}')
    root = os.fspath(root)
    check_root(root, run.overwrite, 'the FreiHAND-layout files')
    start_time = time.perf_counter()
    sampler = GeometrySampler(mano_root, max_tilt)  # before touching `root`: a bad MANO folder leaves no trace
    _prepare_root(root)
    train, _ = _split_geometry(sampler, seed, TRAIN_SPLIT, num_train)
    evaluation, noise_rngs = _split_geometry(sampler, seed, EVAL_SPLIT, num_eval)

    tasks = [(root, TRAIN_SPLIT, i, num_train, seed, train['verts'][i], train['K'][i])
             for i in range(num_train)]
    tasks += [(root, EVAL_SPLIT, i, num_train, seed, evaluation['verts'][i], evaluation['K'][i])
              for i in range(num_eval)]
    render_all(_render_sample, tasks, sampler.mano.faces, workers, run.progress)
    # Annotations last, atomically: their presence marks a complete set.
    _write_annotations(root, train, evaluation, noise_rngs, root_noise)

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
    mask shows the fixed centre hand box (docs/method.md §2) in grey.
    """
    from utils.vis.drawing import draw_skeleton, make_grid
    from utils.files.images import save_image
    with open(os.path.join(root, 'training_K.json')) as f:
        K = np.asarray(json.load(f))
    with open(os.path.join(root, 'training_xyz.json')) as f:
        xyz = np.asarray(json.load(f))
    num_train = len(K)
    box_lo = tuple(int(round(c - TRAINING_BOX_SIZE / 2)) for c in TRAINING_BOX_CENTER)
    box_hi = tuple(int(round(c + TRAINING_BOX_SIZE / 2)) for c in TRAINING_BOX_CENTER)
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
        prog='python -m synthetic.freihand',
        description='Render a synthetic hand data set in FreiHAND\'s exact layout from a MANO model.')
    parser.add_argument('--root', required=True, help='output folder (must be empty unless --overwrite)')
    parser.add_argument('--num-train', type=int, required=True, help='N training samples (4N images)')
    parser.add_argument('--num-eval', type=int, required=True, help='M evaluation samples')
    parser.add_argument('--mano_root', '--mano-root', required=True,
                        help='folder with MANO_RIGHT.pkl (real or `python -m synthetic.standin --out DIR`)')
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
    run = Run(workers=args.workers, overwrite=args.overwrite, progress=not args.no_progress)
    run_command(parser, lambda: generate(args.root, args.num_train, args.num_eval, args.mano_root,
                                         seed=args.seed, root_noise=args.root_noise,
                                         max_tilt=args.max_tilt, run=run), logger)
    if args.preview:
        write_preview(args.root, args.preview, samples=range(min(3, args.num_train)))
        logger.info('wrote the preview picture %s', args.preview)


if __name__ == '__main__':
    main()
