"""Data sets for SAR: FreiHAND (docs/method.md §1-3) and the name -> class registry used by the
entry layer."""
import cv2
import torch

from dataset.freihand import FreiHAND
from utils.errors import DataError

DATASETS = {'FreiHAND': FreiHAND}


def get_dataset(name, mode, root=None, **kwargs):
    """Construct the data set `name` ('FreiHAND') in `mode`; `root=None` keeps the class default folder.

    Other keyword arguments go to the class (e.g. input_img_shape, depth_box, seed, augment).
    """
    if name not in DATASETS:
        raise ValueError(f'unknown dataset {name!r}; known datasets: {sorted(DATASETS)}')
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


__all__ = ['DATASETS', 'DataError', 'FreiHAND', 'get_dataset', 'worker_init_fn']
