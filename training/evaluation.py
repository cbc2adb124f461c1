"""Evaluation during training: the evaluation split and one evaluation after an epoch."""
import logging

import dataset as datasets
from inference.predict import predict_dataset
from utils.runtime.threads import opencv_single_threaded

logger = logging.getLogger(__name__)


def evaluate_epoch(model, dataset, decoding, run, epoch=None, monitor=None):
    """Evaluate on the evaluation split during training (all ranks predict, rank 0 scores,
    logs and records the scores in `monitor`). Returns the scores on rank 0, None elsewhere.

    decoding: inference.decoding.Decoding; run: utils.runtime.launch.Run (cfg, rank, world
    size, device, logger)."""
    cfg = run.cfg
    xyz, verts = predict_dataset(model, dataset, decoding, run.device,
                                 batch_size=cfg.test_batch_size, num_workers=cfg.num_worker,
                                 shard=(run.rank, run.world_size))
    if run.rank != 0:
        return None
    data = datasets.entry(cfg.dataset)
    scores = data.evaluate(cfg, dataset, xyz, verts)
    run.logger.info('evaluation:\n%s', data.report(scores))
    if monitor:
        monitor.log_evaluation(epoch, scores, dataset, xyz, verts)
    return scores


def evaluation_set(cfg):
    """The evaluation split evaluated during training, or None (eval_interval 0, a data set
    without a training-time evaluation, or no evaluation ground truth in data_root)."""
    data = datasets.entry(cfg.dataset)
    if not cfg.eval_interval:
        return None
    if data.evaluate is None or not data.has_ground_truth(cfg):
        why = ('has no training-time evaluation' if data.evaluate is None
               else f'has no evaluation ground truth in {cfg.data_root}')
        logger.info('eval_interval %d: not evaluating, dataset %r %s', cfg.eval_interval,
                    cfg.dataset, why)
        return None
    # Each evaluation draws its pictures with OpenCV in this process, which then forks the
    # next evaluation's DataLoader workers.
    opencv_single_threaded()
    return data.build('evaluation', cfg)
