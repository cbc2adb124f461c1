"""torchrun entry for tests/test_train.py: run train.main and save each rank's final weights.

    torchrun --nproc_per_node=2 -m tests.ddp_harness WEIGHTS_DIR [train.py overrides]
"""
import os
import sys

import torch

import train
from engine import training
from utils.runtime import distributed


def main():
    weights_dir, argv = sys.argv[1], sys.argv[2:]
    real_epoch, real_cleanup = training.train_one_epoch, distributed.cleanup
    seen = {}

    def epoch_remembering_model(model, *args, **kwargs):
        seen['model'] = getattr(model, 'module', model)  # unwrap DistributedDataParallel
        return real_epoch(model, *args, **kwargs)

    def save_weights_then_cleanup():
        # Called by train.main after the last epoch, before the process group goes away.
        os.makedirs(weights_dir, exist_ok=True)
        torch.save(seen['model'].state_dict(),
                   os.path.join(weights_dir, f"rank{os.environ['RANK']}.pt"))
        real_cleanup()

    training.train_one_epoch = epoch_remembering_model
    distributed.cleanup = save_weights_then_cleanup
    train.main(argv)


if __name__ == '__main__':
    main()
