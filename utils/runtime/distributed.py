"""torchrun / DistributedDataParallel helpers (nccl on CUDA, gloo on the CPU)."""
import os

import torch
import torch.distributed as dist


def world_size_from_env():
    """The number of processes torchrun started (1 without torchrun)."""
    return int(os.environ.get('WORLD_SIZE', '1'))


def init_distributed(device):
    """Initialise the process group when launched by torchrun (WORLD_SIZE > 1).

    Args:
        device: 'cuda' or 'cpu' (selects nccl or gloo).
    Returns:
        (rank, world_size, torch.device for this process).
    """
    world_size = world_size_from_env()
    rank = int(os.environ.get('RANK', '0'))
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    if device == 'cuda':
        if not torch.cuda.is_available():
            raise RuntimeError("device='cuda' but CUDA is not available on this machine: run "
                               "with --device cpu (or install a CUDA build of torch and a driver)")
        torch.cuda.set_device(local_rank)
        torch_device = torch.device('cuda', local_rank)
    else:
        torch_device = torch.device('cpu')
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group('nccl' if device == 'cuda' else 'gloo')
    return rank, world_size, torch_device


def is_distributed():
    return dist.is_available() and dist.is_initialized()


def barrier():
    if is_distributed():
        dist.barrier()


def all_gather_objects(obj):
    """Every rank's `obj`, in rank order (a list of one element without torchrun)."""
    if not is_distributed():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def cleanup():
    if is_distributed():
        dist.destroy_process_group()


def average_buffers(module):
    """Average the floating-point buffers (batch-norm running statistics) over ranks.

    DDP keeps parameters identical but every rank updates its running statistics with its own
    batches; averaging them at the end of an epoch makes every rank (and the checkpoint) hold
    the same statistics, estimated from all the data of the epoch.
    """
    if not is_distributed():
        return
    for buffer in module.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer.div_(dist.get_world_size())
