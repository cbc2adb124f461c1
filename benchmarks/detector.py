"""The hand detector on the synthetic evaluation set, and the time per photo of detector + SAR
+ GLB on this machine (needs the detector extra: `make detector`).

    python -m benchmarks.detector [--data DIR] [--num_eval 60] [--timed 20] [config overrides]

The evaluation images of a synthetic FreiHAND-layout set (rendered here with the MANO stand-in
into --data when it holds none; `make demo`'s data/FreiHAND_synth works too) are each given to
the detector. A hit: a hand found whose box overlaps the true box (FreiHAND's framing of the
true joints) with IoU >= 0.5; its side counts as right when the detector says 'right' (every
synthetic hand is a right hand). Then --timed photos go through the demo's photo pipeline
(wild.photo.process_photo with --detector mediapipe, then a GLB of every hand): the network
of the configuration (default: the published ResNet-50 at 224 px) with random weights, which
run as fast as trained ones. Printed: the hit rate, the median wall and CPU time per photo,
the load average and the CPU's bf16 flag (the amp choice depends on it).
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import cv2
import numpy as np
import torch

import config as config_module
from inference.network import build_model
from wild.tracking import box_iou
from utils.mano import MANO
from utils.transforms import box_from_joints, project
from wild.detector import load_detector
from wild.outputs import write_outputs
from wild.photo import PhotoOptions, Predictor, box_of, process_photo

IOU_HIT = 0.5  # a detection on the hand


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data', default='output/detector_bench/synth',
                        help='a synthetic FreiHAND-layout root (rendered there if empty)')
    parser.add_argument('--num_eval', type=int, default=60, help='evaluation images to render')
    parser.add_argument('--timed', type=int, default=20, help='photos timed end to end')
    return parser.parse_known_args(argv)


def evaluation_set(args, mano_root):
    """(image paths, true boxes) of the evaluation split, rendered first if absent."""
    from synthetic.freihand import generate
    from synthetic.workers import Run
    if not os.path.isfile(os.path.join(args.data, 'evaluation_xyz.json')):
        generate(args.data, 1, args.num_eval, mano_root, run=Run(progress=False))
    with open(os.path.join(args.data, 'evaluation_xyz.json')) as f:
        xyz = np.array(json.load(f))
    with open(os.path.join(args.data, 'evaluation_K.json')) as f:
        K = np.array(json.load(f))
    paths = [os.path.join(args.data, 'evaluation', 'rgb', f'{i:08d}.jpg') for i in range(len(xyz))]
    return paths, [box_from_joints(project(xyz[i], K[i])[:, :2]) for i in range(len(xyz))]


def hit_rate(paths, boxes, detect):
    hits = right = 0
    for path, true_box in zip(paths, boxes):
        found = [d for d in detect(cv2.imread(path)) if box_iou(box_of(d.box_xywh), true_box) >= IOU_HIT]
        hits += bool(found)
        right += bool(found) and found[0].side == 'right'
    return hits, right


def time_photos(paths, predictor, out_dir):
    """Median (wall s, CPU s) per photo of detection + SAR + GLB."""
    options = PhotoOptions(detector='mediapipe', max_hands=2, root_depth=0.7)
    walls, cpus = [], []
    for path in paths:
        img = cv2.imread(path)
        wall, cpu = time.perf_counter(), time.process_time()
        result = process_photo(img, predictor, options, image_path=path)
        write_outputs(out_dir, path, img, result, predictor.faces, ('glb',))
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main(argv):
    args, rest = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        mano_root = os.path.join(tmp, 'mano')
        from synthetic.standin import main as standin_main
        standin_main(['--out', mano_root])
        cfg = config_module.resolve(['--device', 'cpu', '--pretrained_backbone', 'false',
                                     '--mano_root', mano_root, *rest])
        paths, boxes = evaluation_set(args, mano_root)
        detect = load_detector('mediapipe', 2)
        hits, right = hit_rate(paths, boxes, detect)
        mano = MANO(mano_root)
        model = build_model(cfg, mano, torch.device('cpu'), pretrained_backbone=False)
        predictor = Predictor(model.fuse_for_inference(), cfg, mano, torch.device('cpu'))
        time_photos(paths[:1], predictor, tmp)  # warm-up: the first call builds the graphs
        wall, cpu = time_photos(paths[:args.timed], predictor, tmp)
    flags = open('/proc/cpuinfo').read()
    print(f'detector hits: {hits} of {len(paths)} synthetic evaluation images (IoU >= {IOU_HIT}), '
          f'{right} of them labelled right (all are right hands)')
    print(f'detector + SAR ({cfg.backbone}, {cfg.input_img_shape[0]} px, amp={cfg.amp}) + GLB per photo: '
          f'median {wall:.3f} s wall, {cpu:.3f} s CPU over {args.timed} photos '
          f'({torch.get_num_threads()} threads)')
    print(f'load average {os.getloadavg()}; CPU avx512_bf16: {"avx512_bf16" in flags}')


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
