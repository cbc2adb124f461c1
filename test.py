"""Run SAR on the FreiHAND evaluation set and write output/pred.json.

    python test.py --checkpoint output/checkpoint/<experiment>/snapshot_49.pth.tar
    python test.py --checkpoint snapshot_sar.pth.tar      # the authors' released checkpoint
    python test.py --checkpoint ... --vis                 # also render results to output/vis
    torchrun --nproc_per_node=4 test.py --checkpoint ...  # split inference over 4 processes

pred.json is `[xyz_list, verts_list]` in meters, evaluation order: zipped, it is what the
FreiHAND leaderboard accepts. When the evaluation ground truth is present
(evaluation_xyz.json and evaluation_verts.json in the data root) the local evaluator runs
and prints the leaderboard report.
"""
import dataclasses
import os
import sys

import numpy as np
import torch

import config as config_module
from dataset import get_dataset
from train import AMP_DTYPES, build_model
from utils import distributed, freihand_eval
from utils.checkpoint import load_checkpoint, load_net_state
from utils.engine import predict_dataset
from utils.fileio import atomic_write_json
from utils.logger import log_environment, setup_logger
from utils.mano import MANO


def run_local_evaluation(data_root, xyz, verts, out_dir, logger):
    """Evaluate predictions against the public evaluation ground truth; returns the scores."""
    xyz_gt, verts_gt = freihand_eval.load_gt(data_root)
    scores = freihand_eval.evaluate(xyz_gt, verts_gt, xyz, verts)
    freihand_eval.write_outputs(scores, out_dir)
    logger.info('local evaluation (the leaderboard definitions), written to %s:\n%s', out_dir,
                freihand_eval.format_report(scores))
    return scores


def main(argv):
    cfg = config_module.resolve(argv)
    rank, world_size, device = distributed.init_distributed(cfg.device)
    logger = setup_logger(os.path.join(cfg.log_dir, f'test_{cfg.experiment_name}.log'), rank)
    log_environment(logger)
    logger.info('resolved config:\n%s', config_module.dumps(cfg))
    if not cfg.checkpoint:
        raise config_module.ConfigError("no checkpoint given: python test.py --checkpoint PATH")
    amp_dtype = AMP_DTYPES[cfg.amp] if device.type == 'cuda' else None

    mano = MANO(cfg.mano_root)
    # The checkpoint supplies every weight: no ImageNet download needed.
    model = build_model(dataclasses.replace(cfg, pretrained_backbone=False), mano, device)
    ckpt = load_checkpoint(cfg.checkpoint, map_location=device)
    load_net_state(model, ckpt['net'], cfg.checkpoint)
    logger.info('loaded %s (epoch %s)', cfg.checkpoint, ckpt.get('last_epoch', 'unknown'))
    # Same function, batch norms folded into the convolutions (model.sar.fuse_for_inference).
    model = model.fuse_for_inference()
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True  # fixed input size: pick the fastest kernels once

    dataset = get_dataset(cfg.dataset, 'evaluation', root=cfg.data_root,
                          input_img_shape=cfg.input_img_shape, depth_box=cfg.depth_box)
    xyz, verts = predict_dataset(
        model, dataset, device=device, batch_size=cfg.test_batch_size,
        num_workers=cfg.num_worker, crop_size=cfg.input_img_shape, depth_box=cfg.depth_box,
        amp_dtype=amp_dtype, channels_last=cfg.channels_last and device.type == 'cuda',
        rank=rank, world_size=world_size)

    if rank == 0:
        pred_path = os.path.join(cfg.output_root, 'pred.json')
        atomic_write_json(pred_path, [np.round(xyz, 6).tolist(), np.round(verts, 6).tolist()])
        logger.info('wrote %s (%d samples); zip it to submit to the FreiHAND leaderboard',
                    pred_path, len(xyz))
        if freihand_eval.has_gt(cfg.data_root):
            run_local_evaluation(cfg.data_root, xyz, verts, os.path.join(cfg.output_root, 'eval'),
                                 logger)
        else:
            logger.info('no evaluation ground truth in %s: skipping the local evaluation',
                        cfg.data_root)
        if cfg.vis:
            from utils.visualize import render_results
            paths = render_results(dataset, xyz, verts, mano.faces, cfg.vis_dir, cfg.vis_num)
            logger.info('rendered %d results to %s', len(paths), cfg.vis_dir)
    distributed.barrier()
    distributed.cleanup()


if __name__ == '__main__':
    torch.set_grad_enabled(False)
    main(sys.argv[1:])
