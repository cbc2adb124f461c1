"""Building what a run needs from a resolved configuration: the SAR network, the AdamW
parameter groups and the mixed-precision dtype."""
import torch

from model import SAR

AMP_DTYPES = {'off': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def amp_dtype(amp, device):
    """The autocast dtype of config field `amp` on `device` (None: fp32; autocast is CUDA only)."""
    return AMP_DTYPES[amp] if device.type == 'cuda' else None


def build_model(cfg, mano, device, pretrained_backbone=None):
    """The SAR network of `cfg` on `device` (channels_last on CUDA when cfg.channels_last).

    Args:
        cfg: resolved Config. mano: utils.mano.MANO (template and faces).
        pretrained_backbone: overrides cfg.pretrained_backbone (False when a checkpoint will
            supply every weight, so no ImageNet file is needed).
    """
    pretrained = cfg.pretrained_backbone if pretrained_backbone is None else pretrained_backbone
    model = SAR(mano.template, mano.faces, backbone=cfg.backbone, num_stage=cfg.num_stage,
                num_FMs=cfg.num_FMs, feature_size=cfg.feature_size,
                heatmap_size=cfg.heatmap_size, num_vert=cfg.num_vert, num_joint=cfg.num_joint,
                input_img_shape=cfg.input_img_shape, pretrained_backbone=pretrained)
    model = model.to(device)
    if cfg.channels_last and device.type == 'cuda':
        model = model.to(memory_format=torch.channels_last)
    return model


def param_groups(model, lr, adj_lr_scale):
    """AdamW parameter groups: one group (the published recipe) when adj_lr_scale is 1, else
    the graph adjacencies (`*.adj`, 778 x 778 each) in a second group at lr * adj_lr_scale.

    Why a separate rate helps at high lr: Adam moves every adjacency entry by about lr per
    step, and the updates within a row are correlated, so a row sum can move by up to
    778 x lr per step; once a sum crosses zero, the row normalisation of docs/method.md §4
    blows that row up.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if adj_lr_scale == 1.0:
        return params
    adj = [p for name, p in model.named_parameters() if p.requires_grad and name.endswith('.adj')]
    adj_ids = {id(p) for p in adj}
    return [{'params': [p for p in params if id(p) not in adj_ids]},
            {'params': adj, 'lr': lr * adj_lr_scale}]


def build_optimizer(cfg, model, device):
    """AdamW (fused on CUDA) and the per-epoch cosine schedule of docs/method.md §6."""
    optimizer = torch.optim.AdamW(param_groups(model, cfg.lr, cfg.adj_lr_scale), lr=cfg.lr,
                                  weight_decay=cfg.weight_decay, fused=device.type == 'cuda')
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.total_epoch,
                                                           eta_min=0)
    return optimizer, scheduler


def wrap_for_training(model, cfg, world_size, device):
    """The module the train loop calls: `model` in DistributedDataParallel with more than one
    process, then torch.compile'd when cfg.compile (after the DDP wrap, so DDP's optimizer
    can split the graph at its buckets). `model` itself stays the unwrapped network."""
    if world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == 'cuda' else None)
    if cfg.compile:
        model = torch.compile(model)
    return model
