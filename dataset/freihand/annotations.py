"""FreiHAND's annotation files (JSON arrays of fixed-shape entries) as arrays, through the shared
annotation cache (utils/files/annotations.py; docs/method.md §1).

`load_annotation` parses a JSON file once with the bulk parser (json_numbers.py) into
`<cache_dir>/<json stem>.npy` (float32) with its record (the source's size and mtime_ns, the
array shape); later calls memory-map it. `exact=True` reads the file as json.load does
(json_values.py checks it) into a float64 `<stem>.f64.npy`: the evaluation ground truth.
"""
import io
import math
import os

import numpy as np

from dataset.freihand import json_numbers
from dataset.freihand.json_numbers import CHUNK_BYTES, FIX, read_float_array
from dataset.freihand.json_values import entries_to_array, read_json
from utils.errors import DataError
from utils.files.annotations import (CACHE_FORMAT, META_SUFFIX, cached_array, write_npy,
                                     write_record)
from utils.files.atomic import atomic_open, atomic_write_json


def _build_exact_cache(json_path, npy_path, entry_shape, what, source):
    """The float64 cache: json.load (Python's correctly rounded conversion, as the leaderboard
    reads its files) into `npy_path`, then its record. Called under the build lock."""
    write_npy(npy_path, parse_exact(json_path, entry_shape, what))
    write_record(npy_path, source, os.path.abspath(json_path))


def parse_exact(json_path, entry_shape, what):
    """float64 N x entry_shape array of `json_path` exactly as json.load reads it (validated by
    dataset/freihand/json_values.py); for the small files that must be exact (the evaluation ground truth)."""
    value, type_scan = read_json(json_path, what, DataError)
    return entries_to_array(value, json_path, '', entry_shape, dtype=np.float64,
                            type_scan=type_scan, error=DataError, item='entry')


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
