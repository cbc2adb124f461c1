"""Checkpoints: atomic saving, safe loading (`weights_only`), strict and explained restoring."""
import glob
import os
import re

import torch

from utils.errors import CheckpointError
from utils.files.atomic import atomic_torch_save

SNAPSHOT_PATTERN = 'snapshot_{epoch}.pth.tar'


def snapshot_path(folder, epoch):
    return os.path.join(folder, SNAPSHOT_PATTERN.format(epoch=epoch))


def save_checkpoint(state, folder, epoch):
    """Write `state` to folder/snapshot_<epoch>.pth.tar atomically (temporary file + rename:
    an interruption never leaves a broken file or harms the previous checkpoints)."""
    path = snapshot_path(folder, epoch)
    atomic_torch_save(state, path)
    return path


def latest_checkpoint(folder):
    """The snapshot with the highest epoch in `folder`, or None."""
    found = []
    for path in glob.glob(os.path.join(folder, 'snapshot_*.pth.tar')):
        match = re.fullmatch(r'snapshot_(\d+)\.pth\.tar', os.path.basename(path))
        if match:
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


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
        lines.append("  Check backbone, num_stage, num_FMs, input_img_shape, num_vert and num_joint "
                     "against the configuration the checkpoint was trained with (config.json "
                     "beside it).")
        raise CheckpointError('\n'.join(lines))
    model.load_state_dict(state_dict, strict=True)
