"""The train step and the epoch loop: small functions that take the model and the loader and
return plain statistics; train.py only orchestrates."""
import contextlib
import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from inference.precision import autocast
from utils.errors import UserError

logger = logging.getLogger(__name__)


MODEL_STREAM = 2  # tags the dropout seeds apart from the shuffling and augmentation streams


def to_device(batch, device, channels_last=False):
    """Move a dict of tensors to `device` (non-blocking: overlaps with compute when the
    loader pins memory); the image optionally in channels_last layout."""
    out = {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
    if channels_last and 'img' in out:
        out['img'] = out['img'].contiguous(memory_format=torch.channels_last)
    return out


def drop_full_mask(targets):
    """`targets` without 'verts_valid' when every item has vertices (checked on the host batch,
    before it moves: no device synchronisation), so the model computes the published losses
    and only batches with joints-only items pay for the masked ones (docs/method.md §12)."""
    valid = targets.get('verts_valid')
    if valid is None or not bool(valid.all()):
        return targets
    return {key: value for key, value in targets.items() if key != 'verts_valid'}


class NonFiniteLossError(RuntimeError, UserError):
    """A loss term became NaN or infinite; the message names the iteration and the term."""


def format_log_line(epoch, total_epoch, batch, num_batches, lr, losses, suffix=''):
    """The published log line: [Epoch e/E][Batch i/n][lr x][loss_<name>: v]..., then
    `suffix` (the monitor's throughput and time left)."""
    terms = ''.join(f'[loss_{name}: {value:.4f}]' for name, value in losses.items())
    return f'[Epoch {epoch}/{total_epoch}][Batch {batch}/{num_batches}][lr {lr:.2e}]{terms}{suffix}'


def model_seed(seed, epoch, step, rank):
    """The torch seed (dropout) of optimizer step `step` of `epoch` on `rank`.

    train_one_epoch seeds torch's global generator with it before every step, so the dropout
    masks are a function of (seed, epoch, step, rank) alone: a run resumed from any checkpoint
    draws what the uninterrupted run drew.
    """
    entropy = [int(seed), MODEL_STREAM, int(epoch), int(step), int(rank)]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])


def train_step(model, optimizer, inputs, targets, *, amp_dtype=None, scaler=None):
    """One optimisation step on a batch already on the device: forward under autocast, the
    sum of the loss terms, backward (scaled with an fp16 GradScaler), optimizer step.

    Returns:
        the loss dict (device tensors; no host synchronisation here).
    """
    return accumulation_step(model, optimizer, [(inputs, targets)], amp_dtype=amp_dtype,
                             scaler=scaler)


def forward_losses(model, inputs, targets, amp_dtype=None):
    """The training forward of one micro-batch on its device, under autocast in amp_dtype.

    Returns:
        (loss dict {name: scalar tensor}, their sum): what accumulation_step backpropagates.
    """
    with autocast(inputs['img'].device, amp_dtype):
        losses = model(inputs, targets)
    return losses, sum(losses.values())


def accumulation_step(model, optimizer, micro_batches, *, amp_dtype=None, scaler=None,
                      prepare=None):
    """One optimisation step over N micro-batches: each one's loss sum divided by N is
    backpropagated (so the gradient is that of the mean over the whole batch), then one
    optimizer step. Under DistributedDataParallel only the last micro-batch synchronises the
    gradients (`no_sync` for the others).

    Args:
        micro_batches: [(inputs, targets)] dicts; `prepare(inputs, targets)` (e.g. the copy to
            the device) is applied to each just before its forward, so one micro-batch at a
            time sits on the device.
    Returns:
        {loss name: mean over the micro-batches} (device tensors; no host synchronisation).
    """
    count = len(micro_batches)
    optimizer.zero_grad(set_to_none=True)
    per_batch = []
    for k, (inputs, targets) in enumerate(micro_batches):
        if prepare is not None:
            inputs, targets = prepare(inputs, targets)
        last = k == count - 1
        sync = contextlib.nullcontext() if last or not hasattr(model, 'no_sync') else model.no_sync()
        with sync:
            losses, total = forward_losses(model, inputs, targets, amp_dtype)
            if count > 1:
                total = total / count
            (scaler.scale(total) if scaler is not None else total).backward()
        per_batch.append(losses)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    if count == 1:
        return per_batch[0]
    return {name: sum(losses[name].detach() for losses in per_batch) / count
            for name in per_batch[0]}


def _micro_batch_groups(loader, accumulate):
    """The loader's micro-batches, `accumulate` at a time (a list per optimizer step)."""
    group = []
    for batch in loader:
        group.append(batch)
        if len(group) == accumulate:
            yield group
            group = []
    assert not group, 'the sampler yields whole steps'


@dataclass(frozen=True)
class TrainOptions:
    """What every epoch of a training run shares, built once (train.py: `from_config`).

    Attributes:
        device: torch device of the model. total_epoch, print_iter, seed, accumulate: the
            config fields of those names. amp_dtype: autocast dtype (None: fp32).
        scaler: torch.amp.GradScaler with fp16, else None. channels_last: the image in
            channels_last layout (CUDA). rank: this process's rank (rank 0 shows progress).
        monitor: training.monitor.Monitor on rank 0 (times the loader, records every log
            step), else None.
    """
    device: torch.device
    total_epoch: int
    print_iter: int = 10
    amp_dtype: Optional[torch.dtype] = None
    scaler: Optional[object] = None
    channels_last: bool = False
    seed: int = 0
    rank: int = 0
    accumulate: int = 1
    monitor: Optional[object] = None

    @classmethod
    def from_config(cls, cfg, run, amp_dtype, scaler=None, monitor=None):
        """The options of a resolved configuration for `run` (utils.runtime.launch.Run)."""
        return cls(device=run.device, total_epoch=cfg.total_epoch, print_iter=cfg.print_iter,
                   amp_dtype=amp_dtype, scaler=scaler,
                   channels_last=cfg.channels_last and run.device.type == 'cuda',
                   seed=cfg.seed, rank=run.rank, accumulate=cfg.accumulate, monitor=monitor)


def train_one_epoch(model, loader, optimizer, options, *, epoch, start_step=0, after_step=None):
    """Optimizer steps start_step .. n - 1 of `epoch` over `loader` (options.accumulate
    micro-batches per step, n = start_step + len(loader) / accumulate). Returns {loss name:
    mean over the steps run} (floats).

    Before each step torch's generator is seeded with model_seed(seed, epoch, step, rank).
    `after_step(step)` is called after each step (1-based, e.g. for iteration checkpoints).
    options.monitor (rank 0) times the loader and records every log step.

    The loss terms are kept on the device and copied to the host every `print_iter`
    iterations only (a `.item()` per iteration would synchronise the GPU each step). A
    non-finite term stops training at that point with NonFiniteLossError naming the first
    iteration and term; the checkpoints on disk are from finished epochs and stay good.
    """
    opt, monitor = options, options.monitor
    model.train()
    num_batches = start_step + len(loader) // opt.accumulate
    window, names = [], None
    epoch_sum, count = None, 0
    progress = tqdm(total=num_batches, initial=start_step, desc=f'epoch {epoch}',
                    disable=opt.rank != 0, dynamic_ncols=True, leave=False)

    def prepare(inputs, targets):
        return (to_device(inputs, opt.device, opt.channels_last),
                to_device(drop_full_mask(targets), opt.device))

    batches = _micro_batch_groups(monitor.timed(loader) if monitor else loader, opt.accumulate)
    for it, group in enumerate(batches, start=start_step):
        torch.manual_seed(model_seed(opt.seed, epoch, it, opt.rank))
        losses = accumulation_step(model, optimizer, [(i, t) for i, t, _ in group],
                                   amp_dtype=opt.amp_dtype, scaler=opt.scaler,
                                   prepare=prepare)
        names = list(losses)
        window.append(torch.stack([v.detach().float() for v in losses.values()]))

        if (it + 1) % opt.print_iter == 0 or it + 1 == num_batches:
            values = torch.stack(window).cpu().numpy()  # host sync, once per print_iter steps
            _check_finite(values, names, epoch, it + 1 - len(window), num_batches)
            epoch_sum = values.sum(0) if epoch_sum is None else epoch_sum + values.sum(0)
            count += len(values)
            window = []
            current = dict(zip(names, values[-1]))
            lr = optimizer.param_groups[0]['lr']
            suffix = (monitor.log_step(epoch, it + 1, num_batches, names, values, lr)
                      if monitor else '')
            logger.info(format_log_line(epoch, opt.total_epoch, it + 1, num_batches, lr, current,
                                        suffix))
            progress.set_postfix({k: f'{v:.4f}' for k, v in current.items()}, refresh=False)
        progress.update()
        if after_step is not None:
            after_step(it + 1)
    progress.close()
    if count == 0:
        return {}
    return {name: float(v) for name, v in zip(names, epoch_sum / count)}


def _check_finite(values, names, epoch, first_iteration, num_batches):
    """NonFiniteLossError for the first non-finite entry of `values` (T x terms, the steps
    after 0-based iteration `first_iteration`)."""
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise NonFiniteLossError(
            f"non-finite loss '{names[col]}' = {values[row, col]} at epoch {epoch}, "
            f"iteration {first_iteration + row + 1}/{num_batches}; training stopped. "
            f"The last saved checkpoint is intact. Lower lr, check the data, or use "
            f"amp='fp16'/'off' if bf16 overflowed.")
