"""An output that cannot be written (no space left, no permission, a read-only folder) is an
expected error: one line naming the file and the cause, the previous file intact."""
import errno
import os

import numpy as np
import pytest
import torch

from dataset.freihand.eval import write_pred
from utils.runtime.launch import run_main
from utils.errors import OutputError
from utils.files import atomic
from utils.runtime.checkpoint import save_checkpoint, snapshot_path
from utils.runtime.logger import setup_logger


def _no_space(*args):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _read_only_folder(*args, **kwargs):
    # Root ignores permission bits, so a read-only file system is simulated where it is met.
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), kwargs.get('dir'))


def _previous_pred(path):
    write_pred(path, np.zeros((1, 21, 3)), np.zeros((1, 778, 3)))
    return path.read_bytes()


def test_a_full_disk_while_writing_pred_json_is_one_line_and_keeps_the_previous_file(
        tmp_path, monkeypatch, capsys):
    path = tmp_path / 'pred.json'
    before = _previous_pred(path)
    monkeypatch.setattr(os, 'fsync', _no_space)  # where a full disk surfaces for buffered data
    code = run_main(lambda argv: write_pred(path, np.ones((1, 21, 3)), np.ones((1, 778, 3))),
                    [], 'test.py')
    err = capsys.readouterr().err
    assert code == 1 and 'Traceback' not in err and len(err.strip().splitlines()) == 1
    assert err.startswith(f'test.py: error: cannot write {path} (its previous version is unchanged)')
    assert 'No space left on device (ENOSPC)' in err
    assert path.read_bytes() == before and os.listdir(tmp_path) == ['pred.json']


def test_a_read_only_output_folder_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic.tempfile, 'mkstemp', _read_only_folder)
    with pytest.raises(OutputError) as err:
        atomic.atomic_write_json(tmp_path / 'out' / 'scores.json', {})
    assert str(tmp_path / 'out' / 'scores.json') in str(err.value)
    assert 'Read-only file system (EROFS)' in str(err.value)


def test_a_full_disk_while_saving_a_checkpoint_is_one_output_error(tmp_path, monkeypatch, capsys):
    save_checkpoint({'net': {'w': torch.ones(3)}}, str(tmp_path), 0)
    real_open = os.fdopen

    def fdopen_without_space(fd, mode='r', **kwargs):
        f = real_open(fd, mode, **kwargs)
        f.write = _no_space  # torch's zip writer reports it as a RuntimeError around it
        return f

    monkeypatch.setattr(atomic.os, 'fdopen', fdopen_without_space)
    code = run_main(lambda argv: save_checkpoint({'net': {'w': torch.zeros(100000)}},
                                                 str(tmp_path), 0), [], 'train.py')
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert code == 1 and 'Traceback' not in err and 'unexpected pos' not in err
    assert f'cannot write {snapshot_path(str(tmp_path), 0)}' in err and 'ENOSPC' in err
    saved = torch.load(snapshot_path(str(tmp_path), 0), weights_only=True)
    torch.testing.assert_close(saved['net']['w'], torch.ones(3))
    assert os.listdir(tmp_path) == ['snapshot_0.pth.tar']


def test_an_unwritable_log_folder_is_one_line(tmp_path, monkeypatch, capsys):
    def refuse(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)

    monkeypatch.setattr(os, 'makedirs', refuse)
    log_file = str(tmp_path / 'out' / 'log' / 'test.log')
    code = run_main(lambda argv: setup_logger(log_file), [], 'test.py')
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert code == 1 and 'Traceback' not in err
    assert err.startswith(f'test.py: error: {os.path.dirname(log_file)}: Permission denied (EACCES)')


def test_an_oserror_without_a_file_is_still_a_bug_with_its_traceback():
    with pytest.raises(OSError):
        run_main(lambda argv: _no_space(), [], 'test.py')
