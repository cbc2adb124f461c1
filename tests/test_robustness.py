"""Bad input and interruptions: errors come before side effects, name what is wrong, print as
one message; interrupted writes leave nothing broken and nothing behind."""
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import config
import test as test_script
import train
from dataset import FreiHAND, Preprocessing
from synthetic.fixture import make_freihand
from utils.errors import CheckpointError, DataError
from utils.files.atomic import atomic_torch_save, remove_stale_temporaries

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp('robust')
    make_freihand(str(root / 'FreiHAND'), num_samples=2, num_eval=2)
    return root


# (arguments, what the message must name: the field, and its bad value where there is one)
BAD_CONFIGS = [
    (['--input_img_shape', '100,100'], ['input_img_shape', '(100, 100)']),
    (['--input_img_shape', '96,128'], ['input_img_shape', '(96, 128)']),
    (['--num_stage', '0'], ['num_stage=0']),
    (['--batch_size', '0'], ["'batch_size' = 0", '>= 1']),
    (['--lr', '-1'], ["'lr' = -1.0", '> 0.0']),
    (['--lr', 'nan'], ["'lr' = nan"]),
    (['--save_epoch', '0'], ["'save_epoch' = 0", '>= 1']),
    (['--print_iter', '0'], ["'print_iter' = 0", '>= 1']),
    (['--num_worker', '-2'], ["'num_worker' = -2", '>= 0']),
    (['--depth_box', '0'], ["'depth_box' = 0.0", '> 0.0']),
    (['--experiment_name', 'a/b'], ["'experiment_name' = 'a/b'"]),
    (['--continue_train'], ['continue_train', "'checkpoint'"]),
]


@pytest.mark.parametrize('argv', [['--pre', 'no/such.pth.tar'],
                                  ['--continue_train', '--checkpoint', 'no/such.pth.tar']])
def test_missing_checkpoint_for_training_is_refused_before_anything_is_written(tmp_path, argv):
    out = tmp_path / 'out'
    with pytest.raises(CheckpointError, match='checkpoint not found: no/such.pth.tar'):
        train.main(['--device', 'cpu', '--output_root', str(out), *argv])
    assert not out.exists()


@pytest.mark.parametrize('argv, named', BAD_CONFIGS, ids=[' '.join(a) for a, _ in BAD_CONFIGS])
def test_bad_configuration_is_refused_before_anything_is_written(tmp_path, argv, named):
    out = tmp_path / 'out'
    common = ['--device', 'cpu', '--output_root', str(out)]
    with pytest.raises(config.ConfigError) as err:
        train.main([*common, *argv])
    for name in named:
        assert name in str(err.value), (name, str(err.value))
    assert not out.exists()  # no log, no config.json, no checkpoint folder


def test_test_py_refuses_bad_sizes_and_missing_checkpoints_before_writing(tmp_path):
    out = tmp_path / 'out'
    ckpt = tmp_path / 'x.pth'
    torch.save({'net': {}}, ckpt)  # read at resolve time (for its stored configuration)
    with pytest.raises(config.ConfigError, match='input_img_shape'):
        test_script.main(['--device', 'cpu', '--output_root', str(out), '--checkpoint', str(ckpt),
                          '--input_img_shape', '96,128'])
    with pytest.raises(CheckpointError, match='checkpoint not found: nowhere.pth'):
        test_script.main(['--device', 'cpu', '--output_root', str(out), '--checkpoint', 'nowhere.pth'])
    assert not out.exists()


@pytest.mark.parametrize('world_size, accumulate', [(3, 1), (2, 3)])
def test_batch_not_divisible_by_world_size_is_refused_before_writing(tmp_path, monkeypatch,
                                                                     world_size, accumulate):
    # torchrun's variables of rank 0 (the process group is never started: the check is first).
    for name, value in {'WORLD_SIZE': world_size, 'RANK': 0, 'LOCAL_RANK': 0,
                        'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': 1}.items():
        monkeypatch.setenv(name, str(value))
    out = tmp_path / 'out'
    with pytest.raises(config.ConfigError, match=f'batch_size 64 is not divisible by the world '
                                                 f'size {world_size} x accumulate {accumulate} = '
                                                 f'{world_size * accumulate}'):
        train.main(['--device', 'cpu', '--output_root', str(out), '--accumulate', str(accumulate)])
    assert not out.exists()


def _truncate(path, keep=0.6):
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:int(len(data) * keep)])


def test_truncated_training_jpeg_is_named_in_the_main_process(tiny, tmp_path, caplog):
    root = tmp_path / 'FreiHAND'
    make_freihand(str(root), num_samples=2, num_eval=2)
    _truncate(root / 'training' / 'rgb' / '00000001.jpg')
    ds = FreiHAND('training', root=str(root))
    with caplog.at_level(logging.WARNING):
        ds.get_item_with_aug(1)
        ds.get_item_with_aug(1)  # named once per file
        ds.get_item_with_aug(0)  # an intact image says nothing
    named = [r.getMessage() for r in caplog.records if '00000001.jpg' in r.getMessage()]
    assert len(named) == 1 and 'truncated' in named[0] and 'Re-extract' in named[0], named
    assert not any('00000000.jpg' in r.getMessage() for r in caplog.records)


def test_truncated_training_jpeg_is_named_from_a_dataloader_worker(tmp_path):
    # In a fresh process, as train.py runs: logging set up first, then forked workers.
    root = tmp_path / 'FreiHAND'
    make_freihand(str(root), num_samples=2, num_eval=2)
    _truncate(root / 'training' / 'rgb' / '00000005.jpg')
    code = ('import sys\n'
            'from torch.utils.data import DataLoader\n'
            'from dataset import FreiHAND, Preprocessing, worker_init_fn\n'
            'from utils.runtime.logger import setup_logger\n'
            f'setup_logger({str(tmp_path / "train.log")!r})\n'
            f'ds = FreiHAND("training", root={str(root)!r}, preprocessing=Preprocessing(input_img_shape=(64, 64)))\n'
            'for _ in DataLoader(ds, batch_size=4, num_workers=1, worker_init_fn=worker_init_fn):\n'
            '    pass\n')
    result = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for text in (result.stdout, (tmp_path / 'train.log').read_text()):
        assert '00000005.jpg is truncated' in text, text


def test_stale_temporaries_of_dead_processes_are_removed_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    stale = tmp_path / f'.snapshot_3.pth.tar.{dead.pid}.abc123.tmp'
    live = tmp_path / f'.snapshot_4.pth.tar.{os.getpid()}.def456.tmp'
    other = tmp_path / f'.notes.txt.{dead.pid}.ghi789.tmp'
    video = tmp_path / f'.walk_mesh.mp4.{dead.pid}.jkl012.tmp.mp4'  # OpenCV keeps the extension
    for path in (stale, live, other, video):
        path.write_bytes(b'partial')
    assert remove_stale_temporaries(tmp_path, 'snapshot_*.pth.tar') == [str(stale)]
    assert not stale.exists() and live.exists() and other.exists()
    assert remove_stale_temporaries(tmp_path, 'walk*') == [str(video)]


class _InterruptingFile:
    """A file whose third write raises KeyboardInterrupt, as a Ctrl-C in the middle of a save."""

    def __init__(self, f):
        self.f, self.calls = f, 0

    def write(self, data):
        self.calls += 1
        if self.calls == 3:
            raise KeyboardInterrupt
        return self.f.write(data)

    def flush(self):
        self.f.flush()


def test_ctrl_c_during_a_checkpoint_write_is_a_plain_interruption(tmp_path, monkeypatch):
    path = tmp_path / 'snapshot_0.pth.tar'
    atomic_torch_save({'net': {'w': torch.ones(3)}}, str(path))
    real_save = torch.save
    monkeypatch.setattr(torch, 'save', lambda obj, f: real_save(obj, _InterruptingFile(f)))
    # Without the handling, torch's zip writer replaces the interruption with
    # "RuntimeError: [enforce fail at inline_container.cc] . unexpected pos".
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({'net': {'w': torch.zeros(100000)}}, str(path))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ['snapshot_0.pth.tar']  # the partial file is gone
    torch.testing.assert_close(torch.load(path, weights_only=True)['net']['w'], torch.ones(3))


# Each script once as a process (its `__main__` goes through run_main), what the message names.
@pytest.mark.parametrize('script, args, named', [
    ('train.py', ['--device', 'cpu', '--num_stage', '0'], 'num_stage=0'),
    ('test.py', ['--device', 'cpu', '--checkpoint', 'missing.pth.tar'], 'missing.pth.tar'),
    ('demo.py', ['--device', 'cpu', '--input', 'nothing.png', '--checkpoint', 'missing.pth.tar'], ''),
])
def test_expected_errors_print_one_message_without_traceback(tmp_path, script, args, named):
    result = subprocess.run([sys.executable, os.path.join(REPO, script), *args], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, 'PYTHONPATH': REPO})
    assert result.returncode == 1, result.stderr
    assert f'{script}: error: ' in result.stderr and named in result.stderr, result.stderr
    assert 'Traceback' not in result.stderr


def test_a_data_error_after_the_set_up_prints_one_message(tmp_path, capsys, monkeypatch):
    from utils.runtime.launch import run_main
    args = ['--device', 'cpu', '--data_root', str(tmp_path / 'no' / 'root'),
            '--output_root', str(tmp_path / 'out')]
    assert run_main(train.main, args, 'train.py') == 1
    err = capsys.readouterr().err
    assert 'train.py: error: ' in err and str(tmp_path / 'no' / 'root') in err
    assert 'Traceback' not in err
    # With SAR_TRACEBACK=1 the same error keeps its traceback: it propagates.
    monkeypatch.setenv('SAR_TRACEBACK', '1')
    with pytest.raises(DataError, match='no/root'):
        run_main(train.main, args, 'train.py')


@pytest.mark.slow
def test_rendering_leaves_no_opengl_noise_at_exit(tmp_path):
    code = ('import logging, sys\n'
            'import numpy as np\n'
            'logging.basicConfig(level=logging.INFO, stream=sys.stdout)\n'
            'from utils.vis.render import render_mesh\n'
            'verts = np.array([[0, 0, 0.5], [0.05, 0, 0.5], [0, 0.05, 0.5]])\n'
            'K = np.array([[100, 0, 32], [0, 100, 32], [0, 0, 1.0]])\n'
            'print("rendered", render_mesh(verts, np.array([[0, 1, 2]]), K, (64, 64))[0].shape)\n')
    result = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                            text=True, timeout=300,
                            env={**os.environ, 'PYOPENGL_PLATFORM': os.environ.get('PYOPENGL_PLATFORM', 'osmesa')})
    assert result.returncode == 0, result.stderr
    assert 'rendered (64, 64, 3)' in result.stdout
    assert 'Platform import failed' not in result.stdout + result.stderr
    assert 'OpenGL_accelerate' not in result.stdout + result.stderr


def test_run_main_turns_ctrl_c_into_one_line(capsys):
    from utils.runtime.launch import run_main

    def interrupted(argv):
        raise KeyboardInterrupt

    assert run_main(interrupted, [], 'train.py') == 130
    err = capsys.readouterr().err
    assert 'train.py: interrupted' in err and 'Traceback' not in err

    def bug(argv):
        raise ZeroDivisionError('a real bug')

    with pytest.raises(ZeroDivisionError):  # unexpected errors keep their traceback
        run_main(bug, [], 'train.py')


@pytest.mark.slow
def test_vis_skips_a_prediction_that_cannot_be_drawn(tmp_path, caplog, standin):
    from utils.vis.panels import render_results

    root = tmp_path / 'FreiHAND'
    gt = make_freihand(str(root), num_samples=1, num_eval=2)
    dataset = FreiHAND('evaluation', root=str(root), preprocessing=Preprocessing(input_img_shape=(64, 64)))
    verts = gt['eval_verts'].copy()
    verts[0, :, 2] *= -1  # an early checkpoint's mesh behind the camera
    faces = standin['f'].astype(np.int64)
    with caplog.at_level(logging.WARNING):
        paths = render_results(dataset, gt['eval_xyz'], verts, faces, str(tmp_path / 'vis'), 2)
    assert [os.path.basename(p) for p in paths] == ['00000001.png']
    assert any('not rendering prediction 0' in r.getMessage() and 'in front of the camera' in r.getMessage()
               for r in caplog.records)


@pytest.mark.skipif(torch.cuda.is_available(), reason='a GPU is visible: cuda is a valid device')
def test_cuda_without_a_gpu_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / 'out'
    with pytest.raises(config.ConfigError, match="device='cuda' but CUDA is not available.*--device cpu"):
        train.main(['--output_root', str(out)])  # config.py's default device is cuda
    assert not out.exists()
