"""Time the local FreiHAND evaluation (dataset.freihand.eval) at the real evaluation-set size.

The measurements behind `python -m benchmarks.bench_eval` and the evaluation figures of
`python -m benchmarks.run`.

Random hand-sized point sets stand in for the data (21 keypoints and 778 vertices per sample,
predictions a few cm off with mm noise, like a real model's), so no data set is needed. Also
times the two nearest-neighbour strategies for the F-scores on a subset, to show why the
evaluator uses per-sample k-d trees.
"""
import os
import tempfile
import time

import numpy as np

from dataset.freihand import eval as freihand_eval

BRUTE_FORCE_SUBSET = 200  # samples used to compare the nearest-neighbour strategies


def make_data(num_samples, seed=0):
    """Random (xyz_gt, verts_gt, xyz_pred, verts_pred) with FreiHAND's sizes, meters."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform([-0.1, -0.1, 0.4], [0.1, 0.1, 0.8], size=(num_samples, 1, 3))
    xyz_gt = centre + rng.normal(scale=0.04, size=(num_samples, 21, 3))
    verts_gt = centre + rng.normal(scale=0.04, size=(num_samples, 778, 3))
    offset = rng.normal(scale=0.035, size=(num_samples, 1, 3))  # root/depth error, ~6 cm
    xyz_pred = xyz_gt + offset + rng.normal(scale=0.005, size=xyz_gt.shape)
    verts_pred = verts_gt + offset + rng.normal(scale=0.005, size=verts_gt.shape)
    return xyz_gt, verts_gt, xyz_pred, verts_pred


def brute_force_nearest(points_from, points_to, block=8):
    """Blocked batched all-pairs distances (the alternative to k-d trees): B x N (m).

    Squared distances as |a|^2 + |b|^2 - 2 a.b (one batched matmul per block) on points centred
    per sample, which keeps the cancellation error near 1e-17 m^2.
    """
    distances = np.empty(points_from.shape[:2])
    for first in range(0, len(points_from), block):
        centre = points_from[first:first + block].mean(axis=1, keepdims=True)
        a = points_from[first:first + block] - centre
        b = points_to[first:first + block] - centre
        squared = ((a ** 2).sum(-1)[:, :, None] + (b ** 2).sum(-1)[:, None, :]
                   - 2.0 * a @ np.swapaxes(b, 1, 2))  # (block, N, P)
        distances[first:first + block] = np.sqrt(np.maximum(squared.min(axis=2), 0.0))
    return distances


def _timed(function, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def run(num_samples=3960):
    """Time `evaluate` and `write_outputs` on random data of `num_samples` samples.

    Returns a dict of wall-clock and CPU seconds (CPU time sums both threads of the
    nearest-neighbour search).
    """
    num_threads = len(os.sched_getaffinity(0))
    data = make_data(num_samples)
    scores, evaluate_s, evaluate_cpu_s = _timed(freihand_eval.evaluate, *data)
    _, evaluate_1_thread_s, _ = _timed(freihand_eval.evaluate, *data, num_workers=1)
    with tempfile.TemporaryDirectory() as out_dir:
        _, write_s, _ = _timed(freihand_eval.write_outputs, scores, out_dir)

    subset = min(BRUTE_FORCE_SUBSET, num_samples)
    verts_gt, verts_pred = data[1][:subset], data[3][:subset]
    kd_tree, kd_tree_s, _ = _timed(freihand_eval.nearest_distances, verts_gt, verts_pred)
    brute, brute_s, _ = _timed(brute_force_nearest, verts_gt, verts_pred)
    assert np.allclose(kd_tree, brute, rtol=0, atol=1e-9)
    figures = {
        'num_samples': num_samples,
        'num_threads': num_threads,
        'evaluate_s': evaluate_s,
        'evaluate_cpu_s': evaluate_cpu_s,
        'evaluate_1_thread_s': evaluate_1_thread_s,
        'write_outputs_s': write_s,
        'nn_subset_samples': subset,
        'nn_kd_tree_s': kd_tree_s,
        'nn_brute_force_s': brute_s,
    }
    print(f'evaluate, {num_samples} samples (21 keypoints + 778 vertices, F@5/15 mm, aligned and '
          f'unaligned): {evaluate_s:.2f} s wall ({evaluate_cpu_s:.2f} s CPU) with {num_threads} '
          f'threads, {evaluate_1_thread_s:.2f} s with 1 thread')
    print(f'write_outputs (scores.txt, pck_data.json, 4 plots, html): {write_s:.2f} s')
    print(f'nearest neighbours gt->pred, {subset} samples: k-d trees {kd_tree_s:.3f} s, '
          f'blocked brute force {brute_s:.3f} s')
    return figures
