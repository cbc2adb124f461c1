"""Data sets for SAR: FreiHAND (docs/method.md §1-3), HO3D (docs/ho3d.md) and the name -> class
registry used by the entry layer."""
import cv2
import torch

import bisect

from torch.utils.data import ConcatDataset

from dataset.freihand import FreiHAND
from dataset.ho3d import HO3D
from utils.errors import DataError

DATASETS = {'FreiHAND': FreiHAND, 'HO3D': HO3D}
MIXED = 'FreiHAND+HO3D'  # training on both (FreiHAND's root is `root`, HO3D's `ho3d_root`)
HO3D_ONLY = ('version', 'mano_root', 'eval_box_enlarge')  # keyword arguments of HO3D alone


class EpochConcatDataset(ConcatDataset):
    """ConcatDataset that also takes the (epoch, index) keys of training.sampler.EpochBatchSampler
    (the part's own index goes to the part, with the epoch)."""

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            return super().__getitem__(key)
        epoch, idx = key
        part = bisect.bisect_right(self.cumulative_sizes, idx)
        start = self.cumulative_sizes[part - 1] if part else 0
        return self.datasets[part][(epoch, idx - start)]


def get_dataset(name, mode, root=None, **kwargs):
    """Construct the data set `name` ('FreiHAND', 'HO3D' or 'FreiHAND+HO3D') in `mode`;
    `root=None` keeps the class default folder.

    Other keyword arguments go to the class (e.g. input_img_shape, depth_box, seed, augment;
    HO3D: version, mano_root). 'FreiHAND+HO3D' takes `ho3d_root` too: its training set is the
    concatenation of both training sets (items of the same format; a shuffled loader mixes them
    in proportion to their sizes), its evaluation set FreiHAND's.
    """
    if name == MIXED:
        ho3d_root = kwargs.pop('ho3d_root', None)
        freihand_kwargs = {k: v for k, v in kwargs.items() if k not in HO3D_ONLY}
        freihand = get_dataset('FreiHAND', mode, root=root, **freihand_kwargs)
        if mode != 'training':
            return freihand
        if not ho3d_root:
            raise ValueError(f"dataset {MIXED!r} needs ho3d_root (--ho3d_root): the HO3D folder")
        return EpochConcatDataset([freihand, get_dataset('HO3D', mode, root=ho3d_root, **kwargs)])
    if name not in DATASETS:
        raise ValueError(f'unknown dataset {name!r}; known datasets: {sorted(DATASETS) + [MIXED]}')
    if root is not None:
        kwargs['root'] = root
    return DATASETS[name](mode, **kwargs)


def worker_init_fn(worker_id):
    """DataLoader worker setup: one OpenCV and one torch thread per worker.

    Workers parallelise across items; OpenCV's own thread pool (one thread per core in every
    worker) would oversubscribe the cores that the workers and the training process share.
    """
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


__all__ = ['DATASETS', 'DataError', 'FreiHAND', 'HO3D', 'MIXED', 'get_dataset', 'worker_init_fn']
