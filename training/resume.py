"""Checkpoints of a training run: what is saved, iteration checkpoints, and resuming."""
import json
import logging
import math
import os
from typing import NamedTuple

import numpy as np

from utils.errors import CheckpointError
from utils.network_spec import experiment_name
from utils.runtime import distributed
from utils.runtime.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    load_net_state,
    save_checkpoint,
)

logger = logging.getLogger(__name__)


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
            others = other_experiments(checkpoint_dir)
            if others:
                logger.warning('resume=auto found no checkpoint for this experiment (%s), but '
                               'other experiments have some; to resume one of them, run with '
                               'its flags:\n  %s', os.path.basename(checkpoint_dir),
                               '\n  '.join(others))
        return path
    if continue_train:
        return checkpoint
    return None


def refuse_to_overwrite(cfg, rank):
    """setup_run's guard for train.py: a fresh run (no --resume auto, no --continue_train, no
    torchelastic restart) into an experiment folder that already holds a snapshot would write
    over it epoch by epoch; refuse before anything is written (every rank raises
    CheckpointError, the message from rank 0: the folder, its newest snapshot, the ways on)."""
    restarted = distributed.group_restart_count() > 0  # collective: every rank calls it
    message = None
    if rank == 0 and not (restarted or cfg.resume == 'auto' or cfg.continue_train):
        newest = latest_checkpoint(cfg.checkpoint_dir)
        if newest is not None:
            message = (f'{cfg.checkpoint_dir} already holds the checkpoints of an earlier run '
                       f'(newest: {os.path.basename(newest)}); a fresh run would write over '
                       f'them. Continue it with --resume auto, or start a new run with another '
                       f'--experiment_name (or move that folder away)')
    message = distributed.all_gather_objects(message)[0]  # every rank learns rank 0's answer
    if message:
        raise CheckpointError(message if rank == 0 else f'rank 0: {message}')


def other_experiments(checkpoint_dir):
    """'<name> (<newest snapshot>): <flags>' for each experiment beside checkpoint_dir that
    holds a checkpoint; the flags (from its config.json when there is one) select it."""
    parent, own = os.path.split(os.path.normpath(checkpoint_dir))
    lines = []
    for name in sorted(os.listdir(parent)) if os.path.isdir(parent) else []:
        path = latest_checkpoint(os.path.join(parent, name))
        if name == own or path is None:
            continue
        flags = ['--experiment_name', name]
        try:
            with open(os.path.join(parent, name, 'config.json')) as f:
                saved = json.load(f)
            height, width = saved['input_img_shape']
            network = ['--backbone', saved['backbone'], '--num_stage', str(saved['num_stage']),
                       '--input_img_shape', f'{height},{width}']
            if saved.get('preset'):
                flags = ['--preset', saved['preset']] + flags
            elif name == experiment_name(saved['backbone'], saved['num_stage'], (height, width)):
                flags = network  # the name these fields derive
            else:
                flags += network
        except (OSError, ValueError, KeyError, TypeError):
            pass  # no readable config.json: the name alone
        lines.append(f"{name} ({os.path.basename(path)}): --resume auto {' '.join(flags)}")
    return lines


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
