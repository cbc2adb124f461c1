"""Train SAR on FreiHAND (or HO3D: --dataset HO3D --data_root DIR [--ho3d_version v3]; docs/ho3d.md).

    python train.py                                   # config.py as it is
    python train.py --batch_size 32 --lr 1e-4        # any config field on the command line
    python train.py --resume auto                     # continue the newest checkpoint
    torchrun --nproc_per_node=4 train.py ...          # DistributedDataParallel, 4 GPUs

Reads top to bottom: resolve the config, set up (distributed, logging), data, model,
optimiser and schedule, optional resume, then the epochs.
"""
import os
import sys

import cv2
import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

import config as config_module
from dataset import get_dataset, worker_init_fn
from engine import ho3d, training
from engine.build import build_model, build_optimizer, log_amp
from engine.setup import resolve_config, run_main, save_config, setup_run
from utils.runtime import distributed
from utils import freihand_eval
from utils.runtime.checkpoint import load_checkpoint, load_net_state, save_checkpoint
from utils.files.atomic import remove_stale_temporaries
from utils.mano import MANO
from engine.monitor import Monitor


def main(argv):
    cfg = resolve_config(argv)
    world_size = distributed.world_size_from_env()  # checked before anything is written
    if cfg.batch_size % world_size:
        raise config_module.ConfigError(
            f"batch_size {cfg.batch_size} is not divisible by the world size {world_size}: "
            f"batch_size is the total over all processes")
    cfg, rank, world_size, device, logger = setup_run(cfg, f'train_{cfg.experiment_name}')
    per_gpu_batch = cfg.batch_size // world_size
    logger.info('world size %d: batch %d per process, %d in total', world_size, per_gpu_batch,
                cfg.batch_size)
    torch.manual_seed(cfg.seed)
    amp_dtype = log_amp(cfg.amp, device, logger).dtype  # the choice and its reason, logged

    # ---- data ----
    dataset = get_dataset(cfg.dataset, 'training', root=cfg.data_root,
                          input_img_shape=cfg.input_img_shape, depth_box=cfg.depth_box,
                          seed=cfg.seed, fx_as_fy=cfg.fx_as_fy, cache_dir=cfg.annotation_cache,
                          **ho3d.dataset_kwargs(cfg))
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
    optimizer, scheduler = build_optimizer(cfg, model, device)
    scaler = torch.amp.GradScaler('cuda') if amp_dtype == torch.float16 else None

    start_epoch = 0
    path = training.resume_path(cfg.resume, cfg.continue_train, cfg.checkpoint,
                                cfg.checkpoint_dir)
    if path:
        start_epoch = training.restore_training_state(path, model, optimizer, scheduler, scaler,
                                                      device)

    train_model = model
    if world_size > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == 'cuda' else None)
    if cfg.compile:
        # Compiled after the DDP wrap, so DDP's optimizer can split the graph at its buckets.
        train_model = torch.compile(train_model)

    if rank == 0:
        os.makedirs(cfg.checkpoint_dir, exist_ok=True)
        for stale in remove_stale_temporaries(cfg.checkpoint_dir):
            logger.info('removed %s, left by an interrupted write of an earlier run', stale)
        save_config(cfg, cfg.checkpoint_dir)
    monitor = None
    if rank == 0:
        monitor = Monitor(tb_dir=cfg.tb_dir if cfg.tensorboard else None, log_dir=cfg.log_dir,
                          experiment=cfg.experiment_name, iterations_per_epoch=len(loader),
                          total_epoch=cfg.total_epoch, start_epoch=start_epoch,
                          images_per_step=cfg.batch_size, device=device, faces=mano.faces)
    eval_set = None
    if cfg.eval_interval and freihand_eval.has_gt(cfg.data_root):
        # Each evaluation draws its pictures with OpenCV in this process, which then forks
        # the next evaluation's DataLoader workers: a started OpenCV thread pool deadlocks
        # them (seen in make demo's second evaluation). One thread: no pool.
        cv2.setNumThreads(1)
        eval_set = get_dataset(cfg.dataset, 'evaluation', root=cfg.data_root,
                               input_img_shape=cfg.input_img_shape, depth_box=cfg.depth_box,
                               cache_dir=cfg.annotation_cache)

    # ---- epochs ----
    for epoch in range(start_epoch, cfg.total_epoch):
        if world_size > 1:
            sampler.set_epoch(epoch)
        stats = training.train_one_epoch(
            train_model, loader, optimizer, device=device, epoch=epoch,
            total_epoch=cfg.total_epoch, print_iter=cfg.print_iter, amp_dtype=amp_dtype,
            scaler=scaler, channels_last=cfg.channels_last and device.type == 'cuda',
            show_progress=rank == 0, monitor=monitor)
        scheduler.step()
        distributed.average_buffers(model)
        logger.info('epoch %d done: %s', epoch,
                    ' '.join(f'{k} {v:.4f}' for k, v in stats.items()))
        if monitor:
            monitor.end_epoch(epoch, stats)
        if rank == 0 and ((epoch + 1) % cfg.save_epoch == 0 or epoch + 1 == cfg.total_epoch):
            state = {'net': model.state_dict(), 'optimizer': optimizer.state_dict(),
                     'schedule': scheduler.state_dict(), 'last_epoch': epoch,
                     'config': cfg.to_dict()}
            if scaler is not None:
                state['scaler'] = scaler.state_dict()
            logger.info('saved %s', save_checkpoint(state, cfg.checkpoint_dir, epoch))
        if eval_set is not None and (epoch + 1) % cfg.eval_interval == 0:
            training.evaluate_epoch(cfg, model, eval_set, device, amp_dtype, rank, world_size,
                                    logger, epoch, monitor)
        distributed.barrier()
    if monitor:
        monitor.close()
    distributed.cleanup()


if __name__ == '__main__':
    sys.exit(run_main(main, sys.argv[1:], 'train.py'))
