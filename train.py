"""Train SAR on FreiHAND (or HO3D: --dataset HO3D --data_root DIR [--ho3d_version v3]; docs/ho3d.md).

    python train.py                                   # config.py as it is
    python train.py --batch_size 32 --lr 1e-4        # any config field on the command line
    python train.py --resume auto                     # continue the newest checkpoint
    torchrun --nproc_per_node=4 train.py ...          # DistributedDataParallel, 4 GPUs
    srun python train.py ...                          # the same from SLURM's variables

Reads top to bottom: resolve the config, set up (distributed, the experiment lock, logging),
data, model, optimiser and schedule, optional resume, then the epochs.
"""
import sys

import torch

import dataset as datasets
from inference.decoding import Decoding
from inference.precision import log_amp
from run.config import resolve_config, save_config
from run.network import build_model
from training import evaluation, loop, resume
from training import monitor as monitoring
from training.build import (
    build_optimizer,
    check_batch_split,
    launch_summary,
    prepare_checkpoint_dir,
    wrap_for_training,
)
from training.sampler import build_train_loader
from utils.mano import MANO
from utils.runtime import distributed
from utils.runtime.checkpoint import load_checkpoint, load_net_state, save_checkpoint
from utils.runtime.launch import run_main, training_run


def main(argv):
    cfg, notes = resolve_config(argv)
    check_batch_split(cfg, distributed.world_size_from_env())  # before anything is written
    datasets.entry(cfg.dataset).check_data(cfg)  # e.g. every line of a custom labels.jsonl
    # refuse_to_overwrite: a fresh run into a folder with checkpoints stops before writing
    with training_run(cfg, f'train_{cfg.experiment_name}',
                      guard=resume.refuse_to_overwrite, notes=notes) as run:
        cfg, rank, world_size, device, logger = run
        layout = launch_summary(cfg, world_size)
        logger.info('\n'.join(layout))
        torch.manual_seed(cfg.seed)  # the initial weights; each step reseeds (model_seed)
        # the choice and its reason, logged; as_published trains in fp32 as the published code
        amp_dtype = log_amp(cfg.amp, device, logger, exact=cfg.as_published).dtype

        # ---- data ----
        dataset = datasets.entry(cfg.dataset).build('training', cfg)
        loader = build_train_loader(dataset, cfg, rank, world_size, device)
        steps = loader.batch_sampler.steps_per_epoch
        logger.info('training set: %d items (%s), %d iterations per epoch', len(dataset),
                    cfg.data_root, steps)

        # ---- model, optimiser, schedule, resume ----
        mano = MANO(cfg.mano_root)
        model = build_model(cfg, mano, device)
        if cfg.pre:
            load_net_state(model, load_checkpoint(cfg.pre)['net'], cfg.pre)
            logger.info('initialised the network from %s', cfg.pre)
        optimizer, scheduler = build_optimizer(cfg, model, device)
        scaler = torch.amp.GradScaler('cuda') if amp_dtype == torch.float16 else None
        start = resume.resume(cfg, model, optimizer, scheduler, scaler, device)
        train_model = wrap_for_training(model, cfg, world_size, device)

        monitor, eval_set = None, evaluation.evaluation_set(cfg)
        if rank == 0:
            prepare_checkpoint_dir(cfg, logger)
            save_config(cfg, cfg.checkpoint_dir)
            monitor = monitoring.build_monitor(cfg, steps, start, device, mano.faces, layout)
        options = loop.TrainOptions.from_config(cfg, run, amp_dtype, scaler, monitor)
        decoding = Decoding.from_config(cfg, device, amp_dtype)

        # ---- epochs ----
        for epoch in range(start.epoch, cfg.total_epoch):
            first_step = start.step if epoch == start.epoch else 0
            loader.batch_sampler.set_epoch(epoch, first_step)
            stats = loop.train_one_epoch(
                train_model, loader, optimizer, options, epoch=epoch, start_step=first_step,
                after_step=resume.iteration_saver(cfg, model, optimizer, scheduler, scaler,
                                                  rank, epoch, steps))
            scheduler.step()
            distributed.average_batch_norm_statistics(model)
            logger.info('epoch %d done: %s', epoch,
                        ' '.join(f'{k} {v:.4f}' for k, v in stats.items()))
            if monitor:
                monitor.end_epoch(epoch, stats)
            if rank == 0 and ((epoch + 1) % cfg.save_epoch == 0 or epoch + 1 == cfg.total_epoch):
                state = resume.checkpoint_state(model, optimizer, scheduler, scaler,
                                                cfg.to_dict(), epoch)
                logger.info('saved %s', save_checkpoint(state, cfg.checkpoint_dir, epoch))
            if eval_set is not None and (epoch + 1) % cfg.eval_interval == 0:
                evaluation.evaluate_epoch(model, eval_set, decoding, run, epoch, monitor)
            distributed.barrier()
        if monitor:
            monitor.close()
        distributed.cleanup()


if __name__ == '__main__':
    sys.exit(run_main(main, sys.argv[1:], 'train.py'))
