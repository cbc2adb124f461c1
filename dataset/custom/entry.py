"""The registry entry of the custom data set (dataset/__init__.py DATASETS['custom']).

`--dataset custom --data_root DIR`: trains on DIR's 'train' lines (with `--freihand_root F`
beside FreiHAND's training set, `--custom_repeat N` times each), tests and evaluates on its
'test' lines with FreiHAND's metrics; pred.json in FreiHAND's layout, each image's own frame.
"""
import dataclasses
import os

from dataset.base import DatasetEntry, Preprocessing
from dataset.custom.labels import LABELS_FILE, read_labels
from dataset.custom.reader import Custom
from dataset.freihand import ENTRY as FREIHAND_ENTRY
from dataset.freihand import FreiHAND
from dataset.freihand.entry import write_scores
from dataset.freihand import eval as freihand_eval
from dataset.mixed import EpochConcatDataset

_CHECKED = {}  # (labels file, its size and mtime, mano_root) -> the checked hands


def checked_hands(cfg):
    """The checked lines of cfg.data_root/labels.jsonl, read once per process and file version
    (LabelError naming the file, line and field of the first bad line)."""
    path = os.path.abspath(os.path.join(cfg.data_root, LABELS_FILE))
    try:
        stat = os.stat(path)
        key = (path, stat.st_size, stat.st_mtime_ns, cfg.mano_root)
    except OSError:
        key = None
    if key is None or key not in _CHECKED:
        hands = read_labels(cfg.data_root, cfg.mano_root)
        if key is None:
            return hands
        _CHECKED.clear()  # one folder at a time: a test process reads many
        _CHECKED[key] = hands
    return _CHECKED[key]


def _build(mode, cfg):
    custom = Custom(mode, cfg.data_root, Preprocessing.from_config(cfg), mano_root=cfg.mano_root,
                    repeat=cfg.custom_repeat, hands=checked_hands(cfg))
    if mode != 'training' or not cfg.freihand_root:
        return custom
    freihand = FreiHAND(mode, cfg.freihand_root, Preprocessing.from_config(cfg),
                        cache_dir=cfg.annotation_cache)
    return EpochConcatDataset([freihand, custom])


@dataclasses.dataclass(frozen=True)
class CustomFields:
    """The custom data set's configuration fields (its ENTRY's `fields`: config.Config inherits
    them)."""
    # ---- data: your own hands (--dataset custom) --------------------------------------------
    freihand_root: str = ''  # also train on the FreiHAND training set in this folder (docs/own_data.md)
    custom_repeat: int = 1  # training items per labels.jsonl line and epoch (raises a small set's share beside FreiHAND)

    RANGES = {'custom_repeat': (1, None, False)}  # not a field: config.py's valid ranges


def _check_data(cfg):
    """Every line checked before train.py or test.py writes anything."""
    checked_hands(cfg)


def _has_ground_truth(cfg):
    return any(hand.split == 'test' for hand in checked_hands(cfg))


def _evaluate(cfg, dataset, xyz, verts):
    """FreiHAND's scores (dataset.freihand.eval.evaluate) of predictions in the reader's frame
    against the 'test' lines: mesh scores only when every test line has vertices."""
    xyz, verts = dataset.to_image_frame(xyz, verts)
    xyz_gt, verts_gt = dataset.ground_truth()
    return freihand_eval.evaluate(xyz_gt, verts_gt, xyz, verts)


def write_outputs(cfg, dataset, xyz, verts, logger):
    """test.py's outputs: <output_root>/pred.json (FreiHAND's layout, the order of the 'test'
    lines, each image's own frame) and the scores in <output_root>/eval (scores.txt,
    scores.html, the PCK plots). Returns the scores."""
    image_xyz, image_verts = dataset.to_image_frame(xyz, verts)
    pred_path = freihand_eval.write_pred(os.path.join(cfg.output_root, 'pred.json'), image_xyz,
                                         image_verts)
    logger.info('wrote %s (%d hands, the test lines of %s in order)', pred_path, len(xyz),
                os.path.join(cfg.data_root, LABELS_FILE))
    return write_scores(_evaluate(cfg, dataset, xyz, verts), cfg.output_root, logger,
                        "evaluation (FreiHAND's metrics)")


# FreiHAND's metrics, so FreiHAND's report, monitored scores and curves' panels (a joints-only
# test set's None mesh scores are skipped by the monitor).
ENTRY = DatasetEntry(reader=Custom, build=_build, write_outputs=write_outputs,
                     check_data=_check_data, fields=CustomFields,
                     has_ground_truth=_has_ground_truth,
                     evaluate=_evaluate, report=FREIHAND_ENTRY.report,
                     score_keys=FREIHAND_ENTRY.score_keys,
                     score_panels=FREIHAND_ENTRY.score_panels)
