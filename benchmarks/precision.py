"""bf16 against fp32 (and ONNX Runtime) inference of a trained checkpoint, after decoding
(the accuracy bound of docs/performance.md, "bf16 against fp32").

    python -m benchmarks.precision --checkpoint output/checkpoint/cpu_demo/snapshot_2.pth.tar
        [--onnx FILE] [--limit N] [--compare OTHER_CHECKPOINT]

Per path against fp32: vertex and joint distances in mm, images/s and the data set's scores
(docs/performance.md); --compare prints a second checkpoint's fp32 scores beside them.
"""
import argparse
import os
import time

import numpy as np
import torch

import dataset as datasets
from inference.network import load_for_inference
from inference.decoding import Decoding
from inference.predict import predict_dataset
from run.config import resolve_config
from utils.mano import MANO

def run_path(model, dataset, cfg, amp_dtype, limit):
    """(points M x 799 x 3 m, seconds) of one inference path over the first `limit` items."""
    subset = torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))
    begin = time.perf_counter()
    cpu = torch.device('cpu')
    xyz, verts = predict_dataset(model, subset, Decoding.from_config(cfg, cpu, amp_dtype), cpu,
                                 batch_size=cfg.test_batch_size, num_workers=0)
    return np.concatenate((verts, xyz), axis=1), time.perf_counter() - begin


def scores_of(cfg, dataset, points):
    """The scores of the data set's evaluator (its registry entry) for the predictions of the
    first len(points) items of `dataset`; SystemExit for a data set without one."""
    entry = datasets.entry(cfg.dataset)
    if entry.evaluate is None or not entry.has_ground_truth(cfg):
        raise SystemExit(f'dataset {cfg.dataset!r} of {cfg.data_root} has no local evaluation '
                         f'(no evaluator, or no evaluation ground truth): nothing to score')
    subset = torch.utils.data.Subset(dataset, range(len(points)))
    num_verts = points.shape[1] - cfg.num_joint
    return entry.evaluate(cfg, subset, points[:, num_verts:], points[:, :num_verts])


def paths_of(checkpoint, onnx, limit):
    """{path name: (points, seconds)}, the config and the evaluation set of `checkpoint`."""
    cfg, _ = resolve_config(['--checkpoint', checkpoint, '--device', 'cpu'], from_checkpoint=True)
    model = load_for_inference(cfg, MANO(cfg.mano_root), torch.device('cpu'))[0]
    dataset = datasets.entry(cfg.dataset).build('evaluation', cfg)
    runs = {'fp32': run_path(model, dataset, cfg, None, limit),
            'bf16': run_path(model, dataset, cfg, torch.bfloat16, limit)}
    if onnx:
        from inference.onnx import OnnxSAR

        runs['onnx'] = run_path(OnnxSAR(onnx, num_threads=torch.get_num_threads()), dataset,
                                cfg, None, limit)
    return runs, cfg, dataset


def print_against_fp32(runs, cfg, dataset):
    reference = runs['fp32'][0]
    count = len(reference)
    print(f'{count} evaluation items of {cfg.data_root}, {cfg.backbone} {cfg.input_img_shape[0]} '
          f'px, {torch.get_num_threads()} threads; distances to fp32 after decoding:')
    for name, (points, seconds) in runs.items():
        dist_mm = 1000 * np.linalg.norm(points - reference, axis=-1)
        print(f'  {name:5s}: {count / seconds:6.1f} images/s; vs fp32: mean {dist_mm.mean():.3f} '
              f'mm, 99th percentile {np.percentile(dist_mm, 99):.3f} mm, max {dist_mm.max():.3f} '
              f'mm')
    scores = {name: scores_of(cfg, dataset, points) for name, (points, _) in runs.items()}
    print(f"  {'score (means in cm)':28s}" + ''.join(f'{name:>9s}' for name in scores))
    for key in datasets.entry(cfg.dataset).score_keys:
        print(f'  {key:28s}' + ''.join(f'{s[key]:9.3f}' if s[key] is not None else f"{'-':>9s}"
                                       for s in scores.values()))


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m benchmarks.precision',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('--checkpoint', required=True)
    parser.add_argument('--onnx', help='an export of the same checkpoint (tools.export_onnx)')
    parser.add_argument('--limit', type=int, default=10 ** 9, help='first N evaluation items')
    parser.add_argument('--compare', help='a second checkpoint: its fp32 scores beside')
    args = parser.parse_args(argv)
    for path in (args.checkpoint, args.onnx, args.compare):
        if path and not os.path.isfile(path):
            raise SystemExit(f'{path}: no such file')
    runs, cfg, dataset = paths_of(args.checkpoint, args.onnx, args.limit)
    print_against_fp32(runs, cfg, dataset)
    if args.compare:
        other, other_cfg, other_set = paths_of(args.compare, None, args.limit)
        print(f'\n{args.compare} ({other_cfg.experiment_name}):')
        print_against_fp32(other, other_cfg, other_set)
        dist_mm = 1000 * np.linalg.norm(other['fp32'][0] - runs['fp32'][0], axis=-1)
        print(f'  the two checkpoints in fp32: mean {dist_mm.mean():.2f} mm apart')


if __name__ == '__main__':
    main()
