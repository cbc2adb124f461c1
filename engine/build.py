"""Building what a run needs from a resolved configuration: the SAR network, the AdamW
parameter groups and the mixed-precision choice (config field `amp`, per device)."""
import logging
from typing import NamedTuple, Optional

import torch

from model import SAR

logger = logging.getLogger(__name__)

AMP_DTYPES = {'off': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}
# /proc/cpuinfo flags of x86 CPUs that compute bf16 products natively: AVX-512 BF16
# (VDPBF16PS: two bf16 products per fp32 lane, about twice the fp32 FMA rate) and AMX
# (tile multiplies). Without them oneDNN emulates bf16 by converting to fp32: measured slower
# than fp32 (README, Performance).
NATIVE_BF16_FLAGS = ('avx512_bf16', 'amx_bf16')
CPUINFO = '/proc/cpuinfo'


class AmpChoice(NamedTuple):
    """The precision a run computes in, and why (logged once by the entry scripts)."""
    name: str  # 'off' (fp32), 'bf16' or 'fp16'
    dtype: Optional[torch.dtype]  # the autocast dtype; None: fp32, autocast off
    reason: str  # one sentence for the log
    warn: bool = False  # an explicit choice that is slower than the default here


def cpu_bf16_flags(cpuinfo=CPUINFO):
    """The NATIVE_BF16_FLAGS the CPU reports (a tuple, possibly empty).

    Args:
        cpuinfo: path of a /proc/cpuinfo-format file (its first `flags` line is read).
    Returns:
        the flags present, in NATIVE_BF16_FLAGS order; () where the file does not exist
        (not Linux) or has no flags line (not x86): bf16 is then not assumed native.
    """
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith('flags'):
                    present = set(line.split(':', 1)[1].split())
                    return tuple(flag for flag in NATIVE_BF16_FLAGS if flag in present)
    except OSError:
        pass
    return ()


def resolve_amp(amp, device, cpu_flags=None):
    """The AmpChoice of config field `amp` on `device`.

    'auto' picks the fastest precision that keeps the results (README, Performance): bf16
    on a CUDA GPU with bf16, bf16 on a CPU with native bf16 (NATIVE_BF16_FLAGS), fp32
    elsewhere. 'off', 'bf16' and 'fp16' are honoured as given; bf16 on a CPU without native
    bf16 runs emulated, slower than fp32 (warn is set).

    Args:
        amp: 'auto', 'off', 'bf16' or 'fp16'.
        device: torch.device of the run.
        cpu_flags: the CPU's native-bf16 flags (default: `cpu_bf16_flags()`).
    Raises:
        ValueError for an unknown value, and for fp16 on the CPU (config.validate refuses
        it first, naming the fix).
    """
    if amp not in ('auto', *AMP_DTYPES):
        raise ValueError(f"amp must be 'auto' or one of {tuple(AMP_DTYPES)}, got {amp!r}")
    if device.type == 'cuda':
        if amp != 'auto':
            return AmpChoice(amp, AMP_DTYPES[amp], f"amp='{amp}' as configured, on CUDA")
        if torch.cuda.is_bf16_supported():
            return AmpChoice('bf16', torch.bfloat16, "amp='auto': bf16 autocast, the GPU "
                             "computes bf16 natively")
        return AmpChoice('off', None, "amp='auto': fp32, this GPU has no bf16 (--amp fp16 "
                         "trains with loss scaling)")
    if device.type != 'cpu':
        raise ValueError(f'amp: no precision rule for device {device}; use cuda or cpu')
    if amp == 'fp16':
        raise ValueError("amp='fp16' is CUDA only: CPU fp16 autocast is emulated on "
                         "most CPUs; use --amp auto (bf16 where native) or --amp off")
    flags = cpu_bf16_flags() if cpu_flags is None else tuple(cpu_flags)
    native = (f'the CPU has native bf16 ({", ".join(flags)})' if flags else
              f'the CPU has no native bf16 (none of {", ".join(NATIVE_BF16_FLAGS)} in '
              f'{CPUINFO})')
    if amp == 'auto':
        if flags:
            return AmpChoice('bf16', torch.bfloat16, f"amp='auto': bf16 autocast, {native}")
        return AmpChoice('off', None, f"amp='auto': fp32, {native}: emulated bf16 is slower "
                         f"than fp32")
    if amp == 'off':
        return AmpChoice('off', None, f"amp='off': fp32 as configured ({native})")
    return AmpChoice('bf16', torch.bfloat16, f"amp='bf16' as configured; {native}"
                     + ('' if flags else ': it runs emulated, slower than fp32 (--amp auto '
                                         'picks fp32 here)'), warn=not flags)


def log_amp(amp, device, log=None):
    """Resolve `amp` on `device`, log the choice and its reason once; returns the AmpChoice."""
    choice = resolve_amp(amp, device)
    (log or logger).log(logging.WARNING if choice.warn else logging.INFO,
                        'precision: %s', choice.reason)
    return choice


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
