"""Gradient accumulation against the full batch: the `cpu_demo` preset trained at batch 16 in
one piece and as 4 micro-batches of 4 (`--accumulate 4`), evaluation numbers side by side
(docs/performance.md, "Gradient accumulation").

    python -m benchmarks.accumulation [--accumulate 4] [--seeds 0 1] [--reference_seeds 0]
        [--output_root output/accumulation] [train.py overrides ...]

Each run is `train.py --preset cpu_demo --seed S [--accumulate N]` under --output_root
(finished runs are reused); needs `make demo`'s data.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import config as config_module
from training.monitor import history_path

ROWS = (('xyz_al_mean3d', '3D KP ALIGNED mean (cm)'), ('mesh_al_mean3d', '3D MESH ALIGNED mean (cm)'),
        ('xyz_al_auc3d', '3D KP ALIGNED AUC'), ('mesh_al_auc3d', '3D MESH ALIGNED AUC'),
        ('xyz_mean3d', '3D KP mean (cm)'), ('f_al_score_5', 'F_aligned@5mm'),
        ('f_al_score_15', 'F_aligned@15mm'))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--accumulate', type=int, default=4,
                        help='micro-batches per optimizer step of the accumulated runs')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0],
                        help='seeds of the accumulated runs')
    parser.add_argument('--reference_seeds', type=int, nargs='+', default=[0],
                        help='seeds of the full-batch runs')
    parser.add_argument('--output_root', default='output/accumulation')
    args, overrides = parser.parse_known_args(argv)
    if args.accumulate < 2:
        parser.error(f'--accumulate {args.accumulate}: compare with 2 or more micro-batches')
    return args, overrides


def train_run(name, seed, accumulate, args, overrides):
    """Train one run (or reuse it when finished); returns (last epoch's scores, seconds or None
    when reused)."""
    argv = ['--preset', 'cpu_demo', '--seed', str(seed), '--accumulate', str(accumulate),
            '--output_root', args.output_root, '--experiment_name', name, *overrides]
    cfg = config_module.resolve(argv)
    finished = os.path.join(cfg.checkpoint_dir, f'snapshot_{cfg.total_epoch - 1}.pth.tar')
    seconds = None
    if not os.path.isfile(finished):
        print(f'\n$ {sys.executable} train.py {" ".join(argv)} --resume auto', flush=True)
        begin = time.perf_counter()
        subprocess.run([sys.executable, 'train.py', *argv, '--resume', 'auto'], check=True)
        seconds = time.perf_counter() - begin
    with open(history_path(cfg.log_dir, name)) as f:
        history = json.load(f)
    last = max((e for e in history if 'eval' in e), key=lambda e: e['epoch'], default=None)
    if last is None or last['epoch'] != cfg.total_epoch - 1:
        sys.exit(f'{history_path(cfg.log_dir, name)}: no evaluation after the last epoch '
                 f'(eval_interval {cfg.eval_interval}); rerun with --eval_interval 1')
    return last['eval'], seconds


def table(columns):
    """columns: [(header, scores, seconds, images)] -> the side-by-side text."""
    width = max(14, *(len(h) + 2 for h, *_ in columns))
    lines = [f"{'metric':<28}" + ''.join(f'{h:>{width}}' for h, *_ in columns)]
    for key, label in ROWS:
        lines.append(f'{label:<28}' + ''.join(f'{s[key]:>{width}.3f}' for _, s, *_ in columns))
    lines.append(f"{'training wall time (s)':<28}" + ''.join(
        f"{(f'{t:.0f}' if t else 'reused'):>{width}}" for _, _, t, _ in columns))
    lines.append(f"{'training images/s':<28}" + ''.join(
        f"{(f'{n / t:.1f}' if t else '-'):>{width}}" for _, _, t, n in columns))
    return '\n'.join(lines)


def main(argv=None):
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    demo = config_module.resolve(['--preset', 'cpu_demo', *overrides])
    if not os.path.isfile(os.path.join(demo.data_root, 'training_xyz.json')):
        sys.exit(f'benchmarks.accumulation: no training set in {demo.data_root}: run `make demo` '
                 f'first (it renders the synthetic set and builds the stand-in MANO)')
    micro = demo.batch_size // args.accumulate
    runs = [(str(demo.batch_size), s, 1) for s in args.reference_seeds]
    runs += [(f'{args.accumulate}x{micro}', s, args.accumulate) for s in args.seeds]
    # FreiHAND's training/rgb holds every item (all versions); the loader drops the last
    # incomplete batch of each epoch.
    items = len(os.listdir(os.path.join(demo.data_root, 'training', 'rgb')))
    images = demo.total_epoch * demo.batch_size * (items // demo.batch_size)
    columns = []
    for split, seed, accumulate in runs:
        scores, seconds = train_run(f'{split}_seed{seed}', seed, accumulate, args, overrides)
        columns.append((f'{split} s{seed}', scores, seconds, images))
    print(f'\n==== {demo.total_epoch} epochs of cpu_demo, batch {demo.batch_size} per optimizer '
          f'step: in one piece vs {args.accumulate} micro-batches (evaluation after the last '
          f'epoch, {demo.data_root}) ====')
    print(table(columns))


if __name__ == '__main__':
    main()
