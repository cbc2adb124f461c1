"""SAR at FreiHAND's real size: data set start-up, memory and throughput.

    python -m benchmarks.scale [--root DIR] [--keep]

A FreiHAND-layout folder of the real counts and annotation shapes (images: links to a few
JPEGs), reused when complete, removed unless --keep; what is printed: docs/performance.md.
"""
import argparse
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

import config as config_module
from dataset import get_dataset, worker_init_fn
from inference.decoding import Decoding
from dataset.freihand import eval as freihand_eval
from dataset.freihand.eval import write_pred
from utils.files.atomic import atomic_write_json
from utils.runtime.threads import opencv_single_threaded

NUM_TRAIN, NUM_EVAL = 32560, 3960  # FreiHAND's sample counts
NUM_VERTS, NUM_JOINTS = 778, 21
BLOCK = 1024  # samples generated and written at a time
MARKER = 'scale_benchmark.json'  # written last: the folder holds a complete set
FORMAT = 1  # of the generated set; bump to regenerate
NUM_JPEGS = 4  # distinct images behind the symbolic links
TRAINING_FILES = (('training_K.json', (3, 3)), ('training_xyz.json', (NUM_JOINTS, 3)),
                  ('training_verts.json', (NUM_VERTS, 3)))
GPU_IMAGES_PER_S = {'A100 (estimate)': (1100, 1600), 'H100/H200 (goal)': (1800, 1800)}
TARGETS = {'warm_s': 2.0, 'cold_s': 20.0, 'cold_peak_gb': 1.0}
GB = 1e9


# --- the data set -----------------------------------------------------------------------------------

def _hands(rng, count):
    """(verts count x 778 x 3, joints count x 21 x 3) meters: point clouds 0.5-0.8 m away."""
    centre = rng.uniform([-0.05, -0.05, 0.5], [0.05, 0.05, 0.8], size=(count, 1, 3))
    extent = np.array([0.08, 0.08, 0.04])
    return (centre + rng.uniform(-1, 1, (count, NUM_VERTS, 3)) * extent,
            centre + rng.uniform(-1, 1, (count, NUM_JOINTS, 3)) * extent)


def _intrinsics(rng, count):
    fx = rng.uniform(200.0, 900.0, count)
    K = np.zeros((count, 3, 3))
    K[:, 0, 0], K[:, 1, 1], K[:, :2, 2], K[:, 2, 2] = fx, fx * rng.uniform(0.998, 1.002, count), 112.0, 1.0
    return K


def _write_list(path, blocks):
    """Write the concatenation of the arrays `blocks` as one JSON list, as json.dump would."""
    with open(path + '.tmp', 'w') as f:
        f.write('[')
        for index, block in enumerate(blocks):
            f.write(', ' * bool(index) + json.dumps(block.tolist())[1:-1])
        f.write(']')
    os.replace(path + '.tmp', path)


def _split_arrays(root, split, count, seed):
    """Write <split>_K/xyz/verts/scale.json for `count` samples (blockwise, reproducible)."""
    def blocks(part):
        for first in range(0, count, BLOCK):
            rng = np.random.default_rng([seed, first])
            size = min(BLOCK, count - first)
            verts, joints = _hands(rng, size)
            K = _intrinsics(rng, size)
            yield {'K': K, 'xyz': joints, 'verts': verts,
                   'scale': np.linalg.norm(joints[:, 9] - joints[:, 10], axis=1)}[part]
    for part in ('K', 'xyz', 'verts', 'scale'):
        _write_list(os.path.join(root, f'{split}_{part}.json'), blocks(part))


def _link_images(root, folder, count, sources):
    path = os.path.join(root, folder)
    os.makedirs(path, exist_ok=True)
    for index in range(count):
        link = os.path.join(path, '%08d.jpg' % index)
        if not os.path.islink(link):
            os.symlink(sources[index % len(sources)], link)


def make_dataset(root):
    """Write (or reuse) the FreiHAND-layout set at `root`; returns the seconds spent writing."""
    marker = os.path.join(root, MARKER)
    expected = {'format': FORMAT, 'num_train': NUM_TRAIN, 'num_eval': NUM_EVAL}
    with contextlib.suppress(OSError, ValueError):
        with open(marker) as f:
            if json.load(f) == expected:
                return 0.0
    begin = time.perf_counter()
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(0)
    sources = []
    for index in range(NUM_JPEGS):  # textured images: decoding costs what a photo costs
        img = cv2.GaussianBlur(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8), (0, 0), 2 + index)
        cv2.circle(img, (112, 112), 50, (40 * index, 150, 200), -1)
        sources.append(os.path.join(root, f'source_{index}.jpg'))
        cv2.imwrite(sources[-1], img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    _link_images(root, 'training/rgb', 4 * NUM_TRAIN, sources)
    _link_images(root, 'training/mask', NUM_TRAIN, sources)
    _link_images(root, 'evaluation/rgb', NUM_EVAL, sources)
    _split_arrays(root, 'training', NUM_TRAIN, seed=1)
    _split_arrays(root, 'evaluation', NUM_EVAL, seed=2)
    depth = np.random.default_rng(3).uniform(0.5, 0.8, NUM_EVAL)
    atomic_write_json(os.path.join(root, 'bbox_root_freihand_output.json'), [
        {'image_id': j, 'bbox': [47.0, 47.0, 130.0, 130.0], 'root_cam': [0.01, -0.02, float(depth[j])]}
        for j in range(NUM_EVAL)])
    atomic_write_json(marker, expected)
    return time.perf_counter() - begin


# --- measurements in child processes ------------------------------------------------------------------

def _status_kb(pid='self'):
    """VmRSS and VmHWM (kB) of a process."""
    with open(f'/proc/{pid}/status') as f:
        return {line.split(':')[0]: int(line.split()[1]) for line in f if line.startswith(('VmRSS', 'VmHWM'))}


def _reset_peak():
    """Make VmHWM restart from the current RSS (Linux clear_refs 5); False if not supported."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def child_startup(mode, root, cache):
    """Construct a data set after the imports; report seconds and memory above the imports."""
    after_imports = _status_kb()['VmRSS']
    resettable = _reset_peak()
    begin = time.perf_counter()
    if cache == 'json.load':  # the old path: parse every file with json, then convert
        arrays = []
        for name, shape in TRAINING_FILES:
            with open(os.path.join(root, name)) as f:
                arrays.append(np.asarray(json.load(f), dtype=np.float32))
            assert arrays[-1].shape[1:] == shape
        items = 4 * len(arrays[0])
    else:
        items = len(get_dataset('FreiHAND', mode, root=root, cache_dir='auto' if cache == 'auto' else None))
    seconds = time.perf_counter() - begin
    status = _status_kb()
    peak = status['VmHWM'] if resettable else max(status['VmHWM'], after_imports)
    return {'seconds': seconds, 'peak_above': (peak - after_imports) * 1024, 'items': items,
            'after_imports': after_imports * 1024, 'peak_exact': resettable}


def run_child(args):
    """Run this module with `--child args` in a fresh process; return its RESULT (a dict)."""
    command = [sys.executable, '-m', 'benchmarks.scale', '--child'] + [str(a) for a in args]
    done = subprocess.run(command, capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    results = [line[7:] for line in done.stdout.splitlines() if line.startswith('RESULT ')]
    if done.returncode or not results:
        raise RuntimeError(f'{" ".join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n'
                           f'{done.stderr[-3000:]}')
    return json.loads(results[-1])


# --- measurements in this process ------------------------------------------------------------------

def loader_rate(dataset, workers, items=480, batch_size=32):
    """Items per second of a shuffled DataLoader in its steady state: after worker start-up and
    the batches prefetched meanwhile (prefetch_factor 2 per worker)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                        worker_init_fn=worker_init_fn, drop_last=True)
    batch_iter = iter(loader)
    skip = 1 + 2 * workers
    for _ in range(skip):
        next(batch_iter)
    begin, count = time.perf_counter(), 0
    for _ in range(items // batch_size - skip):
        count += len(next(batch_iter)[0]['img'])
    rate = count / (time.perf_counter() - begin)
    del batch_iter
    return rate


def timed(function, *args, **kwargs):
    begin = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - begin


def post_network(root, scratch):
    """Seconds of test.py's work after the network over the evaluation set, and of GT loading."""
    evaluation = get_dataset('FreiHAND', 'evaluation', root=root)
    count = len(evaluation)
    crop2img = np.broadcast_to(evaluation.get_item_with_aug(0)[2]['bb2img_trans'], (count, 2, 3))
    # test.py's decoding of the default configuration (crop size, depth box, rows)
    cfg = config_module.resolve([], device='cpu')
    decoding = Decoding.from_config(cfg, torch.device('cpu'))
    coords = np.random.default_rng(4).uniform(-1, 1, (count, cfg.num_vert + cfg.num_joint, 3)).astype(np.float32)
    points, decode_s = timed(decoding.to_camera, coords, evaluation.root_depth, crop2img,
                             evaluation.K)
    xyz, verts = decoding.split(points)
    os.makedirs(scratch, exist_ok=True)
    pred = os.path.join(scratch, 'pred.json')
    _, pred_s = timed(write_pred, pred, xyz, verts)
    (xyz_gt, verts_gt), load_gt_s = timed(freihand_eval.load_gt, root, 'off')
    _, evaluate_s = timed(freihand_eval.evaluate, xyz_gt, verts_gt, xyz, verts)
    cache = os.path.join(scratch, 'gt_cache')
    shutil.rmtree(cache, ignore_errors=True)
    annotation_s = {}
    for state in ('cold', 'warm'):  # the exact float64 cache test.py and the evaluator use
        _, annotation_s[state] = timed(freihand_eval.load_gt, root, cache)
    return {'items': count, 'decode': decode_s, 'pred_json': pred_s, 'pred_mb': os.path.getsize(pred) / 1e6,
            'evaluate': evaluate_s, 'load_gt': load_gt_s, 'load_annotation': annotation_s}


# --- the report -------------------------------------------------------------------------------------

def verdict(value, limit):
    return 'met' if value <= limit else f'MISSED by {value - limit:.2f} ({value / limit:.2f} x)'


def report_startup(root, cache):
    """Start-up of the training and evaluation sets in fresh processes, cold and warm, and the
    old json.load path; printed against TARGETS."""
    print('\nstart-up in a fresh process (seconds after importing torch and the project; peak RSS above '
          'the post-import RSS)')
    startup = {}
    for mode in ('training', 'evaluation'):
        shutil.rmtree(cache, ignore_errors=True)
        for state in ('cold', 'warm'):
            startup[mode, state] = result = run_child(['startup', mode, root, 'auto'])
            print(f'  {mode:10s} {state} cache: {result["seconds"]:6.2f} s, peak {result["peak_above"] / GB:5.2f} GB '
                  f'above {result["after_imports"] / GB:.2f} GB after the imports ({result["items"]} items)')
    old = run_child(['startup', 'training', root, 'json.load'])
    print(f'  training   old path (json.load, no cache): {old["seconds"]:6.2f} s, '
          f'peak {old["peak_above"] / GB:5.2f} GB')
    cold, warm = startup['training', 'cold'], startup['training', 'warm']
    print(f'  targets (training): warm <= {TARGETS["warm_s"]} s: {verdict(warm["seconds"], TARGETS["warm_s"])}; '
          f'cold <= {TARGETS["cold_s"]} s: {verdict(cold["seconds"], TARGETS["cold_s"])}; cold peak <= '
          f'{TARGETS["cold_peak_gb"]} GB: {verdict(cold["peak_above"] / GB, TARGETS["cold_peak_gb"])}')


def report_loader(root):
    """DataLoader items/s with 1 and 2 workers, against what one GPU consumes."""
    print('\nDataLoader, training items (256 px crops, augmentation), batch 32, warm cache')
    training = get_dataset('FreiHAND', 'training', root=root)
    rates = {workers: loader_rate(training, workers) for workers in (1, 2)}
    for workers, rate in rates.items():
        print(f'  {workers} worker{"s" * (workers > 1)}: {rate:7.1f} items/s')
    for gpu, (low, high) in GPU_IMAGES_PER_S.items():
        need = f'{low:,}-{high:,}' if low != high else f'{low:,}'
        workers = '-'.join(str(n) for n in sorted({math.ceil(low / rates[1]), math.ceil(high / rates[1])}))
        print(f'  one {gpu} trains {need} images/s: {workers} workers at the 1-worker rate')


def report_post_network(root):
    """test.py's work after the network over the evaluation set, and ground-truth loading."""
    print(f'\ntest.py after the network, {NUM_EVAL} evaluation items')
    post = post_network(root, os.path.join(root, 'outputs'))
    print(f'  decode_uvd: {post["decode"]:.2f} s; pred.json (round, tolist, atomic_write_json): '
          f'{post["pred_json"]:.2f} s ({post["pred_mb"]:.0f} MB); freihand_eval.evaluate: {post["evaluate"]:.2f} s')
    print(f'  ground truth: freihand_eval.load_gt without cache (json.load) {post["load_gt"]:.2f} s; '
          f'through the exact float64 cache: cold {post["load_annotation"]["cold"]:.2f} s, '
          f'warm {post["load_annotation"]["warm"]:.3f} s')


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m benchmarks.scale', description=__doc__.splitlines()[0])
    parser.add_argument('--root', default=os.path.join(tempfile.gettempdir(), 'sar_scale_benchmark'),
                        help='scratch folder for the FreiHAND-size set (reused when complete)')
    parser.add_argument('--keep', action='store_true', help='keep the scratch folder for the next run')
    parser.add_argument('--child', nargs='+', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print('RESULT ' + json.dumps(child_startup(*args.child[1:])), flush=True)
        return

    opencv_single_threaded()
    root = os.path.abspath(args.root)
    cache = os.path.join(root, '.sar_cache')
    began = time.perf_counter()
    print(f'machine: {os.cpu_count()} logical cores, load average {os.getloadavg()[0]:.1f} at the start; '
          f'torch {torch.__version__}, numpy {np.__version__}')
    write_s = make_dataset(root)
    sizes = {name: os.path.getsize(os.path.join(root, name)) / 1e6 for name, _ in TRAINING_FILES}
    print(f'data set at {root}: {NUM_TRAIN} training samples ({4 * NUM_TRAIN} image links), {NUM_EVAL} '
          f'evaluation; ' + ', '.join(f'{k} {v:.0f} MB' for k, v in sizes.items())
          + (f'; written in {write_s:.0f} s' if write_s else '; reused'))
    report_startup(root, cache)
    report_loader(root)
    report_post_network(root)
    print(f'\ntotal {time.perf_counter() - began:.0f} s; load average {os.getloadavg()[0]:.1f} at the end')
    if not args.keep and os.path.isfile(os.path.join(root, MARKER)):
        shutil.rmtree(root)


if __name__ == '__main__':
    main()
