"""The SAR network of a resolved configuration, and the network test.py and demo.py run: a
checkpoint's weights with batch norms folded, or an exported ONNX file."""
import logging

import torch

from inference.precision import log_amp
from model import NetworkSpec, SAR
from utils.runtime.checkpoint import load_checkpoint, load_net_state


def build_model(cfg, mano, device, pretrained_backbone=None):
    """The SAR network of `cfg` on `device` (channels_last on CUDA when cfg.channels_last).

    Args:
        cfg: resolved Config. mano: utils.mano.MANO (template and faces).
        pretrained_backbone: overrides cfg.pretrained_backbone (False when a checkpoint will
            supply every weight, so no ImageNet file is needed).
    """
    pretrained = cfg.pretrained_backbone if pretrained_backbone is None else pretrained_backbone
    model = SAR(mano.template, mano.faces, NetworkSpec.from_config(cfg),
                pretrained_backbone=pretrained, head=cfg.head)
    # One conversion: device and layout in the same pass over the parameters.
    channels_last = cfg.channels_last and device.type == 'cuda'
    return model.to(device, memory_format=torch.channels_last if channels_last
                    else torch.preserve_format)


logger = logging.getLogger(__name__)


def load_inference_model(cfg, mano, device):
    """The network test.py and demo.py run: an exported file under ONNX Runtime when cfg.onnx
    is set (inference.onnx.OnnxSAR, same interface), else `load_for_inference`."""
    if cfg.onnx:
        from inference.onnx import OnnxSAR
        logger.info('running %s with ONNX Runtime (CPU, %d threads)', cfg.onnx,
                    torch.get_num_threads())
        return OnnxSAR(cfg.onnx, num_threads=torch.get_num_threads())
    return load_for_inference(cfg, mano, device)[0]


def inference_amp(cfg, device, log=None):
    """The autocast dtype test.py and demo.py run the PyTorch network in (None: fp32), the
    choice and its reason logged once (inference.precision.resolve_amp; fp32 with
    cfg.as_published, on every device). With cfg.onnx, ONNX Runtime
    runs the exported fp32 graph and `amp` does not apply (logged as well)."""
    if cfg.onnx:
        (log or logger).info("precision: fp32, ONNX Runtime runs the exported fp32 graph "
                             "(amp=%r applies to the PyTorch network only)", cfg.amp)
        return None
    return log_amp(cfg.amp, device, log, exact=cfg.as_published).dtype


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
