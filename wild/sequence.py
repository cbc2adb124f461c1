"""A video or an image sequence: track the hand frame by frame (wild.tracking.track) and write
the chosen outputs of every frame (wild.outputs.OUTPUTS with a video form: the JSON lines, the overlay
video, per-frame meshes) with the same records and overlay as photos."""
import logging
import os
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
from tqdm import tqdm

from wild.boxes import box_xywh
from wild.tracking import track
from utils.files.atomic import remove_stale_temporaries
from wild.outputs import DEFAULT_VIDEO_OUTPUTS, Frame, Scene, open_video_outputs
from wild.records import Hand

logger = logging.getLogger(__name__)

BOX_SEARCH_DEPTH_M = 0.7  # m: a video's frames before the first good --root_depth auto use it


class VideoRootDepth:
    """`(img_bgr, box) -> (xyz_cam, joints_uv)` of a video with --root_depth auto, with an
    inference.predictor.HandPredictor, the frames' K and side (left: a left hand): a frame
    whose prediction gives no depth keeps the previous frame's, or BOX_SEARCH_DEPTH_M before
    the first good one (logged); `source` says what the last frame got: 'auto',
    'previous_frame' or 'fallback'."""

    def __init__(self, predictor, K, left=False):
        self.predictor, self.K, self.left = predictor, K, left
        self.frame, self.last_depth, self.source = -1, None, 'auto'

    def __call__(self, img_bgr, box):
        self.frame += 1
        first = self.last_depth is None
        xyz_cam, joints_uv, root_source = self.predictor.predict(
            img_bgr, box, self.K, 'auto', left=self.left,
            fallback_depth=BOX_SEARCH_DEPTH_M if first else self.last_depth,
            name=f'frame {self.frame}')
        if root_source == 'auto':
            self.source, self.last_depth = 'auto', float(xyz_cam[-len(joints_uv), 2])
        else:
            self.source = 'fallback' if first else 'previous_frame'
        return xyz_cam, joints_uv


@dataclass
class VideoJob:
    """Where and how one video's outputs are written.

    out_dir, name: the folder and the outputs' stem; fps: frame rate of the overlay video and
    of the JSON lines' times (frames/s); faces: F x 3 right-hand faces; outputs: names from
    wild.outputs.VIDEO_FORMS; axes: the OBJ and PLY files' convention (GLB: always glTF's); K: 3 x 3 px and K_source of
    the frames; side: 'right' or 'left'; make_hand: optional FrameResult -> wild.records.Hand
    (demo.py: with the root depth's source and the fitted MANO; default `plain_hand`);
    num_frames: for the progress bar; progress: show it.
    """

    out_dir: str
    name: str
    fps: float
    faces: np.ndarray
    K: np.ndarray
    K_source: str = 'K'
    side: str = 'right'
    outputs: tuple = DEFAULT_VIDEO_OUTPUTS
    axes: str = 'opencv'
    make_hand: Optional[Callable] = None
    num_frames: Optional[int] = None
    progress: bool = True
    first_source: str = field(default='bbox')


def plain_hand(result, job, root_depth_source='given'):
    """The Hand of one tracked frame (wild.tracking.FrameResult) with the job's camera and side."""
    num_verts = len(result.xyz_cam) - len(result.joints_uv)
    source = job.first_source if result.box_source == 'first' else result.box_source
    return Hand(box_xywh=box_xywh(result.box), side=job.side, score=None, box_source=source,
                K=job.K, K_source=job.K_source, root_depth=float(result.xyz_cam[num_verts, 2]),
                root_depth_source=root_depth_source, joints_cam=result.xyz_cam[num_verts:],
                verts_cam=result.xyz_cam[:num_verts], joints_uv=result.joints_uv)


def run_video(frames, predict, first_box, job, smoother=None, redetect=None):
    """Track and predict every frame; write the job's outputs (wild.outputs.open_video_outputs).

    Args:
        frames: a frame source (utils.files.video.VideoFrames or FolderFrames: iterable of
            (index, H x W x 3 uint8 BGR frame), with `image_size`).
        predict, first_box, smoother, redetect: see wild.tracking.track.
        job: VideoJob.
    Returns:
        dict: 'frames', 'resets' (frames cropped with a reset box), 'paths' (output -> path).
    """
    os.makedirs(job.out_dir, exist_ok=True)
    for stale in remove_stale_temporaries(job.out_dir, f'{job.name}*'):
        logger.info('removed %s, left by an interrupted run', stale)
    make_hand = job.make_hand or (lambda result: plain_hand(result, job))
    count = resets = 0
    with open_video_outputs(job.out_dir, job.name, job.fps, frames.image_size,
                            job.outputs) as (write, paths):
        results = track(frames, predict, first_box, smoother, redetect)
        for img_bgr, result in tqdm(results, total=job.num_frames, desc=job.name, unit='frame',
                                    disable=not job.progress, dynamic_ncols=True):
            scene = Scene(f'{job.name}:{result.index}', img_bgr, [make_hand(result)], job.faces,
                          job.axes, (result.box_reset,))
            write(Frame(result.index, scene, result.reset_reason))
            count += 1
            resets += result.box_reset
    logger.info('%s: %d frames, %d of them cropped with a reset box; wrote %s', job.name, count,
                resets, ', '.join(paths.values()))
    return {'frames': count, 'resets': resets, 'paths': paths}
