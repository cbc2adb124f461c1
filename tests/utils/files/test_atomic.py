"""Atomic writes: the temporaries get the permissions of a plain open(), without ever setting
the process umask (another thread would create files with the temporary mask); a write that
fails leaves the previous file and no temporary."""
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch

from utils.files.video import atomic_video_writer
from utils.files import atomic
from utils.files.atomic import atomic_torch_save
from utils.runtime.checkpoint import load_checkpoint


def _never_set_umask(*args):
    raise AssertionError(f'os.umask{args} called while writing: a file another thread creates '
                         f'now gets that mask')


def test_the_umask_is_read_once_without_setting_it():
    # A child process with umask 027: the module reads 027 at import (from /proc/self/status
    # on Linux), and importing it left the umask as it was.
    code = ('import os; os.umask(0o027); from utils.files import atomic; '
            'print(oct(atomic.UMASK), oct(os.umask(0o022)))')
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    out = subprocess.run([sys.executable, '-c', code], cwd=repo, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ['0o27', '0o27']


@pytest.mark.parametrize('umask', [0o022, 0o077])
def test_atomic_files_get_the_permissions_of_a_plain_open(tmp_path, monkeypatch, umask):
    monkeypatch.setattr(atomic, 'UMASK', umask)
    monkeypatch.setattr(os, 'umask', _never_set_umask)
    path = tmp_path / 'pred.json'
    atomic.atomic_write_json(path, [1, 2])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask
    assert path.read_text() == '[1, 2]'


def test_the_video_writer_uses_the_same_temporary_helper(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, 'UMASK', 0o027)
    monkeypatch.setattr(os, 'umask', _never_set_umask)
    path = tmp_path / 'clip.mp4'
    with atomic_video_writer(path, 10.0, (32, 32)) as writer:
        names = os.listdir(tmp_path)
        assert len(names) == 1 and names[0].startswith('.clip.mp4.') and names[0].endswith('.tmp.mp4')
        writer.write(np.zeros((32, 32, 3), np.uint8))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / 'snapshot_0.pth.tar'
    atomic_torch_save({'net': {'w': torch.ones(3)}}, str(path))

    def broken_save(obj, f):
        f.write(b'partial bytes')
        raise OSError('disk full')

    monkeypatch.setattr(torch, 'save', broken_save)
    with pytest.raises(OSError, match='disk full'):
        atomic_torch_save({'net': {'w': torch.zeros(3)}}, str(path))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ['snapshot_0.pth.tar']  # no temporary file left behind
    torch.testing.assert_close(load_checkpoint(str(path))['net']['w'], torch.ones(3))
