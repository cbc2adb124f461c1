"""Local HO3D v2 / v3 evaluation with the official definitions (docs/ho3d.md §6).

    python -m dataset.ho3d.eval --gt data/HO3D --pred output/pred.json --out output/eval_ho3d

By concern: `metrics` (the scale-translation alignment and `evaluate`, on top of
dataset.freihand.eval's metrics), `files` (pred.json and ground-truth checks), `report`
(printed report, scores.txt, PCK plots) and `cli`. The names below are the public API.
"""
from utils.errors import EvaluationInputError
from dataset.ho3d.eval.cli import main
from dataset.ho3d.eval.files import check_frame, check_order, has_gt, load_gt, load_pred
from dataset.ho3d.eval.metrics import SCORE_KEYS, align_scale_translation, evaluate
from dataset.ho3d.eval.report import format_report, format_scores_txt, write_outputs

__all__ = ['EvaluationInputError', 'SCORE_KEYS', 'align_scale_translation', 'check_frame',
           'check_order', 'evaluate', 'format_report', 'format_scores_txt', 'has_gt', 'load_gt',
           'load_pred', 'main', 'write_outputs']
