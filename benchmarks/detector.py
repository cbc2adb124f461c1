"""The hand detector on the synthetic evaluation set, and the time per photo of detector + SAR
+ GLB on this machine (needs the detector extra: `make detector`).

    python -m benchmarks.detector [--data DIR] [--num_eval 60] [--timed 20] [--report FILE] [config overrides]

docs/performance.md and docs/own_images.md describe the measurement (a hit: IoU >= 0.5 with
the true box); --report writes docs/measured/detector.json.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np
import torch

import config as config_module
from benchmarks.speed import other_cpu_use
from utils.runtime.machine import finish_report, load_average, report_header
from inference.precision import resolve_amp
from run.network import build_model
from wild.boxes import box_iou, box_of
from utils.mano import MANO
from utils.transforms import box_from_joints, project
from wild.detector import detector_python, load_detector
from wild.outputs import write_outputs
from inference.predictor import HandPredictor
from wild.photo import PhotoOptions, process_photo

IOU_HIT = 0.5  # a detection on the hand


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data', default='output/detector_bench/synth',
                        help='a synthetic FreiHAND-layout root (rendered there if empty)')
    parser.add_argument('--num_eval', type=int, default=60, help='evaluation images to render')
    parser.add_argument('--timed', type=int, default=20, help='photos timed end to end')
    parser.add_argument('--report', default='output/detector_report.json',
                        help='the JSON report (docs/measured/detector.json is a copy)')
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
    """(hits, hits labelled right, per-image detector wall s, per-image CPU s of this process
    and the worker together)."""
    hits = right = 0
    walls, cpus = [], []
    for path, true_box in zip(paths, boxes):
        image = cv2.imread(path)
        wall, cpu = time.perf_counter(), time.process_time() + worker_cpu_s(detect)
        detections = detect(image)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() + worker_cpu_s(detect) - cpu)
        found = [d for d in detections if box_iou(box_of(d.box_xywh), true_box) >= IOU_HIT]
        hits += bool(found)
        right += bool(found) and found[0].side == 'right'
    return hits, right, walls, cpus


def worker_cpu_s(detect):
    """CPU seconds (user + system) the detector's worker process has used so far (Linux /proc)."""
    with open(f'/proc/{detect.worker_pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()  # after the command name: state, ppid, ...
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')  # utime, stime


def environment_mib(python):
    """(prefix, MiB on disk as `du` counts it) of the virtual environment of `python`; the size
    is None when it is not a virtual environment."""
    prefix, base = subprocess.run([python, '-I', '-c', 'import sys; print(sys.prefix); '
                                   'print(sys.base_prefix)'], capture_output=True, text=True,
                                  check=True).stdout.split('\n')[:2]
    if prefix == base:
        return prefix, None
    total = 0
    for folder, dirs, files in os.walk(prefix):
        total += sum(os.lstat(os.path.join(folder, name)).st_blocks * 512 for name in dirs + files)
    return prefix, round(total / 2 ** 20)


def time_photos(paths, predictor, out_dir, detect):
    """Median (wall s, CPU s of this process and the detector's worker) per photo of detection
    + SAR + GLB (process_photo uses `detect`, load_detector's one for 2 hands)."""
    options = PhotoOptions(detector='mediapipe', max_hands=2, root_depth=0.7)
    walls, cpus = [], []
    for path in paths:
        img = cv2.imread(path)
        wall, cpu = time.perf_counter(), time.process_time() + worker_cpu_s(detect)
        result = process_photo(img, predictor, options, image_path=path)
        write_outputs(out_dir, path, img, result, predictor.faces, ('glb',))
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() + worker_cpu_s(detect) - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main(argv):
    args, rest = parse_args(argv)
    load_start, other_cpu = load_average(), other_cpu_use()
    with tempfile.TemporaryDirectory() as tmp:
        mano_root = os.path.join(tmp, 'mano')
        from synthetic.standin import main as standin_main
        standin_main(['--out', mano_root])
        cfg = config_module.resolve(['--device', 'cpu', '--pretrained_backbone', 'false',
                                     '--mano_root', mano_root, *rest])
        paths, boxes = evaluation_set(args, mano_root)
        start = time.perf_counter()
        detect = load_detector('mediapipe', 2)
        worker_start_s = time.perf_counter() - start
        hits, right, det_walls, det_cpus = hit_rate(paths, boxes, detect)
        mano = MANO(mano_root)
        model = build_model(cfg, mano, torch.device('cpu'), pretrained_backbone=False)
        predictor = HandPredictor.from_config(model.fuse_for_inference(), cfg, mano,
                                              torch.device('cpu'))
        time_photos(paths[:1], predictor, tmp, detect)  # warm-up: the first call builds the graphs
        wall, cpu = time_photos(paths[:args.timed], predictor, tmp, detect)
    prefix, env_mib = environment_mib(detector_python())
    amp = resolve_amp(cfg.amp, torch.device('cpu')).name
    precision = 'fp32' if amp == 'off' else amp
    network = f"{cfg.backbone}, {cfg.input_img_shape[0]} px, {precision}"
    header = report_header(' '.join(['python -m benchmarks.detector', *argv]), load_start,
                           f'SAR in {precision} autocast; the detector as MediaPipe runs it')
    print(f'detector hits: {hits} of {len(paths)} synthetic evaluation images (IoU >= {IOU_HIT}), '
          f'{right} of them labelled right (all are right hands)')
    print(f'detector per image, worker round trip included: median '
          f'{statistics.median(det_walls):.3f} s wall, {statistics.median(det_cpus):.3f} s CPU; '
          f'worker start {worker_start_s:.2f} s; {prefix}: {env_mib} MiB')
    print(f'detector + SAR ({network}) + GLB per photo: median {wall:.3f} s wall, {cpu:.3f} s CPU '
          f'over {args.timed} photos ({torch.get_num_threads()} threads)')
    finish_report(header, {
        'other_processes_cores_busy_at_start': None if other_cpu is None else round(other_cpu, 1),
        'images': len(paths), 'hits_iou_0.5': hits, 'hits_labelled_right': right,
        'detector_environment': os.path.relpath(prefix), 'detector_environment_mib': env_mib,
        'worker_start_s': round(worker_start_s, 2),
        'detector_per_image_median_s': {'wall': round(statistics.median(det_walls), 4),
                                        'cpu': round(statistics.median(det_cpus), 4)},
        f'detector + SAR ({network}) + GLB per photo, median s': {
            'wall': round(wall, 3), 'cpu': round(cpu, 3)}}, args.report)

if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
