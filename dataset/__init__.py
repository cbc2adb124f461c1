"""Data sets for SAR: FreiHAND (SPEC 1-3) and the name -> class registry used by the entry scripts."""
from dataset.freihand import DataError, FreiHAND

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


__all__ = ['DATASETS', 'DataError', 'FreiHAND', 'get_dataset']
