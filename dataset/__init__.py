"""Data sets for SAR: FreiHAND (docs/method.md §1-3), HO3D (docs/ho3d.md), both together, your
own annotated hands (dataset/custom, docs/own_data.md), and
the name -> entry registry the entry scripts use (config field `dataset`).

Each data set is one package (dataset/freihand/, dataset/ho3d/, dataset/custom/) or module: its reader (a
dataset.base.HandCropDataset), its evaluator, and an ENTRY that builds it from a configuration,
checks the configuration, evaluates and reports its predictions, names the scores training
records and writes its submission file. A new data set is its package or module plus one line
in DATASETS (docs/development.md, "Adding a data set").
"""
import dataclasses

import cv2
import torch

from dataset import custom, freihand, ho3d, mixed
from dataset.base import DatasetEntry, Preprocessing
from dataset.freihand import FreiHAND
from dataset.ho3d import HO3D
from utils.errors import DataError

DATASETS = {
    'FreiHAND': freihand.ENTRY,
    'HO3D': ho3d.ENTRY,
    'FreiHAND+HO3D': mixed.ENTRY,
    'custom': custom.ENTRY,
}


def _fields_classes(datasets):
    """The entries' fields classes, each once, in registry order."""
    classes = []
    for data_set in datasets.values():
        if data_set.fields is not None and data_set.fields not in classes:
            classes.append(data_set.fields)
    return classes


_FIELDS_CLASSES = _fields_classes(DATASETS)


@dataclasses.dataclass(frozen=True)
class DatasetFields(*_FIELDS_CLASSES):
    """The configuration fields the registered data sets add (their entries' `fields`, each
    defined in its package): config.Config inherits them, docs/config.md lists them.

    CHOICES and RANGES (class attributes, not fields) gather the valid values the fields
    classes declare, in config.py's form (a field -> its choices; a field -> (lowest, highest
    or None, strict lower bound)): config.py checks them whatever the data set."""
    CHOICES = {name: choices for fields in _FIELDS_CLASSES
               for name, choices in getattr(fields, 'CHOICES', {}).items()}
    RANGES = {name: limits for fields in _FIELDS_CLASSES
              for name, limits in getattr(fields, 'RANGES', {}).items()}


def entry(name):
    """The registered DatasetEntry of `name`; ValueError naming the known data sets."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)} "
                         f"(dataset/__init__.py DATASETS)")
    return DATASETS[name]


def get_dataset(name, mode, root=None, **kwargs):
    """Construct the reader of data set `name` (a DATASETS entry with a reader: 'FreiHAND',
    'HO3D') in `mode`, for code that has no configuration (tests, tools, benchmarks);
    `root=None` keeps the class default folder.

    The Preprocessing fields (Preprocessing.names(): input_img_shape, depth_box, seed, augment,
    fx_as_fy) may be given as keywords; the others go to the class (HO3D: version, mano_root, ...). The entry scripts
    use `entry(cfg.dataset).build(mode, cfg)` instead.
    """
    reader = entry(name).reader
    if reader is None:
        raise ValueError(f'dataset {name!r} combines data sets: build it from a configuration '
                         f'with dataset.entry({name!r}).build(mode, cfg)')
    prep = {k: kwargs.pop(k) for k in Preprocessing.names() if k in kwargs}
    if prep:
        kwargs['preprocessing'] = Preprocessing(**prep)
    if root is not None:
        kwargs['root'] = root
    return reader(mode, **kwargs)


def worker_init_fn(worker_id):
    """DataLoader worker setup: one OpenCV and one torch thread per worker.

    Workers parallelise across items; OpenCV's own thread pool (one thread per core in every
    worker) would oversubscribe the cores that the workers and the training process share.
    """
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


__all__ = ['DATASETS', 'DataError', 'DatasetEntry', 'FreiHAND', 'HO3D', 'Preprocessing', 'entry',
           'get_dataset', 'worker_init_fn']
