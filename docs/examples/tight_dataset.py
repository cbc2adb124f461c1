"""A data set (docs/development.md, "Adding a data set"): FreiHAND cropped 0.85 x tighter.

A new data set is a module like this one (or a package like dataset/freihand/) in dataset/ and
one line in dataset.DATASETS:

    DATASETS = {..., 'TightFreiHAND': tight_dataset.ENTRY}

then `python train.py --dataset TightFreiHAND` trains on it (tests/test_docs_examples.py runs
it). A reader of a new layout subclasses dataset.base.HandCropDataset and defines `__len__`,
`read_image`, `image_path`, `crop_box`, `intrinsics`, `training_points` and
`evaluation_meta`; this one inherits them from the FreiHAND reader and changes the crop only.
"""
import dataclasses

from dataset import freihand
from dataset.base import Preprocessing
from dataset.freihand import FreiHAND

CROP_FACTOR = 0.85  # side of the crop box / FreiHAND's (130 px of 224)


class TightFreiHAND(FreiHAND):
    """FreiHAND's items, cropped around the same centre with a box CROP_FACTOR x its side."""

    NAME = 'TightFreiHAND'

    def crop_box(self, idx):
        center, side = super().crop_box(idx)
        return center, side * CROP_FACTOR


def build(mode, cfg):
    """The reader of a resolved configuration (train.py and test.py call it)."""
    return TightFreiHAND(mode, cfg.data_root, Preprocessing.from_config(cfg),
                         cache_dir=cfg.annotation_cache)


# Its own reader; FreiHAND's evaluation, report, score keys and submission file.
ENTRY = dataclasses.replace(freihand.ENTRY, reader=TightFreiHAND, build=build)
