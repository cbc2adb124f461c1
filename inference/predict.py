"""The inference loop over an evaluation set (split across torchrun ranks) and pred.json."""
import logging

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from dataset import worker_init_fn
from utils.runtime import distributed

logger = logging.getLogger(__name__)


@torch.inference_mode()
def predict(model, loader, decoding, device, show_progress=True, root_prior=None):
    """Run the network over an evaluation loader and decode to the camera frame (docs/method.md §7).

    decoding: inference.decoding.Decoding (the rows, the published decoding switches,
    precision). With `root_prior` (inference.root_depth.RootDepthPrior: test.py --root_source
    auto) each wrist is moved from the loader's root depth (RootNet) to the depth where the
    predicted skeleton has the prior's metric size; a degenerate prediction keeps the RootNet
    depth (logged).

    Returns:
        dict idx -> (xyz 21 x 3, verts 778 x 3) in meters (float64), for the items the
        loader visited.
    """
    model.eval()
    out = {}
    for inputs, _, meta in tqdm(loader, desc='inference', disable=not show_progress,
                                dynamic_ncols=True):
        img = inputs['img'].to(device, non_blocking=True)
        coords = decoding.forward(model, img)  # (B, 799, 3)
        xyz_cam = decoding.to_camera(coords, meta['root_depth'].numpy(),
                                     meta['bb2img_trans'].numpy(), meta['K'].numpy())
        if root_prior is not None:
            xyz_cam, _, bad = decoding.place_auto(xyz_cam, meta['K'].numpy(), root_prior,
                                                  keep_degenerate=True)
            for idx in meta['idx'][torch.from_numpy(bad)].tolist():
                logger.warning('evaluation item %d: --root_source auto found no wrist depth '
                               '(collapsed or degenerate joints): kept the RootNet depth', idx)
        joints, verts = decoding.split(xyz_cam)
        for b, idx in enumerate(meta['idx'].tolist()):
            out[idx] = (joints[b], verts[b])
    return out


def predict_dataset(model, dataset, decoding, device, *, batch_size, num_workers, shard=(0, 1),
                    root_prior=None):
    """Predict every item of an evaluation data set, split across ranks under torchrun.

    shard: (rank, world size): each rank runs a contiguous shard (root_prior: see `predict`);
    the results are gathered so that every rank returns the full predictions in data-set
    order (rank 0 writes them).

    Returns:
        xyz: M x 21 x 3 and verts: M x 778 x 3 arrays, meters, camera frame, data-set order.
    """
    rank, world_size = shard
    num = len(dataset)
    size = -(-num // world_size)
    indices = list(range(rank * size, min(num, (rank + 1) * size)))
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, pin_memory=device.type == 'cuda',
                        worker_init_fn=worker_init_fn)
    local = predict(model, loader, decoding, device, show_progress=rank == 0,
                    root_prior=root_prior)
    merged = {}
    for part in distributed.all_gather_objects(local):
        merged.update(part)
    missing = sorted(set(range(num)) - set(merged))
    assert not missing, f'predictions missing for items {missing[:10]}'
    xyz = np.stack([merged[i][0] for i in range(num)])
    verts = np.stack([merged[i][1] for i in range(num)])
    return xyz, verts
