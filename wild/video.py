"""SAR over video frames without a hand detector: the box of each frame comes from the joints
predicted in the previous one (wild.tracking), and per frame the mesh and joints are written
to one JSON-lines file, the mesh is drawn over the frame into an overlay video and,
optionally, saved as an OBJ.

The loop takes a `predict(img_bgr, box) -> (xyz_cam 799 x 3 m, joints_uv 21 x 2 px)` callable
(inference.predictor.HandPredictor runs the network; tests pass the ground truth), so it runs
without a network too. Frames come from utils.files.video (a video file or a folder of images).
"""
import json
import logging
import os
from typing import NamedTuple, Optional

import cv2
import numpy as np
from tqdm import tqdm

from utils.files.atomic import atomic_open, remove_stale_temporaries
from utils.files.obj import write_obj
from utils.files.video import atomic_video_writer
from wild.tracking import HandBox, TrackState, as_box, refine_box

logger = logging.getLogger(__name__)

AUTO_MAX_ITER = 4  # --bbox auto: at most this many predictions before the final one
AUTO_TOL = 0.03  # --bbox auto: stop when the box moves less than 3 % of its side
DECIMALS_M = 6  # JSONL coordinates rounded to 1e-6 m (as pred.json)
DECIMALS_PX = 2  # JSONL box rounded to 0.01 px
BOX_COLOR_BGR = (60, 200, 60)  # overlay: the box a frame was cropped with
RESET_BOX_COLOR_BGR = (40, 40, 230)  # overlay: a box reset to the last good one
MESH_COLOR_RGB = (0.45, 0.65, 1.0)  # overlay: light blue, apart from skin tones
MESH_OPACITY = 0.7  # overlay: the frame shows through the mesh, so a misfit is visible


class FrameResult(NamedTuple):
    """One frame of the tracking loop."""

    index: int  # frame index (0-based)
    box: HandBox  # the box the frame was cropped with (px)
    box_reset: bool  # the box from the previous frame's joints was rejected: this is the last good one
    reset_reason: Optional[str]  # why it was rejected, else None
    xyz_cam: np.ndarray  # 799 x 3, m, camera frame (smoothed when a filter was given)
    joints_uv: np.ndarray  # 21 x 2 px, the raw prediction's joints (the next box comes from them)


def box_xywh(box):
    """[x, y, w, h] (px, top-left corner and size) of a square (center, side) box, as --bbox."""
    center, side = as_box(box)
    return [float(center[0] - side / 2), float(center[1] - side / 2), float(side), float(side)]


def auto_box(predict, img_bgr, start_box, max_iter=AUTO_MAX_ITER, tol=AUTO_TOL):
    """`--bbox auto`: the box found by re-cropping around the predicted joints (refine_box).

    Args:
        predict: (img_bgr, box) -> (xyz_cam, joints_uv), e.g. inference.predictor.HandPredictor.
        img_bgr: H x W x 3 image (a still image or a video's first frame).
        start_box: (center, side) to start from (the default centred box), px.
    Returns:
        HandBox to predict at. The search is logged (iterations, convergence, box).
    """
    result = refine_box(lambda img, box: predict(img, box)[1], img_bgr, start_box,
                        max_iter=max_iter, tol=tol)
    x, y, w, _ = box_xywh(result.box)
    if result.reason is not None:
        state = f'stopped after {result.iterations} predictions ({result.reason})'
    elif result.converged:
        state = f'converged after {result.iterations} predictions'
    else:
        state = f'not converged after {result.iterations} predictions (moved >= {100 * tol:g} %)'
    logger.info('--bbox auto: %s: box %.1f,%.1f,%.1f,%.1f', state, x, y, w, w)
    return result.box


def track(frames, predict, first_box, smoother=None):
    """Predict every frame at the box that the previous frame's joints give.

    The first frame is cropped with `first_box`; each next frame with the box around the
    joints just predicted (wild.tracking.update_box: the joints' extent enlarged by
    BOX_ENLARGE). A box that collapses or leaves the image is replaced by the last good one;
    each run of such frames is logged once (a warning with the frame index and the reason)
    and its end once (info).

    Args:
        frames: iterable of (index, H x W x 3 uint8 BGR frame), one image size.
        predict: (img_bgr, box) -> (xyz_cam 799 x 3 m, joints_uv 21 x 2 px).
        first_box: (center, side) of the first frame, px.
        smoother: optional callable 799 x 3 -> 799 x 3 applied to each frame's xyz_cam in
            order (wild.tracking.OneEuroFilter); the boxes follow the raw joints.
    Yields:
        (img_bgr, FrameResult) per frame.
    """
    state = None
    pending = None  # why the box from the last frame's joints was rejected
    lost_since = None  # first frame of the current run on the last good box
    for index, img in frames:
        if state is None:
            state = TrackState(first_box, img.shape[:2])
        if pending is not None and lost_since is None:
            lost_since = index
            center, side = state.box
            logger.warning('frame %d: hand box reset to the last good box (centre %.1f, %.1f px, '
                           'side %.1f px): the box around frame %d\'s joints was rejected: %s',
                           index, center[0], center[1], side, index - 1, pending)
        elif pending is None and lost_since is not None:
            logger.info('frame %d: the box follows the predicted joints again (frames %d-%d '
                        'were cropped with the last good box)', index, lost_since, index - 1)
            lost_since = None
        box = state.box
        xyz_cam, joints_uv = predict(img, box)
        out = smoother(xyz_cam) if smoother is not None else np.asarray(xyz_cam)
        yield img, FrameResult(index, box, pending is not None, pending, out, np.asarray(joints_uv))
        _, pending = state.update(joints_uv)


def frame_record(result, num_verts, fps=None):
    """The JSON-lines object of one frame.

    Keys: frame (index), time (s, index / fps; None without a frame rate), box ([x, y, w, h]
    px, the crop of this frame), box_reset (bool) and reset_reason (str or None), joints
    (21 x 3) and vertices (num_verts x 3): meters, camera frame.
    """
    xyz = np.round(np.asarray(result.xyz_cam, dtype=np.float64), DECIMALS_M)
    return {
        'frame': int(result.index),
        'time': round(result.index / fps, 6) if fps else None,
        'box': [round(v, DECIMALS_PX) for v in box_xywh(result.box)],
        'box_reset': bool(result.box_reset),
        'reset_reason': result.reset_reason,
        'joints': xyz[num_verts:].tolist(),
        'vertices': xyz[:num_verts].tolist(),
    }


def draw_box(img_bgr, box, color):
    """Draw a square box outline on an image in place (1 px, anti-aliased)."""
    x, y, w, h = box_xywh(box)
    shift = 4  # cv2 fixed-point fractional bits: 1/16 px
    scale = 2 ** shift
    top_left = (int(round(x * scale)), int(round(y * scale)))
    bottom_right = (int(round((x + w) * scale)), int(round((y + h) * scale)))
    cv2.rectangle(img_bgr, top_left, bottom_right, color, 1, cv2.LINE_AA, shift)


def mesh_overlay(verts, faces, K, img_bgr):
    """The frame with the mesh blended over it (MESH_COLOR_RGB at MESH_OPACITY), BGR uint8.

    Args:
        verts: V x 3 (m, camera frame); faces: F x 3; K: 3 x 3 px; img_bgr: H x W x 3 uint8.
    """
    # Imported here, after torch/torchvision, and only when rendering (see utils/render.py).
    from utils.vis.render import render_mesh

    rgb, _, mask = render_mesh(verts, faces, K, img_bgr.shape[:2], color=MESH_COLOR_RGB)
    mesh_bgr = rgb[:, :, ::-1].astype(np.float32)
    blended = MESH_OPACITY * mesh_bgr + (1.0 - MESH_OPACITY) * img_bgr.astype(np.float32)
    return np.where(mask[:, :, None], np.rint(blended).astype(np.uint8), img_bgr)


def output_paths(out_dir, name):
    """{'jsonl', 'video', 'obj_dir'} for the outputs of the sequence `name` in out_dir."""
    return {'jsonl': os.path.join(out_dir, f'{name}.jsonl'),
            'video': os.path.join(out_dir, f'{name}_mesh.mp4'),
            'obj_dir': os.path.join(out_dir, f'{name}_obj')}


def run_video(frames, predict, first_box, K, faces, out_dir, name, fps, smoother=None,
              save_obj=False, num_frames=None, progress=True, record_fields=None):
    """Track and predict every frame; write the JSON lines, the overlay video and the OBJs.

    Outputs (output_paths): `<name>.jsonl`, one frame_record per line; `<name>_mesh.mp4`, each
    frame with the mesh rendered over it (mesh_overlay) and the frame's box (green;
    red when it was reset); with save_obj, `<name>_obj/<index:05d>.obj`. The JSON lines and the
    video are written to temporary files and renamed once complete, so an interrupted run
    leaves neither under its final name.

    Args:
        frames: a frame source (utils.files.video.VideoFrames or FolderFrames: iterable of
            (index, H x W x 3 uint8 BGR frame), with `image_size`).
        predict, first_box, smoother: see `track`.
        K: 3 x 3 intrinsics of the frames (the ones `predict` decodes with), px.
        faces: F x 3 mesh faces (re-wound for left hands).
        out_dir, name: where and under which name to write.
        fps: frame rate of the overlay video and of the JSONL times, frames/s.
        save_obj: also write one OBJ per frame.
        num_frames: for the progress bar, when known.
        record_fields: optional callable FrameResult -> dict of more fields for that frame's
            JSON line (demo.py: the hand record of wild.camera.hand_record).
    Returns:
        dict: 'frames', 'resets' (frames cropped with a reset box) and the output paths.
    """
    paths = output_paths(out_dir, name)
    os.makedirs(out_dir, exist_ok=True)
    for stale in remove_stale_temporaries(out_dir, f'{name}*'):
        logger.info('removed %s, left by an interrupted run', stale)
    count = resets = 0
    image_size = tuple(frames.image_size)
    with atomic_open(paths['jsonl'], 'w') as jsonl, \
            atomic_video_writer(paths['video'], fps, image_size) as video:
        results = track(frames, predict, first_box, smoother)
        for img_bgr, result in tqdm(results, total=num_frames, desc=name, unit='frame',
                                    disable=not progress, dynamic_ncols=True):
            num_verts = len(result.xyz_cam) - len(result.joints_uv)
            verts = result.xyz_cam[:num_verts]
            record = frame_record(result, num_verts, fps)
            if record_fields is not None:
                record.update(record_fields(result))
            jsonl.write(json.dumps(record) + '\n')
            if save_obj:
                write_obj(os.path.join(paths['obj_dir'], f'{result.index:05d}.obj'), verts, faces)
            try:
                overlay = mesh_overlay(verts, faces, K, img_bgr)
            except ValueError as err:  # e.g. a wild prediction behind the camera
                logger.warning('frame %d: mesh not drawn on the overlay video (%s)', result.index,
                               err)
                overlay = img_bgr.copy()
            draw_box(overlay, result.box, RESET_BOX_COLOR_BGR if result.box_reset else BOX_COLOR_BGR)
            video.write(overlay)
            count += 1
            resets += result.box_reset
    logger.info('%s: %d frames, %d of them cropped with a reset box; wrote %s and %s%s', name,
                count, resets, paths['jsonl'], paths['video'],
                f' and {count} OBJs in {paths["obj_dir"]}' if save_obj else '')
    return {'frames': count, 'resets': resets, **paths}
