"""utils.runtime.launch: the experiment lock of train.py, and starts that must fail cleanly (a running
experiment, half-set SLURM variables, an unreachable master): one message, exit 1, nothing
written."""
import os
import subprocess
import sys

import pytest

from utils.runtime.distributed import free_port
from utils.runtime.launch import LOCK_FILE, ExperimentLock, ExperimentLockedError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
HOLD = ('import sys; from utils.runtime.launch import ExperimentLock; '
        'ExperimentLock(sys.argv[1]).acquire(); print("held", flush=True); sys.stdin.read()')


def hold_lock(folder):
    """A live process holding the lock of `folder` until its stdin closes."""
    holder = subprocess.Popen([sys.executable, '-c', HOLD, str(folder)], cwd=REPO,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == 'held\n'
    return holder


def test_lock_holds_the_pid_and_is_removed_on_release(tmp_path):
    lock = ExperimentLock(str(tmp_path / 'exp')).acquire()
    path = tmp_path / 'exp' / LOCK_FILE
    assert path.read_text() == f'{os.getpid()}\n' and lock.note == ''
    with pytest.raises(ExperimentLockedError, match=f'pid {os.getpid()}'):
        ExperimentLock(str(tmp_path / 'exp')).acquire()  # a second open file: refused too
    lock.release()
    assert not path.exists()


def test_a_live_holder_is_named_and_a_dead_ones_lock_is_taken_over(tmp_path):
    holder = hold_lock(tmp_path)
    with pytest.raises(ExperimentLockedError) as err:
        ExperimentLock(str(tmp_path)).acquire()
    assert f'pid {holder.pid}' in str(err.value) and str(tmp_path / LOCK_FILE) in str(err.value)
    holder.kill()  # SIGKILL: no clean-up, the file and its pid stay
    holder.wait()
    assert (tmp_path / LOCK_FILE).read_text() == f'{holder.pid}\n'
    lock = ExperimentLock(str(tmp_path)).acquire()
    assert str(tmp_path / LOCK_FILE) in lock.note and str(holder.pid) in lock.note
    assert (tmp_path / LOCK_FILE).read_text() == f'{os.getpid()}\n'
    lock.release()


def run_train(tmp_path, *args, env=None):
    out = tmp_path / 'out'
    cmd = [sys.executable, os.path.join(REPO, 'train.py'), '--device', 'cpu', '--output_root',
           str(out), '--experiment_name', 'exp', '--data_root', str(tmp_path / 'no_data'), *args]
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(('SLURM_', 'MASTER_', 'RANK', 'WORLD_SIZE', 'LOCAL_RANK'))}
    return subprocess.run(cmd, cwd=tmp_path, env={**clean, **(env or {})}, capture_output=True,
                          text=True, timeout=300)


def files_under(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder)
                  for d, _, files in os.walk(folder) for f in files)


@pytest.mark.slow
def test_a_second_train_py_into_a_running_experiment_refuses_to_start(tmp_path):
    folder = tmp_path / 'out' / 'checkpoint' / 'exp'
    holder = hold_lock(folder)
    try:
        result = run_train(tmp_path)
    finally:
        holder.stdin.close()
        holder.wait()
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('train.py: error: '), result.stderr
    for named in (f'pid {holder.pid}', str(folder / LOCK_FILE), '--experiment_name'):
        assert named in lines[0], (named, lines[0])
    assert files_under(tmp_path / 'out') == [os.path.join('checkpoint', 'exp', LOCK_FILE)]


SRUN_RANK_1 = {'SLURM_PROCID': '1', 'SLURM_NTASKS': '2', 'SLURM_LOCALID': '1',
               'SLURM_NODEID': '0', 'SLURM_STEP_ID': '0', 'SLURM_JOB_ID': '7',
               'SLURM_JOB_NODELIST': 'localhost'}


@pytest.mark.slow
@pytest.mark.parametrize('env, named', [
    # The half-set variables and the missing ones are named.
    ({'SLURM_PROCID': '0', 'SLURM_NTASKS': '2'},
     ['SLURM_PROCID=0', 'SLURM_NTASKS=2', 'SLURM_LOCALID', 'SLURM_NODEID']),
    # The rank, the launcher, the unreachable master's address and the timeout are named.
    ({**SRUN_RANK_1, 'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': 'PORT'},
     ['rank 1 of 2', 'slurm', '127.0.0.1:PORT', '3 s']),
])
def test_bad_launches_print_one_message_and_write_nothing(tmp_path, env, named):
    port = str(free_port())  # nobody listens there: the master is unreachable
    env = {k: v.replace('PORT', port) for k, v in env.items()}
    result = run_train(tmp_path, '--dist_timeout', '3', env=env)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('train.py: error: '), result.stderr
    for name in named:
        assert name.replace('PORT', port) in lines[0], (name, lines[0])
    assert not (tmp_path / 'out').exists()
