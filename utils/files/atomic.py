"""Atomic file writes: a reader never sees a half-written file, an interruption never
destroys the previous version, and the temporaries a killed process leaves are recognisable.

Temporary files are named `.<name>.<pid>.<random>.tmp` beside the target (videos keep their
extension after it, `.tmp.mp4`, as OpenCV picks the format from it), so that
`remove_stale_temporaries` can delete those of processes that no longer run (a SIGKILL during a
write leaves one behind) without touching a live writer's.
"""
import contextlib
import fnmatch
import glob
import json
import os
import re
import tempfile

_TMP_NAME = re.compile(r'^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.tmp(\.\w+)?$')  # .tmp.mp4 too


@contextlib.contextmanager
def atomic_open(path, mode='w', **kwargs):
    """Open a temporary file beside `path`; on success rename it over `path`.

    On any exception the temporary file is removed and `path` is left untouched.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    prefix = f'.{os.path.basename(path)}.{os.getpid()}.'
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix='.tmp', dir=folder)
    # mkstemp creates the file 0600; give it the permissions a plain open() would (umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(folder, name_pattern='*'):
    """Delete the temporaries of `atomic_open` in `folder` whose target matches `name_pattern`
    (a glob, e.g. 'snapshot_*.pth.tar') and whose writing process is gone. Returns the
    removed paths; the temporaries of running processes (this one included) are kept."""
    removed = []
    for path in glob.glob(os.path.join(glob.escape(os.fspath(folder)), '.*.tmp*')):
        match = _TMP_NAME.match(os.path.basename(path))
        if not match or not fnmatch.fnmatch(match['name'], name_pattern):
            continue
        if _alive(int(match['pid'])):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
            removed.append(path)
    return removed


def atomic_write_json(path, obj, **json_kwargs):
    """Write `obj` as JSON to `path` atomically."""
    with atomic_open(path, 'w') as f:
        json.dump(obj, f, **json_kwargs)


def _interrupted(err):
    """True when `err` was raised while handling a KeyboardInterrupt (torch.save's zip writer
    raises 'unexpected pos' from its clean-up after a Ctrl-C in the middle of a write)."""
    while err is not None:
        if isinstance(err, KeyboardInterrupt):
            return True
        err = err.__context__
    return False


def atomic_torch_save(obj, path):
    """torch.save to `path` atomically (temporary file, fsync, rename).

    A Ctrl-C during the write removes the temporary file and raises KeyboardInterrupt (not the
    zip writer's follow-up error); `path` keeps its previous content.
    """
    import torch
    try:
        with atomic_open(path, 'wb') as f:
            torch.save(obj, f)
    except Exception as err:
        if _interrupted(err.__context__):
            raise KeyboardInterrupt from None
        raise
