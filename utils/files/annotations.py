"""FreiHAND's annotation arrays through a shared, memory-mapped .npy cache (docs/method.md §1).

`load_annotation` parses a JSON file once with the bulk parser (utils/files/json_numbers.py) into
`<cache_dir>/<json stem>.npy` (np.lib.format, float32) with the record `<stem>.npy.meta` (JSON:
the source's size and mtime_ns, the array shape). A valid cache is opened with
np.load(mmap_mode='r'): read-only pages of the page cache, so every rank and DataLoader worker
of a node shares one copy. A stale, truncated or unreadable cache is rebuilt (with a WARNING
saying why), never used. Builds run under an exclusive flock on `<stem>.lock`, so concurrent
ranks build once and the others wait, then map the result; the file is written to a temporary
name and renamed, so nothing partial is ever visible. `resolve_cache_dir` picks the folder:
`<data_root>/.sar_cache`, or under ~/.cache/sar/annotations when the root is read-only.
"""
import contextlib
import fcntl
import hashlib
import io
import json
import logging
import math
import os

import numpy as np

from utils.errors import DataError
from utils.files.atomic import atomic_open, atomic_write_json
from utils.files import json_numbers
from utils.files.json_numbers import CHUNK_BYTES, FIX, read_float_array
from utils.files.json_values import entries_to_array, read_json

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


def _build_exact_cache(json_path, npy_path, entry_shape, what, source):
    """The float64 cache: json.load (Python's correctly rounded conversion, as the leaderboard
    reads its files) into `npy_path`, then its record. Called under the build lock."""
    write_npy(npy_path, parse_exact(json_path, entry_shape, what))
    write_record(npy_path, source, os.path.abspath(json_path))


def parse_exact(json_path, entry_shape, what):
    """float64 N x entry_shape array of `json_path` exactly as json.load reads it (validated by
    utils/files/json_values.py); for the small files that must be exact (the evaluation ground truth)."""
    value, type_scan = read_json(json_path, what, DataError)
    return entries_to_array(value, json_path, '', entry_shape, dtype=np.float64,
                            type_scan=type_scan, error=DataError, item='entry')


def write_npy(path, array):
    """np.save to `path` atomically."""
    with atomic_open(path, 'wb') as f:
        np.save(f, np.ascontiguousarray(array), allow_pickle=False)


def _build_cache(json_path, npy_path, entry_shape, what, chunk_bytes, source):
    """Parse `json_path` straight into the .npy `npy_path` (never holding the array), then write
    its record. Called under the build lock, after removing any invalid cache."""
    def header(count):
        buffer = io.BytesIO()
        np.lib.format.write_array_header_1_0(buffer, {'descr': '<f4', 'fortran_order': False,
                                                      'shape': (count,) + entry_shape})
        return buffer.getvalue()

    count = 0
    with atomic_open(npy_path, 'wb') as f:
        f.write(header(0))  # numpy pads headers so that any count fits in the same length
        for values in json_numbers.iter_values(json_path, entry_shape, what, chunk_bytes):
            f.write(values.astype('<f4', copy=False).data)
            count += len(values)
        f.seek(0)
        f.write(header(count // math.prod(entry_shape)))
    shape = [count // math.prod(entry_shape), *entry_shape]
    atomic_write_json(npy_path + META_SUFFIX, dict(format=CACHE_FORMAT, source=os.path.abspath(json_path),
                                                 shape=shape, **source))


def load_annotation(json_path, entry_shape, cache_dir, what='annotation file', chunk_bytes=CHUNK_BYTES,
                    exact=False):
    """float32 N x entry_shape array of the JSON file `json_path`, through the .npy cache.

    json_path: e.g. <root>/training_verts.json with entry_shape (778, 3), or the evaluator's
        evaluation_xyz.json (21, 3) and evaluation_verts.json (778, 3) (meters).
    cache_dir: the cache folder (see `resolve_cache_dir`), or None to parse without a cache.
    exact: float64 values exactly as json.load reads them (parsed whole: for the evaluation
        ground truth, whose errors are compared with thresholds), cached as `<stem>.f64.npy`;
        False: float32 by the bulk parser (the training annotations).
    Returns a read-only np.memmap of `<cache_dir>/<stem>.npy`, built first if it is absent,
    stale, truncated or unreadable; without cache_dir, the parsed array. Raises DataError for
    a missing or malformed file or an unusable cache folder.
    """
    json_path, entry_shape = os.fspath(json_path), tuple(int(s) for s in entry_shape)
    if cache_dir is None:
        if exact:
            return parse_exact(json_path, entry_shape, what)
        return read_float_array(json_path, entry_shape, what, chunk_bytes)
    dtype = np.float64 if exact else np.float32
    cache_dir, stem = os.fspath(cache_dir), os.path.splitext(os.path.basename(json_path))[0]
    if exact:
        stem += '.f64'
    npy_path = os.path.join(cache_dir, stem + '.npy')
    try:
        stat = os.stat(json_path)
        source = {'source_size': stat.st_size, 'source_mtime_ns': stat.st_mtime_ns}
    except OSError as err:
        raise DataError(f'cannot read {what} {json_path} ({err}); {FIX}.') from err

    def build(path):
        if exact:
            _build_exact_cache(json_path, path, entry_shape, what, source)
        else:
            _build_cache(json_path, path, entry_shape, what, chunk_bytes, source)

    array = cached_array(npy_path, source, entry_shape, build, dtype, json_path)
    if os.stat(json_path).st_mtime_ns != source['source_mtime_ns']:
        raise DataError(f'{what} {json_path} changed while its cache {npy_path} was built; run again.')
    return array


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
