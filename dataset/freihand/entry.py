"""FreiHAND's registry entry (dataset/__init__.py DATASETS): the data sets of a configuration,
the training-time evaluation, the scores the training monitor records, and test.py's outputs
(pred.json, the local evaluation)."""
import os

from dataset.base import DatasetEntry, Preprocessing
from dataset.freihand import eval as freihand_eval
from dataset.freihand.reader import FreiHAND

# The training curves' evaluation panels: (score key, legend label); means in cm, the F-scores
# and AUCs in [0, 1].
MEAN_PANEL = (('xyz_al_mean3d', 'keypoints, aligned (PA-MPJPE)'),
              ('mesh_al_mean3d', 'mesh, aligned (PA-MPVPE)'))
RATIO_PANEL = (('f_al_score_5', 'F@5 mm, aligned'), ('f_al_score_15', 'F@15 mm, aligned'),
               ('xyz_al_auc3d', 'AUC keypoints, aligned (0-5 cm)'),
               ('mesh_al_auc3d', 'AUC mesh, aligned (0-5 cm)'))


def _build(mode, cfg):
    return FreiHAND(mode, cfg.data_root, Preprocessing.from_config(cfg),
                    cache_dir=cfg.annotation_cache)


def _has_ground_truth(cfg):
    return freihand_eval.has_gt(cfg.data_root)


def _evaluate(cfg, dataset, xyz, verts):
    """The leaderboard's scores of the predictions of `dataset`'s items: the evaluation set, or
    a torch Subset of it (whose `indices` pick the ground-truth rows)."""
    xyz_gt, verts_gt = freihand_eval.load_gt(cfg.data_root, cfg.annotation_cache)
    rows = getattr(dataset, 'indices', None)
    if rows is not None:
        xyz_gt, verts_gt = xyz_gt[list(rows)], verts_gt[list(rows)]
    return freihand_eval.evaluate(xyz_gt, verts_gt, xyz, verts)


def write_outputs(cfg, dataset, xyz, verts, logger):
    """test.py's outputs (rank 0): <output_root>/pred.json, the leaderboard's submission file,
    and with the public evaluation ground truth in data_root the local evaluation (the
    leaderboard's definitions) in <output_root>/eval. Returns the scores or None."""
    pred_path = freihand_eval.write_pred(os.path.join(cfg.output_root, 'pred.json'), xyz, verts)
    logger.info('wrote %s (%d samples); zip it to submit to the FreiHAND leaderboard',
                pred_path, len(xyz))
    if not _has_ground_truth(cfg):
        logger.info('no evaluation ground truth in %s: skipping the local evaluation',
                    cfg.data_root)
        return None
    return write_scores(_evaluate(cfg, dataset, xyz, verts), cfg.output_root, logger,
                        'local evaluation (the leaderboard definitions)')


def write_scores(scores, output_root, logger, what):
    """FreiHAND's evaluation files of `scores` (scores.txt, scores.html, pck_data.json, the
    PCK plots) in <output_root>/eval, and the report logged under `what`; returns scores."""
    out_dir = os.path.join(output_root, 'eval')
    freihand_eval.write_outputs(scores, out_dir)
    logger.info('%s, written to %s:\n%s', what, out_dir, freihand_eval.format_report(scores))
    return scores


ENTRY = DatasetEntry(reader=FreiHAND, build=_build, write_outputs=write_outputs,
                     has_ground_truth=_has_ground_truth, evaluate=_evaluate,
                     report=freihand_eval.format_report, score_keys=freihand_eval.SCORE_KEYS,
                     score_panels=(MEAN_PANEL, RATIO_PANEL))
