"""Accuracy of `--root_depth auto` on an evaluation set with known depths (docs/own_images.md).

    python -m benchmarks.root_depth --data_root data/FreiHAND_synth --mano_root data/mano_standin \
        [--pred output/pred.json] [--hand_scale_m 0.0326]

The figures and what they mean: docs/own_images.md; --report writes them as JSON
(docs/measured/root_depth.json).
"""
import argparse
import contextlib
import json
import os
import shlex
import sys

import numpy as np

import config as config_module
from inference.root_depth import RootDepthPrior, bone_pairs, solve_root_depth
from utils.constants import SCALE_BONE, SKELETON
from utils.errors import ImageInputError
from utils.mano import MANO
from utils.runtime.machine import finish_report, load_average, report_header
from utils.transforms import project


NOISE_LEVELS = ((1.0, 5.0), (3.0, 10.0))  # (px on u and v, mm on relative depths), Gaussian std


def _skeleton_lengths(points, bones=SKELETON):
    """Total bone length of N x 21 x D points (m in 3D, px in 2D)."""
    parents, children = bone_pairs(bones)
    return np.linalg.norm(points[:, children] - points[:, parents], axis=-1).sum(-1)


def _percent(estimate, truth):
    """(median %, p90 %, n) of |estimate - truth| / truth over the hands with an estimate."""
    error = (np.abs(estimate - truth) / truth * 100)[np.isfinite(estimate)]
    return float(np.median(error)), float(np.percentile(error, 90)), len(error)


def _solve_each(joints_uv, depth_rel, K, skeleton_m, bones=SKELETON):
    """solve_root_depth hand by hand; NaN where it refuses one (e.g. a bone foreshortened
    under MIN_SKELETON_PX), as demo.py skips such a hand. N x 21 x 2, N x 21, N x 3 x 3 and a
    scalar or N target lengths (m) -> N depths (m)."""
    targets = np.broadcast_to(np.asarray(skeleton_m, dtype=np.float64), (len(joints_uv),))
    depths = np.full(len(joints_uv), np.nan)
    for i, target in enumerate(targets):
        with contextlib.suppress(ImageInputError):
            depths[i] = solve_root_depth(joints_uv[i], depth_rel[i], K[i], target, bones=bones)
    return depths


def ground_truth_rows(xyz, K, prior):
    """[(label, median %, p90 %, n)] of the ground-truth predictor."""
    uvd = project(xyz, K)
    depth_rel = uvd[..., 2] - uvd[..., :1, 2]
    truth = xyz[:, 0, 2]
    bone = [SCALE_BONE]
    rows = [
        ('ground truth, prior, whole skeleton',
         _solve_each(uvd[..., :2], depth_rel, K, prior.skeleton_m)),
        ('ground truth, prior, bone 9-10 alone',
         _solve_each(uvd[..., :2], depth_rel, K, prior.hand_scale_m, bones=bone)),
        ('ground truth, own skeleton length (self-check)',
         _solve_each(uvd[..., :2], depth_rel, K, _skeleton_lengths(xyz, SKELETON))),
    ]
    # A network's errors, roughly: the truth with pixel and relative-depth noise.
    rng = np.random.default_rng(0)
    for px, mm in NOISE_LEVELS:
        noisy_uv = uvd[..., :2] + rng.normal(scale=px, size=uvd[..., :2].shape)
        noisy_rel = depth_rel + rng.normal(scale=mm / 1000, size=depth_rel.shape)
        noisy_rel[:, 0] = 0.0
        rows.append((f'ground truth + noise ({px:g} px, {mm:g} mm), prior',
                     _solve_each(noisy_uv, noisy_rel, K, prior.skeleton_m)))
    return [(label, *_percent(depth, truth)) for label, depth in rows]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    load_start = load_average()
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data_root', required=True, help='evaluation set with evaluation_xyz.json')
    parser.add_argument('--mano_root', '--mano-root', required=True,
                        help='MANO folder (the template proportions)')
    parser.add_argument('--pred', help='pred.json of test.py --root_source auto')
    parser.add_argument('--hand_scale_m', type=float, default=config_module.Config.hand_scale_m,
                        help='bone 9-10 prior, m (default: config.py)')
    parser.add_argument('--report', help='also write the table as JSON here (with the command, '
                        'date, commit, CPU and load), e.g. docs/measured/root_depth.json')
    args = parser.parse_args(argv)
    with open(os.path.join(args.data_root, 'evaluation_xyz.json')) as f:
        xyz = np.asarray(json.load(f), dtype=np.float64)
    with open(os.path.join(args.data_root, 'evaluation_K.json')) as f:
        K = np.asarray(json.load(f), dtype=np.float64)
    mano = MANO(args.mano_root)
    prior = RootDepthPrior(args.hand_scale_m, mano.joints_from_verts(mano.template))
    print(f'{len(xyz)} evaluation hands of {args.data_root}; prior: bone 9-10 '
          f'{prior.hand_scale_m:.4f} m, skeleton {prior.skeleton_m:.4f} m '
          f'(x {prior.ratio:.2f}, the template of {args.mano_root})')
    print(f'true wrist depths: {xyz[:, 0, 2].min():.3f} .. {xyz[:, 0, 2].max():.3f} m; true '
          f'bone 9-10 median {np.median(np.linalg.norm(xyz[:, 9] - xyz[:, 10], axis=-1)):.4f} m')
    rows = ground_truth_rows(xyz, K, prior)
    if args.pred:
        with open(args.pred) as f:
            pred_xyz = np.asarray(json.load(f)[0], dtype=np.float64)
        rows.append((f'network ({args.pred})', *_percent(pred_xyz[:, 0, 2], xyz[:, 0, 2])))
        ratio = (_skeleton_lengths(project(pred_xyz, K)[..., :2])
                 / _skeleton_lengths(project(xyz, K)[..., :2]))
        print(f"the network's 2D skeleton / the true one: median {np.median(ratio):.3f} "
              f"(p10 {np.percentile(ratio, 10):.3f}, p90 {np.percentile(ratio, 90):.3f})")
    print(f"{'root depth error, % of the true depth':<52}{'median':>8}{'p90':>8}{'n':>6}")
    for label, median, p90, count in rows:
        print(f'{label:<52}{median:8.2f}{p90:8.2f}{count:6d}')
    header = report_header(shlex.join(['python', '-m', 'benchmarks.root_depth', *argv]),
                           load_start, 'float64 (NumPy); a pred.json in the precision test.py ran')
    finish_report(header, {'wrist_depth_error_percent': {
        'median': {label: round(m, 2) for label, m, _, _ in rows},
        'p90': {label: round(p, 2) for label, _, p, _ in rows},
        'hands': {label: n for label, _, _, n in rows}}}, args.report)
    return rows


if __name__ == '__main__':
    main()
