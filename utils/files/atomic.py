"""Atomic file writes: a reader never sees a half-written file, an interruption never
destroys the previous version, and the temporaries a killed process leaves are recognisable.

Temporary files are named `.<name>.<pid>.<random>.tmp` beside the target (videos keep their
extension after it, `.tmp.mp4`, as OpenCV picks the format from it), so that
`remove_stale_temporaries` can delete those of processes that no longer run (a SIGKILL during a
write leaves one behind) without touching a live writer's.
"""
import contextlib
import errno
import fnmatch
import glob
import json
import os
import re
import tempfile

from utils.errors import OutputError

_TMP_NAME = re.compile(r'^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.tmp(\.\w+)?$')  # .tmp.mp4 too
_SAFE_PROBE_UMASK = 0o077  # set for an instant by the fallback probe: never more permissive


def _read_umask():
    """The process umask, read once at import.

    os.umask can only be read by setting it, and a file another thread creates in that
    instant gets the temporary mask. Linux reports it in /proc/self/status ('Umask:' line,
    kernel >= 4.7), which changes nothing; elsewhere the probe sets 0o077 for the instant, so
    such a file is at worst private to its owner, never world-writable.
    """
    with contextlib.suppress(OSError, ValueError):
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    previous = os.umask(_SAFE_PROBE_UMASK)
    os.umask(previous)
    return previous


UMASK = _read_umask()  # the permissions plain open() would give: 0o666 & ~UMASK


def make_temporary(path, extension=''):
    """Create the temporary file of an atomic write of `path`, beside it, with the permissions
    a plain open() of `path` would give (mkstemp makes it 0600). Returns (fd, temporary path).

    Its name is `.<name>.<pid>.<random>.tmp<extension>` (`remove_stale_temporaries` knows it);
    `extension` (e.g. '.mp4') is for writers that pick the format from the name.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.{os.getpid()}.',
                               suffix=f'.tmp{extension}', dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~UMASK)
    except BaseException:
        os.close(fd)
        os.remove(tmp)
        raise
    return fd, tmp


def output_error(path, err):
    """OutputError for an OSError met while writing `path`: one sentence naming the file and
    the cause (raise it `from None`: the chain of the failed write adds nothing)."""
    code = f' ({errno.errorcode[err.errno]})' if err.errno in errno.errorcode else ''
    cause = err.strerror or str(err)
    where = f' ({err.filename})' if err.filename and os.fspath(err.filename) != path else ''
    previous = ' (its previous version is unchanged)' if os.path.exists(path) else ''
    return OutputError(f'cannot write {path}{previous}: {cause}{code}{where}; free space, or '
                       f'make the folder writable, or choose another output folder')


def os_error_in(err):
    """The OSError in `err`'s chain of causes and contexts (itself included), or None: some
    writers (torch.save) report a failed write as another error raised while handling it."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


@contextlib.contextmanager
def atomic_open(path, mode='w', **kwargs):
    """Open a temporary file beside `path`; on success rename it over `path`.

    On any exception the temporary file is removed and `path` is left untouched; an OSError
    of the write (no space left, no permission, a read-only folder) becomes one OutputError
    naming `path` and the cause.
    """
    path = os.fspath(path)
    try:
        fd, tmp = make_temporary(path)
    except OSError as err:
        raise output_error(path, err) from None
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if isinstance(err, OSError) and not isinstance(err, OutputError):
            raise output_error(path, err) from None
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
    except OutputError:
        raise
    except Exception as err:
        if _interrupted(err.__context__):
            raise KeyboardInterrupt from None
        failed_write = os_error_in(err)  # torch's zip writer wraps it in a RuntimeError
        if failed_write is not None:
            raise output_error(os.fspath(path), failed_write) from None
        raise
