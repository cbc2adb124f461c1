"""Train SAR on FreiHAND.

    python train.py                                   # config.py as it is
    python train.py --batch_size 32 --lr 1e-4        # any config field on the command line
    python train.py --resume auto                     # continue the newest checkpoint
    torchrun --nproc_per_node=4 train.py ...          # DistributedDataParallel, 4 GPUs

Reads top to bottom: resolve the config, set up (distributed, logging), data, model,
optimiser and schedule, optional resume, then the epochs.
"""
import logging
import os
import sys

import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

import config as config_module
from dataset import get_dataset, worker_init_fn
from model import SAR
from utils import distributed, freihand_eval
from utils.checkpoint import latest_checkpoint, load_checkpoint, load_net_state, save_checkpoint
from utils.engine import predict_dataset, train_one_epoch
from utils.fileio import atomic_write_json
from utils.logger import log_environment, setup_logger
from utils.mano import MANO

AMP_DTYPES = {'off': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def build_model(cfg, mano, device):
    """The SAR network for `cfg` (shared by train.py, test.py and demo.py)."""
    model = SAR(mano.template, mano.faces, backbone=cfg.backbone, num_stage=cfg.num_stage,
                num_FMs=cfg.num_FMs, feature_size=cfg.feature_size,
                heatmap_size=cfg.heatmap_size, num_vert=cfg.num_vert, num_joint=cfg.num_joint,
                input_img_shape=cfg.input_img_shape,
                pretrained_backbone=cfg.pretrained_backbone)
    model = model.to(device)
    if cfg.channels_last and device.type == 'cuda':
        model = model.to(memory_format=torch.channels_last)
    return model


def param_groups(model, lr, adj_lr_scale):
    """AdamW parameter groups: one group (the published recipe) when adj_lr_scale is 1, else
    the graph adjacencies (`*.adj`, 778 x 778 each) in a second group at lr * adj_lr_scale.

    Why a separate rate helps at high lr: Adam moves every adjacency entry by about lr per
    step, and the updates within a row are correlated, so a row sum can move by up to
    778 x lr per step; once a sum crosses zero, SPEC 4's row normalisation blows that row up.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if adj_lr_scale == 1.0:
        return params
    adj = [p for name, p in model.named_parameters() if p.requires_grad and name.endswith('.adj')]
    adj_ids = {id(p) for p in adj}
    return [{'params': [p for p in params if id(p) not in adj_ids]},
            {'params': adj, 'lr': lr * adj_lr_scale}]


def resume_path(cfg):
    """The checkpoint to resume from, or None for a fresh run."""
    if cfg.resume == 'auto':
        path = latest_checkpoint(cfg.checkpoint_dir)
        if path is None:
            logging.getLogger('sar').info('resume=auto: no checkpoint in %s, starting fresh',
                                          cfg.checkpoint_dir)
        return path
    if cfg.continue_train:
        if not cfg.checkpoint:
            raise config_module.ConfigError(
                "continue_train is set but 'checkpoint' is empty: pass --checkpoint PATH "
                "or use --resume auto")
        return cfg.checkpoint
    return None


def evaluate_epoch(cfg, model, device, amp_dtype, rank, world_size, logger):
    """Evaluate on the evaluation split (all ranks predict, rank 0 scores and logs)."""
    dataset = get_dataset(cfg.dataset, 'evaluation', root=cfg.data_root,
                          input_img_shape=cfg.input_img_shape, depth_box=cfg.depth_box)
    xyz, verts = predict_dataset(model, dataset, device=device, batch_size=cfg.test_batch_size,
                                 num_workers=cfg.num_worker, crop_size=cfg.input_img_shape,
                                 depth_box=cfg.depth_box, amp_dtype=amp_dtype,
                                 channels_last=cfg.channels_last and device.type == 'cuda',
                                 rank=rank, world_size=world_size)
    if rank == 0:
        scores = freihand_eval.evaluate(*freihand_eval.load_gt(cfg.data_root), xyz, verts)
        logger.info('evaluation:\n%s', freihand_eval.format_report(scores))


def main(argv):
    cfg = config_module.resolve(argv)
    rank, world_size, device = distributed.init_distributed(cfg.device)
    logger = setup_logger(os.path.join(cfg.log_dir, f'train_{cfg.experiment_name}.log'), rank)
    log_environment(logger)
    logger.info('resolved config:\n%s', config_module.dumps(cfg))
    if cfg.batch_size % world_size:
        raise config_module.ConfigError(
            f"batch_size {cfg.batch_size} is not divisible by the world size {world_size}")
    per_gpu_batch = cfg.batch_size // world_size
    logger.info('world size %d: batch %d per process, %d in total', world_size, per_gpu_batch,
                cfg.batch_size)
    torch.manual_seed(cfg.seed)
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True  # fixed input size: pick the fastest kernels once
    amp_dtype = AMP_DTYPES[cfg.amp] if device.type == 'cuda' else None
    if cfg.amp != 'off' and device.type != 'cuda':
        logger.info("amp='%s' applies on CUDA only; training in fp32 on %s", cfg.amp, device)

    # ---- data ----
    dataset = get_dataset(cfg.dataset, 'training', root=cfg.data_root,
                          input_img_shape=cfg.input_img_shape, depth_box=cfg.depth_box,
                          seed=cfg.seed)
    if world_size > 1:
        sampler = DistributedSampler(dataset, shuffle=True, seed=cfg.seed, drop_last=True)
    else:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(cfg.seed))
    loader = DataLoader(dataset, batch_size=per_gpu_batch, sampler=sampler, drop_last=True,
                        num_workers=cfg.num_worker, pin_memory=device.type == 'cuda',
                        persistent_workers=cfg.num_worker > 0, worker_init_fn=worker_init_fn)
    if len(loader) == 0:
        raise config_module.ConfigError(
            f"{len(dataset)} training items give no batch of {per_gpu_batch}: lower batch_size")
    logger.info('training set: %d items (%s), %d iterations per epoch', len(dataset),
                cfg.data_root, len(loader))

    # ---- model, optimiser, schedule ----
    mano = MANO(cfg.mano_root)
    model = build_model(cfg, mano, device)
    if cfg.pre:
        load_net_state(model, load_checkpoint(cfg.pre)['net'], cfg.pre)
        logger.info('initialised the network from %s', cfg.pre)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.lr, cfg.adj_lr_scale), lr=cfg.lr,
                                  weight_decay=cfg.weight_decay, fused=device.type == 'cuda')
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.total_epoch,
                                                           eta_min=0)
    scaler = torch.amp.GradScaler('cuda') if amp_dtype == torch.float16 else None

    start_epoch = 0
    path = resume_path(cfg)
    if path:
        ckpt = load_checkpoint(path, map_location=device)
        load_net_state(model, ckpt['net'], path)
        for key in ('optimizer', 'schedule'):
            if key not in ckpt:
                raise RuntimeError(f"{path} has no '{key}' state: it holds weights only; use "
                                   f"--pre {path} to start a new run from these weights")
        optimizer.load_state_dict(ckpt['optimizer'])
        scheduler.load_state_dict(ckpt['schedule'])
        if scaler is not None and 'scaler' in ckpt:
            scaler.load_state_dict(ckpt['scaler'])
        start_epoch = ckpt['last_epoch'] + 1
        logger.info('resumed from %s: continuing at epoch %d, lr %.3e', path, start_epoch,
                    optimizer.param_groups[0]['lr'])

    train_model = model
    if world_size > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == 'cuda' else None)
    if cfg.compile:
        # Compiled after the DDP wrap, so DDP's optimizer can split the graph at its buckets.
        train_model = torch.compile(train_model)

    if rank == 0:
        os.makedirs(cfg.checkpoint_dir, exist_ok=True)
        atomic_write_json(os.path.join(cfg.checkpoint_dir, 'config.json'), cfg.to_dict(), indent=2)

    # ---- epochs ----
    for epoch in range(start_epoch, cfg.total_epoch):
        if world_size > 1:
            sampler.set_epoch(epoch)
        stats = train_one_epoch(train_model, loader, optimizer, device=device, epoch=epoch,
                                total_epoch=cfg.total_epoch, print_iter=cfg.print_iter,
                                amp_dtype=amp_dtype, scaler=scaler,
                                channels_last=cfg.channels_last and device.type == 'cuda',
                                show_progress=rank == 0)
        scheduler.step()
        distributed.average_buffers(model)
        logger.info('epoch %d done: %s', epoch,
                    ' '.join(f'{k} {v:.4f}' for k, v in stats.items()))
        if rank == 0 and ((epoch + 1) % cfg.save_epoch == 0 or epoch + 1 == cfg.total_epoch):
            state = {'net': model.state_dict(), 'optimizer': optimizer.state_dict(),
                     'schedule': scheduler.state_dict(), 'last_epoch': epoch,
                     'config': cfg.to_dict()}
            if scaler is not None:
                state['scaler'] = scaler.state_dict()
            logger.info('saved %s', save_checkpoint(state, cfg.checkpoint_dir, epoch))
        if (cfg.eval_interval and (epoch + 1) % cfg.eval_interval == 0
                and freihand_eval.has_gt(cfg.data_root)):
            evaluate_epoch(cfg, model, device, amp_dtype, rank, world_size, logger)
        distributed.barrier()
    distributed.cleanup()


if __name__ == '__main__':
    main(sys.argv[1:])
