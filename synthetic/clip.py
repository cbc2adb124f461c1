"""A synthetic hand video with ground truth, for the tracking demo and its tests.

    python -m synthetic.clip --out DIR --mano_root DIR [--frames 24] [--size 320x240]
        [--fps 10] [--extent 100] [--focal 500] [--background smooth] [--seed 0]

writes DIR/clip.mp4 (mp4v), the same frames as DIR/frames/00000.png, ... (lossless) and the
ground truth DIR/clip.json:

    {"num_frames", "fps", "image_size": [H, W], "K": 3 x 3 px, "mano_standin": bool,
     "seed", "frames": [{"frame", "file", "joints": 21 x 3 (m, camera frame),
                         "box": [x, y, w, h] (px), "box_center": [u, v], "box_side"}]}

where a frame's box is utils.transforms.box_from_joints of its projected true joints: the box a
perfect tracker would crop with. DIR/verts.npy holds the true vertices, N x 778 x 3 float64
(m, camera frame). `read_clip` reads it all back and `TruthPredictor` stands in for the
network with the truth (tests, pictures).

The clip: one right hand (the MANO model in --mano_root: the real one or the stand-in of
`python -m synthetic.standin`), palm towards a fixed camera and fingers up, moving across the
frame from left to right (keypoint 9 from PATH_U[0] to PATH_U[1] of the width, with a small
vertical arc) while it turns slowly: in-plane roll ROLL_DEG, a turn about the vertical axis
YAW_DEG, the fingers blending from one random pose (GeometrySampler.random_joint_pose) to
another, and the hand moving away a little (projected mesh side from --extent to
EXTENT_END_RATIO x --extent). Camera: focal --focal px on both axes, principal point at the
image centre ((W - 1) / 2, (H - 1) / 2, demo.py's convention). Appearance: one skin colour
and light for the whole clip (synthetic.appearance.render_hand), a fixed procedural
background (--background: the styles of synthetic.appearance) and fresh sensor noise per
frame. Equal arguments give identical frames.
"""
import argparse
import dataclasses
import json
import logging
import os
import sys

import numpy as np
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from synthetic.appearance import (SENSOR_NOISE_RANGE, composite, green_screen_background,
                                  render_hand, textured_background)
from manopth.constants import NUM_BETAS
from synthetic.geometry import BETA_CLIP, GeometrySampler, hand_normals
from utils.files.images import save_image
from utils.files.atomic import atomic_open, atomic_write_json
from utils.transforms import HandBox, box_from_joints, project
from utils.files.video import atomic_video_writer

logger = logging.getLogger(__name__)

CLIP_VIDEO, FRAMES_DIR, CLIP_JSON, CLIP_VERTS = 'clip.mp4', 'frames', 'clip.json', 'verts.npy'
BACKGROUNDS = ('gs', 'smooth', 'shapes', 'texture')  # green screen or textured_background style

# Motion over the clip (first frame -> last frame).
PATH_U = (0.28, 0.72)  # keypoint-9 u, fraction of the image width
PATH_V = (0.56, 0.48)  # keypoint-9 v, fraction of the image height ...
ARC_V = 0.05  # ... plus this fraction of the height x sin(pi t): an arc upwards
ROLL_DEG = (-20.0, 15.0)  # in-plane rotation about the optical axis (+: clockwise on screen)
YAW_DEG = (-20.0, 20.0)  # turn about the camera's vertical axis (palm towards the camera at 0)
EXTENT_END_RATIO = 0.85  # projected mesh side at the last frame / at the first
FRAME_MARGIN_PX = 2.0  # every projected vertex stays this far inside the frame
UNBOUND_BOX_RATIO = 10.0  # solve_anchor_depth's box: this x the frame, so it never binds


def _smoothstep(t):
    """0 -> 1 with zero slope at both ends (the pose blend starts and ends gently)."""
    return t * t * (3.0 - 2.0 * t)


def _facing_rotation(pointing, normal):
    """Rotation (model -> camera) turning the wrist -> keypoint-9 direction to screen-up
    (0, -1, 0) and the hand normal (hand_normals: out of the palm) towards the camera (0, 0, -1).

    Args:
        pointing, normal: (3,) unit vectors in the model frame.
    """
    normal = normal - (normal @ pointing) * pointing  # orthogonal to pointing
    normal /= np.linalg.norm(normal)
    model = np.stack([pointing, normal, np.cross(pointing, normal)], axis=1)
    up, towards = np.array([0.0, -1.0, 0.0]), np.array([0.0, 0.0, -1.0])
    camera = np.stack([up, towards, np.cross(up, towards)], axis=1)
    return camera @ model.T


def clip_geometry(sampler, num_frames, image_size, extent_px, focal_px, rng):
    """The hand of every frame (see the module docstring for the motion).

    Args:
        sampler: GeometrySampler of the MANO model.
        num_frames: frames (>= 2).
        image_size: (height, width), px.
        extent_px: side of the first frame's projected mesh bounding box, px.
        focal_px: fx = fy, px.
        rng: numpy Generator (betas and the two finger poses).
    Returns:
        dict: 'K' 3 x 3; 'verts' N x 778 x 3 and 'xyz' N x 21 x 3 (m, camera frame);
        'boxes' list of N HandBox (box_from_joints of the projected joints).
    Raises:
        ValueError when the hand would leave the frame (with the frame index).
    """
    if num_frames < 2:
        raise ValueError(f'a clip needs at least 2 frames, got {num_frames}')
    height, width = image_size
    K = np.array([[focal_px, 0.0, (width - 1) / 2], [0.0, focal_px, (height - 1) / 2],
                  [0.0, 0.0, 1.0]])
    t = np.linspace(0.0, 1.0, num_frames)
    betas = np.clip(rng.standard_normal(NUM_BETAS), -BETA_CLIP, BETA_CLIP)  # as GeometrySampler
    pose_a, pose_b = sampler.random_joint_pose(rng), sampler.random_joint_pose(rng)
    blend = _smoothstep(t)[:, None]
    joint_pose = (1.0 - blend) * pose_a + blend * pose_b  # (N, 45)
    betas = np.repeat(betas[None], num_frames, axis=0)
    verts, anchor, pointing = sampler.unrotated(joint_pose, betas)
    normal = hand_normals(sampler.mano.joints_from_verts(verts[:1]))[0]
    base = _facing_rotation(pointing[0], normal)
    roll = np.radians(np.interp(t, [0.0, 1.0], ROLL_DEG))
    yaw = np.radians(np.interp(t, [0.0, 1.0], YAW_DEG))
    rotations = np.stack([Rotation.from_rotvec([0.0, 0.0, r]).as_matrix()
                          @ Rotation.from_rotvec([0.0, y, 0.0]).as_matrix() @ base
                          for r, y in zip(roll, yaw)])
    anchor_uv = np.stack([np.interp(t, [0.0, 1.0], PATH_U) * width,
                          (np.interp(t, [0.0, 1.0], PATH_V) - ARC_V * np.sin(np.pi * t)) * height],
                         axis=1)
    extent = extent_px * np.interp(t, [0.0, 1.0], [1.0, EXTENT_END_RATIO])
    placed = sampler.place((verts, anchor, joint_pose, betas), rotations, anchor_uv,
                           np.repeat(K[None], num_frames, axis=0), extent,
                           box=(((width - 1) / 2, (height - 1) / 2),
                                UNBOUND_BOX_RATIO * max(width, height)))
    uv = project(placed['verts'], K)[..., :2]  # (N, 778, 2)
    for i, frame_uv in enumerate(uv):
        low, high = frame_uv.min(axis=0), frame_uv.max(axis=0)
        if np.any(low < FRAME_MARGIN_PX) or np.any(high > np.array([width, height]) - 1 - FRAME_MARGIN_PX):
            raise ValueError(f'the hand leaves the {width} x {height} frame at frame {i} (mesh '
                             f'spans u {low[0]:.0f}..{high[0]:.0f}, v {low[1]:.0f}..{high[1]:.0f} '
                             f'px): use a smaller --extent or a larger --size')
    boxes = [box_from_joints(project(xyz, K)[:, :2]) for xyz in placed['xyz']]
    return {'K': K, 'verts': placed['verts'], 'xyz': placed['xyz'], 'boxes': boxes}


def _background(style, rng, image_size):
    """H x W x 3 float RGB background of a style in BACKGROUNDS."""
    height, width = image_size
    side = max(height, width)  # the generators draw squares: crop one
    if style == 'gs':
        square = green_screen_background(rng, side)
    elif style in BACKGROUNDS:
        square = textured_background(rng, style, side)
    else:
        raise ValueError(f'unknown background {style!r}; expected one of {BACKGROUNDS}')
    return square[:height, :width]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClipSpec:
    """What a clip shows: num_frames (>= 2); image_size (height, width), px; fps, the frame
    rate written to the video and clip.json; extent_px, the projected mesh side of the first
    frame, px; focal_px, px; background, one of BACKGROUNDS."""
    num_frames: int = 24
    image_size: tuple = (240, 320)
    fps: float = 10.0
    extent_px: float = 100.0
    focal_px: float = 500.0
    background: str = 'smooth'


def generate_clip(out, mano_root, spec=ClipSpec(), seed=0, progress=True):
    """Render a clip into `out` (module docstring: files and motion).

    Args:
        out: output folder (created; existing clip files are replaced).
        mano_root: folder with MANO_RIGHT.pkl (real or stand-in).
        spec: ClipSpec (frames, size, frame rate, hand size, focal length, background).
        seed: non-negative int.
    Returns:
        dict: 'video', 'frames_dir', 'json' (paths), 'num_frames', 'mano_standin'.
    """
    num_frames, image_size, background = spec.num_frames, spec.image_size, spec.background
    if not (isinstance(num_frames, (int, np.integer)) and num_frames >= 2):
        raise ValueError(f'num_frames must be an integer >= 2, got {num_frames!r}')
    if background not in BACKGROUNDS:
        raise ValueError(f'unknown background {background!r}; expected one of {BACKGROUNDS}')
    sampler = GeometrySampler(mano_root)
    geometry_seq, appearance_seq, noise_seq = np.random.SeedSequence(seed).spawn(3)
    geometry = clip_geometry(sampler, num_frames, image_size, spec.extent_px, spec.focal_px,
                             np.random.default_rng(geometry_seq))
    appearance_rng = np.random.default_rng(appearance_seq)
    backdrop = _background(background, appearance_rng, image_size)
    noise_std = appearance_rng.uniform(*SENSOR_NOISE_RANGE)
    look = appearance_rng.integers(2 ** 63)  # the same skin and light in every frame
    noise_rng = np.random.default_rng(noise_seq)
    faces = sampler.mano.faces

    frames_dir = os.path.join(out, FRAMES_DIR)
    os.makedirs(frames_dir, exist_ok=True)
    records = []
    video_path = os.path.join(out, CLIP_VIDEO)
    with atomic_video_writer(video_path, spec.fps, image_size) as video:
        for i in tqdm(range(num_frames), desc='clip', unit='frame', disable=not progress):
            hand_rgb, alpha = render_hand(geometry['verts'][i], faces, geometry['K'],
                                          np.random.default_rng(look), size=image_size)
            img = composite(hand_rgb, alpha, backdrop, noise_std, noise_rng)
            name = f'{FRAMES_DIR}/{i:05d}.png'
            save_image(os.path.join(out, name), img)
            video.write(np.ascontiguousarray(img[:, :, ::-1]))
            box = geometry['boxes'][i]
            x, y = box.center - box.side / 2
            records.append({'frame': i, 'file': name, 'joints': geometry['xyz'][i].tolist(),
                            'box': [float(x), float(y), box.side, box.side],
                            'box_center': box.center.tolist(), 'box_side': box.side})
    with atomic_open(os.path.join(out, CLIP_VERTS), 'wb') as f:
        np.save(f, geometry['verts'])
    json_path = os.path.join(out, CLIP_JSON)  # last: its presence marks a complete clip
    atomic_write_json(json_path, {
        'num_frames': num_frames, 'fps': spec.fps, 'image_size': list(image_size),
        'K': geometry['K'].tolist(), 'mano_standin': sampler.is_standin, 'seed': seed,
        'frames': records}, indent=1)
    logger.info('wrote a %d-frame %d x %d clip to %s (video, frames, ground truth)%s', num_frames,
                image_size[1], image_size[0], out, ' (MANO stand-in)' if sampler.is_standin else '')
    return {'video': video_path, 'frames_dir': frames_dir, 'json': json_path,
            'num_frames': num_frames, 'mano_standin': sampler.is_standin}


def read_clip(folder):
    """The ground truth of a clip written by `generate_clip`.

    Returns:
        dict: 'K' 3 x 3, 'fps', 'image_size' (H, W), 'xyz' N x 21 x 3 and 'verts' N x 778 x 3
        (m, camera frame), 'joints_uv' N x 21 x 2 (px), 'boxes' (N HandBox), 'files' (N frame
        paths), 'video' (path).
    """
    with open(os.path.join(folder, CLIP_JSON)) as f:
        meta = json.load(f)
    K = np.array(meta['K'], dtype=np.float64)
    xyz = np.array([frame['joints'] for frame in meta['frames']], dtype=np.float64)
    return {'K': K, 'fps': meta['fps'], 'image_size': tuple(meta['image_size']), 'xyz': xyz,
            'verts': np.load(os.path.join(folder, CLIP_VERTS)),
            'joints_uv': project(xyz, K)[..., :2],
            'boxes': [HandBox(np.array(frame['box_center']), frame['box_side'])
                      for frame in meta['frames']],
            'files': [os.path.join(folder, frame['file']) for frame in meta['frames']],
            'video': os.path.join(folder, CLIP_VIDEO)}


class TruthPredictor:
    """The ground truth standing in for the network in wild.tracking.track: the k-th call
    returns frame k's true points (whatever the image and box), as predict(img_bgr, box) ->
    (xyz_cam 799 x 3 m, joints_uv 21 x 2 px) does.

    Args:
        clip: `read_clip`'s dict.
    Attributes:
        calls: the number of predictions made (the next frame's index).
    """

    def __init__(self, clip):
        self.xyz_cam = np.concatenate([clip['verts'], clip['xyz']], axis=1)  # (N, 799, 3)
        self.joints_uv = clip['joints_uv']
        self.calls = 0

    def __call__(self, img_bgr, box):
        index = self.calls
        if index >= len(self.xyz_cam):
            raise IndexError(f'TruthPredictor: called for frame {index}, the clip has '
                             f'{len(self.xyz_cam)} frames')
        self.calls += 1
        return self.xyz_cam[index], self.joints_uv[index]


def _size(text):
    """'WxH' -> (height, width)."""
    try:
        width, height = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r}: expected WIDTHxHEIGHT in pixels, e.g. 320x240') from None
    if width < 16 or height < 16:
        raise argparse.ArgumentTypeError(f'{text!r}: at least 16 x 16 px')
    return height, width


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Render a synthetic hand clip (mp4 + frames + ground-truth JSON).')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--mano_root', '--mano-root', required=True,
                        help='folder with MANO_RIGHT.pkl (or the stand-in)')
    parser.add_argument('--frames', type=int, default=24, help='number of frames (default 24)')
    parser.add_argument('--size', type=_size, default=(240, 320),
                        help='frame size WIDTHxHEIGHT, px (default 320x240)')
    parser.add_argument('--fps', type=float, default=10.0, help='frame rate, frames/s (default 10)')
    parser.add_argument('--extent', type=float, default=100.0,
                        help='projected hand (mesh) side in the first frame, px (default 100)')
    parser.add_argument('--focal', type=float, default=500.0, help='focal length, px (default 500)')
    parser.add_argument('--background', choices=BACKGROUNDS, default='smooth',
                        help='background style (default smooth)')
    parser.add_argument('--seed', type=int, default=0, help='seed (default 0)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    try:
        spec = ClipSpec(num_frames=args.frames, image_size=args.size, fps=args.fps,
                        extent_px=args.extent, focal_px=args.focal,
                        background=args.background)
        generate_clip(args.out, args.mano_root, spec, args.seed, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as err:
        print(f'synthetic.clip: error: {err}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
