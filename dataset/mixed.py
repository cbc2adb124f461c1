"""FreiHAND and HO3D trained on together (`--dataset FreiHAND+HO3D --ho3d_root DIR`): the
training set is the concatenation of both training sets (items of the same format; a shuffled
loader mixes them in proportion to their sizes), the evaluation set and outputs FreiHAND's."""
import bisect
import dataclasses

from torch.utils.data import ConcatDataset

from dataset import freihand, ho3d
from dataset.base import Preprocessing


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


def _build(mode, cfg):
    first = freihand.ENTRY.build(mode, cfg)
    if mode != 'training':
        return first
    second = ho3d.HO3D(mode, cfg.ho3d_root, version=cfg.ho3d_version, mano_root=cfg.mano_root,
                       preprocessing=Preprocessing.from_config(cfg),
                       cache_dir=cfg.annotation_cache)
    return EpochConcatDataset([first, second])


def _check(cfg):
    if not cfg.ho3d_root:
        raise ValueError("dataset 'FreiHAND+HO3D' trains on FreiHAND (data_root) and HO3D: set "
                         "--ho3d_root to the HO3D folder")


# Evaluated, scored and reported as FreiHAND: its evaluation set is FreiHAND's.
ENTRY = dataclasses.replace(freihand.ENTRY, reader=None, build=_build, check=_check,
                            fields=ho3d.ENTRY.fields)
