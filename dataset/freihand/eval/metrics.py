"""The leaderboard's metrics (docs/method.md §8): similarity Procrustes, per-point errors,
PCK curves and AUC, F-scores, and `evaluate`, which computes every score of one prediction.

Definitions (per sample: 21 keypoints, 778 vertices, meters):
- unaligned error: Euclidean distance per keypoint / vertex;
- aligned error: the prediction is first mapped onto the ground truth by the similarity
  Procrustes of `fit_similarity` (keypoints and vertices each with their own transform);
- mean error: per point, the mean over samples; reported = mean over points, in cm;
- PCK curve of a point: fraction of samples whose error is <= t, for the 100 thresholds
  `PCK_THRESHOLDS_M`; AUC of a point: trapezoid area of its curve / (t_max - t_min); reported
  AUC = mean over points (by linearity also the AUC of the mean curve, which is what is plotted);
- F-score at t (5 and 15 mm): recall = fraction of ground-truth vertices whose nearest predicted
  vertex is closer than t (strict <), precision likewise from the predicted side,
  F = 2PR / (P + R) (0 if both are 0), mean over samples; unaligned and aligned.

Predicted meshes with a vertex count other than 778 (another topology) are evaluated as the
leaderboard does: the per-vertex mesh errors do not exist, so the four mesh scores are `None`
in `evaluate`'s result, the report says "unavailable" under both mesh headers, `scores.txt`
omits the four `mesh_*` lines (every line it has stays a number), no mesh PCK curve or plot is
written; the F-scores are still computed between the two vertex sets, the aligned ones after
moving the predicted vertices with the transform fitted on the keypoints. All samples of a
prediction must share one vertex count.

Note on the aligned AUC of an exact prediction: the +1e-8 in the Procrustes normalisation
leaves aligned errors of about 1e-9 m even when prediction == ground truth, so the aligned PCK
at threshold 0 is 0 and the aligned AUC is 1 - 1/198 = 0.99495 instead of 1 (the unaligned AUC
of an exact prediction is 1). Real predictions are not affected (their PCK at 0 is 0 anyway).
"""
import os
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
from scipy.spatial import cKDTree

from manopth.constants import NUM_JOINTS, NUM_VERTS
from utils.errors import EvaluationInputError

PCK_THRESHOLDS_M = np.linspace(0.0, 0.05, 100)  # m, the leaderboard's PCK/AUC thresholds
F_SCORE_THRESHOLDS_M = (0.005, 0.015)  # m, 5 mm and 15 mm
PROCRUSTES_EPS = 1e-8  # added to the Frobenius norms before dividing (docs/method.md §8)
M_TO_CM = 100.0

# The leaderboard's scores.txt keys, in its order; *_mean3d in cm.
SCORE_KEYS = (
    'xyz_mean3d', 'xyz_auc3d', 'xyz_al_mean3d', 'xyz_al_auc3d',
    'mesh_mean3d', 'mesh_auc3d', 'mesh_al_mean3d', 'mesh_al_auc3d',
    'f_score_5', 'f_al_score_5', 'f_score_15', 'f_al_score_15',
)
MESH_SCORE_KEYS = ('mesh_mean3d', 'mesh_auc3d', 'mesh_al_mean3d', 'mesh_al_auc3d')


class SimilarityTransform(NamedTuple):
    """Batched similarity mapping source points onto target points (see `fit_similarity`).

    rotation: B x 3 x 3, the R of `pred_n R^T` (orthogonal; a reflection is allowed)
    scale: B, s = sum of the singular values (scale between the normalised sets)
    source_mean, target_mean: B x 3, meters
    source_norm, target_norm: B, Frobenius norms of the centred sets + 1e-8, meters
    """
    rotation: np.ndarray
    scale: np.ndarray
    source_mean: np.ndarray
    source_norm: np.ndarray
    target_mean: np.ndarray
    target_norm: np.ndarray


def fit_similarity(gt, pred):
    """Fit the leaderboard's similarity Procrustes taking `pred` onto `gt`, per sample.

    Both sets are centred on their means and divided by their Frobenius norm + 1e-8; R and s
    come from orthogonal Procrustes on the normalised sets (R minimises |gt_n - pred_n R^T|,
    i.e. |gt_n R - pred_n|, which is scipy's `orthogonal_procrustes(gt_n, pred_n)`; s = sum of
    singular values of gt_n^T pred_n). As in the leaderboard R is only orthogonal: a mirrored
    prediction is aligned with a reflection.

    gt, pred: B x N x 3 corresponding points (meters). Returns a `SimilarityTransform`.
    """
    gt = np.asarray(gt, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if gt.shape != pred.shape or gt.ndim != 3 or gt.shape[-1] != 3:
        raise ValueError(f'fit_similarity needs two B x N x 3 arrays of equal shape, '
                         f'got gt {gt.shape} and pred {pred.shape}')
    gt_mean = gt.mean(axis=1)  # (B, 3)
    pred_mean = pred.mean(axis=1)
    gt_centred = gt - gt_mean[:, None]
    pred_centred = pred - pred_mean[:, None]
    gt_norm = np.linalg.norm(gt_centred, axis=(1, 2)) + PROCRUSTES_EPS  # (B,)
    pred_norm = np.linalg.norm(pred_centred, axis=(1, 2)) + PROCRUSTES_EPS
    gt_n = gt_centred / gt_norm[:, None, None]
    pred_n = pred_centred / pred_norm[:, None, None]
    u, singular_values, vt = np.linalg.svd(np.swapaxes(gt_n, 1, 2) @ pred_n)  # (B, 3, 3)
    return SimilarityTransform(rotation=u @ vt, scale=singular_values.sum(axis=1),
                               source_mean=pred_mean, source_norm=pred_norm,
                               target_mean=gt_mean, target_norm=gt_norm)


def apply_similarity(transform, points):
    """Map points with a fitted transform: ((p - mean_src) / |src|) R^T * s * |tgt| + mean_tgt.

    transform: `SimilarityTransform` of batch B. points: B x N x 3 (meters; N may differ from
    the point count the transform was fitted on). Returns B x N x 3 meters.
    """
    points = np.asarray(points, dtype=np.float64)
    normalised = (points - transform.source_mean[:, None]) / transform.source_norm[:, None, None]
    factor = (transform.scale * transform.target_norm)[:, None, None]
    return normalised @ np.swapaxes(transform.rotation, 1, 2) * factor + transform.target_mean[:, None]


def align_similarity(gt, pred):
    """Return `pred` (B x N x 3, m) aligned onto `gt` (B x N x 3, m) by the leaderboard's
    similarity Procrustes (docs/method.md §8; see `fit_similarity`)."""
    return apply_similarity(fit_similarity(gt, pred), pred)


def point_errors(gt, pred):
    """Euclidean distance per point: gt, pred B x N x 3 (m) -> B x N (m)."""
    return np.linalg.norm(np.asarray(pred, dtype=np.float64) - np.asarray(gt, dtype=np.float64), axis=-1)


def pck_curves(errors, thresholds=PCK_THRESHOLDS_M):
    """PCK curve per point: fraction of samples with error <= threshold.

    errors: B x N (m); thresholds: T (m, increasing). Returns N x T.
    """
    errors_sorted = np.sort(np.asarray(errors, dtype=np.float64), axis=0).T  # (N, B)
    counts = np.stack([np.searchsorted(row, thresholds, side='right') for row in errors_sorted])
    return counts / errors_sorted.shape[1]


def auc_per_point(curves, thresholds=PCK_THRESHOLDS_M):
    """Area under each PCK curve by the trapezoid rule divided by the threshold range.

    curves: N x T; thresholds: T (m). Returns N values in [0, 1].
    """
    return np.trapezoid(curves, thresholds, axis=-1) / (thresholds[-1] - thresholds[0])


def nearest_distances(points_from, points_to, max_distance=np.inf, num_workers=1):
    """Per sample, the distance from each point of `points_from` to the nearest of `points_to`.

    points_from: B x N x 3, points_to: B x P x 3 (meters). Distances >= `max_distance` may be
    returned as inf (the k-d tree search is cut off there, about a fifth faster when only
    comparisons with small thresholds are needed). `num_workers` threads share the samples.
    Returns B x N (m).

    One small k-d tree per sample: on FreiHAND sizes it beat a blocked all-pairs distance
    computation by a factor of 6 or more in our runs.
    """
    points_from = np.asarray(points_from, dtype=np.float64)
    points_to = np.asarray(points_to, dtype=np.float64)
    distances = np.empty(points_from.shape[:2])

    def run(first, last):
        for i in range(first, last):
            # balanced_tree=False: building takes half the time, queries are as fast here.
            tree = cKDTree(points_to[i], balanced_tree=False)
            distances[i] = tree.query(points_from[i], distance_upper_bound=max_distance)[0]

    num_samples = points_from.shape[0]
    if num_workers <= 1 or num_samples < 2:
        run(0, num_samples)
    else:
        # cKDTree releases the GIL while building and querying, so the threads mostly overlap.
        bounds = np.linspace(0, num_samples, num_workers + 1).astype(int)
        with ThreadPoolExecutor(num_workers) as pool:
            list(pool.map(run, bounds[:-1], bounds[1:]))
    return distances


def f_scores(verts_gt, verts_pred, thresholds=F_SCORE_THRESHOLDS_M, num_workers=1):
    """F-score per sample and threshold between two vertex sets.

    verts_gt: B x V x 3, verts_pred: B x P x 3 (meters; P may differ from V). Recall = fraction
    of gt vertices whose nearest predicted vertex is closer than t (strict <), precision the
    same from the predicted side, F = 2PR / (P + R), 0 when both are 0.
    Returns B x len(thresholds).
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    cut_off = np.nextafter(thresholds.max(), np.inf)  # beyond it the exact distance is not needed
    gt_to_pred = nearest_distances(verts_gt, verts_pred, cut_off, num_workers)  # (B, V)
    pred_to_gt = nearest_distances(verts_pred, verts_gt, cut_off, num_workers)  # (B, P)
    recall = (gt_to_pred[..., None] < thresholds).mean(axis=1)  # (B, T)
    precision = (pred_to_gt[..., None] < thresholds).mean(axis=1)
    total = precision + recall
    return np.where(total > 0, 2 * precision * recall / np.where(total > 0, total, 1.0), 0.0)


def _check_points(name, array, num_points=None):
    """Raise EvaluationInputError unless `array` is a finite B x num_points x 3 array."""
    array = np.asarray(array, dtype=np.float64)
    expected = f'B x {num_points} x 3' if num_points else 'B x V x 3'
    if array.ndim != 3 or array.shape[-1] != 3 or (num_points and array.shape[1] != num_points):
        raise EvaluationInputError(f'{name} has shape {array.shape}, expected {expected} (meters)')
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise EvaluationInputError(f'{name} has shape {array.shape}: no samples or no points')
    bad = np.argwhere(~np.isfinite(array))
    if len(bad):
        i, j, c = bad[0]
        raise EvaluationInputError(f'{name} sample {i} point {j} coordinate {c} is {array[i, j, c]}; '
                                   f'every coordinate must be a finite number (meters)')
    return array


def _point_scores(errors):
    """Mean error (cm), AUC, mean PCK curve and per-point PCK curves of a B x N error table (m)."""
    curves = pck_curves(errors)  # (N, T)
    return {
        'mean_cm': float(errors.mean(axis=0).mean() * M_TO_CM),
        'auc': float(auc_per_point(curves).mean()),
        'curve': curves.mean(axis=0),
        'per_point': curves,
    }


def evaluate(xyz_gt, verts_gt, xyz_pred, verts_pred, num_workers=None):
    """Every leaderboard score of docs/method.md §8 for one set of predictions.

    xyz_gt, xyz_pred: M x 21 x 3; verts_gt: M x 778 x 3; verts_pred: M x V x 3 (meters, camera
    frame). V other than 778 means another mesh topology: the mesh scores are None (see the
    module docstring). `num_workers`: threads for the nearest-neighbour searches (default: the
    CPUs this process may use).

    Returns a dict with the 12 `SCORE_KEYS` (means in cm, AUCs and F-scores in [0, 1], mesh
    ones None when unavailable), 'mesh_available', 'num_samples', 'num_pred_verts',
    'pck_thresholds_m' (T,), 'pck_curves' {'xyz', 'xyz_al'[, 'mesh', 'mesh_al']: (T,) mean
    over points} and 'pck_per_keypoint' {'xyz', 'xyz_al': 21 x T}.

    verts_gt None (a data set annotated with joints only, dataset/custom): the keypoint scores
    only; the mesh scores and the F-scores are None.
    """
    joints_only = verts_gt is None
    xyz_gt = _check_points('xyz_gt', xyz_gt, NUM_JOINTS)
    xyz_pred = _check_points('xyz_pred', xyz_pred, NUM_JOINTS)
    verts_pred = _check_points('verts_pred', verts_pred)
    counts = {'xyz_gt': len(xyz_gt), 'xyz_pred': len(xyz_pred), 'verts_pred': len(verts_pred)}
    if not joints_only:
        verts_gt = _check_points('verts_gt', verts_gt, NUM_VERTS)
        counts['verts_gt'] = len(verts_gt)
    if len(set(counts.values())) != 1:
        raise EvaluationInputError(f'sample counts differ: {counts}; every input needs one entry per '
                                   f'evaluation sample, in evaluation order')
    mesh_available = not joints_only and verts_pred.shape[1] == NUM_VERTS

    xyz_transform = fit_similarity(xyz_gt, xyz_pred)
    parts = {'xyz': _point_scores(point_errors(xyz_gt, xyz_pred)),
             'xyz_al': _point_scores(point_errors(xyz_gt, apply_similarity(xyz_transform,
                                                                           xyz_pred)))}
    scores = dict.fromkeys(SCORE_KEYS)
    if not joints_only:
        if mesh_available:
            verts_pred_aligned = align_similarity(verts_gt, verts_pred)
            parts['mesh'] = _point_scores(point_errors(verts_gt, verts_pred))
            parts['mesh_al'] = _point_scores(point_errors(verts_gt, verts_pred_aligned))
        else:
            verts_pred_aligned = apply_similarity(xyz_transform, verts_pred)
        num_workers = num_workers or len(os.sched_getaffinity(0))
        assert F_SCORE_THRESHOLDS_M == (0.005, 0.015)  # the key names below say 5 and 15 mm
        scores['f_score_5'], scores['f_score_15'] = (float(v) for v in f_scores(
            verts_gt, verts_pred, num_workers=num_workers).mean(axis=0))
        scores['f_al_score_5'], scores['f_al_score_15'] = (float(v) for v in f_scores(
            verts_gt, verts_pred_aligned, num_workers=num_workers).mean(axis=0))
    for prefix, part in parts.items():
        scores[f'{prefix}_mean3d'], scores[f'{prefix}_auc3d'] = part['mean_cm'], part['auc']
    scores.update(
        mesh_available=mesh_available,
        num_samples=int(xyz_gt.shape[0]),
        num_pred_verts=int(verts_pred.shape[1]),
        pck_thresholds_m=PCK_THRESHOLDS_M.copy(),
        pck_curves={name: part['curve'] for name, part in parts.items()},
        pck_per_keypoint={name: parts[name]['per_point'] for name in ('xyz', 'xyz_al')},
    )
    return scores
