"""The training epoch and the inference loop, shared by train.py, test.py and the demo.

Small functions that take the model and the loader and return plain statistics; the entry
scripts only orchestrate (set-up, checkpoints, logging).
"""
import logging

import numpy as np
import torch
from tqdm import tqdm

from utils.transforms import decode_uvd

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    pass


def to_device(batch, device, channels_last=False):
    """Move a dict of tensors to `device` (non-blocking: overlaps with compute when the
    loader pins memory); the image optionally in channels_last layout."""
    out = {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
    if channels_last and 'img' in out:
        out['img'] = out['img'].contiguous(memory_format=torch.channels_last)
    return out


def format_log_line(epoch, total_epoch, batch, num_batches, lr, losses):
    """The published log line: [Epoch e/E][Batch i/n][lr x][loss_<name>: v]..."""
    terms = ''.join(f'[loss_{name}: {value:.4f}]' for name, value in losses.items())
    return f'[Epoch {epoch}/{total_epoch}][Batch {batch}/{num_batches}][lr {lr:.2e}]{terms}'


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
                    amp_dtype=None, scaler=None, channels_last=False, show_progress=True):
    """One pass over `loader`. Returns {loss name: mean over the epoch} (floats).

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
    for it, (inputs, targets, _) in enumerate(loader):
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
            logger.info(format_log_line(epoch, total_epoch, it + 1, num_batches,
                                        optimizer.param_groups[0]['lr'], current))
            progress.set_postfix({k: f'{v:.4f}' for k, v in current.items()}, refresh=False)
        progress.update()
    progress.close()
    if count == 0:
        return {}
    return {name: float(v) for name, v in zip(names, epoch_sum / count)}


@torch.inference_mode()
def predict(model, loader, *, device, crop_size, depth_box, amp_dtype=None,
            channels_last=False, show_progress=True):
    """Run the network over an evaluation loader and decode to the camera frame (SPEC 7).

    Returns:
        dict idx -> (xyz 21 x 3, verts 778 x 3) in meters (float64), for the items the
        loader visited.
    """
    model.eval()
    out = {}
    for inputs, _, meta in tqdm(loader, desc='inference', disable=not show_progress,
                                dynamic_ncols=True):
        inputs = to_device(inputs, device, channels_last)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None):
            coords = model(inputs)['coords']
        coords = coords.float().cpu().numpy()  # (B, 799, 3)
        xyz_cam = decode_uvd(coords, meta['root_depth'].numpy(), meta['bb2img_trans'].numpy(),
                             meta['K'].numpy(), crop_size=crop_size, depth_box=depth_box)
        num_verts = xyz_cam.shape[1] - 21
        for b, idx in enumerate(meta['idx'].tolist()):
            out[idx] = (xyz_cam[b, num_verts:], xyz_cam[b, :num_verts])
    return out


def predict_dataset(model, dataset, *, device, batch_size, num_workers, crop_size, depth_box,
                    amp_dtype=None, channels_last=False, rank=0, world_size=1):
    """Predict every item of an evaluation data set, split across ranks under torchrun.

    Each rank runs a contiguous shard; the results are gathered so that every rank returns
    the full predictions in data-set order (rank 0 writes them).

    Returns:
        xyz: M x 21 x 3 and verts: M x 778 x 3 arrays, meters, camera frame, data-set order.
    """
    from torch.utils.data import DataLoader, Subset

    from dataset import worker_init_fn
    from utils import distributed

    num = len(dataset)
    shard = -(-num // world_size)
    indices = list(range(rank * shard, min(num, (rank + 1) * shard)))
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, pin_memory=device.type == 'cuda',
                        worker_init_fn=worker_init_fn)
    local = predict(model, loader, device=device, crop_size=crop_size, depth_box=depth_box,
                    amp_dtype=amp_dtype, channels_last=channels_last, show_progress=rank == 0)
    merged = {}
    for part in distributed.all_gather_objects(local):
        merged.update(part)
    missing = sorted(set(range(num)) - set(merged))
    assert not missing, f'predictions missing for items {missing[:10]}'
    xyz = np.stack([merged[i][0] for i in range(num)])
    verts = np.stack([merged[i][1] for i in range(num)])
    return xyz, verts
