"""The inference loop over an evaluation set (split across torchrun ranks) and pred.json."""
import logging

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from dataset import worker_init_fn
from inference.precision import autocast
from manopth.constants import NUM_JOINTS  # default of num_joint: the last 21 rows of 799
from utils.files.atomic import atomic_write_json
from utils.runtime import distributed
from utils.transforms import decode_uvd

logger = logging.getLogger(__name__)


def to_device(batch, device, channels_last=False):
    """Move a dict of tensors to `device` (non-blocking: overlaps with compute when the
    loader pins memory); the image optionally in channels_last layout."""
    out = {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
    if channels_last and 'img' in out:
        out['img'] = out['img'].contiguous(memory_format=torch.channels_last)
    return out


@torch.inference_mode()
def predict(model, loader, *, device, crop_size, depth_box, fx_as_fy=False, as_published=False,
            num_joint=NUM_JOINTS, amp_dtype=None, channels_last=False, show_progress=True,
            root_prior=None):
    """Run the network over an evaluation loader and decode to the camera frame (docs/method.md §7).

    fx_as_fy, as_published: the published decoding (cfg fields of the same names, see
    HandPredictor); num_joint: joint rows at the end of the output (cfg.num_joint), the rows
    before them are the vertices. With `root_prior` (inference.root_depth.RootDepthPrior: test.py
    --root_source auto) each wrist is moved from the loader's root depth (RootNet) to the depth
    where the predicted skeleton has the prior's metric size; a degenerate prediction keeps
    the RootNet depth (logged).

    Returns:
        dict idx -> (xyz 21 x 3, verts 778 x 3) in meters (float64), for the items the
        loader visited.
    """
    model.eval()
    out = {}
    for inputs, _, meta in tqdm(loader, desc='inference', disable=not show_progress,
                                dynamic_ncols=True):
        inputs = to_device(inputs, device, channels_last)
        with autocast(device, amp_dtype):
            coords = model(inputs)['coords']
        coords = coords.float().cpu().numpy()  # (B, 799, 3)
        xyz_cam = decode_uvd(coords, meta['root_depth'].numpy(), meta['bb2img_trans'].numpy(),
                             meta['K'].numpy(), crop_size=crop_size, depth_box=depth_box,
                             fx_as_fy=fx_as_fy or as_published, floor_uv=as_published)
        if root_prior is not None:
            xyz_cam, _, bad = root_prior.place_or_keep(xyz_cam, meta['K'].numpy(),
                                                       fx_as_fy or as_published)
            for idx in meta['idx'][torch.from_numpy(bad)].tolist():
                logger.warning('evaluation item %d: --root_source auto found no wrist depth '
                               '(collapsed or degenerate joints): kept the RootNet depth', idx)
        num_verts = xyz_cam.shape[1] - num_joint
        for b, idx in enumerate(meta['idx'].tolist()):
            out[idx] = (xyz_cam[b, num_verts:], xyz_cam[b, :num_verts])
    return out


def predict_dataset(model, dataset, *, device, batch_size, num_workers, crop_size, depth_box,
                    fx_as_fy=False, as_published=False, num_joint=NUM_JOINTS, amp_dtype=None,
                    channels_last=False, rank=0, world_size=1, root_prior=None):
    """Predict every item of an evaluation data set, split across ranks under torchrun.

    Each rank runs a contiguous shard (root_prior: see `predict`); the results are gathered so that every rank returns
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
                    fx_as_fy=fx_as_fy, as_published=as_published, num_joint=num_joint,
                    amp_dtype=amp_dtype, channels_last=channels_last, show_progress=rank == 0,
                    root_prior=root_prior)
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
