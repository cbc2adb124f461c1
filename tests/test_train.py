"""train.py and test.py end to end on a tiny FreiHAND-layout folder (CPU)."""
import json
import math
import os
import re
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

import test as test_script
import train
from inference import network
from training import loop
from synthetic.fixture import make_freihand
from tests.helpers import GroundTruthModel
from dataset.freihand import eval as freihand_eval
from utils.errors import CheckpointError
from utils.runtime.checkpoint import load_checkpoint, snapshot_path
from utils.runtime.distributed import free_port
from utils.transforms import encode_uvd

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def workspace(tmp_path_factory, random_mano_dir):
    root = tmp_path_factory.mktemp('train')
    make_freihand(str(root / 'FreiHAND'), num_samples=3, num_eval=3)
    (root / 'mano').symlink_to(random_mano_dir, target_is_directory=True)
    return root


def small_args(workspace, out, *extra):
    """A small but complete configuration: the real network at 64 px with ResNet-18."""
    return ['--device', 'cpu', '--backbone', 'resnet18', '--input_img_shape', '64,64',
            '--pretrained_backbone', 'false', '--batch_size', '4', '--num_worker', '0',
            '--total_epoch', '2', '--print_iter', '1', '--amp', 'off',
            '--data_root', str(workspace / 'FreiHAND'), '--mano_root', str(workspace / 'mano'),
            '--output_root', str(out), '--experiment_name', 'tiny', *extra]


def test_train_resume_and_extend_continue_with_saved_optimizer_and_schedule(workspace, tmp_path,
                                                                             monkeypatch):
    """A run interrupted after epoch 0 and resumed continues with the saved optimizer state,
    schedule and weights; extending the finished run to 4 epochs at another rate rebuilds the
    schedule (one tiny model trained through all three)."""
    out = tmp_path / 'out'
    real_epoch = loop.train_one_epoch

    def stop_at_epoch_1(*args, epoch, **kwargs):
        if epoch == 1:
            raise KeyboardInterrupt  # the run is interrupted after epoch 0 was saved
        return real_epoch(*args, epoch=epoch, **kwargs)

    monkeypatch.setattr(loop, 'train_one_epoch', stop_at_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        train.main(small_args(workspace, out))
    saved = load_checkpoint(str(snapshot_path(out / 'checkpoint' / 'tiny', 0)))
    assert saved['last_epoch'] == 0
    assert not os.path.exists(snapshot_path(out / 'checkpoint' / 'tiny', 1))

    seen = {}

    def record(model, loader, optimizer, options, *, epoch, **kwargs):
        seen['epoch'] = epoch
        seen['lr'] = optimizer.param_groups[0]['lr']
        seen['state'] = {k: {n: t.clone() for n, t in v.items() if torch.is_tensor(t)}
                         for k, v in optimizer.state_dict()['state'].items()}
        seen['weights'] = {k: v.clone() for k, v in model.state_dict().items()}
        return real_epoch(model, loader, optimizer, options, epoch=epoch, **kwargs)

    monkeypatch.setattr(loop, 'train_one_epoch', record)
    train.main(small_args(workspace, out, '--resume', 'auto', '--eval_interval', '1'))
    assert seen['epoch'] == 1
    # Cosine schedule after one of two epochs: lr = lr0 * (1 + cos(pi * 1 / 2)) / 2.
    assert seen['lr'] == pytest.approx(3e-4 * (1 + math.cos(math.pi / 2)) / 2, abs=1e-12)
    for key, state in saved['optimizer']['state'].items():
        assert int(seen['state'][key]['step']) == int(state['step'])
        torch.testing.assert_close(seen['state'][key]['exp_avg'], state['exp_avg'])
    for key, value in saved['net'].items():
        torch.testing.assert_close(seen['weights'][key], value)
    final = load_checkpoint(str(snapshot_path(out / 'checkpoint' / 'tiny', 1)))
    assert final['last_epoch'] == 1
    assert json.loads((out / 'checkpoint' / 'tiny' / 'config.json').read_text())['input_img_shape'] == [64, 64]
    log = (out / 'log' / 'train_tiny.log').read_text()
    assert '[Epoch 1/2][Batch 3/3][lr ' in log and '[loss_coord_1: ' in log and '[loss_edge_0: ' in log
    assert log.count('Evaluation 3D KP ALIGNED results:') == 1  # eval_interval 1, one epoch run

    # The same command again without --resume auto (the common slip after a crash) is refused
    # before anything is written: every checkpoint, config.json and the log stay as they were.
    def folder_bytes():
        return {p.name: p.read_bytes() for p in (out / 'checkpoint' / 'tiny').iterdir()}
    before, log_before = folder_bytes(), (out / 'log' / 'train_tiny.log').read_bytes()
    with pytest.raises(CheckpointError) as refusal:
        train.main(small_args(workspace, out))
    message = str(refusal.value)
    assert str(out / 'checkpoint' / 'tiny') in message and 'snapshot_1.pth.tar' in message
    assert '--resume auto' in message and '--experiment_name' in message
    assert folder_bytes() == before
    assert (out / 'log' / 'train_tiny.log').read_bytes() == log_before

    # Extended to 4 epochs at another rate, with a killed save's leftover in the folder.
    ckpt_dir = out / 'checkpoint' / 'tiny'
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    stale = ckpt_dir / f'.snapshot_1.pth.tar.{dead.pid}.x1y2z3.tmp'
    stale.write_bytes(b'partial')
    lrs = {}

    def record_lr(model, loader, optimizer, options, *, epoch, **kwargs):
        lrs[epoch] = optimizer.param_groups[0]['lr']
        return real_epoch(model, loader, optimizer, options, epoch=epoch, **kwargs)

    monkeypatch.setattr(loop, 'train_one_epoch', record_lr)
    train.main(small_args(workspace, out, '--resume', 'auto', '--total_epoch', '4', '--lr', '1e-4'))
    # The 4-epoch cosine of the new rate, continued at epoch 2: lr0 (1 + cos(pi e / 4)) / 2.
    assert sorted(lrs) == [2, 3]
    assert lrs[2] == pytest.approx(1e-4 * (1 + math.cos(math.pi * 2 / 4)) / 2, rel=1e-9)
    assert lrs[3] == pytest.approx(1e-4 * (1 + math.cos(math.pi * 3 / 4)) / 2, rel=1e-9)
    log = (out / 'log' / 'train_tiny.log').read_text()
    assert 'resuming with a changed schedule: total_epoch 2 -> 4, lr 3.000e-04 -> 1.000e-04' in log
    assert f'removed {stale}' in log and not stale.exists()
    assert load_checkpoint(str(snapshot_path(ckpt_dir, 3)))['schedule']['T_max'] == 4


def test_non_finite_loss_stops_with_iteration_and_term(workspace, tmp_path):
    out = tmp_path / 'out'
    # An absurd learning rate blows the weights up after the first step.
    with pytest.raises(loop.NonFiniteLossError, match=r"non-finite loss '\w+_\d' = \S+ at epoch 0, iteration 2/3"):
        train.main(small_args(workspace, out, '--lr', '1e30'))
    assert not os.path.exists(snapshot_path(out / 'checkpoint' / 'tiny', 0))


def test_checkpoint_mismatch_lists_keys(workspace, tmp_path):
    ckpt = tmp_path / 'bad.pth.tar'
    torch.save({'net': {'extract_mid.0.weight': torch.zeros(1), 'nonsense': torch.zeros(1)}}, ckpt)
    with pytest.raises(RuntimeError, match=r"(?s)missing keys: .*unexpected keys: nonsense.*shape mismatches"):
        test_script.main(small_args(workspace, tmp_path / 'out', '--checkpoint', str(ckpt)))


def test_test_py_decodes_ground_truth_uvd_to_ground_truth_xyz(workspace, tmp_path, monkeypatch):
    """A model that outputs the docs/method.md §3 encoding of the ground truth must give back the ground
    truth through test.py's docs/method.md §7 decoding (with the true root depth)."""
    root = tmp_path / 'FreiHAND'
    gt = make_freihand(str(root), num_samples=1, num_eval=5, seed=3)
    entries = [{'image_id': j, 'bbox': [47, 47, 130, 130], 'root_cam': gt['eval_xyz'][j, 0].tolist()}
               for j in range(5)]
    (root / 'bbox_root_freihand_output.json').write_text(json.dumps(entries))

    from dataset import get_dataset
    dataset = get_dataset('FreiHAND', 'evaluation', root=str(root), input_img_shape=(64, 64))
    targets = np.stack([encode_uvd(gt['eval_verts'][j], gt['eval_xyz'][j], gt['eval_K'][j],
                                   dataset[j][2]['img2bb_trans'], crop_size=(64, 64))
                        for j in range(5)])

    monkeypatch.setattr(network, 'build_network', lambda *a, **k: GroundTruthModel(targets))
    monkeypatch.setattr(network, 'load_net_state', lambda *a, **k: None)
    ckpt = tmp_path / 'any.pth.tar'
    torch.save({'net': {}}, ckpt)
    out = tmp_path / 'out'
    args = small_args(workspace, out, '--checkpoint', str(ckpt), '--test_batch_size', '2')
    args[args.index('--data_root') + 1] = str(root)
    test_script.main(args)
    xyz, verts = json.loads((out / 'pred.json').read_text())
    # float32 coords: about 1e-7 relative; 1e-5 m is far below any hand error.
    np.testing.assert_allclose(np.array(xyz), gt['eval_xyz'], atol=1e-5)
    np.testing.assert_allclose(np.array(verts), gt['eval_verts'], atol=1e-5)
    scores = (out / 'eval' / 'scores.txt').read_text()
    assert 'xyz_mean3d' in scores


def start_group(commands, **env_extra):
    """Start [(argv, env additions)] together; wait for all; return their CompletedProcess-like
    (returncode, output) pairs."""
    procs = []
    try:
        for argv, env in commands:
            full_env = {**os.environ, 'OMP_NUM_THREADS': '1', **env_extra, **env}
            procs.append(subprocess.Popen(argv, cwd=REPO, env=full_env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True,
                                          start_new_session=True))
        return [(p.returncode, out) for p, out in ((p, p.communicate(timeout=600)[0])
                                                   for p in procs)]
    finally:  # a hang or a failure leaves no launcher or worker behind
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def rank_weights(folder):
    return [torch.load(folder / f'rank{r}.pt', weights_only=True) for r in range(2)]


def assert_equal_weights(a, b, what):
    assert a.keys() == b.keys(), what
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, (what, different[:5])


TORCHRUN = [sys.executable, '-m', 'torch.distributed.run']
HARNESS = ['-m', 'tests.ddp_harness']


@pytest.mark.slow
def test_two_nodes_srun_tasks_and_elastic_restarts_train_the_same_weights(workspace, tmp_path):
    """World size 2 four ways: two torchrun agents as two nodes (c10d rendezvous); two
    processes with SLURM's variables set by hand (no torchrun); one torchrun agent of 2 workers,
    one of which SIGKILLs itself inside epoch 1 (--max-restarts 1: the group is restarted and
    resumes from snapshot_0 without --resume); the same on two agents as two nodes (with
    TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1, which that needs). All eight ranks end with the same
    weights: the data order, augmentation and dropout depend on (seed, epoch, step, rank) only.

    In both restarts the new rank 0 joins 3 s late, so rank 1 looks up rank 0's address first:
    with the process group's keys shared across attempts it would read the dead group's address
    and be refused or hang (docs/clusters.md); each attempt's own keys make that order
    harmless."""
    def args(name):
        return small_args(workspace, tmp_path / name, '--num_stage', '1', '--print_iter', '3',
                          '--dist_timeout', '60')

    def torchrun(name, port, nodes, procs, *extra):
        return [*TORCHRUN, f'--nnodes={nodes}', f'--nproc_per_node={procs}', *extra,
                '--rdzv-backend=c10d', f'--rdzv-endpoint=127.0.0.1:{port}', f'--rdzv-id=sar-{name}',
                *HARNESS, str(tmp_path / f'{name}_weights'), *args(name)]

    restart = {'SAR_HARNESS_KILL_STEP': '5',  # 3 steps per epoch: epoch 1, step 2
               'SAR_HARNESS_LATE_RANK': '0'}
    slurm = {'SLURM_NTASKS': '2', 'SLURM_NODEID': '0', 'SLURM_STEP_ID': '0',
             'SLURM_JOB_ID': '4242', 'SLURM_JOB_NODELIST': 'localhost'}
    launches = {
        'nodes': lambda port: [(torchrun('nodes', port, 2, 1), {}) for _ in range(2)],
        'srun': lambda port: [([sys.executable, *HARNESS, str(tmp_path / 'srun_weights'),
                                *args('srun')],
                               {**slurm, 'MASTER_PORT': str(port), 'SLURM_PROCID': str(r),
                                'SLURM_LOCALID': str(r)}) for r in range(2)],
        'elastic': lambda port: [(torchrun('elastic', port, 1, 2, '--max-restarts=1'), restart)],
        'elastic_nodes': lambda port: [
            (torchrun('elastic_nodes', port, 2, 1, '--max-restarts=1'),
             {**restart, 'TORCH_DISABLE_SHARE_RDZV_TCP_STORE': '1'}) for _ in range(2)],
    }
    for name, launch in launches.items():  # one after the other: 2 cores, less contention
        for code, output in start_group(launch(free_port())):
            assert code == 0, (name, output[-4000:])

    reference = rank_weights(tmp_path / 'nodes_weights')[0]
    for name in launches:
        for r, weights in enumerate(rank_weights(tmp_path / f'{name}_weights')):
            assert_equal_weights(weights, reference, f'{name} rank {r}')
        # Rank 0 alone logs and writes: one log, each line once; the lock file is gone.
        folder = tmp_path / name / 'checkpoint' / 'tiny'
        assert sorted(os.listdir(folder)) == ['config.json', 'snapshot_0.pth.tar',
                                              'snapshot_1.pth.tar']
        assert_equal_weights(load_checkpoint(str(folder / 'snapshot_1.pth.tar'))['net'],
                             reference, f'{name} checkpoint')
    logs = {name: (tmp_path / name / 'log' / 'train_tiny.log').read_text() for name in launches}
    for log in logs.values():
        assert log.count('world size 2: batch 2 per process, 4 in total') == 1 or \
            'torchelastic restart 1' in log
    assert 'torchrun launch, 2 nodes' in logs['nodes']
    assert re.search(r'node 0 \(.+\): ranks 0\n.*node 1 \(.+\): ranks 1', logs['nodes'])
    assert 'slurm launch, 1 node\n' in logs['srun'] and re.search(r'node 0 \(.+\): ranks 0, 1',
                                                                 logs['srun'])
    for name in ('elastic', 'elastic_nodes'):
        assert logs[name].count('world size 2: batch 2 per process') == 2  # the restart too
        assert 'torchelastic restart 1: resuming from the newest checkpoint' in logs[name]
        assert 'snapshot_0.pth.tar' in logs[name].split('torchelastic restart 1')[1][:200]
    assert 'torchrun launch, 2 nodes' in logs['elastic_nodes']
    # A checkpoint from 2 processes loads in a single process.
    test_script.main(small_args(workspace, tmp_path / 'single', '--num_stage', '1',
                                '--checkpoint', str(tmp_path / 'nodes' / 'checkpoint' / 'tiny' /
                                                    'snapshot_1.pth.tar')))
    assert (tmp_path / 'single' / 'pred.json').exists()


# ---- monitoring (training.monitor): TensorBoard events, log-line suffix, curves -------------
LOG_LINE = re.compile(
    r'\[Epoch (\d+)/(\d+)\]\[Batch (\d+)/(\d+)\]\[lr (\S+)\]((?:\[loss_\w+: [\d.]+\])+)'
    r'\[(\d+\.\d) img/s\]\[data (\d+)%\]\[eta (\d+:\d\d:\d\d)\]$')
SPEED_TAGS = {'lr', 'speed/images_per_s', 'speed/data_wait_fraction'}


def read_scalars(path):
    """{tag: [(step, value)]} from a TensorBoard folder (purged events already dropped)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(path), size_guidance={'scalars': 0, 'images': 0})
    acc.Reload()
    return ({tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()['scalars']},
            acc.Tags()['images'])


def test_tensorboard_events_resume_and_curves(workspace, tmp_path, monkeypatch):
    pytest.importorskip('tensorboard')
    out = tmp_path / 'out'
    real_save = train.save_checkpoint

    def die_saving_epoch_1(state, folder, epoch):
        if epoch == 1:  # epoch 1 trained and logged, then the run dies before its checkpoint
            raise KeyboardInterrupt
        return real_save(state, folder, epoch)

    monkeypatch.setattr(train, 'save_checkpoint', die_saving_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        train.main(small_args(workspace, out, '--eval_interval', '1'))
    tb = out / 'tb' / 'tiny'
    interrupted, = os.listdir(tb)
    first, _ = read_scalars(tb / interrupted)
    assert [s for s, _ in first['loss/total']] == [1, 2, 3, 4, 5, 6]  # 3 iterations x 2 epochs

    monkeypatch.setattr(train, 'save_checkpoint', real_save)
    train.main(small_args(workspace, out, '--eval_interval', '1', '--resume', 'auto'))
    tags, images = read_scalars(tb)
    terms = [f'{kind}_{stage}' for stage in (0, 1) for kind in ('coord', 'normal', 'edge')]
    assert {f'loss/{t}' for t in terms} | {'loss/total'} | SPEED_TAGS <= set(tags)
    # print_iter 1: a point per iteration, global step = epoch * 3 + iteration; the resumed
    # run rewrote steps 4-6 (the interrupted run's ones are purged), no step twice.
    for tag in [f'loss/{t}' for t in terms] + ['loss/total', *SPEED_TAGS]:
        assert [s for s, _ in tags[tag]] == [1, 2, 3, 4, 5, 6], tag
    for i in range(6):
        terms_sum = sum(tags[f'loss/{t}'][i][1] for t in terms)
        assert tags['loss/total'][i][1] == pytest.approx(terms_sum, rel=1e-5)
        assert 0.0 <= tags['speed/data_wait_fraction'][i][1] <= 1.0
        assert tags['speed/images_per_s'][i][1] > 0
    assert tags['lr'][3][1] == pytest.approx(1.5e-4, rel=1e-6)  # cosine, epoch 1 of 2
    # Evaluation after each epoch, at the epoch's last step; four rendered results.
    assert [s for s, _ in tags['eval/xyz_al_mean3d']] == [3, 6]
    assert {f'eval/{k}' for k in freihand_eval.SCORE_KEYS} <= set(tags)
    assert sorted(images) == [f'eval/sample_{i}' for i in range(3)]  # 3 evaluation items

    log = (out / 'log' / 'train_tiny.log').read_text()
    lines = [m for m in map(LOG_LINE.search, log.splitlines()) if m]
    assert len(lines) == 3 + 3 + 3  # interrupted run: epochs 0 and 1; resumed run: epoch 1
    epoch, total, batch, num, lr, losses, rate, wait, eta = lines[-1].groups()
    assert (epoch, total, batch, num) == ('1', '2', '3', '3') and eta == '0:00:00'
    assert re.findall(r'loss_(\w+):', losses) == terms
    assert float(rate) > 0 and 0 <= int(wait) <= 100

    history = json.loads((out / 'log' / 'tiny_history.json').read_text())
    assert [e['epoch'] for e in history] == [0, 1]
    assert set(history[1]['loss']) == set(terms) and 'xyz_al_mean3d' in history[1]['eval']
    png = cv2.imread(str(out / 'log' / 'tiny_curves.png'))
    assert png.shape == (800, 1200, 3)


def test_tensorboard_false_writes_no_events_and_accumulate_2_trains(workspace, tmp_path,
                                                                    monkeypatch):
    out = tmp_path / 'out'
    micro_batches = []
    real_step = loop.accumulation_step

    def count(model, optimizer, batches, **kwargs):
        micro_batches.append([len(inputs['img']) for inputs, _ in batches])
        return real_step(model, optimizer, batches, **kwargs)

    monkeypatch.setattr(loop, 'accumulation_step', count)
    train.main(small_args(workspace, out, '--tensorboard', 'false', '--total_epoch', '1',
                          '--accumulate', '2'))
    assert micro_batches == [[2, 2]] * 3  # 12 items, 3 steps of 4 images in 2 micro-batches
    assert not (out / 'tb').exists()
    assert (out / 'log' / 'tiny_curves.png').exists()
    log = (out / 'log' / 'train_tiny.log').read_text()
    assert 'batch 4 per process, 4 in total, accumulated over 2 micro-batches of 2' in log
    assert len([line for line in log.splitlines() if LOG_LINE.search(line)]) == 3


# ---- resuming: the data order, augmentation and dropout of an uninterrupted run --------------
def final_weights(out, epoch):
    return load_checkpoint(str(snapshot_path(out / 'checkpoint' / 'tiny', epoch)))['net']


def test_stopped_and_resumed_runs_end_with_the_weights_of_a_straight_run(workspace, tmp_path):
    """3 epochs straight (no workers) against the same run SIGKILLed inside epoch 1 and again
    inside epoch 2, resumed each time with --resume auto (2 workers), and against one killed
    inside epoch 1 right after an iteration checkpoint (save_iter 1): equal weights, bit for bit.
    Every run is a fresh process with the same thread count (start_group: OMP_NUM_THREADS=1):
    on some CPUs the convolution backward sums in another order with another thread count, so
    bit-exact resume holds for the same thread count and device only (docs/training.md says so)."""
    args = ('--total_epoch', '3', '--num_stage', '1', '--print_iter', '3')

    def run(name, kill_step, *extra):
        argv = [sys.executable, *HARNESS, str(tmp_path / f'weights_{name}'),
                *small_args(workspace, tmp_path / name, *args, *extra)]
        (code, output), = start_group([(argv, {'SAR_HARNESS_KILL_STEP': kill_step,
                                               'SAR_HARNESS_KILL_RANK': '0'})])
        assert code == (-9 if kill_step != '0' else 0), output[-3000:]

    run('straight', '0')
    straight = final_weights(tmp_path / 'straight', 2)
    assert not all(torch.equal(straight[k], v)
                   for k, v in final_weights(tmp_path / 'straight', 0).items())

    # 3 steps an epoch: step 4 is epoch 1's first; resumed at epoch 1, step 4 is epoch 2's first.
    for kill_step in ('4', '4', '0'):
        run('workers', kill_step, '--num_worker', '2', '--resume', 'auto')
    log = (tmp_path / 'workers' / 'log' / 'train_tiny.log').read_text()
    assert 'continuing at epoch 1, lr' in log and 'continuing at epoch 2, lr' in log

    # Killed at step 6, after epoch 1's second iteration was saved.
    for kill_step in ('6', '0'):
        run('iterations', kill_step, '--save_iter', '1', '--resume', 'auto')
        if kill_step != '0':
            folder = tmp_path / 'iterations' / 'checkpoint' / 'tiny'
            # Epoch 1's first iteration snapshot was superseded by its second one.
            assert sorted(p for p in os.listdir(folder) if p.startswith('snapshot')) == [
                'snapshot_0.pth.tar', 'snapshot_1_iter2.pth.tar']
    log = (tmp_path / 'iterations' / 'log' / 'train_tiny.log').read_text()
    assert 'continuing at epoch 1, iteration 3' in log

    for name in ('workers', 'iterations'):
        resumed = final_weights(tmp_path / name, 2)
        assert resumed.keys() == straight.keys()
        different = [k for k in straight if not torch.equal(straight[k], resumed[k])]
        assert not different, (name, different[:5])
