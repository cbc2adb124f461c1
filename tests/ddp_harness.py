"""torchrun / srun / plain entry for tests/test_train.py: run train.main and save each rank's
final weights.

    torchrun --nproc_per_node=2 -m tests.ddp_harness WEIGHTS_DIR [train.py overrides]

SAR_HARNESS_KILL_STEP=n (with SAR_HARNESS_KILL_RANK=r, default 1): in the first attempt of a
torchrun group (TORCHELASTIC_RESTART_COUNT 0; every start without torchrun) rank r SIGKILLs
itself at the n-th optimizer step of this process (1-based, counted over epochs), as a
pre-empted or crashed worker dies.

SAR_HARNESS_LATE_RANK=r: in a restarted torchrun group (TORCHELASTIC_RESTART_COUNT > 0) the
worker of global rank r waits SAR_HARNESS_LATE_S seconds (default 3) before it joins the
process group, so its peers look up its address before it wrote it: with keys shared across
restarts they read the dead group's address (utils.runtime.distributed's module docstring).
"""
import os
import signal
import sys
import time

import torch

import train
from training import loop
from utils.runtime import distributed


def rank():
    return torch.distributed.get_rank() if distributed.is_distributed() else 0


def main():
    weights_dir, argv = sys.argv[1], sys.argv[2:]
    real_epoch, real_cleanup = loop.train_one_epoch, distributed.cleanup
    real_step, real_init = loop.accumulation_step, distributed.init_distributed
    kill_step = int(os.environ.get('SAR_HARNESS_KILL_STEP', '0'))
    kill_rank = int(os.environ.get('SAR_HARNESS_KILL_RANK', '1'))
    late_rank = os.environ.get('SAR_HARNESS_LATE_RANK')
    seen = {'steps': 0}

    def join_late(*args, **kwargs):
        if distributed.restart_count() > 0 and os.environ.get('RANK') == late_rank:
            time.sleep(float(os.environ.get('SAR_HARNESS_LATE_S', '3')))
        return real_init(*args, **kwargs)

    def epoch_remembering_model(model, *args, **kwargs):
        seen['model'] = getattr(model, 'module', model)  # unwrap DistributedDataParallel
        return real_epoch(model, *args, **kwargs)

    def step_or_die(*args, **kwargs):
        seen['steps'] += 1
        if (seen['steps'] == kill_step and distributed.restart_count() == 0
                and rank() == kill_rank):
            os.kill(os.getpid(), signal.SIGKILL)
        return real_step(*args, **kwargs)

    def save_weights_then_cleanup():
        # Called by train.main after the last epoch, before the process group goes away.
        os.makedirs(weights_dir, exist_ok=True)
        torch.save(seen['model'].state_dict(),
                   os.path.join(weights_dir, f'rank{rank()}.pt'))
        real_cleanup()

    loop.train_one_epoch = epoch_remembering_model
    loop.accumulation_step = step_or_die
    distributed.cleanup = save_weights_then_cleanup
    distributed.init_distributed = join_late
    train.main(argv)


if __name__ == '__main__':
    main()
