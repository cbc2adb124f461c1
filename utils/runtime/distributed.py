"""Process groups (nccl on CUDA, gloo on the CPU) started by torchrun or by SLURM's srun, and
the collectives training needs.

Launchers, in this order:
- torchrun (one or several nodes, elastic): RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
  MASTER_PORT from its agent; GROUP_RANK / GROUP_WORLD_SIZE are the node and the node count.
- srun without torchrun: SLURM_PROCID (rank), SLURM_NTASKS (world size), SLURM_LOCALID (local
  rank, selects the GPU), SLURM_NODEID (node); the master is MASTER_ADDR, else the first host
  of SLURM_JOB_NODELIST; the port MASTER_PORT, else one derived from SLURM_JOB_ID. Only inside
  an srun step (SLURM_STEP_ID set): a batch script's own shell has SLURM_NTASKS too, and a
  `python train.py` there is a single process.
- neither: one process.

torchrun's c10d rendezvous shares its own TCPStore with the workers (TORCHELASTIC_USE_AGENT_STORE
=True: the store at MASTER_ADDR:MASTER_PORT is the agent's) and keeps it across restarts, but
the process group writes the same keys in every attempt (gloo's listening addresses, NCCL's
unique id). A restarted rank that reads its peer's key before the peer rewrote it gets the dead
group's address and is refused or waits until the timeout (pytorch/pytorch#135712; seen here in
about one restart of four). So each attempt's keys get their own prefix, 'sar/attempt_<n>' with
n = TORCHELASTIC_RESTART_COUNT. That count is the same for all workers of one agent, but each
agent counts only its own group's failures: on several nodes the prefixes could differ, and
there torchrun --max-restarts needs TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 (each rendezvous round
then gets a fresh store on a fresh port, hosted by worker rank 0), which _torchrun_launch says.
"""
import datetime
import os
import re
import socket
import time
from typing import NamedTuple

import torch
import torch.distributed as dist

from utils.errors import LaunchError

SLURM_TASK_VARS = ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_LOCALID', 'SLURM_NODEID')
SLURM_PORT_BASE = 15000  # MASTER_PORT under srun = base + SLURM_JOB_ID % SLURM_PORT_SPAN
SLURM_PORT_SPAN = 20000
DEFAULT_TIMEOUT_S = 1800  # process-group set-up and collectives (torch's own default)


class Launch(NamedTuple):
    """How this process was started (see the module docstring)."""
    launcher: str  # 'single', 'torchrun' or 'slurm'
    rank: int
    world_size: int
    local_rank: int
    node_rank: int
    num_nodes: int
    master_addr: str = ''
    master_port: int = 0


def _int_var(env, name, low=0):
    value = env[name]
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < low:
        raise LaunchError(f'environment variable {name}={value!r} is not an integer >= {low}')
    return number


def expand_nodelist(nodelist):
    """The host names of a SLURM node list in its compressed syntax, in order:
    'gpu[01-03,07],login1' -> ['gpu01', 'gpu02', 'gpu03', 'gpu07', 'login1'] (ranges keep
    their zero padding; several bracket groups in one name multiply out)."""
    hosts, depth, start = [], 0, 0
    for i, char in enumerate(nodelist + ','):
        depth += {'[': 1, ']': -1}.get(char, 0)
        if depth < 0 or depth > 1:
            break
        if char == ',' and depth == 0:
            if i == start:
                break
            hosts.extend(_expand_name(nodelist[start:i], nodelist))
            start = i + 1
    else:
        if depth == 0 and hosts:
            return hosts
    raise LaunchError(f"SLURM_JOB_NODELIST={nodelist!r} is not a SLURM node list (e.g. "
                      f"'node[01-04,07],login1'); set MASTER_ADDR to the first node's address")


def _expand_name(name, nodelist):
    match = re.fullmatch(r'([^\[\]]*)\[([^\[\]]+)\](.*)', name)
    if match is None:
        if '[' in name or ']' in name or not name:
            raise LaunchError(f'SLURM_JOB_NODELIST={nodelist!r}: cannot read {name!r}')
        return [name]
    prefix, ranges, rest = match.groups()
    expanded = []
    for part in ranges.split(','):
        bounds = part.split('-')
        if len(bounds) > 2 or not all(b.isdigit() for b in bounds):
            raise LaunchError(f'SLURM_JOB_NODELIST={nodelist!r}: {part!r} is not a number or '
                              f'a range a-b')
        low, high = int(bounds[0]), int(bounds[-1])
        if high < low:
            raise LaunchError(f'SLURM_JOB_NODELIST={nodelist!r}: empty range {part!r}')
        width = len(bounds[0])
        expanded += [f'{prefix}{n:0{width}d}' for n in range(low, high + 1)]
    return [host + tail for host in expanded for tail in _expand_name(rest, nodelist)] \
        if rest else expanded


def _torchrun_launch(env):
    missing = [v for v in ('RANK', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT') if v not in env]
    if missing:
        raise LaunchError(f"WORLD_SIZE={env['WORLD_SIZE']} is set but {', '.join(missing)} "
                          f"not: start with torchrun (which sets them all), or unset WORLD_SIZE")
    world_size = _int_var(env, 'WORLD_SIZE', 1)
    local_world = _int_var(env, 'LOCAL_WORLD_SIZE', 1) if 'LOCAL_WORLD_SIZE' in env else world_size
    num_nodes = (_int_var(env, 'GROUP_WORLD_SIZE', 1) if 'GROUP_WORLD_SIZE' in env
                 else max(1, world_size // local_world))
    node_rank = _int_var(env, 'GROUP_RANK') if 'GROUP_RANK' in env else 0
    restarts = _int_var(env, 'TORCHELASTIC_MAX_RESTARTS') if 'TORCHELASTIC_MAX_RESTARTS' in env \
        else 0
    if _agent_store_shared(env) and num_nodes > 1 and restarts > 0:
        raise LaunchError(
            f'torchrun --max-restarts {restarts} on {num_nodes} nodes: torchrun shares its '
            f'rendezvous store with the workers across restarts, where a restarted group can read '
            f"the dead group's addresses and hang (pytorch/pytorch#135712). Export "
            f'TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 before torchrun on every node (each restart '
            f'then gets a fresh store)')
    return Launch('torchrun', _int_var(env, 'RANK'), world_size, _int_var(env, 'LOCAL_RANK'),
                  node_rank, num_nodes, env['MASTER_ADDR'], _int_var(env, 'MASTER_PORT', 1))


def _slurm_launch(env):
    needed = [v for v in ('MASTER_ADDR', 'SLURM_JOB_NODELIST') if v in env][:1] or \
        ['SLURM_JOB_NODELIST']
    needed += [v for v in ('MASTER_PORT', 'SLURM_JOB_ID') if v in env][:1] or ['SLURM_JOB_ID']
    missing = [v for v in needed if v not in env]
    if missing:
        raise LaunchError(f"srun started {env['SLURM_NTASKS']} tasks but {', '.join(missing)} "
                          f"is not set: set MASTER_ADDR (the first node's address) and "
                          f"MASTER_PORT, or run inside a SLURM job")
    master = env.get('MASTER_ADDR') or expand_nodelist(env['SLURM_JOB_NODELIST'])[0]
    if 'MASTER_PORT' in env:
        port = _int_var(env, 'MASTER_PORT', 1)
    else:
        port = SLURM_PORT_BASE + _int_var(env, 'SLURM_JOB_ID') % SLURM_PORT_SPAN
    world_size = _int_var(env, 'SLURM_NTASKS', 1)
    rank = _int_var(env, 'SLURM_PROCID')
    if rank >= world_size:
        raise LaunchError(f'SLURM_PROCID={rank} is not below SLURM_NTASKS={world_size}')
    num_nodes = (_int_var(env, 'SLURM_JOB_NUM_NODES', 1) if 'SLURM_JOB_NUM_NODES' in env
                 else len(expand_nodelist(env['SLURM_JOB_NODELIST']))
                 if 'SLURM_JOB_NODELIST' in env else 1)
    return Launch('slurm', rank, world_size, _int_var(env, 'SLURM_LOCALID'),
                  _int_var(env, 'SLURM_NODEID'), num_nodes, master, port)


def launch_from_env(env=None):
    """The Launch of this process from its environment (`os.environ` by default); a
    LaunchError names variables that are missing or malformed. Reads only."""
    env = os.environ if env is None else env
    if 'WORLD_SIZE' in env and _int_var(env, 'WORLD_SIZE', 1) > 1:
        return _torchrun_launch(env)
    present = [v for v in SLURM_TASK_VARS if v in env]
    if present and len(present) < len(SLURM_TASK_VARS):
        missing = [v for v in SLURM_TASK_VARS if v not in env]
        raise LaunchError(f"SLURM variables half set: {', '.join(f'{v}={env[v]}' for v in present)} "
                          f"but {', '.join(missing)} missing; start the tasks with srun (which "
                          f"sets all of {', '.join(SLURM_TASK_VARS)}) or unset them")
    if present and 'SLURM_STEP_ID' in env and _int_var(env, 'SLURM_NTASKS', 1) > 1:
        return _slurm_launch(env)
    return Launch('single', 0, 1, 0, 0, 1)


def _agent_store_shared(env):
    return env.get('TORCHELASTIC_USE_AGENT_STORE') == 'True'


def _attempt_store(launch, timeout):
    """The store of this torchrun attempt's process group: a client of the agent's shared store
    with the keys under 'sar/attempt_<restart count>' (see the module docstring), or None when
    the agent shares no store (torch's env:// start then makes a fresh one)."""
    if launch.launcher != 'torchrun' or not _agent_store_shared(os.environ):
        return None
    store = dist.TCPStore(launch.master_addr, launch.master_port, is_master=False,
                          timeout=timeout)
    return dist.PrefixStore(f'sar/attempt_{restart_count()}', store)


def world_size_from_env():
    """The number of processes torchrun or srun started (1 without either)."""
    return launch_from_env().world_size


def restart_count():
    """How often torchrun restarted this process's worker group (TORCHELASTIC_RESTART_COUNT; 0
    otherwise)."""
    value = os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')
    return int(value) if value.isdigit() else 0


def group_restart_count():
    """The largest restart_count() over the ranks (collective). Each torchrun agent counts the
    failures of its own workers only: after a worker on node 1 died, node 1's agent says 1 and
    node 0's 0, though both groups were restarted; the whole group must resume alike."""
    return max(all_gather_objects(restart_count()))


def init_distributed(device, timeout_s=DEFAULT_TIMEOUT_S):
    """Initialise the process group when started by torchrun or srun with more than one
    process (see the module docstring).

    Args:
        device: 'cuda' or 'cpu' (selects nccl or gloo; on CUDA the local rank picks the GPU).
        timeout_s: seconds to wait for the other processes (set-up and every collective).
    Returns:
        (rank, world_size, torch.device for this process). A LaunchError names the master
        address when the group cannot be formed within the timeout.
    """
    launch = launch_from_env()
    if device == 'cuda':
        if not torch.cuda.is_available():
            raise RuntimeError("device='cuda' but CUDA is not available on this machine: run "
                               "with --device cpu (or install a CUDA build of torch and a driver)")
        torch_device = torch.device('cuda', _local_gpu(launch))
        torch.cuda.set_device(torch_device)
    else:
        torch_device = torch.device('cpu')
    if launch.world_size > 1 and not dist.is_initialized():
        backend = 'nccl' if device == 'cuda' else 'gloo'
        timeout = datetime.timedelta(seconds=timeout_s)
        where = f'{launch.master_addr}:{launch.master_port}'
        try:
            if launch.launcher == 'slurm' and launch.rank > 0:
                _wait_for_master(launch, timeout_s)
            store = _attempt_store(launch, timeout)
            if launch.launcher == 'slurm':
                dist.init_process_group(backend, init_method=f'tcp://{where}', rank=launch.rank,
                                        world_size=launch.world_size, timeout=timeout)
            elif store is not None:
                dist.init_process_group(backend, store=store, rank=launch.rank,
                                        world_size=launch.world_size, timeout=timeout)
            else:
                dist.init_process_group(backend, timeout=timeout)
        except (dist.DistError, RuntimeError, OSError) as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise _unreachable(launch, timeout_s, reason.rstrip('.')) from None
    return launch.rank, launch.world_size, torch_device


def _local_gpu(launch):
    """The GPU index of this process: its local rank, or 0 when the launcher made exactly one
    GPU visible to it (srun --gpus-per-task=1 / --gpu-bind sets CUDA_VISIBLE_DEVICES per task)."""
    count = torch.cuda.device_count()
    if count == 1:
        return 0
    if launch.local_rank >= count:
        raise LaunchError(f'local rank {launch.local_rank} ({launch.launcher}) has no GPU: this '
                          f'node shows {count} GPUs; start at most {count} processes per node '
                          f'(--nproc_per_node, srun --ntasks-per-node) or one GPU per task')
    return launch.local_rank


def _unreachable(launch, timeout_s, reason):
    return LaunchError(
        f'rank {launch.rank} of {launch.world_size} ({launch.launcher}) could not form the '
        f'process group with the master at {launch.master_addr}:{launch.master_port} within '
        f'{timeout_s:g} s: {reason}. Check that rank 0 runs and that this address and port are '
        f'reachable (MASTER_ADDR / MASTER_PORT), or raise --dist_timeout')


def _wait_for_master(launch, timeout_s):
    """Wait until the master's port accepts connections (LaunchError after timeout_s), so an
    unreachable master gets one message instead of the store's C++ log of each retry."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((launch.master_addr, launch.master_port),
                                          timeout=min(5.0, timeout_s)):
                return
        except OSError as err:
            if time.monotonic() >= deadline:
                raise _unreachable(launch, timeout_s, err.strerror or str(err)) from None
            time.sleep(0.5)


def rank_layout():
    """One line per node: 'node n (host): ranks a-b' of the running group (collective)."""
    launch = launch_from_env()
    entries = all_gather_objects((launch.node_rank, socket.gethostname(), launch.rank))
    nodes = {}
    for node, host, rank in entries:
        nodes.setdefault((node, host), []).append(rank)
    return [f'node {node} ({host}): ranks {", ".join(map(str, sorted(ranks)))}'
            for (node, host), ranks in sorted(nodes.items())]


def free_port():
    """A localhost TCP port nobody listens on right now (the system picks it), for a process
    group started on one machine (tests, benchmarks) instead of a fixed port that parallel runs
    would share."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


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


BATCH_NORM_STATISTICS = ('running_mean', 'running_var')
BATCH_NORM_TYPES = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d,
                    torch.nn.SyncBatchNorm)


def average_batch_norm_statistics(module):
    """Replace every BatchNorm layer's running_mean and running_var by their mean over the
    ranks, in one all-reduce of the flattened statistics. No-op in a single process.

    DDP keeps the parameters identical, but each rank updates its running statistics (moving
    averages) from its own batches; after this every rank, and the checkpoint, holds the same
    statistics: the mean of the ranks' moving averages. num_batches_tracked is the same on
    every rank and stays; other buffers (e.g. the MANO template) are not touched.
    """
    if not is_distributed():
        return
    stats = [getattr(m, name) for m in module.modules() if isinstance(m, BATCH_NORM_TYPES)
             for name in BATCH_NORM_STATISTICS if getattr(m, name, None) is not None]
    if not stats:
        return
    flat = torch.cat([s.reshape(-1).to(torch.float64) for s in stats])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for s in stats:
        s.copy_(flat[offset:offset + s.numel()].view_as(s))
        offset += s.numel()
