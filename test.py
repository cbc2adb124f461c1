"""Run SAR on the FreiHAND evaluation set and write output/pred.json.

    python test.py --checkpoint output/checkpoint/<experiment>/snapshot_49.pth.tar
    python test.py --checkpoint snapshot_sar.pth.tar      # the authors' released checkpoint
    python test.py --checkpoint ... --vis                 # also render results to output/vis
    python test.py --checkpoint ... --root_source auto    # wrist depths from the hand's size, not RootNet
    torchrun --nproc_per_node=4 test.py --checkpoint ...  # split inference over 4 processes

The network is built from the config.json saved beside the checkpoint (when present) under the
command-line overrides, so a checkpoint trained with a preset needs no flags repeated.
pred.json is `[xyz_list, verts_list]` in meters, evaluation order: zipped, it is what the
FreiHAND leaderboard accepts. When the evaluation ground truth is present
(evaluation_xyz.json and evaluation_verts.json in the data root) the local evaluator runs
and prints the leaderboard report.
With --dataset HO3D --data_root DIR [--ho3d_version v3], pred.json is in HO3D's submission
format (OpenGL frame, HO3D joint order, evaluation.txt order, placed at the given roots) and
scored with dataset.ho3d.eval when the released ground truth is in DIR (docs/ho3d.md).
"""
import sys

import torch

import config as config_module
import dataset as datasets
from inference.decoding import Decoding
from inference.network import inference_amp, load_inference_model
from inference.predict import predict_dataset
from inference.root_depth import root_prior_for
from run.config import resolve_config
from utils.mano import MANO
from utils.runtime import distributed
from utils.runtime.launch import run_main, setup_run


def main(argv):
    cfg, notes = resolve_config(argv, from_checkpoint=True)
    if not cfg.checkpoint and not cfg.onnx:
        raise config_module.ConfigError("no network given: python test.py --checkpoint PATH "
                                        "(or --onnx FILE from python -m tools.export_onnx)")
    datasets.entry(cfg.dataset).check_data(cfg)  # before anything is written
    cfg, rank, world_size, device, logger = setup_run(cfg, f'test_{cfg.experiment_name}',
                                                    notes=notes)
    mano = MANO(cfg.mano_root)
    model = load_inference_model(cfg, mano, device)
    amp_dtype = inference_amp(cfg, device, logger)

    data = datasets.entry(cfg.dataset)
    dataset = data.build('evaluation', cfg)
    root_prior = None
    if cfg.root_source == 'auto':
        root_prior = root_prior_for(mano, cfg.hand_scale_m)
        logger.info('root_source auto: wrist depths from the predicted skeleton at %.3f m total '
                    '(hand_scale_m %.4f m x %.2f, the MANO template\'s skeleton / bone 9-10), '
                    'not from the RootNet file', root_prior.skeleton_m, cfg.hand_scale_m,
                    root_prior.ratio)
    decoding = Decoding.from_config(cfg, device, amp_dtype)
    xyz, verts = predict_dataset(model, dataset, decoding, device,
                                 batch_size=cfg.test_batch_size, num_workers=cfg.num_worker,
                                 shard=(rank, world_size), root_prior=root_prior)

    if rank == 0:
        data.write_outputs(cfg, dataset, xyz, verts, logger)  # the submission file, local scores
        if cfg.vis:
            from utils.vis.panels import render_results
            paths = render_results(dataset, xyz, verts, mano.faces, cfg.vis_dir, cfg.vis_num)
            logger.info('rendered %d results to %s', len(paths), cfg.vis_dir)
    distributed.barrier()
    distributed.cleanup()


if __name__ == '__main__':
    torch.set_grad_enabled(False)
    sys.exit(run_main(main, sys.argv[1:], 'test.py'))
