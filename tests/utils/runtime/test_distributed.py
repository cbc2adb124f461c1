"""utils.distributed: launch variables (torchrun, srun), the SLURM node list, the store of each
torchrun attempt, the restart count every rank agrees on, and the BatchNorm statistics averaged
over a two-process gloo group."""
import datetime
import os

import pytest
import torch
import torch.multiprocessing as mp

from utils.runtime import distributed
from utils.errors import LaunchError


@pytest.mark.parametrize('nodelist, hosts', [
    ('node01', ['node01']),
    ('node[01-04,07]', ['node01', 'node02', 'node03', 'node04', 'node07']),
    ('gpu[8-10],login1', ['gpu8', 'gpu9', 'gpu10', 'login1']),
    ('a[1-2]-b[01,03]', ['a1-b01', 'a1-b03', 'a2-b01', 'a2-b03']),
    ('x[009-011],y', ['x009', 'x010', 'x011', 'y']),
])
def test_expand_nodelist(nodelist, hosts):
    assert distributed.expand_nodelist(nodelist) == hosts


@pytest.mark.parametrize('nodelist', ['', 'node[01-', 'node[a-b]', 'n[3-1]', 'n,,m', 'n]'])
def test_malformed_nodelist_is_named(nodelist):
    with pytest.raises(LaunchError, match='SLURM_JOB_NODELIST'):
        distributed.expand_nodelist(nodelist)


SRUN = {'SLURM_PROCID': '3', 'SLURM_NTASKS': '4', 'SLURM_LOCALID': '1', 'SLURM_NODEID': '1',
        'SLURM_STEP_ID': '0', 'SLURM_JOB_ID': '123456', 'SLURM_JOB_NODELIST': 'gpu[07-08]'}


def test_srun_variables_give_the_group():
    launch = distributed.launch_from_env(SRUN)
    # Port: 15000 + 123456 % 20000 = 15000 + 3456.
    assert launch == distributed.Launch('slurm', 3, 4, 1, 1, 2, 'gpu07', 18456)
    overridden = distributed.launch_from_env({**SRUN, 'MASTER_ADDR': '10.0.0.1',
                                              'MASTER_PORT': '29000'})
    assert (overridden.master_addr, overridden.master_port) == ('10.0.0.1', 29000)


def test_batch_script_shell_without_srun_is_one_process():
    env = {k: v for k, v in SRUN.items() if k != 'SLURM_STEP_ID'}
    assert distributed.launch_from_env(env).world_size == 1


@pytest.mark.parametrize('drop, message', [
    ('SLURM_LOCALID', 'SLURM variables half set: .* but SLURM_LOCALID missing'),
    ('SLURM_JOB_NODELIST', 'SLURM_JOB_NODELIST is not set: set MASTER_ADDR'),
    ('SLURM_JOB_ID', 'SLURM_JOB_ID is not set'),
])
def test_half_set_srun_variables_are_named(drop, message):
    env = {k: v for k, v in SRUN.items() if k != drop}
    with pytest.raises(LaunchError, match=message):
        distributed.launch_from_env(env)


def test_torchrun_variables():
    env = {'RANK': '2', 'WORLD_SIZE': '4', 'LOCAL_RANK': '0', 'LOCAL_WORLD_SIZE': '2',
           'GROUP_RANK': '1', 'MASTER_ADDR': 'h0', 'MASTER_PORT': '29500'}
    assert distributed.launch_from_env(env) == distributed.Launch('torchrun', 2, 4, 0, 1, 2,
                                                                  'h0', 29500)
    with pytest.raises(LaunchError, match='WORLD_SIZE=4 is set but RANK not'):
        distributed.launch_from_env({k: v for k, v in env.items() if k != 'RANK'})


ELASTIC_NODE = {'RANK': '1', 'WORLD_SIZE': '2', 'LOCAL_RANK': '0', 'LOCAL_WORLD_SIZE': '1',
                'GROUP_RANK': '1', 'GROUP_WORLD_SIZE': '2', 'MASTER_ADDR': 'h0',
                'MASTER_PORT': '29500', 'TORCHELASTIC_MAX_RESTARTS': '3',
                'TORCHELASTIC_USE_AGENT_STORE': 'True'}


def test_restarts_on_several_nodes_need_an_unshared_store():
    # Each agent counts its own restarts: the per-attempt prefix could differ between nodes.
    with pytest.raises(LaunchError, match='--max-restarts 3 on 2 nodes.*'
                                          'TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1'):
        distributed.launch_from_env(ELASTIC_NODE)
    for fine in ({'TORCHELASTIC_USE_AGENT_STORE': 'False'},  # what that variable gives
                 {'TORCHELASTIC_MAX_RESTARTS': '0'},
                 {'GROUP_WORLD_SIZE': '1', 'LOCAL_WORLD_SIZE': '2', 'GROUP_RANK': '0'}):
        assert distributed.launch_from_env({**ELASTIC_NODE, **fine}).rank == 1


def test_each_torchrun_attempt_has_its_own_keys_in_the_shared_store(monkeypatch):
    server = torch.distributed.TCPStore('127.0.0.1', 0, is_master=True, wait_for_workers=False)
    launch = distributed.Launch('torchrun', 0, 2, 0, 0, 1, '127.0.0.1', server.port)
    timeout = datetime.timedelta(seconds=10)
    monkeypatch.setenv('TORCHELASTIC_USE_AGENT_STORE', 'True')
    monkeypatch.setenv('TORCHELASTIC_RESTART_COUNT', '0')
    distributed._attempt_store(launch, timeout).set('0//cpu//0/0', 'dead address')
    assert server.get('sar/attempt_0/0//cpu//0/0') == b'dead address'
    monkeypatch.setenv('TORCHELASTIC_RESTART_COUNT', '1')
    assert not distributed._attempt_store(launch, timeout).check(['0//cpu//0/0'])
    monkeypatch.setenv('TORCHELASTIC_USE_AGENT_STORE', 'False')
    assert distributed._attempt_store(launch, timeout) is None  # torch's env:// start


def test_gpu_of_a_process(monkeypatch):
    launch = distributed.Launch('slurm', 3, 4, 1, 0, 1, 'h', 1)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 4)
    assert distributed._local_gpu(launch) == 1  # all the node's GPUs visible: the local rank's
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 1)
    assert distributed._local_gpu(launch) == 0  # srun bound one GPU to the task
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    with pytest.raises(LaunchError, match='local rank 3 .* this node shows 2 GPUs'):
        distributed._local_gpu(launch._replace(local_rank=3))


# ---- BatchNorm statistics over a gloo group -------------------------------------------------
class Net(torch.nn.Module):
    """A BatchNorm layer and a float buffer that is not a BatchNorm statistic."""

    def __init__(self, rank):
        super().__init__()
        self.bn = torch.nn.BatchNorm1d(3)
        self.bn.running_mean.fill_(float(rank))  # ranks 0, 1: mean 0.5
        self.bn.running_var.fill_(1.0 + 2 * rank)  # 1, 3: mean 2
        self.bn.num_batches_tracked.fill_(5)
        self.register_buffer('template', torch.full((2,), 10.0 * (rank + 1)))


def _average_on_rank(rank, port, results):
    torch.distributed.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                                         rank=rank, world_size=2)
    calls = []
    real = torch.distributed.all_reduce
    torch.distributed.all_reduce = lambda tensor, *a, **k: (calls.append(tensor.numel()),
                                                            real(tensor, *a, **k))[1]
    net = Net(rank)
    distributed.average_batch_norm_statistics(net)
    torch.distributed.all_reduce = real
    torch.save({'state': net.state_dict(), 'calls': calls}, os.path.join(results, f'{rank}.pt'))
    torch.distributed.destroy_process_group()


def _restart_count_on_rank(rank, port, results):
    os.environ['TORCHELASTIC_RESTART_COUNT'] = str(rank)  # node 1's agent saw the failure
    torch.distributed.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                                         rank=rank, world_size=2)
    torch.save(distributed.group_restart_count(), os.path.join(results, f'{rank}.pt'))
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_every_rank_resumes_when_any_agent_restarted(tmp_path):
    mp.spawn(_restart_count_on_rank, args=(distributed.free_port(), str(tmp_path)), nprocs=2)
    assert [torch.load(tmp_path / f'{r}.pt') for r in range(2)] == [1, 1]


@pytest.mark.slow
def test_only_batch_norm_statistics_are_averaged_in_one_collective(tmp_path):
    mp.spawn(_average_on_rank, args=(distributed.free_port(), str(tmp_path)), nprocs=2)
    for rank in range(2):
        out = torch.load(tmp_path / f'{rank}.pt', weights_only=True)
        state = out['state']
        assert out['calls'] == [6]  # one all-reduce of the 3 + 3 statistics
        assert torch.equal(state['bn.running_mean'], torch.full((3,), 0.5))
        assert torch.equal(state['bn.running_var'], torch.full((3,), 2.0))
        assert int(state['bn.num_batches_tracked']) == 5
        assert torch.equal(state['template'], torch.full((2,), 10.0 * (rank + 1)))  # untouched
