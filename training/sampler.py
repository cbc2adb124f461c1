"""The training data order: batches as a pure function of (seed, epoch, step), the same with
any number of DataLoader workers, ranks and accumulation steps, and the training DataLoader.

Epoch `e` shuffles the item indices with np.random.default_rng([seed, SHUFFLE_STREAM, e]).
Optimizer step `s` of the epoch uses the `batch_size` items perm[s * batch_size:(s + 1) *
batch_size] (the tail that fills no whole step is dropped, as drop_last did). With W ranks and
A accumulation steps the step's items are cut into A * W micro-batches of batch_size / (A * W)
items: micro-batch k of rank r is slice (k * W + r), so the union over ranks and micro-batches
is the same global batch as a single process sees. Each element the sampler yields is
(epoch, item index): the data set draws the item's augmentation from exactly that
(dataset.freihand), so DataLoader workers (persistent or not) hold no random state of their
own.
"""
import numpy as np
from torch.utils.data import DataLoader, Sampler

from dataset import worker_init_fn
from utils.errors import ConfigError

SHUFFLE_STREAM = 0  # tags the shuffling seeds apart from the augmentation and dropout streams


def epoch_permutation(num_items, seed, epoch):
    """The item order of `epoch`: a permutation of range(num_items) (int64 array)."""
    return np.random.default_rng([int(seed), SHUFFLE_STREAM, int(epoch)]).permutation(num_items)


class EpochBatchSampler(Sampler):
    """Micro-batches of (epoch, item index) for one rank (see the module docstring).

    Args:
        num_items: items in the data set.
        batch_size: items per optimizer step over all ranks and micro-batches.
        seed: shuffling seed (config `seed`).
        rank, world_size: this process and the number of processes.
        accumulate: micro-batches per optimizer step.
    Call `set_epoch(epoch, start_step)` before iterating; the iteration then yields the
    micro-batches of steps start_step .. steps_per_epoch - 1 of `epoch`, in order.
    """

    def __init__(self, num_items, batch_size, seed, rank=0, world_size=1, accumulate=1):
        parts = world_size * accumulate
        if batch_size % parts:
            raise ValueError(f'batch_size {batch_size} is not divisible by world size '
                             f'{world_size} x accumulate {accumulate}')
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.rank, self.world_size, self.accumulate = rank, world_size, accumulate
        self.micro_batch = batch_size // parts
        self.steps_per_epoch = num_items // batch_size
        self.epoch, self.start_step = 0, 0

    def set_epoch(self, epoch, start_step=0):
        if not 0 <= start_step <= self.steps_per_epoch:
            raise ValueError(f'start_step {start_step} outside [0, {self.steps_per_epoch}]')
        self.epoch, self.start_step = int(epoch), int(start_step)

    def __len__(self):
        return (self.steps_per_epoch - self.start_step) * self.accumulate

    def __iter__(self):
        order = epoch_permutation(self.num_items, self.seed, self.epoch)
        m = self.micro_batch
        for step in range(self.start_step, self.steps_per_epoch):
            batch = order[step * self.batch_size:(step + 1) * self.batch_size]
            for k in range(self.accumulate):
                part = k * self.world_size + self.rank
                yield [(self.epoch, int(i)) for i in batch[part * m:(part + 1) * m]]


def build_train_loader(dataset, cfg, rank, world_size, device):
    """The training DataLoader of config `cfg` over `dataset`: an EpochBatchSampler of
    batch_size / (world_size * accumulate) items per micro-batch (call its set_epoch before
    each epoch), cfg.num_worker persistent workers. ConfigError when not one step fits."""
    sampler = EpochBatchSampler(len(dataset), cfg.batch_size, cfg.seed, rank, world_size,
                                cfg.accumulate)
    if sampler.steps_per_epoch == 0:
        raise ConfigError(f"{len(dataset)} training items give no batch of {cfg.batch_size}: "
                          f"lower batch_size")
    return DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.num_worker,
                      pin_memory=device.type == 'cuda', persistent_workers=cfg.num_worker > 0,
                      worker_init_fn=worker_init_fn)
