"""Local FreiHAND evaluation with the leaderboard's definitions (SPEC 8).

Command line (from the repo root):

    python -m utils.freihand_eval --gt data/FreiHAND --pred output/pred.json --out output/eval

`--gt` is the FreiHAND root holding `evaluation_xyz.json` and `evaluation_verts.json` (the
evaluation ground truth published with FreiHAND v2), `--pred` the `[xyz_list, verts_list]` file
of SPEC 7 (meters). The report is printed in the seed's format; `--out` receives `scores.txt`
(the leaderboard's keys, means in cm), `pck_data.json`, one PCK plot per curve and
`scores.html` showing them with the numbers.

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
import argparse
import html
import io
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
from scipy.spatial import cKDTree

from manopth.constants import NUM_JOINTS, NUM_VERTS
from utils.constants import JOINT_NAMES
from utils.fileio import atomic_open, atomic_write_json

GT_XYZ_FILE = 'evaluation_xyz.json'  # M x 21 x 3, meters, camera frame
GT_VERTS_FILE = 'evaluation_verts.json'  # M x 778 x 3, meters, camera frame
PCK_THRESHOLDS_M = np.linspace(0.0, 0.05, 100)  # m, the leaderboard's PCK/AUC thresholds
F_SCORE_THRESHOLDS_M = (0.005, 0.015)  # m, 5 mm and 15 mm
PROCRUSTES_EPS = 1e-8  # added to the Frobenius norms before dividing (SPEC 8)
M_TO_CM = 100.0

# The leaderboard's scores.txt keys, in its order; *_mean3d in cm.
SCORE_KEYS = (
    'xyz_mean3d', 'xyz_auc3d', 'xyz_al_mean3d', 'xyz_al_auc3d',
    'mesh_mean3d', 'mesh_auc3d', 'mesh_al_mean3d', 'mesh_al_auc3d',
    'f_score_5', 'f_al_score_5', 'f_score_15', 'f_al_score_15',
)
MESH_SCORE_KEYS = ('mesh_mean3d', 'mesh_auc3d', 'mesh_al_mean3d', 'mesh_al_auc3d')
# Curve name (= score key prefix) -> (plot file, plot title).
PCK_PLOTS = {
    'xyz': ('pck_xyz.png', '3D keypoints, unaligned'),
    'xyz_al': ('pck_xyz_aligned.png', '3D keypoints, Procrustes aligned'),
    'mesh': ('pck_mesh.png', '3D mesh vertices, unaligned'),
    'mesh_al': ('pck_mesh_aligned.png', '3D mesh vertices, Procrustes aligned'),
}
SCORES_FILE = 'scores.txt'
PCK_DATA_FILE = 'pck_data.json'
HTML_FILE = 'scores.html'

_GT_SOURCE_HINT = ('the evaluation ground truth ships with the FreiHAND v2 evaluation set '
                   '(evaluation_xyz.json and evaluation_verts.json in the data set root)')


class EvaluationInputError(ValueError):
    """A prediction or ground-truth input that cannot be evaluated; the message says why."""


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
    similarity Procrustes (SPEC 8; see `fit_similarity`)."""
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
    computation by a factor of 6 or more in our runs (benchmarks/bench_eval.py).
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
    """Every leaderboard score of SPEC 8 for one set of predictions.

    xyz_gt, xyz_pred: M x 21 x 3; verts_gt: M x 778 x 3; verts_pred: M x V x 3 (meters, camera
    frame). V other than 778 means another mesh topology: the mesh scores are None (see the
    module docstring). `num_workers`: threads for the nearest-neighbour searches (default: the
    CPUs this process may use).

    Returns a dict with the 12 `SCORE_KEYS` (means in cm, AUCs and F-scores in [0, 1], mesh
    ones None when unavailable), 'mesh_available', 'num_samples', 'num_pred_verts',
    'pck_thresholds_m' (T,), 'pck_curves' {'xyz', 'xyz_al'[, 'mesh', 'mesh_al']: (T,) mean
    over points} and 'pck_per_keypoint' {'xyz', 'xyz_al': 21 x T}.
    """
    xyz_gt = _check_points('xyz_gt', xyz_gt, NUM_JOINTS)
    verts_gt = _check_points('verts_gt', verts_gt, NUM_VERTS)
    xyz_pred = _check_points('xyz_pred', xyz_pred, NUM_JOINTS)
    verts_pred = _check_points('verts_pred', verts_pred)
    counts = {'xyz_gt': len(xyz_gt), 'verts_gt': len(verts_gt),
              'xyz_pred': len(xyz_pred), 'verts_pred': len(verts_pred)}
    if len(set(counts.values())) != 1:
        raise EvaluationInputError(f'sample counts differ: {counts}; every input needs one entry per '
                                   f'evaluation sample, in evaluation order')
    num_workers = num_workers or len(os.sched_getaffinity(0))
    mesh_available = verts_pred.shape[1] == NUM_VERTS

    xyz_transform = fit_similarity(xyz_gt, xyz_pred)
    xyz_pred_aligned = apply_similarity(xyz_transform, xyz_pred)
    if mesh_available:
        verts_pred_aligned = align_similarity(verts_gt, verts_pred)
    else:
        verts_pred_aligned = apply_similarity(xyz_transform, verts_pred)

    parts = {'xyz': _point_scores(point_errors(xyz_gt, xyz_pred)),
             'xyz_al': _point_scores(point_errors(xyz_gt, xyz_pred_aligned))}
    if mesh_available:
        parts['mesh'] = _point_scores(point_errors(verts_gt, verts_pred))
        parts['mesh_al'] = _point_scores(point_errors(verts_gt, verts_pred_aligned))
    f_unaligned = f_scores(verts_gt, verts_pred, num_workers=num_workers).mean(axis=0)
    f_aligned = f_scores(verts_gt, verts_pred_aligned, num_workers=num_workers).mean(axis=0)

    scores = {}
    for prefix in ('xyz', 'xyz_al', 'mesh', 'mesh_al'):
        part = parts.get(prefix)
        scores[f'{prefix}_mean3d'] = part['mean_cm'] if part else None
        scores[f'{prefix}_auc3d'] = part['auc'] if part else None
    assert F_SCORE_THRESHOLDS_M == (0.005, 0.015)  # the key names below say 5 and 15 mm
    scores['f_score_5'], scores['f_score_15'] = (float(v) for v in f_unaligned)
    scores['f_al_score_5'], scores['f_al_score_15'] = (float(v) for v in f_aligned)
    scores = {key: scores[key] for key in SCORE_KEYS}
    scores.update(
        mesh_available=mesh_available,
        num_samples=int(xyz_gt.shape[0]),
        num_pred_verts=int(verts_pred.shape[1]),
        pck_thresholds_m=PCK_THRESHOLDS_M.copy(),
        pck_curves={name: part['curve'] for name, part in parts.items()},
        pck_per_keypoint={name: parts[name]['per_point'] for name in ('xyz', 'xyz_al')},
    )
    return scores


def _describe(value):
    """Short description of a JSON value for error messages."""
    if isinstance(value, list):
        return f'a list of {len(value)} entries'
    text = repr(value)
    return f'{type(value).__name__} {text[:40]}{"..." if len(text) > 40 else ""}'


def _find_malformed_sample(entries, where, num_points):
    """Message naming the first malformed sample of `entries` (a list of samples), or None.

    num_points: required points per sample, or None for "the same count in every sample".
    """
    if num_points is None:
        lengths = [len(s) for s in entries if isinstance(s, list)]
        if lengths:
            values, counts = np.unique(lengths, return_counts=True)
            num_points = int(values[np.argmax(counts)])  # the count most samples have
    for i, sample in enumerate(entries):
        if not isinstance(sample, list):
            return (f'{where} sample {i} is {_describe(sample)}, '
                    f'expected a list of {num_points} points [x, y, z]')
        if len(sample) == 0:
            return f'{where} sample {i} is an empty list, expected {num_points} points [x, y, z]'
        if not isinstance(sample[0], list):
            return (f'{where} sample {i} is a flat list of {len(sample)} values, expected '
                    f'{num_points} points [x, y, z] (a list of lists, shape {num_points} x 3)')
        if len(sample) != num_points:
            return (f'{where} sample {i} has {len(sample)} points, expected {num_points} '
                    f'(shape {num_points} x 3, the same in every sample)')
        for j, point in enumerate(sample):
            if not isinstance(point, list) or len(point) != 3:
                return (f'{where} sample {i} point {j} is {_describe(point)}, '
                        f'expected [x, y, z] (3 numbers, meters)')
            for c, value in enumerate(point):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    return (f'{where} sample {i} point {j} coordinate {c} is {_describe(value)}, '
                            f'expected a number')
    return None


def _samples_to_array(entries, source, where, num_points, type_scan_needed):
    """Convert a JSON list of samples to an M x N x 3 float64 array or raise with the place.

    source: file path for messages; where: which list ('xyz_list (pred[0])'); num_points: N or
    None (any N, the same in every sample); type_scan_needed: the file holds non-numeric JSON
    values somewhere, so check every value's type first (numpy would turn true into 1.0).
    """
    if not isinstance(entries, list):
        raise EvaluationInputError(f'{source}: {where} is {_describe(entries)}, '
                                   f'expected a list with one entry per sample')
    if not entries:
        raise EvaluationInputError(f'{source}: {where} is empty, '
                                   f'expected one entry per evaluation sample')
    problem = _find_malformed_sample(entries, where, num_points) if type_scan_needed else None
    array = None
    if problem is None:
        try:
            array = np.array(entries, dtype=np.float64)
        except (ValueError, TypeError):  # ragged nesting: find where below
            array = None
        shape_ok = (array is not None and array.ndim == 3 and array.shape[-1] == 3
                    and (num_points is None or array.shape[1] == num_points))
        if not shape_ok:
            problem = _find_malformed_sample(entries, where, num_points)
            assert problem is not None, f'{where}: numpy cannot convert it, yet no sample is malformed'
    if problem is not None:
        raise EvaluationInputError(f'{source}: {problem}')
    bad = np.argwhere(~np.isfinite(array))
    if len(bad):
        i, j, c = bad[0]
        raise EvaluationInputError(f'{source}: {where} sample {i} point {j} coordinate {c} is '
                                   f'{array[i, j, c]}; every coordinate must be a finite number '
                                   f'(meters)')
    return array


def _read_json(path, what):
    """Parse a JSON file; return (value, needs_type_scan). Errors name the file and position."""
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except FileNotFoundError:
        raise EvaluationInputError(f'{what} not found: {path}') from None
    except UnicodeDecodeError as err:
        raise EvaluationInputError(f'{path} is not UTF-8 text (byte {err.start}); '
                                   f'expected a JSON file') from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise EvaluationInputError(f'{path} is not valid JSON: {err.msg} at line {err.lineno} '
                                   f'column {err.colno}') from None
    # A file of only lists and numbers converts losslessly with numpy; anything else
    # (strings, true/false, null, objects) is hunted down value by value.
    needs_type_scan = any(token in text for token in ('"', 'true', 'false', 'null', '{'))
    return value, needs_type_scan


def load_pred(path, num_samples=None):
    """Read and validate a pred.json (SPEC 7): `[xyz_list, verts_list]`, meters.

    path: the file; num_samples: the ground-truth sample count M to check against (None: no
    check). Returns (xyz_pred M x 21 x 3, verts_pred M x V x 3) float64 arrays, V the same for
    every sample (778 for MANO). Raises EvaluationInputError naming the file, the list, the
    sample index and expected vs found on any malformation.
    """
    path = os.fspath(path)
    value, needs_type_scan = _read_json(path, 'prediction file')
    if not isinstance(value, list) or len(value) != 2:
        got = _describe(value)
        raise EvaluationInputError(f'{path}: the top level is {got}, expected a list of two lists '
                                   f'[xyz_list, verts_list] (SPEC 7)')
    xyz_entries, verts_entries = value
    xyz_where, verts_where = 'xyz_list (pred[0])', 'verts_list (pred[1])'
    for where, entries in ((xyz_where, xyz_entries), (verts_where, verts_entries)):
        if not isinstance(entries, list):
            raise EvaluationInputError(f'{path}: {where} is {_describe(entries)}, '
                                       f'expected a list with one entry per sample')
    if len(xyz_entries) != len(verts_entries):
        raise EvaluationInputError(f'{path}: {xyz_where} has {len(xyz_entries)} samples but '
                                   f'{verts_where} has {len(verts_entries)}; both need one entry '
                                   f'per evaluation sample')
    if num_samples is not None and len(xyz_entries) != num_samples:
        raise EvaluationInputError(f'{path}: the lists have {len(xyz_entries)} samples, the ground '
                                   f'truth has {num_samples}; pred.json needs one entry per '
                                   f'evaluation image, in evaluation order')
    xyz_pred = _samples_to_array(xyz_entries, path, xyz_where, NUM_JOINTS, needs_type_scan)
    verts_pred = _samples_to_array(verts_entries, path, verts_where, None, needs_type_scan)
    return xyz_pred, verts_pred


def has_gt(gt_dir):
    """True when `gt_dir` holds both evaluation ground-truth files."""
    return all(os.path.isfile(os.path.join(os.fspath(gt_dir), name))
               for name in (GT_XYZ_FILE, GT_VERTS_FILE))


def load_gt(gt_dir):
    """Read the evaluation ground truth from the FreiHAND root `gt_dir`.

    Returns (xyz_gt M x 21 x 3, verts_gt M x 778 x 3) float64 arrays, meters.
    """
    arrays = []
    for name, num_points in ((GT_XYZ_FILE, NUM_JOINTS), (GT_VERTS_FILE, NUM_VERTS)):
        path = os.path.join(os.fspath(gt_dir), name)
        if not os.path.isfile(path):
            raise EvaluationInputError(f'ground-truth file not found: {path}; {_GT_SOURCE_HINT}')
        value, needs_type_scan = _read_json(path, 'ground-truth file')
        arrays.append(_samples_to_array(value, path, 'ground truth', num_points, needs_type_scan))
    xyz_gt, verts_gt = arrays
    if len(xyz_gt) != len(verts_gt):
        raise EvaluationInputError(f'{gt_dir}: {GT_XYZ_FILE} has {len(xyz_gt)} samples but '
                                   f'{GT_VERTS_FILE} has {len(verts_gt)}; {_GT_SOURCE_HINT}')
    return xyz_gt, verts_gt


def format_report(scores):
    """The seed's printed report (SPEC 8) of an `evaluate` result, without a trailing newline."""
    def block(title, prefix):
        mean_cm, auc = scores[f'{prefix}_mean3d'], scores[f'{prefix}_auc3d']
        if mean_cm is None:
            return [title, f'unavailable: the prediction has {scores["num_pred_verts"]} vertices per '
                           f'sample, per-vertex errors need {NUM_VERTS}']
        return [title, f'auc={auc:.3f}, mean_kp3d_avg={mean_cm:.2f} cm']

    lines = (block('Evaluation 3D KP results:', 'xyz')
             + block('Evaluation 3D KP ALIGNED results:', 'xyz_al')
             + [''] + block('Evaluation 3D MESH results:', 'mesh')
             + block('Evaluation 3D MESH ALIGNED results:', 'mesh_al')
             + ['', 'F-scores'])
    for mm, key, key_al in ((5.0, 'f_score_5', 'f_al_score_5'), (15.0, 'f_score_15', 'f_al_score_15')):
        # The seed's layout: a space and a tab before F_aligned.
        lines.append(f'F@{mm:.1f}mm = {scores[key]:.3f} \tF_aligned@{mm:.1f}mm = {scores[key_al]:.3f}')
    return '\n'.join(lines)


def format_scores_txt(scores):
    """scores.txt content: `key: value` lines in the leaderboard's order (means in cm); the
    mesh lines are omitted when the mesh scores are unavailable."""
    return ''.join(f'{key}: {scores[key]:f}\n' for key in SCORE_KEYS if scores[key] is not None)


def _pck_data(scores):
    """The JSON-serialisable PCK content of an `evaluate` result."""
    curves = {}
    for name, curve in scores['pck_curves'].items():
        curves[name] = {'pck_mean_over_points': [float(v) for v in curve],
                        'auc': scores[f'{name}_auc3d'], 'mean_error_cm': scores[f'{name}_mean3d']}
    return {
        'thresholds_m': [float(t) for t in scores['pck_thresholds_m']],
        'pck_definition': 'per point, the fraction of samples with error <= threshold; '
                          'curves here are the mean over points',
        'curves': curves,
        'per_keypoint': {
            'joint_names': list(JOINT_NAMES),
            **{name: [[float(v) for v in row] for row in rows]
               for name, rows in scores['pck_per_keypoint'].items()},
        },
    }


def render_pck_plot(thresholds_m, curve, title, auc):
    """PNG bytes of one PCK curve (thresholds in m, shown in cm)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 4), dpi=100)
    FigureCanvasAgg(figure)  # Agg canvas attached to this figure only: no pyplot global state
    axes = figure.add_subplot()
    axes.plot(np.asarray(thresholds_m) * M_TO_CM, curve, linewidth=2, label=f'AUC = {auc:.3f}')
    axes.set_xlim(thresholds_m[0] * M_TO_CM, thresholds_m[-1] * M_TO_CM)
    axes.set_ylim(0.0, 1.0)
    axes.set_xlabel('error threshold (cm)')
    axes.set_ylabel('PCK (fraction within threshold)')
    axes.set_title(title)
    axes.grid(True, alpha=0.4)
    axes.legend(loc='lower right')
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format='png')
    return buffer.getvalue()


def _html_page(scores, report, plot_files):
    """A self-describing HTML page with the report, the scores table and the PCK plots."""
    rows = ''
    for key in SCORE_KEYS:
        value = 'unavailable' if scores[key] is None else f'{scores[key]:.4f}'
        unit = 'cm' if key.endswith('mean3d') else ''
        rows += f'<tr><td>{key}</td><td>{value}</td><td>{unit}</td></tr>'
    images = ''.join(f'<figure><img src="{html.escape(file)}" alt="{html.escape(title)}">'
                     f'<figcaption>{html.escape(title)}</figcaption></figure>'
                     for file, title in plot_files)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>FreiHAND evaluation</title>'
        '<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}'
        'td{border:1px solid #999;padding:2px 8px}'
        'figure{display:inline-block;margin:0 1em 1em 0}</style>'
        '</head><body>\n<h1>FreiHAND evaluation</h1>\n'
        f'<p>{scores["num_samples"]} samples, {scores["num_pred_verts"]} predicted vertices per sample; '
        'means in cm; PCK thresholds 0 to 5 cm.</p>\n'
        f'<pre>{html.escape(report)}</pre>\n'
        f'<table><tr><th>key</th><th>value</th><th>unit</th></tr>{rows}</table>\n'
        f'<div>{images}</div>\n</body></html>\n'
    )


def write_outputs(scores, out_dir):
    """Write scores.txt, pck_data.json, the PCK plots and scores.html into `out_dir`.

    Everything is rendered in memory first, then each file is written atomically, so a failure
    while preparing leaves `out_dir` untouched. Returns the list of written paths.
    """
    report = format_report(scores)
    contents = {SCORES_FILE: format_scores_txt(scores).encode()}
    plot_files = []
    for name, curve in scores['pck_curves'].items():
        file, title = PCK_PLOTS[name]
        contents[file] = render_pck_plot(scores['pck_thresholds_m'], curve, title,
                                         scores[f'{name}_auc3d'])
        plot_files.append((file, title))
    contents[HTML_FILE] = _html_page(scores, report, plot_files).encode()
    pck_data = _pck_data(scores)
    written = []
    os.makedirs(out_dir, exist_ok=True)
    for file, data in contents.items():
        path = os.path.join(out_dir, file)
        with atomic_open(path, 'wb') as f:
            f.write(data)
        written.append(path)
    path = os.path.join(out_dir, PCK_DATA_FILE)
    atomic_write_json(path, pck_data)
    written.append(path)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m utils.freihand_eval',
        description='Evaluate a FreiHAND pred.json against the evaluation ground truth with the '
                    "leaderboard's definitions (SPEC 8).")
    parser.add_argument('--gt', required=True,
                        help='FreiHAND root holding evaluation_xyz.json and evaluation_verts.json')
    parser.add_argument('--pred', required=True, help='pred.json: [xyz_list, verts_list], meters')
    parser.add_argument('--out', required=True,
                        help='output folder for scores.txt, pck_data.json, the plots and scores.html')
    args = parser.parse_args(argv)
    try:
        # Progress goes to stderr: reading the two ~200 MB JSON files takes longer than scoring.
        print(f'Reading the ground truth from {args.gt}', file=sys.stderr)
        xyz_gt, verts_gt = load_gt(args.gt)
        print(f'Reading the predictions from {args.pred}', file=sys.stderr)
        xyz_pred, verts_pred = load_pred(args.pred, num_samples=len(xyz_gt))
        print(f'Evaluating {len(xyz_gt)} samples', file=sys.stderr)
        scores = evaluate(xyz_gt, verts_gt, xyz_pred, verts_pred)
    except EvaluationInputError as err:
        sys.exit(f'freihand_eval: error: {err}\nNothing was written.')
    try:
        written = write_outputs(scores, args.out)
    except OSError as err:
        sys.exit(f'freihand_eval: error: cannot write the results to {args.out}: {err}')
    print(format_report(scores))
    names = ', '.join(os.path.basename(p) for p in written)
    print(f'\nWrote {len(written)} files to {args.out}: {names}')
    return scores


if __name__ == '__main__':
    main()
