"""The SAR network of a NetworkSpec, and the network test.py and demo.py run: a
checkpoint's weights with batch norms folded, or an exported ONNX file."""
import logging

import torch

from inference.precision import log_amp
from model import NetworkSpec, SAR
from utils.runtime.checkpoint import load_checkpoint, load_net_state


def build_network(spec, mano, device, *, head, pretrained_backbone, channels_last=False):
    """The SAR network of `spec` (a NetworkSpec) with `head` on `device` (channels_last on
    CUDA when asked).

    Args:
        mano: utils.mano.MANO (template and faces). head: a name of model/heads.py's registry.
        pretrained_backbone: start the backbone from ImageNet weights (False when a checkpoint
            will supply every weight, so no ImageNet file is needed).
    """
    model = SAR(mano.template, mano.faces, spec, pretrained_backbone=pretrained_backbone,
                head=head)
    # One conversion: device and layout in the same pass over the parameters.
    channels_last = channels_last and device.type == 'cuda'
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
    model = build_network(NetworkSpec.from_config(cfg), mano, device, head=cfg.head,
                          pretrained_backbone=False, channels_last=cfg.channels_last)
    ckpt = load_checkpoint(cfg.checkpoint, map_location=device)
    load_net_state(model, ckpt['net'], cfg.checkpoint)
    logger.info('loaded %s (epoch %s)', cfg.checkpoint, ckpt.get('last_epoch', 'unknown'))
    return model.fuse_for_inference(), ckpt
