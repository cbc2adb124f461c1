"""The SAR network of a resolved configuration, as a run builds it to train or measure."""
from inference.network import build_network
from model import NetworkSpec


def build_model(cfg, mano, device, pretrained_backbone=None):
    """The SAR network of `cfg` on `device` (channels_last on CUDA when cfg.channels_last).

    Args:
        cfg: resolved config.Config. mano: utils.mano.MANO (template and faces).
        pretrained_backbone: overrides cfg.pretrained_backbone (False when a checkpoint will
            supply every weight, so no ImageNet file is needed).
    """
    pretrained = cfg.pretrained_backbone if pretrained_backbone is None else pretrained_backbone
    return build_network(NetworkSpec.from_config(cfg), mano, device, head=cfg.head,
                         pretrained_backbone=pretrained, channels_last=cfg.channels_last)
