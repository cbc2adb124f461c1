"""What a training run builds from its configuration: the AdamW parameter groups and schedule,
the DistributedDataParallel wrapper, the process layout and the checkpoint folder."""
import os

import torch

from utils.errors import ConfigError
from utils.files.atomic import remove_stale_temporaries
from utils.runtime import distributed


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


def check_batch_split(cfg, world_size):
    """ConfigError unless batch_size splits evenly over world_size processes and
    cfg.accumulate micro-batches (checked before anything is written)."""
    parts = world_size * cfg.accumulate
    if cfg.batch_size % parts:
        raise ConfigError(
            f"batch_size {cfg.batch_size} is not divisible by the world size {world_size} x "
            f"accumulate {cfg.accumulate} = {parts}: batch_size is the total per optimizer step "
            f"over all processes and micro-batches; choose a multiple of {parts}")


def launch_summary(cfg, world_size):
    """The lines saying how the run is spread: the world size and batch split, the launcher
    and nodes, and each node's ranks (a collective: every rank calls it)."""
    launch = distributed.launch_from_env()
    per_process = cfg.batch_size // world_size
    split = (f'world size {world_size}: batch {per_process} per process, {cfg.batch_size} in '
             f'total')
    if cfg.accumulate > 1:
        split += (f', accumulated over {cfg.accumulate} micro-batches of '
                  f'{per_process // cfg.accumulate}')
    nodes = f'{launch.launcher} launch, {launch.num_nodes} node{"s" * (launch.num_nodes > 1)}'
    return [split, nodes, *distributed.rank_layout()]


def prepare_checkpoint_dir(cfg, logger):
    """Create the checkpoint folder and remove the temporaries an interrupted write left there
    (rank 0; train.py then saves the resolved configuration in it, run.config.save_config)."""
    os.makedirs(cfg.checkpoint_dir, exist_ok=True)
    for stale in remove_stale_temporaries(cfg.checkpoint_dir):
        logger.info('removed %s, left by an interrupted write of an earlier run', stale)
