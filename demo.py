"""SAR on your own images: a mesh (.obj, camera frame, meters), an overlay and a 2D skeleton
per image.

    python demo.py --input hand.jpg --checkpoint output/checkpoint/<exp>/snapshot_49.pth.tar
    python demo.py --input photos/ --checkpoint snapshot.pth.tar --bbox 120,80,200,200 --left

Camera and placement, when not given:
- hand box (--bbox x,y,w,h in pixels): the centred FreiHAND box, 130/224 of the shorter image
  side, around the image centre;
- focal length (--focal, pixels of the input image): the FreiHAND framing, 500 px for a 224 px
  image whose 130 px box holds the hand, i.e. 500 * box side / 130; principal point at the
  image centre;
- root (wrist) depth (--root_depth, meters): 0.7 m, typical of FreiHAND at that framing. The
  depth only scales the mesh's distance; the shape and the 2D overlay do not depend on it.
- --left: the image is flipped, the network (trained on right hands) predicts, and the mesh is
  mirrored back (x -> -x in the camera frame, faces re-wound).
Any config.py field can follow (e.g. --device cpu --backbone resnet18 --input_img_shape 128,128
for a checkpoint trained with the CPU preset; its config.json is read automatically).
"""
import argparse
import glob
import os
import sys

import cv2
import numpy as np
import torch
from tqdm import tqdm

import config as config_module
from engine.inference import load_inference_model
from engine.setup import resolve_config, run_main
from utils.constants import FREIHAND_IMG_SIZE, HAND_BOX_SIZE
from utils.errors import DataError
from utils.fileio import atomic_open
from utils.mano import MANO
from utils.preprocessing import crop_and_augment, normalize
from utils.transforms import decode_uvd, project

DEFAULT_FOCAL_PX = 500.0  # at FreiHAND's framing: 224 px image, 130 px hand box
DEFAULT_ROOT_DEPTH_M = 0.7
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', required=True, help='an image or a folder of images')
    parser.add_argument('--out', default='output/demo', help='output folder')
    parser.add_argument('--bbox', help='hand box x,y,w,h in pixels (default: centred box)')
    parser.add_argument('--focal', type=float, help='focal length in pixels of the input image')
    parser.add_argument('--root_depth', type=float, default=DEFAULT_ROOT_DEPTH_M,
                        help=f'wrist depth in meters (default {DEFAULT_ROOT_DEPTH_M})')
    parser.add_argument('--left', action='store_true', help='the images show left hands')
    return parser.parse_known_args(argv)


def list_images(path):
    if os.path.isdir(path):
        files = sorted(f for f in glob.glob(os.path.join(path, '*'))
                       if f.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {path}")
        return files
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--input {path}: no such file or folder")
    return [path]


def hand_box(bbox_text, width, height):
    """(centre (2,), side) of the square hand box in image pixels."""
    if bbox_text is None:
        side = HAND_BOX_SIZE / FREIHAND_IMG_SIZE * min(width, height)
        return np.array([(width - 1) / 2, (height - 1) / 2]), side
    try:
        x, y, w, h = (float(v) for v in bbox_text.split(','))
    except ValueError:
        raise config_module.ConfigError(f"--bbox {bbox_text!r}: expected four numbers x,y,w,h") from None
    if w <= 0 or h <= 0:
        raise config_module.ConfigError(f"--bbox {bbox_text!r}: width and height must be positive")
    return np.array([x + w / 2, y + h / 2]), max(w, h)


def write_obj(path, verts, faces):
    """Wavefront OBJ (1-based faces), written atomically."""
    with atomic_open(path, 'w') as f:
        f.write(''.join(f'v {x:.6f} {y:.6f} {z:.6f}\n' for x, y, z in verts))
        f.write(''.join(f'f {a + 1} {b + 1} {c + 1}\n' for a, b, c in faces))


def main(argv):
    args, rest = parse_args(argv)
    cfg = resolve_config(rest, from_checkpoint=True)
    if not cfg.checkpoint and not cfg.onnx:
        raise config_module.ConfigError('no network given: python demo.py --input IMG '
                                        '--checkpoint PATH (or --onnx FILE)')
    device = torch.device(cfg.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError("CUDA is not available: add --device cpu")
    mano = MANO(cfg.mano_root)
    model = load_inference_model(cfg, mano, device)
    memory_format = (torch.channels_last if cfg.channels_last and device.type == 'cuda'
                     else torch.contiguous_format)

    from utils.render import render_mesh  # after torch/torchvision (see utils/render.py)
    from utils.drawing import draw_skeleton, save_image

    os.makedirs(args.out, exist_ok=True)
    for path in tqdm(list_images(args.input), desc='images'):
        img_bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if img_bgr is None:
            raise DataError(f"cannot read image {path}: not an image OpenCV can decode")
        height, width = img_bgr.shape[:2]
        center, side = hand_box(args.bbox, width, height)
        focal = args.focal if args.focal else DEFAULT_FOCAL_PX * side / HAND_BOX_SIZE
        K = np.array([[focal, 0, (width - 1) / 2], [0, focal, (height - 1) / 2], [0, 0, 1]])
        net_img, net_center = img_bgr, center
        if args.left:
            # Mirror the image about the principal point's column: x -> -x in the camera frame.
            net_img = img_bgr[:, ::-1].copy()
            net_center = np.array([width - 1 - center[0], center[1]])
        crop, _, crop2img = crop_and_augment(net_img, net_center, side, cfg.input_img_shape)
        with torch.inference_mode():
            img = torch.from_numpy(normalize(crop))[None].to(device)
            inputs = {'img': img.contiguous(memory_format=memory_format)}
            coords = model(inputs)['coords'][0].float().cpu().numpy()
        xyz_cam = decode_uvd(coords, args.root_depth, crop2img, K, crop_size=cfg.input_img_shape,
                             depth_box=cfg.depth_box, fx_as_fy=cfg.fx_as_fy)
        faces = mano.faces
        if args.left:
            xyz_cam = xyz_cam * np.array([-1.0, 1.0, 1.0])
            faces = faces[:, ::-1]
        verts, joints = xyz_cam[:mano.num_verts], xyz_cam[mano.num_verts:]

        name = os.path.splitext(os.path.basename(path))[0]
        write_obj(os.path.join(args.out, f'{name}.obj'), verts, faces)
        img_rgb = np.ascontiguousarray(img_bgr[:, :, ::-1])
        overlay = render_mesh(verts, faces, K, (height, width), background=img_rgb)[0]
        save_image(os.path.join(args.out, f'{name}_mesh.png'), overlay)
        skeleton = draw_skeleton(img_rgb, project(joints, K)[:, :2])
        save_image(os.path.join(args.out, f'{name}_skeleton.png'), skeleton)
    print(f'wrote meshes (.obj, camera frame, meters), overlays and skeletons to {args.out}')


if __name__ == '__main__':
    sys.exit(run_main(main, sys.argv[1:], 'demo.py'))
