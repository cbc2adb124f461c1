"""Checkpoints: atomic saving, safe loading (`weights_only`), strict and explained restoring."""
import glob
import os
import re

import torch

from utils.errors import CheckpointError
from utils.files.atomic import atomic_torch_save
from utils.network_spec import NetworkSpec

SNAPSHOT_PATTERN = 'snapshot_{epoch}.pth.tar'  # after the whole epoch
ITER_SNAPSHOT_PATTERN = 'snapshot_{epoch}_iter{step}.pth.tar'  # after `step` steps of the epoch
_SNAPSHOT_NAME = re.compile(r'snapshot_(\d+)(?:_iter(\d+))?\.pth\.tar')


def snapshot_path(folder, epoch, step=None):
    """folder/snapshot_<epoch>.pth.tar, or the iteration snapshot after `step` steps of
    `epoch`, folder/snapshot_<epoch>_iter<step>.pth.tar."""
    if step is None:
        return os.path.join(folder, SNAPSHOT_PATTERN.format(epoch=epoch))
    return os.path.join(folder, ITER_SNAPSHOT_PATTERN.format(epoch=epoch, step=step))


def save_checkpoint(state, folder, epoch, step=None):
    """Write `state` to snapshot_path(folder, epoch, step) atomically (temporary file +
    rename: an interruption never leaves a broken file or harms the previous checkpoints).

    Once it is complete, the iteration snapshots it supersedes (those of earlier training
    progress) are deleted: they only exist to survive a pre-emption inside an epoch.
    """
    path = snapshot_path(folder, epoch, step)
    atomic_torch_save(state, path)
    progress = _progress(epoch, step)
    for older, older_progress, is_iteration in _snapshots(folder):
        if is_iteration and older_progress < progress:
            os.remove(older)
    return path


def _progress(epoch, step):
    """Training progress as (epoch in progress, steps done) for ordering snapshots."""
    return (epoch + 1, 0) if step is None else (epoch, step)


def _snapshots(folder):
    """[(path, progress, is an iteration snapshot)] of the snapshots in `folder`."""
    found = []
    for path in glob.glob(os.path.join(glob.escape(os.fspath(folder)), 'snapshot_*.pth.tar')):
        match = _SNAPSHOT_NAME.fullmatch(os.path.basename(path))
        if match:
            step = None if match.group(2) is None else int(match.group(2))
            found.append((path, _progress(int(match.group(1)), step), step is not None))
    return found


def latest_checkpoint(folder):
    """The snapshot of the most training progress in `folder` (epoch and iteration
    snapshots alike), or None."""
    found = _snapshots(folder)
    return max(found, key=lambda entry: entry[1])[0] if found else None


def load_checkpoint(path, map_location='cpu'):
    """Load a checkpoint without executing code (`weights_only=True`).

    Accepts ours and the published format (`{'net': state_dict, ...}`) and a bare state dict;
    always returns a dict with 'net'.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path} (set --checkpoint PATH)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or unsafe files
        raise CheckpointError(f"cannot load checkpoint {path}: {err}. It is either not a PyTorch "
                           f"checkpoint, truncated, or holds objects that cannot be loaded "
                           f"safely (only tensors and plain containers are accepted).") from err
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict, got {type(ckpt).__name__}")
    if 'net' not in ckpt:
        if all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            ckpt = {'net': ckpt}
        else:
            raise CheckpointError(f"{path}: no 'net' entry; keys are {sorted(ckpt)[:10]}")
    # Checkpoints saved from a DataParallel / DDP wrapper carry a 'module.' prefix.
    net = ckpt['net']
    if net and all(k.startswith('module.') for k in net):
        ckpt['net'] = {k[len('module.'):]: v for k, v in net.items()}
    return ckpt


def load_net_state(model, state_dict, path='checkpoint'):
    """`model.load_state_dict(state_dict, strict=True)` with an error that lists the missing
    and unexpected keys and shape mismatches, and says which config fields usually cause them."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = sorted(k for k in set(own) & set(state_dict)
                        if tuple(own[k].shape) != tuple(state_dict[k].shape))
    if missing or unexpected or mismatched:
        def show(keys):
            return ', '.join(keys[:8]) + (f' ... ({len(keys)} in all)' if len(keys) > 8 else '')
        lines = [f"{path} does not match the network built from the config:"]
        if missing:
            lines.append(f"  missing keys: {show(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys: {show(unexpected)}")
        if mismatched:
            lines.append('  shape mismatches: ' + show(
                [f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}" for k in mismatched]))
        lines.append(f"  Check {', '.join(NetworkSpec.names())} and head against the configuration "
                     "the checkpoint was trained with (config.json beside it).")
        raise CheckpointError('\n'.join(lines))
    model.load_state_dict(state_dict, strict=True)
