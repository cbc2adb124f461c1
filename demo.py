"""SAR on your own images and videos: per image a mesh (.obj, camera frame, meters), an overlay
and a 2D skeleton; per video the mesh and joints of every frame in one JSON-lines file and
an overlay video.

    python demo.py --input hand.jpg --checkpoint output/checkpoint/<exp>/snapshot_49.pth.tar
    python demo.py --input photos/ --checkpoint snapshot.pth.tar --bbox 120,80,200,200 --left
    python demo.py --input clip.mp4 --checkpoint snapshot.pth.tar --bbox auto --smooth
    python demo.py --sequence frames/ --checkpoint snapshot.pth.tar --fps 30 --save_obj

Camera and placement, when not given:
- hand box (--bbox x,y,w,h in pixels): the centred FreiHAND box, 130/224 of the shorter image
  side, around the image centre; --bbox auto starts there and re-crops around the predicted
  joints until the box moves less than 3 % (at most 4 predictions, then the final one);
- intrinsics: --K fx,fy,cx,cy (pixels) or --K FILE.json; else --focal (pixels, principal point
  at the image centre); else, for a photo, the EXIF FocalLengthIn35mmFilm (the longer image
  side spans 36 mm); else a 60 degree field of view across the longer side. Each image's
  record says which (K_source); a K whose principal point is outside an image, or a
  non-positive focal, skips that image with a message;
- root (wrist) depth (--root_depth): 'auto' (default): where the predicted skeleton has the
  metric size of hand_scale_m (config.py; inference/root_depth.py); or meters. The depth only moves
  the hand along its rays: the 2D overlay does not depend on it.
--fit_mano fits MANO (manopth's convention, wild/mano_fit.py) to each mesh; every image gets
<name>.json (K, box, hand, root depth, joints in the camera frame and in pixels, MANO
parameters when fitted; docs/own_images.md, "The JSON record").
- --left: the image is flipped, the network (trained on right hands) predicts, and the mesh is
  mirrored back (x -> -x in the camera frame, faces re-wound).
Videos (--input FILE that is not an image, any format OpenCV reads) and image sequences
(--sequence FOLDER, frames in file-name order) are tracked without a detector: the first
frame uses the box above, each next frame the box around the joints predicted in the previous
one (1.57 x their extent, FreiHAND's framing); a box that collapses or leaves the image is
reset to the last good one, and the log says so with the frame index. --smooth filters the
decoded 3D points over time with a One Euro filter (--smooth_min_cutoff, --smooth_beta).
Any config.py field can follow (e.g. --device cpu --backbone resnet18 --input_img_shape 128,128
for a checkpoint without a stored configuration; a checkpoint's own is read automatically).
"""
import argparse
import glob
import logging
import os
import sys

import cv2
import numpy as np
import torch
from tqdm import tqdm

import config as config_module
from inference.decoding import Decoding
from inference.network import inference_amp, load_inference_model
from inference.predictor import HandPredictor
from inference.root_depth import root_prior_for
from inference.run_config import resolve_config
from utils.constants import FREIHAND_IMG_SIZE, HAND_BOX_SIZE
from utils.errors import DataError, ImageInputError
from utils.files.atomic import atomic_write_json
from utils.files.obj import write_obj
from utils.files.video import IMAGE_EXTENSIONS, FolderFrames, VideoFrames, is_image_file
from utils.mano import MANO
from utils.runtime.launch import log_config_notes, run_main
from utils.runtime.logger import setup_logger
from wild.camera import check_intrinsics, hand_record, image_intrinsics, parse_K
from wild.mano_fit import ManoFitter, fit_record
from wild.tracking import DEFAULT_BETA, DEFAULT_MIN_CUTOFF_HZ, HandBox, OneEuroFilter, box_problem
from wild.video import auto_box, box_xywh, run_video

logger = logging.getLogger('sar')
BOX_SEARCH_DEPTH_M = 0.7  # m: --bbox auto searches at this depth (the 2D joints do not depend on
# it); a video's frames before the first good --root_depth auto use it too
DEFAULT_FPS = 30.0  # frames/s of a --sequence (and of a video whose file gives none)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--input', help='an image, a folder of images, or a video file')
    source.add_argument('--sequence', help='a folder of images: the frames of one video, in '
                                           'file-name order')
    parser.add_argument('--out', default='output/demo', help='output folder')
    parser.add_argument('--bbox', help='hand box x,y,w,h in pixels, or "auto" (default: the '
                                       'centred box); for a video, the first frame\'s box')
    parser.add_argument('--K', help='intrinsics fx,fy,cx,cy in pixels, or a JSON file '
                                    '({"fx", "fy", "cx", "cy"} or a 3 x 3 "K")')
    parser.add_argument('--focal', type=float, help='focal length in pixels of the input image '
                                                    '(principal point at the image centre)')
    parser.add_argument('--root_depth', default='auto',
                        help="wrist depth: 'auto' (default: from the hand's size and "
                             "hand_scale_m) or meters")
    parser.add_argument('--fit_mano', action='store_true',
                        help='fit MANO parameters to each mesh (written to the JSON record)')
    parser.add_argument('--left', action='store_true', help='the images show left hands')
    parser.add_argument('--fps', type=float,
                        help=f'frames/s of the video (default: the file\'s own; {DEFAULT_FPS:g} '
                             f'for a --sequence); sets the overlay video and the filter rate')
    parser.add_argument('--save_obj', action='store_true', help='video: also one OBJ per frame')
    parser.add_argument('--smooth', action='store_true',
                        help='video: One Euro filter on the decoded 3D points (off: the raw '
                             'per-frame results)')
    parser.add_argument('--smooth_min_cutoff', type=float, default=DEFAULT_MIN_CUTOFF_HZ,
                        help='--smooth: cutoff at rest, Hz (default %(default)s; lower: '
                             'smoother, more lag)')
    parser.add_argument('--smooth_beta', type=float, default=DEFAULT_BETA,
                        help='--smooth: cutoff increase per m/s of speed (default %(default)s; '
                             'higher: less lag in fast motion)')
    return parser.parse_known_args(argv)


def list_images(path):
    if os.path.isdir(path):
        files = sorted(f for f in glob.glob(os.path.join(path, '*')) if is_image_file(f))
        if not files:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {path}")
        return files
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--input {path}: no such file or folder")
    return [path]


def hand_box(bbox_text, width, height):
    """(centre (2,), side) of the square hand box in image pixels; bbox_text None or 'auto'
    gives the default centred box (where --bbox auto starts)."""
    if bbox_text is None or bbox_text == 'auto':
        side = HAND_BOX_SIZE / FREIHAND_IMG_SIZE * min(width, height)
        return HandBox(np.array([(width - 1) / 2, (height - 1) / 2]), side)
    try:
        x, y, w, h = (float(v) for v in bbox_text.split(','))
    except ValueError:
        raise config_module.ConfigError(f"--bbox {bbox_text!r}: expected four numbers x,y,w,h "
                                        f"or 'auto'") from None
    if w <= 0 or h <= 0:
        raise config_module.ConfigError(f"--bbox {bbox_text!r}: width and height must be positive")
    return HandBox(np.array([x + w / 2, y + h / 2]), max(w, h))


def parse_root_depth(text):
    """--root_depth: 'auto' or a positive depth in meters."""
    if text == 'auto':
        return 'auto'
    try:
        depth = float(text)
    except ValueError:
        depth = float('nan')
    if not depth > 0 or depth == float('inf'):
        raise config_module.ConfigError(f"--root_depth {text!r}: give 'auto' or a positive depth "
                                        f"in meters (e.g. 0.5)")
    return depth


def intrinsics(args, width, height, image_path=None, name='image'):
    """(K, K_source) of one image or video (wild.camera.image_intrinsics), checked."""
    K, source, detail = image_intrinsics(width, height, K=args.K_parsed, focal=args.focal,
                                         image_path=image_path)
    check_intrinsics(K, width, height, name)
    logger.info('%s: K from %s (%s)', name, source, detail)
    return K, source


def first_box(args, img_bgr, make_predictor):
    """The box of a still image or of a video's first frame: --bbox, the default or auto."""
    height, width = img_bgr.shape[:2]
    box = hand_box(args.bbox, width, height)
    problem = box_problem(box, (height, width)) if args.bbox not in (None, 'auto') else None
    if problem is not None:
        raise config_module.ConfigError(f'--bbox {args.bbox}: {problem}; give a box on the hand '
                                        f'(x,y,w,h in pixels) or --bbox auto')
    if args.bbox == 'auto':
        # The 2D joints do not depend on K (decoding and projecting with one K cancel), so
        # the search can use the default box's camera.
        K = image_intrinsics(width, height, K=args.K_parsed, focal=args.focal)[0]
        box = auto_box(make_predictor(K, BOX_SEARCH_DEPTH_M), img_bgr, box)
    return box


def process_image(args, path, img_bgr, make_predictor, faces, fitter):
    """Predict, fit (with --fit_mano) and write the outputs of one image (img_bgr, read)."""
    from utils.files.images import save_image
    from utils.vis.drawing import draw_skeleton
    from utils.vis.render import render_mesh  # after torch/torchvision (see utils/render.py)

    height, width = img_bgr.shape[:2]
    K, K_source = intrinsics(args, width, height, path, name=path)
    box = first_box(args, img_bgr, make_predictor)
    xyz_cam, joints_uv = make_predictor(K, args.root_depth)(img_bgr, box, name=path)
    verts = xyz_cam[:len(xyz_cam) - len(joints_uv)]
    mano = fit = None
    if fitter is not None:
        fit = fitter.fit(verts[None])
        mano = fit_record(fit, 0)
    record = hand_record(K, K_source, box_xywh(box), 'left' if args.left else 'right',
                         xyz_cam[-len(joints_uv):], 'auto' if args.root_depth == 'auto' else 'given',
                         fx_as_fy=args.fx_as_fy, mano=mano,
                         hand_scale_m=args.hand_scale_m if args.root_depth == 'auto' else None)

    name = os.path.splitext(os.path.basename(path))[0]
    write_obj(os.path.join(args.out, f'{name}.obj'), verts, faces)
    atomic_write_json(os.path.join(args.out, f'{name}.json'), record, indent=1)
    img_rgb = np.ascontiguousarray(img_bgr[:, :, ::-1])
    overlay = render_mesh(verts, faces, K, (height, width), background=img_rgb)[0]
    save_image(os.path.join(args.out, f'{name}_mesh.png'), overlay)
    if fit is not None:  # the fitted MANO mesh, drawn the same way
        fitted = render_mesh(fit['verts'][0], faces, K, (height, width), background=img_rgb)[0]
        save_image(os.path.join(args.out, f'{name}_mano_mesh.png'), fitted)
    skeleton = draw_skeleton(img_rgb, joints_uv)
    save_image(os.path.join(args.out, f'{name}_skeleton.png'), skeleton)


def run_images(args, make_predictor, faces, fitter):
    """Every image of --input. One that cannot be decoded, or processed as asked (wild.camera.
    ImageInputError: its K, a degenerate auto depth), is named when met and skipped; the others
    go on, and the run fails at the end with the list."""
    paths = list_images(args.input)
    unreadable, skipped = [], []
    for path in tqdm(paths, desc='images'):
        img_bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if img_bgr is None:  # named now, the others still processed, the run fails at the end
            logger.warning('skipping %s: not an image OpenCV can decode', path)
            unreadable.append(path)
            continue
        try:
            process_image(args, path, img_bgr, make_predictor, faces, fitter)
        except ImageInputError as err:
            logger.warning('skipping %s', err)
            skipped.append(str(err))
    done = len(paths) - len(unreadable) - len(skipped)
    if done:
        print(f'wrote meshes (.obj, camera frame, meters), records (.json), overlays and '
              f'skeletons of {done} image(s) to {args.out}')
    problems = []
    if unreadable:
        problems.append(f"{len(unreadable)} of {len(paths)} image(s) could not be decoded and "
                        f"were skipped: {', '.join(unreadable)} (not images OpenCV can read: "
                        f"re-export or remove them)")
    if skipped:
        problems.append(f'{len(skipped)} of {len(paths)} image(s) skipped:\n'
                        + '\n'.join(f'  {s}' for s in skipped))
    if problems:
        raise DataError('\n'.join(problems))


class VideoRootDepth:
    """The predictor of a video with --root_depth auto: a frame whose prediction gives no depth
    keeps the previous frame's, or BOX_SEARCH_DEPTH_M before the first good one (logged);
    `source` says what the last frame got: 'auto', 'previous_frame' or 'fallback'."""

    def __init__(self, predictor):
        self.predictor = predictor
        self.frame, self.last_depth, self.source = -1, None, 'auto'

    def __call__(self, img_bgr, box):
        self.frame += 1
        first = self.last_depth is None
        self.predictor.fallback_depth = BOX_SEARCH_DEPTH_M if first else self.last_depth
        xyz_cam, joints_uv = self.predictor(img_bgr, box, name=f'frame {self.frame}')
        if self.predictor.root_source == 'auto':
            self.source, self.last_depth = 'auto', float(xyz_cam[-len(joints_uv), 2])
        else:
            self.source = 'fallback' if first else 'previous_frame'
        return xyz_cam, joints_uv


def run_frames(args, frames, make_predictor, faces, fitter):
    height, width = frames.image_size
    fps = args.fps or frames.fps or DEFAULT_FPS
    K, K_source = intrinsics(args, width, height, name=frames.name)
    box = first_box(args, frames.first_frame, make_predictor)
    smoother = None
    if args.smooth:
        try:
            smoother = OneEuroFilter(args.smooth_min_cutoff, args.smooth_beta, rate=fps)
        except ValueError as err:
            raise config_module.ConfigError(f'--smooth: {err}') from None
    auto = args.root_depth == 'auto'
    predict = VideoRootDepth(make_predictor(K, 'auto')) if auto else make_predictor(K, args.root_depth)

    def record_fields(result):
        num_joints = len(result.joints_uv)
        verts = result.xyz_cam[:len(result.xyz_cam) - num_joints]
        mano = fit_record(fitter.fit(verts[None]), 0) if fitter is not None else None
        return hand_record(K, K_source, box_xywh(result.box), 'left' if args.left else 'right',
                           result.xyz_cam[-num_joints:], predict.source if auto else 'given',
                           fx_as_fy=args.fx_as_fy, mano=mano,
                           hand_scale_m=args.hand_scale_m if auto else None)

    summary = run_video(frames, predict, box, K, faces, args.out, frames.name, fps,
                        smoother=smoother, save_obj=args.save_obj, num_frames=frames.num_frames,
                        record_fields=record_fields)
    print(f"wrote {summary['frames']} frames ({summary['resets']} with a reset box): "
          f"{summary['jsonl']} (joints and vertices, camera frame, meters) and {summary['video']}")


def main(argv):
    args, rest = parse_args(argv)
    cfg = resolve_config(rest, from_checkpoint=True)
    if not cfg.checkpoint and not cfg.onnx:
        raise config_module.ConfigError('no network given: python demo.py --input IMG '
                                        '--checkpoint PATH (or --onnx FILE)')
    device = torch.device(cfg.device)  # resolve_config refused cuda without a GPU
    args.root_depth = parse_root_depth(args.root_depth)
    args.K_parsed = parse_K(args.K) if args.K else None
    if args.focal is not None and not args.focal > 0:
        raise config_module.ConfigError(f'--focal {args.focal:g}: the focal length must be a '
                                        f'positive number of pixels')
    if args.K and args.focal is not None:
        raise config_module.ConfigError('--K and --focal both given: --K holds the focal '
                                        'length too; give one of them')
    if args.fps is not None and not args.fps > 0:
        raise config_module.ConfigError(f'--fps {args.fps}: must be a positive frame rate')
    # Open the frames before loading the network: a bad file fails at once.
    frames = None
    if args.sequence:
        frames = FolderFrames(args.sequence)
    elif os.path.isfile(args.input) and not is_image_file(args.input):
        frames = VideoFrames(args.input)
    video_only = [flag for flag, given in (('--fps', args.fps is not None), ('--smooth', args.smooth),
                                           ('--save_obj', args.save_obj)) if given]
    if frames is None and video_only:
        raise config_module.ConfigError(f"{', '.join(video_only)}: for videos only (--input VIDEO "
                                        f"or --sequence FOLDER); still images always get an OBJ")
    log_config_notes(setup_logger())
    mano = MANO(cfg.mano_root)
    model = load_inference_model(cfg, mano, device)
    amp_dtype = inference_amp(cfg, device)
    faces = mano.faces[:, ::-1] if args.left else mano.faces

    root_prior = root_prior_for(mano, cfg.hand_scale_m)
    decoding = Decoding.from_config(cfg, device, amp_dtype)
    # the joints' pixels in the record are projected as the decoding back-projected them
    args.fx_as_fy, args.hand_scale_m = decoding.fx_as_fy, cfg.hand_scale_m
    fitter = None
    if args.fit_mano:
        fitter = ManoFitter(cfg.mano_root, side='left' if args.left else 'right')
        logger.info('--fit_mano: %s, flat_hand_mean=%s', fitter.model, fitter.flat_hand_mean)

    def make_predictor(K, root_depth):
        return HandPredictor(model, K, decoding, device, root_depth=root_depth,
                             root_prior=root_prior, left=args.left)

    os.makedirs(args.out, exist_ok=True)
    if frames is None:
        run_images(args, make_predictor, faces, fitter)
    else:
        run_frames(args, frames, make_predictor, faces, fitter)


if __name__ == '__main__':
    sys.exit(run_main(main, sys.argv[1:], 'demo.py'))
