"""HO3D's scores (docs/ho3d.md §6): the 14 numbers of the official scores.txt.

Everything FreiHAND's leaderboard computes the same way comes from dataset.freihand.eval.metrics
(similarity Procrustes, per-point errors, PCK `<=` over 100 thresholds in [0, 5] cm, AUC, the
F-scores with strict `<` at 5 and 15 mm): `evaluate` runs that evaluator and adds HO3D's third
keypoint alignment, scale and translation (`align_scale_translation`), under HO3D's key names.

Predictions and ground truth are in HO3D's joint order and OpenGL frame (the metrics are
distances: any common rotation of both sets gives the same numbers).
"""
import numpy as np

from manopth.constants import NUM_JOINTS, NUM_VERTS
from utils.errors import EvaluationInputError
from dataset.freihand.eval import metrics as freihand_metrics
from dataset.freihand.eval.metrics import (M_TO_CM, PCK_THRESHOLDS_M, auc_per_point, pck_curves,
                                         point_errors)

# The official scores.txt keys, in its order; *_mean3d in cm.
SCORE_KEYS = (
    'xyz_mean3d', 'xyz_auc3d', 'xyz_procrustes_al_mean3d', 'xyz_procrustes_al_auc3d',
    'xyz_scale_trans_al_mean3d', 'xyz_scale_trans_al_auc3d', 'mesh_mean3d', 'mesh_auc3d',
    'mesh_al_mean3d', 'mesh_al_auc3d', 'f_score_5', 'f_al_score_5', 'f_score_15', 'f_al_score_15',
)
# HO3D key -> the FreiHAND evaluator's key of the same number.
FROM_FREIHAND = {
    'xyz_mean3d': 'xyz_mean3d', 'xyz_auc3d': 'xyz_auc3d',
    'xyz_procrustes_al_mean3d': 'xyz_al_mean3d', 'xyz_procrustes_al_auc3d': 'xyz_al_auc3d',
    'mesh_mean3d': 'mesh_mean3d', 'mesh_auc3d': 'mesh_auc3d',
    'mesh_al_mean3d': 'mesh_al_mean3d', 'mesh_al_auc3d': 'mesh_al_auc3d',
    'f_score_5': 'f_score_5', 'f_al_score_5': 'f_al_score_5',
    'f_score_15': 'f_score_15', 'f_al_score_15': 'f_al_score_15',
}
# Curve names: HO3D's prefix -> the FreiHAND evaluator's.
CURVES = {'xyz': 'xyz', 'xyz_procrustes_al': 'xyz_al', 'mesh': 'mesh', 'mesh_al': 'mesh_al'}
SCALE_BONE = (0, 4)  # HO3D order: wrist -> middle MCP, the bone of the scale alignment


def align_scale_translation(gt, pred):
    """Scale-translation alignment of HO3D's joints (docs/ho3d.md §6), per sample, operation
    for operation as the official evaluation computes it.

    The prediction is divided by its own wrist-to-middle-MCP length |j4 - j0| when that is
    above 0 (a zero length skips only this division), multiplied by the ground truth's, then
    translated so that its wrist sits on the ground truth's wrist. The order matters: an exact
    prediction then lands on the ground truth to the last bit in the same cases as the official
    score, which PCK's first threshold (0) counts.

    gt, pred: B x 21 x 3 (m, HO3D order). Returns B x 21 x 3.
    """
    gt, pred = np.asarray(gt, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    first, second = SCALE_BONE
    length_pred = np.sqrt(np.sum(np.square(pred[:, second] - pred[:, first]), axis=-1))
    length_gt = np.sqrt(np.sum(np.square(gt[:, second] - gt[:, first]), axis=-1))
    divisor = np.where(length_pred > 0, length_pred, 1.0)[:, None, None]
    scaled = np.where((length_pred > 0)[:, None, None], pred / divisor, pred)
    scaled = scaled * length_gt[:, None, None]
    return (scaled - scaled[:, first:first + 1]) + gt[:, first:first + 1]


def evaluate(xyz_gt, verts_gt, xyz_pred, verts_pred, num_workers=None):
    """The 14 official HO3D scores of one set of predictions.

    xyz_*: M x 21 x 3, verts_*: M x 778 x 3 (m, HO3D order, one frame for both). Returns a dict
    with the SCORE_KEYS (means in cm), 'num_samples', 'pck_thresholds_m' (T,),
    'pck_curves' {prefix: (T,) mean over points} for 'xyz', 'xyz_procrustes_al',
    'xyz_scale_trans_al', 'mesh', 'mesh_al'.
    """
    xyz_pred = np.asarray(xyz_pred, dtype=np.float64)
    verts_pred = np.asarray(verts_pred, dtype=np.float64)
    if verts_pred.ndim != 3 or verts_pred.shape[1:] != (NUM_VERTS, 3):
        raise EvaluationInputError(f'verts_pred has shape {verts_pred.shape}, expected M x '
                                   f'{NUM_VERTS} x 3: HO3D scores MANO meshes')
    base = freihand_metrics.evaluate(xyz_gt, verts_gt, xyz_pred, verts_pred, num_workers)
    errors = point_errors(xyz_gt, align_scale_translation(xyz_gt, xyz_pred))  # (M, 21)
    curves = pck_curves(errors)
    scores = {key: base[FROM_FREIHAND[key]] for key in FROM_FREIHAND}
    scores['xyz_scale_trans_al_mean3d'] = float(errors.mean(axis=0).mean() * M_TO_CM)
    scores['xyz_scale_trans_al_auc3d'] = float(auc_per_point(curves).mean())
    scores = {key: scores[key] for key in SCORE_KEYS}
    pck = {name: base['pck_curves'][source] for name, source in CURVES.items()}
    pck['xyz_scale_trans_al'] = curves.mean(axis=0)
    assert errors.shape[1] == NUM_JOINTS
    scores.update(num_samples=base['num_samples'], pck_thresholds_m=PCK_THRESHOLDS_M.copy(),
                  pck_curves=pck)
    return scores
