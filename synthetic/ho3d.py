"""A synthetic data set in HO3D's layout (docs/ho3d.md §1-3), rendered from a MANO model.

    python -m synthetic.ho3d --root data/HO3D_synth --mano_root data/mano_standin \\
        --num-train 800 --num-eval 100 --seed 0 [--version v3] [--max-tilt 50] [--workers 2] \\
        [--overwrite] [--preview docs/ho3d_samples.png] [--no-progress]

Written as the official set is: train/<seq>/{rgb,meta}/<id>, evaluation/<seq>/{rgb,meta}/<id>
(rgb .jpg for v3, .png for v2; meta a protocol-2 pickle of a dict of float32 NumPy arrays and
plain values), train.txt and evaluation.txt ("<seq>/<id>" lines) and the evaluation ground truth
evaluation_xyz.json / evaluation_verts.json (lists in evaluation.txt order). Every 3D quantity
is in HO3D's OpenGL camera frame (z < 0), joints in HO3D's order (MANO's 16, then the manopth
tips of thumb, index, middle, ring, pinky), MANO with flat_hand_mean=True.

How a frame is made (constants below):
- Sequences of FRAMES_PER_SEQUENCE frames share a camera (640 x 480, fx ~ U(600, 630) px,
  fy within 0.2 %, principal point within 8 px of the centre), a subject (betas ~ N(0, 1)
  clipped to 2.5) and an object (a box or a cylinder of 4-8 cm with a checker texture of two
  random colours in its own frame).
- Articulation and global rotation as the FreiHAND generator draws them (synthetic/geometry.py:
  PCA spread of the model's poses, rotations uniform except end-on views; --max-tilt keeps the
  palm towards the camera); the stored handPose includes hands_mean (flat_hand_mean=True).
- Placement: keypoint 9 (middle MCP) at a pixel within the central 40 % of the image, at a
  depth of U(0.45, 0.75) m; handTrans is what puts MANO's wrist there.
- The object occludes the hand: its centre sits on the ray through a random hand vertex,
  OBJECT_GAP_RANGE in front of it (plus its half size), shifted sideways by up to 3 cm, under a
  uniform random rotation. Its pose is written as objRot (3 x 1 axis-angle), objTrans, and
  objCorners3D / objCorners3DRest (8 x 3 box corners, OpenGL frame / object frame).
- Appearance: hand (skin and light as synthetic/appearance.py draws them) and object rendered
  at SUPERSAMPLE x the resolution, composited by depth, averaged down, over a procedural
  background with sensor noise.
- Evaluation frames: the same recipe; their meta pickles hold handBoundingBox (the tight box of
  the projected mesh, pixels), handJoints3D (the root joint only) and camMat; the full joints
  and vertices go to evaluation_xyz.json / evaluation_verts.json.

Determinism: frame i of a split draws from np.random.SeedSequence(seed, spawn_key=(split, i))
(sequence-level draws from spawn_key=(split + 2, sequence)), so the output does not depend on
the number of workers.
"""
import argparse
import logging
import os
import pickle
import re
import time

import cv2
import numpy as np
import torch
from scipy.spatial.transform import Rotation

from dataset.ho3d.constants import (FREIHAND_TO_HO3D, HO3D_IMG_SIZE, HO3D_TO_FREIHAND, HO3D_VERSIONS,
                             OPENGL_TO_CAMERA)
from utils.files.atomic import atomic_open, atomic_write_json
from utils.mano import mano_meters
from synthetic.appearance import (SENSOR_NOISE_RANGE, SUPERSAMPLE, composite, draw_skin_and_light,
                                  supersampled_intrinsics, textured_background)
from synthetic.geometry import (BETA_CLIP, EVAL_SPLIT, TRAIN_SPLIT, GeometrySampler, hand_normals,
                                random_rotation, sample_generators)
from synthetic.workers import (Run, check_counts, check_root, projected_bounds, render_all,
                               run_command, worker_faces)

logger = logging.getLogger(__name__)

FRAMES_PER_SEQUENCE = 50
SEQUENCE_PREFIX = {TRAIN_SPLIT: 'SYNT', EVAL_SPLIT: 'SYNE'}  # sequence folders SYNT10, SYNT11, ...
SPLIT_FOLDER = {TRAIN_SPLIT: 'train', EVAL_SPLIT: 'evaluation'}
IMAGE_EXTENSION = {'v2': '.png', 'v3': '.jpg'}
JPEG_QUALITY = 95
PICKLE_PROTOCOL = 2  # as the official (Python 2) files

# Camera (HO3D's camMat: about 614 px, principal point near the image centre).
FX_RANGE = (600.0, 630.0)  # px
FY_REL_JITTER = 0.002
PRINCIPAL_JITTER_PX = 8.0
# Hand placement.
ANCHOR_REGION = (0.3, 0.7)  # keypoint 9's pixel, as fractions of the image width and height
DEPTH_RANGE_M = (0.45, 0.75)  # keypoint 9's distance along the optical axis
# Object.
OBJECT_KINDS = ('box', 'cylinder')
OBJECT_SIZE_RANGE_M = (0.04, 0.08)  # edge of a box / diameter and height of a cylinder
OBJECT_GAP_RANGE_M = (0.0, 0.02)  # between the chosen hand vertex and the object's near side
OBJECT_SHIFT_M = 0.03  # sideways shift of the object centre, each axis of the image plane
CHECKER_RANGE_M = (0.01, 0.02)  # side of the texture squares
CYLINDER_SEGMENTS = 32
BACKGROUND_STYLES = ('smooth', 'shapes', 'texture')
_FLIP = np.asarray(OPENGL_TO_CAMERA)


# ---------------------------------------------------------------------------------------------
# Objects
# ---------------------------------------------------------------------------------------------

def primitive_mesh(kind, size):
    """(verts V x 3, faces F x 3) of a box (edge `size`) or a closed cylinder (diameter and
    height `size`, axis z), centred on the origin, meters; faces wound outwards."""
    half = size / 2
    if kind == 'box':
        corners = np.array([[x, y, z] for x in (-half, half) for y in (-half, half) for z in (-half, half)])
        quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
        faces = [f for a, b, c, d in quads for f in ((a, b, c), (a, c, d))]
        return corners, np.array(faces)
    if kind != 'cylinder':
        raise ValueError(f'unknown object kind {kind!r}; expected one of {OBJECT_KINDS}')
    angles = np.linspace(0, 2 * np.pi, CYLINDER_SEGMENTS, endpoint=False)
    ring = np.stack([half * np.cos(angles), half * np.sin(angles)], axis=1)
    verts = np.concatenate([np.c_[ring, np.full(CYLINDER_SEGMENTS, -half)],
                            np.c_[ring, np.full(CYLINDER_SEGMENTS, half)],
                            [[0, 0, -half], [0, 0, half]]])
    n, faces = CYLINDER_SEGMENTS, []
    for i in range(n):
        j = (i + 1) % n
        faces += [(i, j, n + j), (i, n + j, n + i), (2 * n, j, i), (2 * n + 1, n + i, n + j)]
    return verts, np.array(faces)


def box_corners(verts):
    """The 8 corners of the axis-aligned box around `verts` (V x 3), x-major order."""
    low, high = verts.min(axis=0), verts.max(axis=0)
    return np.array([[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1])
                     for z in (low[2], high[2])])


def checker_colors(points_obj, cell, colors):
    """RGB (0..1) of a 3D checker texture of squares `cell` (m) at object-frame points (... x 3)."""
    parity = np.floor(points_obj / cell).astype(np.int64).sum(axis=-1) % 2
    return np.asarray(colors)[parity]


# ---------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------

class HO3DSampler:
    """Draws HO3D-convention frames (docs/ho3d.md §2-3) from a MANO model.

    Args:
        mano_root: folder with MANO_RIGHT.pkl (the real model or the stand-in).
        max_tilt: None, or degrees: the palm faces the camera within this angle.
    """

    def __init__(self, mano_root, max_tilt=None):
        self.geometry = GeometrySampler(mano_root, max_tilt)  # poses, rotations, MANO data
        self.mano = self.geometry.mano
        # The FreiHAND-convention layer (flat_hand_mean=False) holds the model's hands_mean.
        self.hands_mean = self.geometry.layer.th_hands_mean[0].double().numpy()
        self.layer = self.mano.layer(use_pca=False, flat_hand_mean=True, center_idx=None)
        self.max_tilt = max_tilt

    def sequence(self, rng):
        """Per-sequence draws: K (3 x 3), betas (10,), object kind, size, cell, colours."""
        height, width = HO3D_IMG_SIZE
        fx = rng.uniform(*FX_RANGE)
        K = np.array([[fx, 0.0, width / 2 + rng.uniform(-PRINCIPAL_JITTER_PX, PRINCIPAL_JITTER_PX)],
                      [0.0, fx * (1 + rng.uniform(-FY_REL_JITTER, FY_REL_JITTER)),
                       height / 2 + rng.uniform(-PRINCIPAL_JITTER_PX, PRINCIPAL_JITTER_PX)],
                      [0.0, 0.0, 1.0]])
        betas = np.clip(rng.standard_normal(10), -BETA_CLIP, BETA_CLIP)
        return dict(K=K, betas=betas, kind=OBJECT_KINDS[rng.integers(len(OBJECT_KINDS))],
                    size=rng.uniform(*OBJECT_SIZE_RANGE_M), cell=rng.uniform(*CHECKER_RANGE_M),
                    colors=rng.uniform(0.1, 0.95, size=(2, 3)))

    def mano_gl(self, pose, betas, trans):
        """(verts B x 778 x 3, joints B x 21 x 3 HO3D order), OpenGL frame, m, of MANO fits."""
        verts, joints = mano_meters(self.layer, torch.as_tensor(pose, dtype=torch.float32),
                                    torch.as_tensor(betas, dtype=torch.float32))
        offset = np.asarray(trans, dtype=np.float64)[:, None]
        verts, joints = verts + offset, joints + offset
        return verts, joints[:, list(FREIHAND_TO_HO3D)]

    def frame(self, rng, seq):
        """One frame's MANO fit (float32, as stored) and its OpenGL-frame mesh and joints."""
        height, width = HO3D_IMG_SIZE
        K, betas = seq['K'], seq['betas']
        joint_pose = self.geometry.random_joint_pose(rng) + self.hands_mean  # flat_hand_mean=True
        pose0 = np.concatenate([np.zeros(3), joint_pose])[None]
        verts0, joints0 = self.mano_gl(pose0, betas[None], np.zeros((1, 3)))  # model frame
        wrist0, anchor0 = joints0[0, 0], joints0[0, 4]  # HO3D order: 0 wrist, 4 middle MCP
        pointing = (anchor0 - wrist0) / np.linalg.norm(anchor0 - wrist0)
        normal, facing = None, None
        if self.max_tilt is not None:
            normal = hand_normals(joints0[:, list(HO3D_TO_FREIHAND)])[0]
            facing = np.cos(np.radians(self.max_tilt))
        rotation_cam = random_rotation(rng, pointing, normal=normal, min_facing_cos=facing)
        u = rng.uniform(*ANCHOR_REGION) * width
        v = rng.uniform(*ANCHOR_REGION) * height
        depth = rng.uniform(*DEPTH_RANGE_M)
        anchor_cam = np.array([(u - K[0, 2]) * depth / K[0, 0], (v - K[1, 2]) * depth / K[1, 1], depth])
        wrist_cam = anchor_cam - rotation_cam @ (anchor0 - wrist0)
        # MANO turns the hand about its wrist; in the OpenGL frame the rotation is F R (F = diag(1, -1, -1)).
        rotation_gl = np.diag(_FLIP) @ rotation_cam
        pose = np.concatenate([Rotation.from_matrix(rotation_gl).as_rotvec(), joint_pose])
        trans = wrist_cam * _FLIP - wrist0
        fit = {'handPose': pose.astype(np.float32), 'handBeta': betas.astype(np.float32),
               'handTrans': trans.astype(np.float32)}
        verts_gl, joints_gl = self.mano_gl(fit['handPose'][None], fit['handBeta'][None],
                                           fit['handTrans'][None])
        return fit, verts_gl[0], joints_gl[0]

    def place_object(self, rng, seq, verts_cam):
        """Object pose (rotation 3 x 3, centre (3,), camera frame) in front of the hand."""
        target = verts_cam[rng.integers(len(verts_cam))]
        ray = target / np.linalg.norm(target)
        distance = np.linalg.norm(target) - seq['size'] / 2 - rng.uniform(*OBJECT_GAP_RANGE_M)
        center = ray * distance + np.r_[rng.uniform(-OBJECT_SHIFT_M, OBJECT_SHIFT_M, size=2), 0.0]
        rotation = Rotation.from_quat(rng.standard_normal(4)).as_matrix()
        return rotation, center


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------

def render_frame(verts_cam, faces, K, obj, rng):
    """The RGB frame (H x W x 3 uint8) and the fraction of the hand's pixels the object hides.

    obj: dict with 'verts', 'faces' (object frame, m), 'rotation', 'center' (camera frame),
    'cell', 'colors'. rng: the frame's appearance generator.
    """
    from utils.vis.render import render_mesh  # imports pyrender lazily: only rendering needs OpenGL
    height, width = HO3D_IMG_SIZE
    s = SUPERSAMPLE
    K_fine = supersampled_intrinsics(K)
    fine = (height * s, width * s)
    skin, light = draw_skin_and_light(rng)
    hand_rgb, hand_depth, hand_mask = render_mesh(verts_cam, faces, K_fine, fine, color=skin, shading=light)
    obj_verts_cam = obj['verts'] @ obj['rotation'].T + obj['center']
    shade, obj_depth, obj_mask = render_mesh(obj_verts_cam, obj['faces'], K_fine, fine,
                                             color=(1.0, 1.0, 1.0),
                                             shading=light._replace(smooth=False))
    obj_front = obj_mask & (~hand_mask | (obj_depth < hand_depth))
    # The object's texture at the visible surface points (back-projected with their depth).
    rows, cols = np.nonzero(obj_front)
    z = obj_depth[rows, cols].astype(np.float64)
    points_cam = np.stack([(cols - K_fine[0, 2]) * z / K_fine[0, 0],
                           (rows - K_fine[1, 2]) * z / K_fine[1, 1], z], axis=1)
    points_obj = (points_cam - obj['center']) @ obj['rotation']
    texture = checker_colors(points_obj, obj['cell'], obj['colors'])
    color = hand_rgb.astype(np.float32)
    color[rows, cols] = shade[rows, cols].astype(np.float32) * texture.astype(np.float32)
    coverage = (hand_mask | obj_mask).astype(np.float32)
    alpha = cv2.resize(coverage, (width, height), interpolation=cv2.INTER_AREA)
    averaged = cv2.resize(color * coverage[..., None], (width, height), interpolation=cv2.INTER_AREA)
    scene = averaged / np.maximum(alpha, 1e-6)[..., None]
    style = BACKGROUND_STYLES[rng.integers(len(BACKGROUND_STYLES))]
    top = (width - height) // 2
    background = textured_background(rng, style, size=width)[top:top + height]
    img = composite(scene, alpha, background, rng.uniform(*SENSOR_NOISE_RANGE), rng)
    hidden = float((hand_mask & obj_front).sum()) / max(int(hand_mask.sum()), 1)
    return img, hidden


def _write_image(path, img_rgb):
    extension = os.path.splitext(path)[1]
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if extension == '.jpg' else []
    ok, encoded = cv2.imencode(extension, np.ascontiguousarray(img_rgb[..., ::-1]), params)
    if not ok:
        raise RuntimeError(f'cv2 could not encode {path}')
    with atomic_open(path, 'wb') as f:
        f.write(encoded.tobytes())


def write_meta(path, meta):
    """A meta pickle as the official ones: protocol 2, a dict of NumPy arrays and plain values."""
    with atomic_open(path, 'wb') as f:
        pickle.dump(meta, f, protocol=PICKLE_PROTOCOL)


# utils.vis.render's cached renderer grows with every 1280 x 960 render (pyrender keeps what
# each scene uploads); freeing it every so many frames keeps a worker near its starting size
# (figures in docs/performance.md, "Test suite").
RENDERER_RECYCLE_FRAMES = 25
_worker_frames = 0


def _render_task(task):
    global _worker_frames
    path, verts_cam, K, obj, seed, split, index, render = task
    _, appearance_rng, _ = sample_generators(seed, split, index)
    if render:
        img, hidden = render_frame(verts_cam, worker_faces(), K, obj, appearance_rng)
        _worker_frames += 1
        if _worker_frames % RENDERER_RECYCLE_FRAMES == 0:
            from utils.vis.render import close_renderers
            close_renderers()
    else:  # grey frames, for tests of the loaders
        img, hidden = np.full(HO3D_IMG_SIZE + (3,), 128, dtype=np.uint8), 0.0
    _write_image(path, img)
    return hidden


# ---------------------------------------------------------------------------------------------
# Data set
# ---------------------------------------------------------------------------------------------

_OUR_SEQUENCE = re.compile(r'^SYN[TE]\d+$')
LIST_FILES = ('train.txt', 'evaluation.txt', 'evaluation_xyz.json', 'evaluation_verts.json')


def _prepare_root(root, overwrite):
    """Refuse a file or a non-empty folder unless `overwrite`; with it, remove what an earlier
    run of this generator wrote (its sequence folders' rgb and meta files, the list and ground
    truth files), nothing else."""
    check_root(root, overwrite, 'the synthetic HO3D files')
    if os.path.isdir(root) and os.listdir(root):
        for split in SPLIT_FOLDER.values():
            folder = os.path.join(root, split)
            for seq in (os.listdir(folder) if os.path.isdir(folder) else []):
                if not _OUR_SEQUENCE.match(seq):
                    continue
                for sub, pattern in (('rgb', r'^\d{4}\.(jpg|png)$'), ('meta', r'^\d{4}\.pkl$')):
                    path = os.path.join(folder, seq, sub)
                    for name in (os.listdir(path) if os.path.isdir(path) else []):
                        if re.match(pattern, name):
                            os.remove(os.path.join(path, name))
        for name in LIST_FILES:
            if os.path.isfile(os.path.join(root, name)):
                os.remove(os.path.join(root, name))


def frame_name(split, index):
    """"<seq>/<id>" of frame `index` of a split (sequences of FRAMES_PER_SEQUENCE frames)."""
    return f'{SEQUENCE_PREFIX[split]}{10 + index // FRAMES_PER_SEQUENCE}/{index % FRAMES_PER_SEQUENCE:04d}'


def _split_frames(sampler, seed, split, count):
    """Per frame: name, fit, OpenGL mesh and joints, K, object (for rendering and the meta)."""
    frames, sequences = [], {}
    for index in range(count):
        seq_index = index // FRAMES_PER_SEQUENCE
        if seq_index not in sequences:
            sequences[seq_index] = sampler.sequence(sample_generators(seed, split + 2, seq_index)[0])
        seq = sequences[seq_index]
        rng = sample_generators(seed, split, index)[0]
        fit, verts_gl, joints_gl = sampler.frame(rng, seq)
        verts_cam = verts_gl * _FLIP
        rotation, center = sampler.place_object(rng, seq, verts_cam)
        obj_verts, obj_faces = primitive_mesh(seq['kind'], seq['size'])
        obj = dict(verts=obj_verts, faces=obj_faces, rotation=rotation, center=center,
                   cell=seq['cell'], colors=seq['colors'], kind=seq['kind'])
        frames.append(dict(name=frame_name(split, index), fit=fit, verts_gl=verts_gl,
                           joints_gl=joints_gl, K=seq['K'], obj=obj, verts_cam=verts_cam))
    return frames


def _object_fields(obj):
    """The object fields of a meta pickle (OpenGL frame), as HO3D names them."""
    flip = np.diag(_FLIP)
    rotation_gl = flip @ obj['rotation']
    corners_rest = box_corners(obj['verts'])
    return {
        'objRot': Rotation.from_matrix(rotation_gl).as_rotvec().reshape(3, 1).astype(np.float32),
        'objTrans': (obj['center'] * _FLIP).astype(np.float32),
        'objName': f'synthetic_{obj["kind"]}',
        'objLabel': OBJECT_KINDS.index(obj['kind']),
        'objCorners3DRest': corners_rest.astype(np.float32),
        'objCorners3D': (corners_rest @ rotation_gl.T + obj['center'] * _FLIP).astype(np.float32),
    }


def projected_box(verts_cam, K):
    """[x_min, y_min, x_max, y_max] (pixels) of the projected vertices (V x 3, camera frame)."""
    return np.array(projected_bounds(verts_cam, K))


def _write_meta_files(root, splits, version, seed, render):
    """Write every frame's meta pickle (creating its folders); return the rendering tasks."""
    tasks = []
    for split, frames in splits.items():
        for index, frame in enumerate(frames):
            seq, frame_id = frame['name'].split('/')
            folder = os.path.join(root, SPLIT_FOLDER[split], seq)
            for sub in ('rgb', 'meta'):
                os.makedirs(os.path.join(folder, sub), exist_ok=True)
            meta = {'camMat': frame['K'].astype(np.float32), **_object_fields(frame['obj'])}
            if split == TRAIN_SPLIT:
                meta.update(frame['fit'], handJoints3D=frame['joints_gl'].astype(np.float32))
            else:
                meta.update(handBoundingBox=projected_box(frame['verts_cam'], frame['K']).astype(np.float32),
                            handJoints3D=frame['joints_gl'][0].astype(np.float32))
            write_meta(os.path.join(folder, 'meta', frame_id + '.pkl'), meta)
            path = os.path.join(folder, 'rgb', frame_id + IMAGE_EXTENSION[version])
            tasks.append((path, frame['verts_cam'], frame['K'], frame['obj'], seed, split, index, render))
    return tasks


def generate(root, num_train, num_eval, mano_root, seed=0, version='v2', max_tilt=None,
             run=Run()):
    """Write a synthetic HO3D-layout set (see the module docstring) into `root`.

    Args:
        root: output folder (created; must be empty unless `overwrite`).
        num_train, num_eval: frames of each split (>= 1).
        mano_root: folder with MANO_RIGHT.pkl (the real model or the stand-in).
        seed: non-negative int; equal arguments give identical files.
        version: 'v2' (PNG frames) or 'v3' (JPEG frames).
        max_tilt: None, or degrees: palms face the camera within this angle.
        run: synthetic.workers.Run (workers, overwrite, progress, render: False writes grey
            frames instead of renders, fast, for tests of the loaders).
    Returns:
        dict: 'root', 'num_train', 'num_eval', 'seconds', 'mean_hidden' (fraction of the hand's
        pixels hidden by the object, mean over the rendered frames), 'mano_standin'.
    """
    workers, render = run.workers, run.render
    check_counts(num_train=num_train, num_eval=num_eval, workers=workers, seed=seed)
    if version not in HO3D_VERSIONS:
        raise ValueError(f'version must be one of {HO3D_VERSIONS}, got {version!r}')
    root = os.fspath(root)
    start = time.perf_counter()
    sampler = HO3DSampler(mano_root, max_tilt)  # before touching root: a bad MANO folder leaves no trace
    _prepare_root(root, run.overwrite)
    splits = {TRAIN_SPLIT: _split_frames(sampler, seed, TRAIN_SPLIT, num_train),
              EVAL_SPLIT: _split_frames(sampler, seed, EVAL_SPLIT, num_eval)}
    tasks = _write_meta_files(root, splits, version, seed, render)
    # The fraction of each frame's hand pixels the object hides, in task order.
    hidden = render_all(_render_task, tasks, sampler.mano.faces, workers, run.progress,
                        unit='frame')

    # Lists and ground truth last, atomically: their presence marks a complete set.
    evaluation = splits[EVAL_SPLIT]
    atomic_write_json(os.path.join(root, 'evaluation_xyz.json'),
                      [f['joints_gl'].tolist() for f in evaluation])
    atomic_write_json(os.path.join(root, 'evaluation_verts.json'),
                      [f['verts_gl'].tolist() for f in evaluation])
    for split, frames in splits.items():
        with atomic_open(os.path.join(root, SPLIT_FOLDER[split] + '.txt'), 'w') as f:
            f.write(''.join(frame['name'] + '\n' for frame in frames))
    summary = {'root': os.path.abspath(root), 'num_train': num_train, 'num_eval': num_eval,
               'seconds': time.perf_counter() - start,
               'mean_hidden': float(np.mean(hidden)) if render else None,
               'mano_standin': sampler.mano.is_standin}
    logger.info('wrote %d training and %d evaluation frames (HO3D %s layout) to %s in %.1f s%s',
                num_train, num_eval, version, summary['root'], summary['seconds'],
                f'; the object hides {100 * summary["mean_hidden"]:.0f} % of the hand on average'
                if render else ' (grey frames)')
    return summary


# ---------------------------------------------------------------------------------------------
# Preview picture
# ---------------------------------------------------------------------------------------------

def write_preview(root, out_path, count=4):
    """A grid of the first `count` training frames with the projected skeleton of handJoints3D
    (OpenGL -> camera frame, camMat) and their crops as the loader makes them."""
    from dataset.ho3d import read_frame_list, read_meta
    from utils.files.images import save_image
    from utils.transforms import box_from_joints
    from utils.vis.drawing import draw_skeleton, make_grid
    from dataset.ho3d.constants import HO3D_TO_FREIHAND
    cells, labels = [], []
    for name in read_frame_list(os.path.join(root, 'train.txt'))[:count]:
        seq, frame_id = name.split('/')
        folder = os.path.join(root, 'train', seq)
        meta = read_meta(os.path.join(folder, 'meta', frame_id + '.pkl'))
        stem = os.path.join(folder, 'rgb', frame_id)
        path = stem + '.jpg' if os.path.isfile(stem + '.jpg') else stem + '.png'
        img = cv2.imread(path)[..., ::-1]
        joints_cam = (np.asarray(meta['handJoints3D'], dtype=np.float64) * _FLIP)[list(HO3D_TO_FREIHAND)]
        K = np.asarray(meta['camMat'], dtype=np.float64)
        uv = joints_cam[:, :2] / joints_cam[:, 2:] * K[[0, 1], [0, 1]] + K[:2, 2]
        center, side = box_from_joints(uv)
        lo = tuple(int(round(c - side / 2)) for c in center)
        hi = tuple(int(round(c + side / 2)) for c in center)
        drawn = draw_skeleton(np.ascontiguousarray(img), uv, radius=3, thickness=2)
        cv2.rectangle(drawn, lo, hi, (0, 255, 0), 2)
        cells += [np.ascontiguousarray(img), drawn]
        labels += [f'{name} {meta["objName"]}', f'{name} skeleton + box']
    save_image(out_path, make_grid(cells, ncols=2, labels=labels))


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m synthetic.ho3d',
        description="Render a synthetic hand-object data set in HO3D's layout from a MANO model.")
    parser.add_argument('--root', required=True, help='output folder (must be empty unless --overwrite)')
    parser.add_argument('--mano_root', '--mano-root', required=True,
                        help='folder with MANO_RIGHT.pkl (real or `python -m synthetic.standin --out DIR`)')
    parser.add_argument('--num-train', type=int, required=True, help='training frames')
    parser.add_argument('--num-eval', type=int, required=True, help='evaluation frames')
    parser.add_argument('--seed', type=int, default=0, help='data set seed (default 0)')
    parser.add_argument('--version', default='v2', choices=HO3D_VERSIONS,
                        help='v2 (PNG frames, default) or v3 (JPEG frames)')
    parser.add_argument('--max-tilt', type=float, default=None,
                        help='degrees: palms face the camera within this angle (default: any)')
    parser.add_argument('--workers', type=int, default=1, help='rendering processes (default 1)')
    parser.add_argument('--overwrite', action='store_true',
                        help="replace this generator's files in a non-empty --root")
    parser.add_argument('--preview', default=None, help='also write a picture of training frames 0-3 here')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    args = parser.parse_args(argv)
    run = Run(workers=args.workers, overwrite=args.overwrite, progress=not args.no_progress)
    run_command(parser, lambda: generate(args.root, args.num_train, args.num_eval, args.mano_root,
                                         seed=args.seed, version=args.version,
                                         max_tilt=args.max_tilt, run=run), logger)
    if args.preview:
        write_preview(args.root, args.preview, count=min(4, args.num_train))
        logger.info('wrote the preview picture %s', args.preview)


if __name__ == '__main__':
    main()
