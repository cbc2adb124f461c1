"""Training: the train step, the epoch loop, evaluation during training and resuming.

Small functions that take the model and the loader and return plain statistics; train.py only
orchestrates (set-up, checkpoints, logging).
"""
import logging
import math

import numpy as np
import torch
from tqdm import tqdm

from engine.inference import predict_dataset, to_device
from utils import freihand_eval
from utils.runtime.checkpoint import latest_checkpoint, load_checkpoint, load_net_state
from utils.errors import CheckpointError

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; the message names the iteration and the term."""


def format_log_line(epoch, total_epoch, batch, num_batches, lr, losses, suffix=''):
    """The published log line: [Epoch e/E][Batch i/n][lr x][loss_<name>: v]..., then
    `suffix` (the monitor's throughput and time left)."""
    terms = ''.join(f'[loss_{name}: {value:.4f}]' for name, value in losses.items())
    return f'[Epoch {epoch}/{total_epoch}][Batch {batch}/{num_batches}][lr {lr:.2e}]{terms}{suffix}'


def train_step(model, optimizer, inputs, targets, *, amp_dtype=None, scaler=None):
    """One optimisation step on a batch already on the device: forward under autocast, the
    sum of the loss terms, backward (scaled with an fp16 GradScaler), optimizer step.

    Returns:
        the loss dict (device tensors; no host synchronisation here).
    """
    device_type = inputs['img'].device.type
    with torch.autocast(device_type, dtype=amp_dtype or torch.float32,
                        enabled=amp_dtype is not None):
        losses = model(inputs, targets)
    total = sum(losses.values())
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        total.backward()
        optimizer.step()
    return losses


def train_one_epoch(model, loader, optimizer, *, device, epoch, total_epoch, print_iter=10,
                    amp_dtype=None, scaler=None, channels_last=False, show_progress=True,
                    monitor=None):
    """One pass over `loader`. Returns {loss name: mean over the epoch} (floats).

    `monitor` (a engine.monitor.Monitor, rank 0) times the loader and records every log step.

    The loss terms are kept on the device and copied to the host every `print_iter`
    iterations only (a `.item()` per iteration would synchronise the GPU each step). A
    non-finite term stops training at that point with NonFiniteLossError naming the first
    iteration and term; the checkpoints on disk are from finished epochs and stay good.
    """
    model.train()
    num_batches = len(loader)
    window, names = [], None
    epoch_sum, count = None, 0
    progress = tqdm(total=num_batches, desc=f'epoch {epoch}', disable=not show_progress,
                    dynamic_ncols=True, leave=False)
    for it, (inputs, targets, _) in enumerate(monitor.timed(loader) if monitor else loader):
        inputs = to_device(inputs, device, channels_last)
        targets = to_device(targets, device)
        losses = train_step(model, optimizer, inputs, targets, amp_dtype=amp_dtype, scaler=scaler)
        names = list(losses)
        window.append(torch.stack([v.detach().float() for v in losses.values()]))

        if (it + 1) % print_iter == 0 or it + 1 == num_batches:
            values = torch.stack(window).cpu().numpy()  # host sync, once per print_iter steps
            bad = ~np.isfinite(values)
            if bad.any():
                row, col = np.argwhere(bad)[0]
                raise NonFiniteLossError(
                    f"non-finite loss '{names[col]}' = {values[row, col]} at epoch {epoch}, "
                    f"iteration {it + 1 - len(window) + row + 1}/{num_batches}; training stopped. "
                    f"The last saved checkpoint is intact. Lower lr, check the data, or use "
                    f"amp='fp16'/'off' if bf16 overflowed.")
            epoch_sum = values.sum(0) if epoch_sum is None else epoch_sum + values.sum(0)
            count += len(values)
            window = []
            current = dict(zip(names, values[-1]))
            lr = optimizer.param_groups[0]['lr']
            suffix = (monitor.log_step(epoch, it + 1, num_batches, names, values, lr)
                      if monitor else '')
            logger.info(format_log_line(epoch, total_epoch, it + 1, num_batches, lr, current,
                                        suffix))
            progress.set_postfix({k: f'{v:.4f}' for k, v in current.items()}, refresh=False)
        progress.update()
    progress.close()
    if count == 0:
        return {}
    return {name: float(v) for name, v in zip(names, epoch_sum / count)}


def evaluate_epoch(cfg, model, dataset, device, amp_dtype, rank, world_size, logger, epoch=None,
                   monitor=None):
    """Evaluate on the evaluation split during training (all ranks predict, rank 0 scores,
    logs and records the scores in `monitor`). Returns the scores on rank 0, None elsewhere."""
    xyz, verts = predict_dataset(model, dataset, device=device, batch_size=cfg.test_batch_size,
                                 num_workers=cfg.num_worker, crop_size=cfg.input_img_shape,
                                 depth_box=cfg.depth_box, fx_as_fy=cfg.fx_as_fy,
                                 as_published=cfg.as_published, num_joint=cfg.num_joint,
                                 amp_dtype=amp_dtype,
                                 channels_last=cfg.channels_last and device.type == 'cuda',
                                 rank=rank, world_size=world_size)
    if rank != 0:
        return None
    scores = freihand_eval.evaluate(*freihand_eval.load_gt(cfg.data_root, cfg.annotation_cache), xyz, verts)
    logger.info('evaluation:\n%s', freihand_eval.format_report(scores))
    if monitor:
        monitor.log_evaluation(epoch, scores, dataset, xyz, verts)
    return scores


def resume_path(resume, continue_train, checkpoint, checkpoint_dir):
    """The checkpoint a training run resumes from, or None for a fresh run.

    resume 'auto': the newest snapshot in checkpoint_dir (None if there is none);
    continue_train: `checkpoint` (the configuration checks that it is set).
    """
    if resume == 'auto':
        path = latest_checkpoint(checkpoint_dir)
        if path is None:
            logger.info('resume=auto: no checkpoint in %s, starting fresh', checkpoint_dir)
        return path
    if continue_train:
        return checkpoint
    return None


def restore_training_state(path, model, optimizer, scheduler, scaler, device):
    """Load network, optimizer, schedule (and loss scaler) from a checkpoint written by
    train.py. Returns the epoch to continue at.

    The configured schedule wins over the saved one: when total_epoch or the learning rates
    of this run differ from the checkpoint's, the cosine schedule is rebuilt for the new
    length and rates as if the run had been planned that way from the start, continuing at
    the resumed epoch, and the log says so (so extending a finished 3-epoch run to 5 trains
    epochs 3 and 4 on the 5-epoch cosine, not at lr 0).
    """
    ckpt = load_checkpoint(path, map_location=device)
    load_net_state(model, ckpt['net'], path)
    for key in ('optimizer', 'schedule'):
        if key not in ckpt:
            raise CheckpointError(f"{path} has no '{key}' state: it holds weights only; use "
                                  f"--pre {path} to start a new run from these weights")
    configured_lrs = [group['lr'] for group in optimizer.param_groups]
    configured_epochs = scheduler.T_max
    optimizer.load_state_dict(ckpt['optimizer'])
    scheduler.load_state_dict(ckpt['schedule'])
    if scaler is not None and 'scaler' in ckpt:
        scaler.load_state_dict(ckpt['scaler'])
    start_epoch = ckpt['last_epoch'] + 1
    saved_epochs, saved_lrs = scheduler.T_max, list(scheduler.base_lrs)
    if saved_epochs != configured_epochs or not np.allclose(saved_lrs, configured_lrs,
                                                            rtol=1e-12, atol=0):
        rebuild_cosine(optimizer, scheduler, configured_lrs, configured_epochs, start_epoch)
        logger.info('resuming with a changed schedule: total_epoch %d -> %d, lr %s -> %s; the '
                    'cosine schedule is rebuilt for %d epochs from epoch %d',
                    saved_epochs, configured_epochs, ', '.join(f'{v:.3e}' for v in saved_lrs),
                    ', '.join(f'{v:.3e}' for v in configured_lrs), configured_epochs,
                    start_epoch)
    if start_epoch >= configured_epochs:
        logger.info('%s finished epoch %d of %d: nothing left to train (raise total_epoch to '
                    'extend the run)', path, start_epoch - 1, configured_epochs)
    logger.info('resumed from %s: continuing at epoch %d, lr %.3e', path, start_epoch,
                optimizer.param_groups[0]['lr'])
    return start_epoch


def rebuild_cosine(optimizer, scheduler, base_lrs, total_epoch, epoch):
    """Set a loaded CosineAnnealingLR to `total_epoch` epochs from `base_lrs`, at `epoch`.

    Each group's lr becomes the cosine's closed form at `epoch`,
    eta_min + (base - eta_min) (1 + cos(pi epoch / total_epoch)) / 2; the scheduler's own
    recursive update then follows the same curve on every later step.
    """
    scheduler.T_max = total_epoch
    scheduler.base_lrs = list(base_lrs)
    for group, base in zip(optimizer.param_groups, base_lrs):
        group['initial_lr'] = base
        progress = min(epoch, total_epoch) / total_epoch
        group['lr'] = scheduler.eta_min + (base - scheduler.eta_min) * (
            1 + math.cos(math.pi * progress)) / 2
