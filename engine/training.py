"""Training: the train step, the epoch loop, evaluation during training and resuming.

Small functions that take the model and the loader and return plain statistics; train.py only
orchestrates (set-up, checkpoints, logging).
"""
import contextlib
import logging
import math
from typing import NamedTuple

import cv2
import numpy as np
import torch
from tqdm import tqdm

from dataset import get_dataset
from engine.inference import predict_dataset, to_device
from utils import freihand_eval
from utils.runtime import distributed
from utils.runtime.checkpoint import latest_checkpoint, load_checkpoint, load_net_state, save_checkpoint
from utils.errors import CheckpointError
from engine.monitor import Monitor

logger = logging.getLogger(__name__)

MODEL_STREAM = 2  # tags the dropout seeds apart from the shuffling and augmentation streams


class NonFiniteLossError(RuntimeError):
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
            with torch.autocast(inputs['img'].device.type, dtype=amp_dtype or torch.float32,
                                enabled=amp_dtype is not None):
                losses = model(inputs, targets)
            total = sum(losses.values())
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


def train_one_epoch(model, loader, optimizer, *, device, epoch, total_epoch, print_iter=10,
                    amp_dtype=None, scaler=None, channels_last=False, show_progress=True,
                    monitor=None, seed=0, rank=0, accumulate=1, start_step=0, after_step=None):
    """Optimizer steps start_step .. n - 1 of `epoch` over `loader` (`accumulate`
    micro-batches per step, n = start_step + len(loader) / accumulate). Returns {loss name:
    mean over the steps run} (floats).

    Before each step torch's generator is seeded with model_seed(seed, epoch, step, rank).
    `after_step(step)` is called after each step (1-based, e.g. for iteration checkpoints).
    `monitor` (a engine.monitor.Monitor, rank 0) times the loader and records every log step.

    The loss terms are kept on the device and copied to the host every `print_iter`
    iterations only (a `.item()` per iteration would synchronise the GPU each step). A
    non-finite term stops training at that point with NonFiniteLossError naming the first
    iteration and term; the checkpoints on disk are from finished epochs and stay good.
    """
    model.train()
    num_batches = start_step + len(loader) // accumulate
    window, names = [], None
    epoch_sum, count = None, 0
    progress = tqdm(total=num_batches, initial=start_step, desc=f'epoch {epoch}',
                    disable=not show_progress, dynamic_ncols=True, leave=False)

    def prepare(inputs, targets):
        return to_device(inputs, device, channels_last), to_device(targets, device)

    batches = _micro_batch_groups(monitor.timed(loader) if monitor else loader, accumulate)
    for it, group in enumerate(batches, start=start_step):
        torch.manual_seed(model_seed(seed, epoch, it, rank))
        losses = accumulation_step(model, optimizer, [(i, t) for i, t, _ in group],
                                   amp_dtype=amp_dtype, scaler=scaler, prepare=prepare)
        names = list(losses)
        window.append(torch.stack([v.detach().float() for v in losses.values()]))

        if (it + 1) % print_iter == 0 or it + 1 == num_batches:
            values = torch.stack(window).cpu().numpy()  # host sync, once per print_iter steps
            _check_finite(values, names, epoch, it + 1 - len(window), num_batches)
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


def iteration_saver(cfg, model, optimizer, scheduler, scaler, rank, epoch, steps_per_epoch):
    """train_one_epoch's `after_step` for cfg.save_iter > 0: every save_iter steps (not at
    the epoch's end, whose snapshot train.py writes) average the BatchNorm statistics over
    the ranks, as the epoch's end does, and save an iteration checkpoint on rank 0. None when
    cfg.save_iter is 0."""
    if not cfg.save_iter:
        return None

    def after_step(step):
        if step % cfg.save_iter or step == steps_per_epoch:
            return
        distributed.average_batch_norm_statistics(model)
        if rank == 0:
            state = checkpoint_state(model, optimizer, scheduler, scaler, cfg.to_dict(), epoch,
                                     step)
            logger.info('saved %s', save_checkpoint(state, cfg.checkpoint_dir, epoch, step))
        distributed.barrier()
    return after_step


def resume_path(resume, continue_train, checkpoint, checkpoint_dir, restart_count=0):
    """The checkpoint a training run resumes from, or None for a fresh run.

    resume 'auto': the newest snapshot in checkpoint_dir (None if there is none);
    continue_train: `checkpoint` (the configuration checks that it is set);
    restart_count > 0 (torchrun restarted the worker group, TORCHELASTIC_RESTART_COUNT): the
    newest snapshot in checkpoint_dir whatever the command line says, as with 'auto'.
    """
    if restart_count > 0:
        path = latest_checkpoint(checkpoint_dir)
        if path is not None:
            logger.info('torchelastic restart %d: resuming from the newest checkpoint %s',
                        restart_count, path)
            return path
        logger.info('torchelastic restart %d: no checkpoint in %s yet', restart_count,
                    checkpoint_dir)
        return checkpoint if continue_train else None
    if resume == 'auto':
        path = latest_checkpoint(checkpoint_dir)
        if path is None:
            logger.info('resume=auto: no checkpoint in %s, starting fresh', checkpoint_dir)
        return path
    if continue_train:
        return checkpoint
    return None


def resume(cfg, model, optimizer, scheduler, scaler, device):
    """Restore the state of the checkpoint this run continues (resume_path: --resume auto,
    --continue_train, or a torchelastic restart). Returns the ResumePoint, (0, 0) for a
    fresh run."""
    path = resume_path(cfg.resume, cfg.continue_train, cfg.checkpoint, cfg.checkpoint_dir,
                       distributed.group_restart_count())
    if not path:
        return ResumePoint(0, 0)
    return restore_training_state(path, model, optimizer, scheduler, scaler, device,
                                  data_order={'batch_size': cfg.batch_size, 'seed': cfg.seed})


def evaluation_set(cfg):
    """The evaluation split evaluated during training, or None (eval_interval 0, or no
    evaluation ground truth in data_root)."""
    if not cfg.eval_interval or not freihand_eval.has_gt(cfg.data_root):
        return None
    # Each evaluation draws its pictures with OpenCV in this process, which then forks the
    # next evaluation's DataLoader workers: a started OpenCV thread pool deadlocks them (seen
    # in make demo's second evaluation). One thread: no pool.
    cv2.setNumThreads(1)
    return get_dataset(cfg.dataset, 'evaluation', root=cfg.data_root,
                       input_img_shape=cfg.input_img_shape, depth_box=cfg.depth_box,
                       cache_dir=cfg.annotation_cache)


def build_monitor(cfg, steps_per_epoch, start, device, faces, layout):
    """The rank-0 Monitor of a training run resumed at `start` (a ResumePoint), with the
    process layout (launch_summary's lines) as TensorBoard text."""
    monitor = Monitor(tb_dir=cfg.tb_dir if cfg.tensorboard else None, log_dir=cfg.log_dir,
                      experiment=cfg.experiment_name, iterations_per_epoch=steps_per_epoch,
                      total_epoch=cfg.total_epoch, start_epoch=start.epoch,
                      start_step=start.step, images_per_step=cfg.batch_size, device=device,
                      faces=faces)
    monitor.add_text('run/launch', '\n\n'.join(layout))
    return monitor


def checkpoint_state(model, optimizer, scheduler, scaler, config, epoch, step=None):
    """The dict train.py saves: the published {'net', 'optimizer', 'schedule', 'last_epoch'}
    plus 'config' (the resolved configuration, a plain dict) and 'scaler' with fp16.

    After a whole `epoch`, 'last_epoch' is `epoch`. An iteration checkpoint (`step` optimizer
    steps of `epoch` done) has 'last_epoch' = epoch - 1, the last finished one, and
    'iteration' = step: restore_training_state continues at step `step` of `epoch`.
    """
    state = {'net': model.state_dict(), 'optimizer': optimizer.state_dict(),
             'schedule': scheduler.state_dict(),
             'last_epoch': epoch if step is None else epoch - 1, 'config': config}
    if step is not None:
        state['iteration'] = step
    if scaler is not None:
        state['scaler'] = scaler.state_dict()
    return state


class ResumePoint(NamedTuple):
    """Where a resumed run continues: optimizer step `step` of `epoch`."""
    epoch: int
    step: int


def restore_training_state(path, model, optimizer, scheduler, scaler, device, data_order=None):
    """Load network, optimizer, schedule (and loss scaler) from a checkpoint written by
    train.py (or the published one). Returns the ResumePoint to continue at.

    The configured schedule wins over the saved one: when total_epoch or the learning rates
    of this run differ from the checkpoint's, the cosine schedule is rebuilt for the new
    length and rates as if the run had been planned that way from the start, continuing at
    the resumed epoch, and the log says so (so extending a finished 3-epoch run to 5 trains
    epochs 3 and 4 on the 5-epoch cosine, not at lr 0).

    data_order: {'batch_size': ..., 'seed': ...} of this run; an iteration checkpoint (one
    saved inside an epoch) made with other values is refused, since its step count would
    point into another data order.
    """
    ckpt = load_checkpoint(path, map_location=device)
    load_net_state(model, ckpt['net'], path)
    for key in ('optimizer', 'schedule'):
        if key not in ckpt:
            raise CheckpointError(f"{path} has no '{key}' state: it holds weights only; use "
                                  f"--pre {path} to start a new run from these weights")
    step = int(ckpt.get('iteration', 0))
    if step and data_order:
        saved = ckpt.get('config', {})
        for field, value in data_order.items():
            if saved.get(field) != value:
                raise CheckpointError(
                    f"{path} was saved at iteration {step} of an epoch with {field} = "
                    f"{saved.get(field)!r}; this run has {field} = {value!r}, another data "
                    f"order: resume with --{field} {saved.get(field)}, or resume from the last "
                    f"epoch's snapshot")
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
    logger.info('resumed from %s: continuing at epoch %d%s, lr %.3e', path, start_epoch,
                f', iteration {step + 1}' if step else '', optimizer.param_groups[0]['lr'])
    return ResumePoint(start_epoch, step)


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
