"""The shared, memory-mapped .npy cache of annotation arrays (docs/method.md §1): used by every
data set reader (dataset/freihand/annotations.py parses FreiHAND's JSON files into it,
dataset/ho3d/reader.py its meta-pickle tables).

`cached_array` opens `<cache_dir>/<stem>.npy` (np.lib.format) with its record `<stem>.npy.meta`
(JSON: what the array was built from, e.g. a source file's size and mtime_ns, and its shape)
with np.load(mmap_mode='r'): read-only pages of the page cache, so every rank and DataLoader
worker of a node shares one copy. A stale, truncated or unreadable cache is rebuilt (with a
WARNING saying why), never used. Builds run under an exclusive flock on `<stem>.lock`, so
concurrent ranks build once and the others wait, then map the result; the file is written to a
temporary name and renamed, so nothing partial is ever visible. `resolve_cache_dir` picks the
folder: `<data_root>/.sar_cache`, or under ~/.cache/sar/annotations when the root is read-only.
"""
import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os

import numpy as np

from utils.errors import DataError
from utils.files.atomic import atomic_open, atomic_write_json

logger = logging.getLogger(__name__)

CACHE_FOLDER = '.sar_cache'  # 'auto' cache folder inside the data root
CACHE_FORMAT = 1  # version of the .npy.meta record
META_SUFFIX = '.meta'  # <stem>.npy.meta: JSON record of the source a cache was built from


def _open_cache(npy_path, source, entry_shape, dtype=np.float32):
    """(read-only memmap, None) for a valid cache, else (None, why not); why is None if absent."""
    if not os.path.exists(npy_path):
        return None, None
    try:
        with open(npy_path + META_SUFFIX) as f:
            record = json.load(f)
        with open(npy_path, 'rb') as f:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f'.npy format version {version}')
            shape, fortran_order, stored = read_header(f)
            data_offset, size = f.tell(), os.fstat(f.fileno()).st_size
    except FileNotFoundError as err:
        return None, f'is incomplete: {err.filename} is missing (an interrupted build?)'
    except (OSError, ValueError) as err:
        return None, f'is unreadable ({err})'
    if not isinstance(record, dict) or record.get('format') != CACHE_FORMAT:
        return None, f'has a record {npy_path + META_SUFFIX} of another format'
    changed = [f'{key} {record.get(key)} -> {value}' for key, value in source.items() if record.get(key) != value]
    if changed:
        return None, f'is stale: the JSON file changed ({", ".join(changed)})'
    expected = tuple(record.get('shape') or ())
    if stored != dtype or fortran_order or shape != expected or shape[1:] != entry_shape:
        return None, (f'holds {stored} {shape}, its record says {np.dtype(dtype)} {expected}, the '
                      f'caller N x {entry_shape}')
    implied = data_offset + np.dtype(dtype).itemsize * math.prod(shape)
    if size != implied:
        state = 'truncated' if size < implied else 'too long'
        return None, f'is {state}: {size} bytes where its header implies {implied}'
    try:
        return np.load(npy_path, mmap_mode='r', allow_pickle=False), None
    except (OSError, ValueError) as err:
        return None, f'is unreadable ({err})'


def write_npy(path, array):
    """np.save to `path` atomically."""
    with atomic_open(path, 'wb') as f:
        np.save(f, np.ascontiguousarray(array), allow_pickle=False)


def write_record(npy_path, source, origin):
    """The `<stem>.npy.meta` record of a cache just written at `npy_path`: the `source` fields
    (what the cache was built from, compared at every open), the array's shape and `origin`."""
    atomic_write_json(npy_path + META_SUFFIX, dict(
        format=CACHE_FORMAT, source=origin,
        shape=[int(n) for n in np.load(npy_path, mmap_mode='r').shape], **source))


def cached_array(npy_path, source, entry_shape, build, dtype=np.float32, what='annotations'):
    """Read-only memmap of the cache `npy_path` (N x entry_shape of `dtype`), built first by
    `build(npy_path)` when it is absent, stale (its record disagrees with `source`, a dict of
    JSON values describing the inputs), truncated or unreadable.

    `build` writes the .npy (atomically, e.g. `write_npy`) and then its record (`write_record`);
    it runs under an exclusive flock on `<stem>.lock`, so concurrent ranks build once and the
    others wait, then map the result. `what` names the inputs in messages. Raises DataError for
    an unusable cache folder or a build that did not give a valid cache.
    """
    entry_shape = tuple(int(s) for s in entry_shape)
    array, _ = _open_cache(npy_path, source, entry_shape, dtype)
    if array is not None:
        return array
    cache_dir = os.path.dirname(npy_path)
    stem = os.path.basename(npy_path)[:-len('.npy')]
    try:
        os.makedirs(cache_dir, exist_ok=True)
        lock = os.open(os.path.join(cache_dir, stem + '.lock'), os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise DataError(f'cannot write in the annotation cache folder {cache_dir} ({err}); make it writable, '
                        'or use another folder or no cache (cache_dir=None).') from err
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info('waiting for another process to build %s', npy_path)
            fcntl.flock(lock, fcntl.LOCK_EX)
        array, reason = _open_cache(npy_path, source, entry_shape, dtype)  # built meanwhile?
        if array is None:
            if reason is None:
                logger.info('building the annotation cache %s from %s', npy_path, what)
            else:
                logger.warning('annotation cache %s %s: rebuilding it from %s', npy_path, reason, what)
            # Builds write temporary files only under this lock: the ones left are from killed builds.
            prefix = f'.{stem}.npy.'
            for name in os.listdir(cache_dir):
                if name in (stem + '.npy', stem + '.npy' + META_SUFFIX) or (
                        name.startswith(prefix) and name.endswith('.tmp')):
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(os.path.join(cache_dir, name))
            build(npy_path)
            array, reason = _open_cache(npy_path, source, entry_shape, dtype)
    finally:
        os.close(lock)  # releases the lock
    if array is None:
        raise DataError(f'{what} changed while its cache {npy_path} was built ({reason}); run again.')
    return array


def resolve_cache_dir(data_root, setting='auto'):
    """The annotation cache folder for the data set at `data_root`, or None for no cache.

    setting: 'auto': `<data_root>/.sar_cache` if that folder exists and is writable or can be
    created, else `$XDG_CACHE_HOME/sar/annotations/<first 12 hex digits of sha1(abspath(data_root))>`
    (XDG_CACHE_HOME defaults to ~/.cache), else None with a warning; None or 'off': None;
    anything else: that folder.
    """
    if setting is None or setting == 'off':
        logger.info('annotation cache off')
        return None
    if setting != 'auto':
        logger.info('annotation cache: %s', os.fspath(setting))
        return os.fspath(setting)
    data_root = os.path.abspath(os.fspath(data_root))
    xdg = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    digest = hashlib.sha1(data_root.encode('utf-8', 'surrogateescape'), usedforsecurity=False).hexdigest()[:12]
    candidates = (os.path.join(data_root, CACHE_FOLDER), os.path.join(xdg, 'sar', 'annotations', digest))
    for folder in candidates:
        parent = folder
        while not os.path.exists(parent):  # the nearest existing folder must let us create it
            parent = os.path.dirname(parent)
        if os.path.isdir(parent) and os.access(parent, os.W_OK | os.X_OK):
            with contextlib.suppress(OSError):
                os.makedirs(folder, exist_ok=True)
                logger.info('annotation cache: %s', folder)
                return folder
    logger.warning('annotation cache off: neither %s nor %s is a writable folder', *candidates)
    return None
