"""SAR on your own images and videos: per image every hand's mesh (.obj, and .glb/.ply with
--outputs; camera frame, meters), an overlay with each hand's box and L/R label, a 2D skeleton
and one JSON record; per video the mesh and joints of every frame in one JSON-lines file and
an overlay video.

    python demo.py --input hand.jpg --checkpoint output/checkpoint/<exp>/snapshot_49.pth.tar
    python demo.py --input photos/ --checkpoint snapshot.pth.tar --bbox 120,80,200,200 --left
    python demo.py --input photos/ --checkpoint snapshot.pth.tar --detector mediapipe --max_hands 2
    python demo.py --input photos/ --checkpoint snapshot.pth.tar --boxes boxes.json \\
        --outputs overlay,side,obj,glb,ply,json --axes opengl
    python demo.py --input clip.mp4 --checkpoint snapshot.pth.tar --bbox auto --smooth
    python demo.py --sequence frames/ --checkpoint snapshot.pth.tar --fps 30 --outputs json,overlay,obj

Hands and their boxes: --boxes FILE (JSON: per image name a list of {"box": [x, y, w, h],
"side": "left"|"right", "score": s}: your own detector's boxes); --detector mediapipe (every
hand, up to --max_hands, with its side and score; the optional extra: `make detector`);
--bbox x,y,w,h (one hand, pixels; --left for a left hand); else the centred FreiHAND box, 130/224
of the shorter image side, around the image centre; --bbox auto starts there and re-crops
around the predicted joints until the box moves less than 3 % (at most 4 predictions, then
the final one). Left hands go through the mirrored path below.
Camera and placement, when not given:
- intrinsics: --K fx,fy,cx,cy (pixels) or --K FILE.json; else --focal (pixels, principal point
  at the image centre); else, for a photo, the EXIF FocalLengthIn35mmFilm (the longer image
  side spans 36 mm); else a 60 degree field of view across the longer side. Each image's
  record says which (K_source); a K whose principal point is outside an image, or a
  non-positive focal, skips that image with a message;
- root (wrist) depth (--root_depth): 'auto' (default): where the predicted skeleton has the
  metric size of hand_scale_m (config.py; inference/root_depth.py); or meters. The depth only moves
  the hand along its rays: the 2D overlay does not depend on it.
--fit_mano fits MANO (manopth's convention, wild/mano_fit.py) to each mesh; every image gets
<name>.json with one record per hand (box, side, score, K, root depth and its source, joints
and vertices in the camera frame, joints in pixels, MANO parameters when fitted;
docs/own_images.md). --outputs chooses the files (wild/outputs.py); --axes opengl writes the
OBJ and PLY meshes in OpenGL's / Blender's camera convention (x, -y, -z); a GLB is always in
that convention, glTF's.
- left hands: the image is flipped, the network (trained on right hands) predicts, and the mesh
  is mirrored back (x -> -x in the camera frame, faces re-wound).
Videos (--input FILE that is not an image, any format OpenCV reads) and image sequences
(--sequence FOLDER, frames in file-name order) follow one hand: the first frame uses the box
above (with --detector, its best hand), each next frame the box around the joints predicted in
the previous one (1.57 x their extent, FreiHAND's framing); a box that collapses or leaves the
image is re-detected (--detector) or reset to the last good one, and the log says so with the
frame index. --smooth filters the
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
import torch
from tqdm import tqdm

import config as config_module
from inference.network import load_inference_model
from inference.predictor import HandPredictor
from run.config import resolve_config
from utils.errors import ImageInputError
from wild.camera import check_intrinsics, image_intrinsics, parse_K
from wild.mano_fit import fit_record, fitter_for
from utils.runtime.launch import log_config_notes, run_main
from wild.tracking import DEFAULT_BETA, DEFAULT_MIN_CUTOFF_HZ, OneEuroFilter
from utils.files.video import IMAGE_EXTENSIONS, FolderFrames, VideoFrames, is_image_file
from utils.errors import DataError
from utils.mano import MANO
from utils.runtime.logger import setup_logger
from wild.boxes import (BoxSpec, auto_box, box_of, box_problem, boxes_for, centred_box, parse_bbox,
                        read_boxes)
from wild.detector import DETECTORS, DetectorUnavailableError, load_detector
from wild.outputs import (AXES, DEFAULT_PHOTO_OUTPUTS, DEFAULT_VIDEO_OUTPUTS, OUTPUTS, VIDEO_FORMS,
                          check_outputs, write_outputs)
from wild.photo import BOX_SEARCH_DEPTH_M, PhotoOptions, process_photo
from wild.sequence import VideoJob, VideoRootDepth, plain_hand, run_video

logger = logging.getLogger('sar')
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
    parser.add_argument('--boxes', help='JSON file of hand boxes per image name: [{"box": [x, y, '
                                        'w, h], "side": "left"|"right", "score": s}, ...]')
    parser.add_argument('--detector', choices=DETECTORS, default='none',
                        help='find every hand: mediapipe (the optional extra: make detector)')
    parser.add_argument('--max_hands', type=int, default=2,
                        help='--detector: hands per image at most (default %(default)s)')
    parser.add_argument('--outputs', help=f"comma-separated: photos from {','.join(OUTPUTS)} "
                                          f"(default {','.join(DEFAULT_PHOTO_OUTPUTS)}); videos "
                                          f"from {','.join(VIDEO_FORMS)} (default "
                                          f"{','.join(DEFAULT_VIDEO_OUTPUTS)}: JSON lines, "
                                          f"overlay video)")
    parser.add_argument('--axes', choices=AXES, default='opencv',
                        help='OBJ and PLY files: opencv (x right, y down, z forward; default) or '
                             'opengl (Blender: y up, the camera looking down -z). GLB files are '
                             'always in glTF\'s axes (those of opengl)')
    parser.add_argument('--K', help='intrinsics fx,fy,cx,cy in pixels, or a JSON file '
                                    '({"fx", "fy", "cx", "cy"} or a 3 x 3 "K")')
    parser.add_argument('--focal', type=float, help='focal length in pixels of the input image '
                                                    '(principal point at the image centre)')
    parser.add_argument('--root_depth', default='auto',
                        help="wrist depth: 'auto' (default: from the hand's size and "
                             "hand_scale_m) or meters")
    parser.add_argument('--fit_mano', action='store_true',
                        help='fit MANO parameters to each mesh (written to the JSON record)')
    parser.add_argument('--left', action='store_true',
                        help='the --bbox (or centred) box holds a left hand')
    parser.add_argument('--fps', type=float,
                        help=f'frames/s of the video (default: the file\'s own; {DEFAULT_FPS:g} '
                             f'for a --sequence); sets the overlay video and the filter rate')
    parser.add_argument('--save_obj', action='store_true',
                        help='deprecated: --outputs json,overlay,obj (video: also one OBJ per frame)')
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


def photo_options(args, path):
    """The PhotoOptions of one image: its --boxes entry, --bbox or the detector."""
    side = 'left' if args.left else 'right'
    boxes = None
    if args.boxes_parsed is not None:
        boxes = boxes_for(args.boxes_parsed, path)
        if boxes is None:
            raise ImageInputError(f'{path}: no entry for {os.path.basename(path)} in --boxes '
                                  f'{args.boxes}; add its hands (or [] for none)')
    elif args.bbox not in (None, 'auto'):  # checked against each image in process_photo
        boxes = [BoxSpec(parse_bbox(args.bbox), side, None, 'bbox')]
    return PhotoOptions(K=args.K_parsed, focal=args.focal, root_depth=args.root_depth,
                        detector=args.detector, max_hands=args.max_hands, boxes=boxes,
                        auto_box=args.bbox == 'auto', side=side, fit_mano=args.fit_mano,
                        axes=args.axes)


def process_image(args, path, img_bgr, predictor):
    """Predict every hand of one image (img_bgr, read), fit with --fit_mano, write the outputs."""
    result = process_photo(img_bgr, predictor, photo_options(args, path), image_path=path)
    if not result.hands:
        logger.warning('%s: no hand found%s', path,
                       f' by --detector {args.detector}' if args.detector != 'none' else '')
    write_outputs(args.out, path, img_bgr, result, predictor.faces, args.outputs, args.axes)
    return len(result.hands)


def run_images(args, predictor):
    """Every image of --input. One that cannot be decoded, or processed as asked (wild.camera.
    ImageInputError: its K, a box, a degenerate auto depth), is named when met and skipped; the
    others go on, and the run fails at the end with the list."""
    paths = list_images(args.input)
    unreadable, skipped, hands = [], [], 0
    for path in tqdm(paths, desc='images'):
        img_bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if img_bgr is None:  # named now, the others still processed, the run fails at the end
            logger.warning('skipping %s: not an image OpenCV can decode', path)
            unreadable.append(path)
            continue
        try:
            hands += process_image(args, path, img_bgr, predictor)
        except ImageInputError as err:
            logger.warning('skipping %s', err)
            skipped.append(str(err))
    done = len(paths) - len(unreadable) - len(skipped)
    if done:
        print(f"wrote {', '.join(args.outputs)} of {hands} hand(s) in {done} image(s) to {args.out}")
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


def intrinsics(args, width, height, name):
    """(K, K_source) of a video, checked."""
    K, source, detail = image_intrinsics(width, height, K=args.K_parsed, focal=args.focal)
    check_intrinsics(K, width, height, name)
    logger.info('%s: K from %s (%s)', name, source, detail)
    return K, source


def video_start(args, frames, predictor, K):
    """(first box, side, box source, redetect or None) of a video."""
    img_bgr = frames.first_frame
    height, width = img_bgr.shape[:2]
    side = 'left' if args.left else 'right'
    if args.detector != 'none':
        detect = load_detector(args.detector, args.max_hands)
        found = detect(img_bgr)
        if found:
            side = found[0].side

            def redetect(img):  # the best hand of the same side, else None
                same = [d for d in detect(img) if d.side == side]
                return box_of(same[0].box_xywh) if same else None
            return box_of(found[0].box_xywh), side, 'detector', redetect
        logger.warning('%s: --detector %s found no hand in the first frame: starting from the '
                       'centred box', frames.name, args.detector)
    if args.bbox not in (None, 'auto'):
        box = box_of(parse_bbox(args.bbox))
        problem = box_problem(box, (height, width))
        if problem is not None:
            raise config_module.ConfigError(f'--bbox {args.bbox}: {problem}; give a box on the '
                                            f'hand (x,y,w,h in pixels) or --bbox auto')
        return box, side, 'bbox', None
    box = centred_box(width, height)
    if args.bbox == 'auto':
        search = predictor.for_image(K, BOX_SEARCH_DEPTH_M, left=side == 'left')
        return auto_box(search, img_bgr, box), side, 'auto', None
    return box, side, 'centre', None


def run_frames(args, frames, predictor):
    height, width = frames.image_size
    fps = args.fps or frames.fps or DEFAULT_FPS
    K, K_source = intrinsics(args, width, height, frames.name)
    box, side, source, redetect = video_start(args, frames, predictor, K)
    smoother = None
    if args.smooth:
        try:
            smoother = OneEuroFilter(args.smooth_min_cutoff, args.smooth_beta, rate=fps)
        except ValueError as err:
            raise config_module.ConfigError(f'--smooth: {err}') from None
    auto = args.root_depth == 'auto'
    predict = (VideoRootDepth(predictor, K, left=side == 'left') if auto
               else predictor.for_image(K, args.root_depth, left=side == 'left'))
    job = VideoJob(args.out, frames.name, fps, predictor.faces, K, K_source, side, args.outputs,
                   args.axes, num_frames=frames.num_frames, first_source=source)

    def make_hand(result):
        hand = plain_hand(result, job, predict.source if auto else 'given')
        if auto:
            hand.hand_scale_m = predictor.hand_scale_m
        if args.fit_mano:
            fit = fitter_for(predictor.mano_root, side).fit(hand.verts_cam[None])
            hand.mano, hand.mano_verts_cam = fit_record(fit, 0), fit['verts'][0]
        return hand
    job.make_hand = make_hand
    summary = run_video(frames, predict, box, job, smoother, redetect)
    print(f"wrote {summary['frames']} frames ({summary['resets']} with a reset box): "
          f"{', '.join(summary['paths'].values())}")


def check_video_flags(args, frames):
    """Refuse the flags that cannot apply to this input."""
    video_only = [flag for flag, given in (('--fps', args.fps is not None), ('--smooth', args.smooth),
                                           ('--save_obj', args.save_obj)) if given]
    if frames is None and video_only:
        raise config_module.ConfigError(f"{', '.join(video_only)}: for videos only (--input VIDEO "
                                        f"or --sequence FOLDER); still images always get an OBJ")
    if frames is not None and args.boxes:
        raise config_module.ConfigError('--boxes: for still images; give a video its first box '
                                        'with --bbox or --detector mediapipe')
    defaults = DEFAULT_PHOTO_OUTPUTS if frames is None else DEFAULT_VIDEO_OUTPUTS
    names = args.outputs.split(',') if args.outputs else list(defaults)
    if args.save_obj:
        logger.warning('--save_obj is deprecated: ask for the OBJs with --outputs %s',
                       ','.join(names + ['obj'] * ('obj' not in names)))
        if 'obj' not in names:
            names.append('obj')
    try:
        args.outputs = check_outputs(names, video=frames is not None)
    except ValueError as err:
        raise config_module.ConfigError(str(err)) from None


def check_args(args):
    """Parse and check the flags that need no file (ConfigError naming the flag)."""
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
    if args.max_hands < 1:
        raise config_module.ConfigError(f'--max_hands {args.max_hands}: at least 1')
    given = [flag for flag, on in (('--boxes', args.boxes), ('--bbox', args.bbox),
                                   ('--detector', args.detector != 'none')) if on]
    if len(given) > 1:
        raise config_module.ConfigError(f"{' and '.join(given)}: give one source of hand boxes")
    if args.detector != 'none':
        try:  # fail now, before loading the network, when the extra is missing
            load_detector(args.detector, args.max_hands)
        except DetectorUnavailableError as err:
            raise config_module.ConfigError(str(err)) from None
    args.boxes_parsed = read_boxes(args.boxes) if args.boxes else None


def main(argv):
    args, rest = parse_args(argv)
    cfg, notes = resolve_config(rest, from_checkpoint=True)
    if not cfg.checkpoint and not cfg.onnx:
        raise config_module.ConfigError('no network given: python demo.py --input IMG '
                                        '--checkpoint PATH (or --onnx FILE)')
    device = torch.device(cfg.device)  # resolve_config refused cuda without a GPU
    check_args(args)
    # Open the frames before loading the network: a bad file fails at once.
    frames = None
    if args.sequence:
        frames = FolderFrames(args.sequence)
    elif os.path.isfile(args.input) and not is_image_file(args.input):
        frames = VideoFrames(args.input)
    check_video_flags(args, frames)
    log_config_notes(setup_logger(), notes)
    mano = MANO(cfg.mano_root)
    predictor = HandPredictor.from_config(load_inference_model(cfg, mano, device), cfg, mano,
                                          device)
    os.makedirs(args.out, exist_ok=True)
    if frames is None:
        run_images(args, predictor)
    else:
        run_frames(args, frames, predictor)


if __name__ == '__main__':
    sys.exit(run_main(main, sys.argv[1:], 'demo.py'))
