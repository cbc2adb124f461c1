"""Inference: loading a checkpoint for inference with its saved configuration, the network on
one image and hand box (demo.py), the inference loop over an evaluation set (split across
torchrun ranks) and pred.json."""
import logging

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from dataset import worker_init_fn
from engine.build import build_model, log_amp
from engine.camera import ImageInputError, place_at_root_depth
from manopth.constants import NUM_JOINTS  # default of num_joint: the last 21 rows of 799
from utils.runtime import distributed
from utils.runtime.checkpoint import load_checkpoint, load_net_state
from utils.files.atomic import atomic_write_json
from utils.preprocessing import crop_and_augment, normalize
from utils.transforms import decode_uvd, project

logger = logging.getLogger(__name__)


def to_device(batch, device, channels_last=False):
    """Move a dict of tensors to `device` (non-blocking: overlaps with compute when the
    loader pins memory); the image optionally in channels_last layout."""
    out = {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
    if channels_last and 'img' in out:
        out['img'] = out['img'].contiguous(memory_format=torch.channels_last)
    return out


def autocast(device, amp_dtype):
    """torch.autocast on `device` in `amp_dtype`; a disabled context for None (fp32)."""
    return torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                          enabled=amp_dtype is not None)


def load_inference_model(cfg, mano, device):
    """The network test.py and demo.py run: an exported file under ONNX Runtime when cfg.onnx
    is set (engine.onnx_export.OnnxSAR, same interface), else `load_for_inference`."""
    if cfg.onnx:
        from engine.onnx_export import OnnxSAR
        logger.info('running %s with ONNX Runtime (CPU, %d threads)', cfg.onnx,
                    torch.get_num_threads())
        return OnnxSAR(cfg.onnx, num_threads=torch.get_num_threads())
    return load_for_inference(cfg, mano, device)[0]


def inference_amp(cfg, device, log=None):
    """The autocast dtype test.py and demo.py run the PyTorch network in (None: fp32), the
    choice and its reason logged once (engine.build.resolve_amp). With cfg.onnx, ONNX Runtime
    runs the exported fp32 graph and `amp` does not apply (logged as well)."""
    if cfg.onnx:
        (log or logger).info("precision: fp32, ONNX Runtime runs the exported fp32 graph "
                             "(amp=%r applies to the PyTorch network only)", cfg.amp)
        return None
    return log_amp(cfg.amp, device, log).dtype


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


class HandPredictor:
    """The network on one image and hand box: crop (docs/method.md §2), forward, decode (§7).

    A callable `(img_bgr, box) -> (xyz_cam, joints_uv)`, the form engine.video's tracking loop
    and engine.tracking.refine_box take.

    Args:
        model: what `load_inference_model` returns (PyTorch or ONNX Runtime, same interface).
        K: 3 x 3 intrinsics of the images, pixels.
        crop_size: network input (height, width), px (cfg.input_img_shape).
        depth_box: m per normalised depth unit (cfg.depth_box).
        root_depth: wrist depth, m (the network predicts depths relative to it), or 'auto':
            the depth where the predicted skeleton has the metric size of `root_prior`
            (engine.camera.RootDepthPrior); a degenerate prediction raises
            engine.camera.ImageInputError.
        root_prior: the RootDepthPrior of root_depth='auto'.
        fx_as_fy: decode with fx for both axes (cfg.fx_as_fy, docs/method.md §11).
        as_published: decode exactly as the published code (cfg.as_published: fx for both
            axes and u, v floored to whole crop pixels, utils.transforms.decode_uvd).
        num_joint: joint rows at the end of the network output (cfg.num_joint).
        left: the images show left hands: each image is mirrored (u -> W - 1 - u), the network
            (trained on right hands) predicts, and the points are mirrored back (x -> -x in the
            camera frame; draw the mesh with re-wound faces).
        device: torch device of the network's input.
        channels_last: feed the image in channels_last layout (CUDA).
        amp_dtype: autocast dtype of the forward pass (`inference_amp`; None: fp32).
    """

    def __init__(self, model, K, *, crop_size, depth_box, root_depth, fx_as_fy=False,
                 as_published=False, num_joint=NUM_JOINTS, left=False,
                 device=torch.device('cpu'), channels_last=False, amp_dtype=None, root_prior=None):
        if root_depth == 'auto' and root_prior is None:
            raise ValueError("root_depth='auto' needs root_prior (engine.camera.RootDepthPrior)")
        self.model = model.eval()
        self.K = np.asarray(K, dtype=np.float64)
        self.crop_size = tuple(crop_size)
        self.depth_box, self.root_depth = depth_box, root_depth
        self.fx_as_fy, self.as_published = fx_as_fy or as_published, as_published
        self.num_joint = num_joint
        self.left, self.root_prior = left, root_prior
        self.fallback_depth = None  # m: root_depth='auto' places a degenerate prediction here, if set
        self.root_source = 'given' if root_depth != 'auto' else None  # of the last prediction
        self.device = device
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.amp_dtype = amp_dtype

    def _place_auto(self, xyz_cam, K, name):
        """The prediction at its auto root depth; a degenerate one raises ImageInputError, or,
        with `fallback_depth` set (videos), goes to that depth (logged; root_source says it)."""
        try:
            xyz_cam = self.root_prior.place(xyz_cam, K, self.fx_as_fy, names=[name])[0]
            self.root_source = 'auto'
        except ImageInputError as err:
            if self.fallback_depth is None:
                raise
            logger.warning('%s: placed at %.3f m instead', err, self.fallback_depth)
            xyz_cam = place_at_root_depth(xyz_cam, self.fallback_depth, K, self.fx_as_fy)
            self.root_source = 'fallback'
        return xyz_cam

    @torch.inference_mode()
    def __call__(self, img_bgr, box, name='image'):
        """Predict the hand in `box` of one image.

        Args:
            img_bgr: H x W x 3 uint8 BGR image.
            box: (center (2,), side) hand box in image pixels (engine.tracking.HandBox).
            name: what an error message calls the image.
        Returns:
            xyz_cam: 799 x 3 float64, meters, camera frame (rows 0..777 vertices, 778..798
                the 21 joints; num_vert + num_joint rows in general); joints_uv: num_joint x 2
                float64, the joints' image pixels.
        """
        center, side = box
        center = np.asarray(center, dtype=np.float64)
        K = self.K
        if self.left:
            # In the mirrored image the principal point's column is W - 1 - cx; decoding with
            # it and negating x gives the points of the original image.
            width = img_bgr.shape[1]
            img_bgr = img_bgr[:, ::-1].copy()
            center = np.array([width - 1 - center[0], center[1]])
            K = K.copy()
            K[0, 2] = width - 1 - K[0, 2]
        crop, _, crop2img = crop_and_augment(img_bgr, center, side, self.crop_size)
        img = torch.from_numpy(normalize(crop))[None].to(self.device)
        with autocast(self.device, self.amp_dtype):
            coords = self.model({'img': img.contiguous(memory_format=self.memory_format)})['coords']
        coords = coords[0].float().cpu().numpy()  # (799, 3)
        auto = self.root_depth == 'auto'
        xyz_cam = decode_uvd(coords, 1.0 if auto else self.root_depth, crop2img, K,
                             crop_size=self.crop_size, depth_box=self.depth_box,
                             fx_as_fy=self.fx_as_fy, floor_uv=self.as_published)
        if auto:  # the pixels and relative depths stay; the wrist moves along its ray
            xyz_cam = self._place_auto(xyz_cam, K, name)
        if self.left:
            xyz_cam = xyz_cam * np.array([-1.0, 1.0, 1.0])
        joints_uv = project(xyz_cam[-self.num_joint:], self.K, self.fx_as_fy)[:, :2]
        return xyz_cam, joints_uv


@torch.inference_mode()
def predict(model, loader, *, device, crop_size, depth_box, fx_as_fy=False, as_published=False,
            num_joint=NUM_JOINTS, amp_dtype=None, channels_last=False, show_progress=True,
            root_prior=None):
    """Run the network over an evaluation loader and decode to the camera frame (docs/method.md §7).

    fx_as_fy, as_published: the published decoding (cfg fields of the same names, see
    HandPredictor); num_joint: joint rows at the end of the output (cfg.num_joint), the rows
    before them are the vertices. With `root_prior` (engine.camera.RootDepthPrior: test.py
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
