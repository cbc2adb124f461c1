"""Local FreiHAND evaluation with the leaderboard's definitions (docs/method.md §8).

    python -m dataset.freihand.eval --gt data/FreiHAND --pred output/pred.json --out output/eval

By concern: `metrics` (alignment, errors, PCK/AUC, F-scores, `evaluate`), `files` (reading and
checking pred.json and the ground truth), `report` (printed report, scores.txt, plots, HTML)
and `cli` (the command line). The names below are the public API.
"""
from utils.errors import EvaluationInputError
from dataset.freihand.eval.cli import main
from dataset.freihand.eval.files import (GT_VERTS_FILE, GT_XYZ_FILE, has_gt, load_gt, load_pred,
                                       write_pred)
from dataset.freihand.eval.metrics import (F_SCORE_THRESHOLDS_M, MESH_SCORE_KEYS, PCK_THRESHOLDS_M,
                                         SCORE_KEYS, SimilarityTransform, align_similarity,
                                         apply_similarity, auc_per_point, evaluate, f_scores,
                                         fit_similarity, nearest_distances, pck_curves,
                                         point_errors)
from dataset.freihand.eval.report import format_report, format_scores_txt, write_outputs

__all__ = [
    'EvaluationInputError', 'F_SCORE_THRESHOLDS_M', 'GT_VERTS_FILE', 'GT_XYZ_FILE',
    'MESH_SCORE_KEYS', 'PCK_THRESHOLDS_M', 'SCORE_KEYS', 'SimilarityTransform',
    'align_similarity', 'apply_similarity', 'auc_per_point', 'evaluate', 'f_scores',
    'fit_similarity', 'format_report', 'format_scores_txt', 'has_gt', 'load_gt', 'load_pred',
    'main', 'nearest_distances', 'pck_curves', 'point_errors', 'write_outputs', 'write_pred',
]
