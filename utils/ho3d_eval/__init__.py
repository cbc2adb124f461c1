"""Local HO3D v2 / v3 evaluation with the official definitions (docs/ho3d.md §6).

    python -m utils.ho3d_eval --gt data/HO3D --pred output/pred.json --out output/eval_ho3d

By concern: `metrics` (the scale-translation alignment and `evaluate`, on top of
utils.freihand_eval's metrics), `files` (pred.json and ground-truth checks), `report`
(printed report, scores.txt, PCK plots) and `cli`. The names below are the public API.
"""
from utils.errors import EvaluationInputError
from utils.ho3d_eval.cli import main
from utils.ho3d_eval.files import check_frame, check_order, has_gt, load_gt, load_pred
from utils.ho3d_eval.metrics import SCORE_KEYS, align_scale_translation, evaluate
from utils.ho3d_eval.report import format_report, format_scores_txt, write_outputs

__all__ = ['EvaluationInputError', 'SCORE_KEYS', 'align_scale_translation', 'check_frame',
           'check_order', 'evaluate', 'format_report', 'format_scores_txt', 'has_gt', 'load_gt',
           'load_pred', 'main', 'write_outputs']
