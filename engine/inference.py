"""Inference: loading a checkpoint for inference with its saved configuration, the inference
loop over an evaluation set (split across torchrun ranks) and pred.json."""
import logging

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from dataset import worker_init_fn
from engine.build import build_model
from utils import distributed
from utils.checkpoint import load_checkpoint, load_net_state
from utils.fileio import atomic_write_json
from utils.transforms import decode_uvd

logger = logging.getLogger(__name__)


def to_device(batch, device, channels_last=False):
    """Move a dict of tensors to `device` (non-blocking: overlaps with compute when the
    loader pins memory); the image optionally in channels_last layout."""
    out = {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
    if channels_last and 'img' in out:
        out['img'] = out['img'].contiguous(memory_format=torch.channels_last)
    return out


def load_inference_model(cfg, mano, device):
    """The network test.py and demo.py run: an exported file under ONNX Runtime when cfg.onnx
    is set (engine.onnx_export.OnnxSAR, same interface), else `load_for_inference`."""
    if cfg.onnx:
        from engine.onnx_export import OnnxSAR
        logger.info('running %s with ONNX Runtime (CPU, %d threads)', cfg.onnx,
                    torch.get_num_threads())
        return OnnxSAR(cfg.onnx, num_threads=torch.get_num_threads())
    return load_for_inference(cfg, mano, device)[0]


def load_for_inference(cfg, mano, device):
    """The network of `cfg` with the weights of cfg.checkpoint, batch norms folded
    (SAR.fuse_for_inference: the same function in evaluation mode, fewer passes).

    The checkpoint supplies every weight, so no ImageNet file is needed. Returns
    (fused model, the checkpoint dict).
    """
    model = build_model(cfg, mano, device, pretrained_backbone=False)
    ckpt = load_checkpoint(cfg.checkpoint, map_location=device)
    load_net_state(model, ckpt['net'], cfg.checkpoint)
    logger.info('loaded %s (epoch %s)', cfg.checkpoint, ckpt.get('last_epoch', 'unknown'))
    return model.fuse_for_inference(), ckpt


@torch.inference_mode()
def predict(model, loader, *, device, crop_size, depth_box, fx_as_fy=False, amp_dtype=None,
            channels_last=False, show_progress=True):
    """Run the network over an evaluation loader and decode to the camera frame (docs/method.md §7).

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
                             meta['K'].numpy(), crop_size=crop_size, depth_box=depth_box,
                             fx_as_fy=fx_as_fy)
        num_verts = xyz_cam.shape[1] - 21
        for b, idx in enumerate(meta['idx'].tolist()):
            out[idx] = (xyz_cam[b, num_verts:], xyz_cam[b, :num_verts])
    return out


def predict_dataset(model, dataset, *, device, batch_size, num_workers, crop_size, depth_box,
                    fx_as_fy=False, amp_dtype=None, channels_last=False, rank=0, world_size=1):
    """Predict every item of an evaluation data set, split across ranks under torchrun.

    Each rank runs a contiguous shard; the results are gathered so that every rank returns
    the full predictions in data-set order (rank 0 writes them).

    Returns:
        xyz: M x 21 x 3 and verts: M x 778 x 3 arrays, meters, camera frame, data-set order.
    """
    num = len(dataset)
    shard = -(-num // world_size)
    indices = list(range(rank * shard, min(num, (rank + 1) * shard)))
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, pin_memory=device.type == 'cuda',
                        worker_init_fn=worker_init_fn)
    local = predict(model, loader, device=device, crop_size=crop_size, depth_box=depth_box,
                    fx_as_fy=fx_as_fy, amp_dtype=amp_dtype, channels_last=channels_last, show_progress=rank == 0)
    merged = {}
    for part in distributed.all_gather_objects(local):
        merged.update(part)
    missing = sorted(set(range(num)) - set(merged))
    assert not missing, f'predictions missing for items {missing[:10]}'
    xyz = np.stack([merged[i][0] for i in range(num)])
    verts = np.stack([merged[i][1] for i in range(num)])
    return xyz, verts


def write_pred(path, xyz, verts):
    """pred.json (docs/method.md §7): [xyz_list, verts_list], meters rounded to 1e-6 m,
    written atomically."""
    atomic_write_json(path, [np.round(xyz, 6).tolist(), np.round(verts, 6).tolist()])
    return path
