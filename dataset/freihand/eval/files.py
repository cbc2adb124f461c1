"""Reading and checking the evaluator's inputs: pred.json (docs/method.md §7) and the
evaluation ground truth (evaluation_xyz.json, evaluation_verts.json)."""
import os

import numpy as np

from manopth.constants import NUM_JOINTS, NUM_VERTS
from dataset.freihand.annotations import load_annotation
from utils.files.annotations import resolve_cache_dir
from utils.files.atomic import atomic_write_json
from utils.errors import DataError, EvaluationInputError
from dataset.freihand.json_values import describe, entries_to_array, read_json

GT_XYZ_FILE = 'evaluation_xyz.json'  # M x 21 x 3, meters, camera frame
GT_VERTS_FILE = 'evaluation_verts.json'  # M x 778 x 3, meters, camera frame

_GT_SOURCE_HINT = ('the evaluation ground truth ships with the FreiHAND v2 evaluation set '
                   '(evaluation_xyz.json and evaluation_verts.json in the data set root)')


def write_pred(path, xyz, verts):
    """pred.json (docs/method.md §7): [xyz_list, verts_list], meters rounded to 1e-6 m,
    written atomically. Returns `path`."""
    atomic_write_json(path, [np.round(xyz, 6).tolist(), np.round(verts, 6).tolist()])
    return path


def _points(entries, source, where, num_points, type_scan):
    """M x num_points x 3 float64 (num_points None: any count shared by every sample)."""
    return entries_to_array(entries, source, where, (num_points, 3), type_scan=type_scan,
                            error=EvaluationInputError)


def load_pred(path, num_samples=None):
    """Read and validate a pred.json (docs/method.md §7): `[xyz_list, verts_list]`, meters.

    path: the file; num_samples: the ground-truth sample count M to check against (None: no
    check). Returns (xyz_pred M x 21 x 3, verts_pred M x V x 3) float64 arrays, V the same for
    every sample (778 for MANO). Raises EvaluationInputError naming the file, the list, the
    sample index and expected vs found on any malformation.
    """
    path = os.fspath(path)
    value, needs_type_scan = read_json(path, 'prediction file', EvaluationInputError)
    if not isinstance(value, list) or len(value) != 2:
        got = describe(value)
        raise EvaluationInputError(f'{path}: the top level is {got}, expected a list of two lists '
                                   f'[xyz_list, verts_list] (docs/method.md §7)')
    xyz_entries, verts_entries = value
    xyz_where, verts_where = 'xyz_list (pred[0])', 'verts_list (pred[1])'
    for where, entries in ((xyz_where, xyz_entries), (verts_where, verts_entries)):
        if not isinstance(entries, list):
            raise EvaluationInputError(f'{path}: {where} is {describe(entries)}, '
                                       f'expected a list with one entry per sample')
    if len(xyz_entries) != len(verts_entries):
        raise EvaluationInputError(f'{path}: {xyz_where} has {len(xyz_entries)} samples but '
                                   f'{verts_where} has {len(verts_entries)}; both need one entry '
                                   f'per evaluation sample')
    if num_samples is not None and len(xyz_entries) != num_samples:
        raise EvaluationInputError(f'{path}: the lists have {len(xyz_entries)} samples, the ground '
                                   f'truth has {num_samples}; pred.json needs one entry per '
                                   f'evaluation image, in evaluation order')
    xyz_pred = _points(xyz_entries, path, xyz_where, NUM_JOINTS, needs_type_scan)
    verts_pred = _points(verts_entries, path, verts_where, None, needs_type_scan)
    return xyz_pred, verts_pred


def has_gt(gt_dir):
    """True when `gt_dir` holds both evaluation ground-truth files."""
    return all(os.path.isfile(os.path.join(os.fspath(gt_dir), name))
               for name in (GT_XYZ_FILE, GT_VERTS_FILE))


def load_gt(gt_dir, cache='auto'):
    """Read the evaluation ground truth from the FreiHAND root `gt_dir`.

    The two files go through the annotation cache of the data loader (utils/files/annotations.py;
    `cache` as config.annotation_cache: 'auto', 'off' or a folder), in its exact form: float64
    values exactly as json.load reads them, as the leaderboard does (errors are compared with
    thresholds, so a float32 rounding could move a borderline case), cached as
    `<stem>.f64.npy` so a second evaluation maps them in milliseconds.
    Returns (xyz_gt M x 21 x 3, verts_gt M x 778 x 3) float64 arrays, meters.
    """
    gt_dir = os.fspath(gt_dir)
    cache_dir = resolve_cache_dir(gt_dir, cache)
    arrays = []
    for name, num_points in ((GT_XYZ_FILE, NUM_JOINTS), (GT_VERTS_FILE, NUM_VERTS)):
        path = os.path.join(gt_dir, name)
        if not os.path.isfile(path):
            raise EvaluationInputError(f'ground-truth file not found: {path}; {_GT_SOURCE_HINT}')
        try:
            array = load_annotation(path, (num_points, 3), cache_dir, what='ground-truth file',
                                    exact=True)
        except DataError as err:
            raise EvaluationInputError(str(err)) from None
        arrays.append(np.array(array))  # a writable copy; NaN and infinities were refused
    xyz_gt, verts_gt = arrays
    if len(xyz_gt) != len(verts_gt):
        raise EvaluationInputError(f'{gt_dir}: {GT_XYZ_FILE} has {len(xyz_gt)} samples but '
                                   f'{GT_VERTS_FILE} has {len(verts_gt)}; {_GT_SOURCE_HINT}')
    return xyz_gt, verts_gt
