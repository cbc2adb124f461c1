"""Atomic file writes: a reader never sees a half-written file, an interruption never
destroys the previous version."""
import contextlib
import json
import os
import tempfile


@contextlib.contextmanager
def atomic_open(path, mode='w', **kwargs):
    """Open a temporary file beside `path`; on success rename it over `path`.

    On any exception the temporary file is removed and `path` is left untouched.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=folder)
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


def atomic_write_json(path, obj, **json_kwargs):
    """Write `obj` as JSON to `path` atomically."""
    with atomic_open(path, 'w') as f:
        json.dump(obj, f, **json_kwargs)


def atomic_torch_save(obj, path):
    """torch.save to `path` atomically (temporary file, fsync, rename)."""
    import torch
    with atomic_open(path, 'wb') as f:
        torch.save(obj, f)
