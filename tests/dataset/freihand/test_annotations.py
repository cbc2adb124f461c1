"""dataset/freihand/annotations.py and utils/files/annotations.py: the bulk JSON parser against
json + numpy, and the shared .npy cache."""
import hashlib
import json
import logging
import multiprocessing
import os
import re

import numpy as np
import pytest

from dataset.freihand import annotations, json_numbers
from dataset.freihand.annotations import load_annotation
from dataset.freihand.json_numbers import read_float_array
from utils.files.annotations import resolve_cache_dir
from utils.errors import DataError

# Numbers json and float32 rounding treat specially: signed zeros ("-0" is the int 0), float32
# subnormals and their underflow, the float32 overflow threshold, huge and exact-midpoint ints,
# decimal exponents beyond 10^22 and long mantissas.
SPECIAL_NUMBERS = ['0', '-0', '0.0', '-0.0', '-0e3', '1e-45', '-1e-45', '7e-46', '1.4e-45', '1E-400',
                   '3.4028235e38', '3.4028235677973366e38', '3.402823567797337e38', '1e39', '-1e308',
                   '5e-324', '2.2250738585072014e-308', '1.1754943508222875e-38', '1.1754942e-38',
                   '16777217', '-16777219', '18014399583223809', '123456789012345678901234567890',
                   '-7', '1.5', '0.1', '1e22', '1e23', '9.999999999999999e22', '1e-22', '12E+2', '5e+0',
                   '1.00000005960464477539062', '1.0000000596046448', '1.0000000596046449',
                   '0.000123456789012345678', '12345678901234567890.5', '0.30000001192092896']


def write(path, text):
    with open(path, 'w') as f:
        f.write(text)
    return str(path)


def reference(path):
    """What the parser must return: json.load, then numpy's float32 conversion."""
    with open(path) as f:
        return np.asarray(json.load(f), dtype=np.float32)


def assert_bit_identical(array, expected):
    assert array.dtype == np.float32 and array.shape == expected.shape
    assert np.array_equal(array.view(np.uint32), expected.view(np.uint32))


def hard_numbers(rng, count):
    """float64 values at, and one ulp around, float32 rounding midpoints: double rounding bites here."""
    low = rng.uniform(1e-3, 1e3, count).astype(np.float32)
    mid = (low.astype(np.float64) + np.nextafter(low, np.float32(np.inf)).astype(np.float64)) / 2
    return np.concatenate([mid, np.nextafter(mid, 0), np.nextafter(mid, np.inf)]) * rng.choice([-1, 1], 3 * count)


# --- parser: values --------------------------------------------------------------------------------

@pytest.mark.parametrize('dump', [
    lambda obj: json.dumps(obj),
    lambda obj: json.dumps(obj, indent=2),
    lambda obj: json.dumps(obj, separators=(',', ':')),
    lambda obj: json.dumps(obj, indent='\t').replace('\n', '\r\n'),
], ids=['default', 'indent', 'compact', 'tabs-crlf'])
def test_values_equal_json_then_float32(tmp_path, dump):
    rng = np.random.default_rng(0)
    verts = rng.uniform(-0.1, 0.1, (6, 778, 3)) + [0.0, 0.0, 0.6]
    verts[0, :20] *= 10.0 ** rng.integers(-45, 39, (20, 3))  # exponents of every size
    verts[1, :, 0] = hard_numbers(rng, 778 // 3 + 1)[:778]
    obj = verts.tolist()
    obj[2][0] = [0, -3, 123456789012345678901]  # ints, as json reads them
    obj[2][1] = [-0.0, 0.0, 1e-45]
    path = write(tmp_path / 'verts.json', dump(obj))
    assert_bit_identical(read_float_array(path, (778, 3)), reference(path))


def test_special_numbers_and_long_mantissas(tmp_path):
    rng = np.random.default_rng(1)
    digits = ['%.25e' % x for x in hard_numbers(rng, 100)] + ['%.30f' % x for x in hard_numbers(rng, 100)]
    path = write(tmp_path / 'scale.json', '\n [ ' + ' ,\n'.join(SPECIAL_NUMBERS + digits) + ' ]\n\t')
    with np.errstate(over='ignore'):
        expected = reference(path)
    assert_bit_identical(read_float_array(path, ()), expected)
    assert np.signbit(read_float_array(path, ())[:4]).tolist() == [False, False, False, True]


@pytest.mark.parametrize('chunk_bytes', [1, 2, 3, 7, 64, 1000])
def test_chunk_boundaries_do_not_change_results(tmp_path, chunk_bytes):
    rng = np.random.default_rng(2)
    K = rng.uniform(200, 900, (7, 3, 3)) * 10.0 ** rng.integers(-30, 30, (7, 3, 3))
    obj = K.tolist()
    obj[3][1] = [-0, 12345678901234567890123, 1e-45]
    path = write(tmp_path / 'K.json', json.dumps(obj, indent=1))
    assert_bit_identical(read_float_array(path, (3, 3), chunk_bytes=chunk_bytes), reference(path))


def test_single_entry_and_shapes(tmp_path):
    path = write(tmp_path / 'one.json', '[[[1, 2], [3, 4], [5, 6]]]')
    assert read_float_array(path, (3, 2)).tolist() == [[[1, 2], [3, 4], [5, 6]]]
    assert read_float_array(write(tmp_path / 'n.json', '[2.5]'), ()).tolist() == [2.5]


# --- parser: malformed files ---------------------------------------------------------------------

# (text, entry shape, expected message fragment, byte offset of the problem, entry or None)
MALFORMED = [
    ('[[1, 2], [3, 4]', (2,), 'not valid JSON: the list is not closed', 15, 1),
    ('[[1, 2], [3, 4], [5', (2,), 'truncated', 19, 2),
    ('', (2,), 'is empty', 0, None),
    ('  \n', (2,), 'is empty', 3, None),
    ('[]', (2,), 'empty list', 1, None),
    ('[ ]', (), 'empty list', 2, None),
    ('{"K": [1, 2]}', (2,), "not a list (it starts with '{')", 0, None),
    ('3.5', (), "not a list (it starts with '3')", 0, None),
    ('[[1, 2], [3, 4]] x', (2,), 'data after the end of the list', 17, None),
    ('[[1, 2], [3, 4]]]', (2,), 'data after the end of the list', 16, None),
    ('[[1, 2]] [[3, 4]]', (2,), 'data after the end of the list', 9, None),
    ('[[1, 2], [3, 4, 5], [6, 7]]', (2,), 'entry 1 of shape (3,), not (2,)', 14, None),
    ('[[1, 2], [3], [6, 7]]', (2,), 'entry 1 of shape (1,), not (2,)', 11, None),
    ('[[1, 2], 3, [6, 7]]', (2,), 'entry 1 of shape (), not (2,)', 9, None),
    ('[[1, 2], [[3, 4]]]', (2,), 'entry 1 of shape (1, 2), not (2,)', 10, None),
    ('[[1, 2], [3, null]]', (2,), "holds 'null', where only numbers", 13, 1),
    ('[[1, 2], [3, "4"]]', (2,), "holds '\"4\"'", 13, 1),
    ('[[1, 2], [NaN, 4]]', (2,), "holds 'NaN'", 10, 1),
    ('[[1, 2], [-Infinity, 4]]', (2,), "holds '-Infinity'", 10, 1),
    ('[[1, 2], [3, 4,]]', (2,), "',' where ']' belongs", 14, 1),
    ('[[1, 2], [3, 4], ]', (2,), "']' where '[' belongs", 17, 2),
    ('[[1, 2], [3 4]]', (2,), "a number where ',' belongs", 12, 1),
    ('[[1, 2],, [3, 4]]', (2,), "',' where '[' belongs", 8, 1),
    ('[[1, 2], [03, 4]]', (2,), "holds '03', which is not a JSON number", 10, 1),
    ('[[1, 2], [3., 4]]', (2,), "holds '3.'", 10, 1),
    ('[[1, 2], [.5, 4]]', (2,), "holds '.5'", 10, 1),
    ('[[1, 2], [+5, 4]]', (2,), "holds '+5'", 10, 1),
    ('[[1, 2], [5e, 4]]', (2,), "holds '5e'", 10, 1),
    ('[[1, 2], [1.2.3, 4]]', (2,), "holds '1.2.3'", 10, 1),
    ('[[1, 2], [1e5e3, 4]]', (2,), "holds '1e5e3'", 10, 1),
    ('[[1, 2], [1-2, 4]]', (2,), "holds '1-2'", 10, 1),
    ('[[1, 2], [-, 4]]', (2,), "holds '-'", 10, 1),
]


@pytest.mark.parametrize('chunk_bytes', [4, json_numbers.CHUNK_BYTES])
@pytest.mark.parametrize('text, shape, fragment, offset, entry', MALFORMED)
def test_malformed_files_name_the_file_offset_and_entry(tmp_path, text, shape, fragment, offset, entry, chunk_bytes):
    path = write(tmp_path / 'training_xyz.json', text)
    with pytest.raises(DataError) as err:
        read_float_array(path, shape, chunk_bytes=chunk_bytes)
    message = str(err.value)
    assert message.startswith(f'annotation file {path} ') and message.endswith('re-download or re-extract it.')
    assert fragment in message
    assert f'at byte {offset}' in message
    if entry is not None:
        assert f'(entry {entry})' in message


def test_json_rejects_what_the_parser_rejects(tmp_path):
    """The malformed cases are malformed JSON or valid JSON of the wrong layout, except the
    non-numbers that Python's json (NaN, -Infinity: not JSON) or np.asarray (null to NaN, "4"
    to 4) accept and the parser rejects."""
    for text, shape, *_ in MALFORMED:
        if any(word in text for word in ('null', '"', 'NaN', 'Infinity')):
            continue
        try:
            value = json.loads(text)
        except ValueError:
            continue
        try:
            wrong = np.asarray(value, dtype=np.float32).shape[1:] != shape or not len(value)
        except (ValueError, TypeError):
            wrong = True
        assert wrong, text


def test_unreadable_file(tmp_path):
    with pytest.raises(DataError, match='cannot read annotation file .*missing.json'):
        read_float_array(tmp_path / 'missing.json', (3,))


# --- cache ------------------------------------------------------------------------------------------

@pytest.fixture
def verts_file(tmp_path):
    """training_verts.json of 4 samples in tmp_path/data."""
    (tmp_path / 'data').mkdir()
    rng = np.random.default_rng(5)
    verts = rng.uniform(-0.1, 0.1, (4, 778, 3)) + [0.0, 0.0, 0.6]
    return write(tmp_path / 'data' / 'training_verts.json', json.dumps(verts.tolist()))


def count_parses(monkeypatch):
    calls = []
    original = json_numbers.iter_values

    def counting(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)
    monkeypatch.setattr(json_numbers, 'iter_values', counting)
    return calls


def test_cache_hit_is_a_read_only_memmap(verts_file, tmp_path, monkeypatch, caplog):
    cache = tmp_path / 'cache'
    parses = count_parses(monkeypatch)
    with caplog.at_level(logging.INFO, logger='utils.files.annotations'):
        first = load_annotation(verts_file, (778, 3), cache)
    assert len(parses) == 1 and 'building the annotation cache' in caplog.text
    second = load_annotation(verts_file, (778, 3), cache)
    assert len(parses) == 1
    for array in (first, second):
        assert isinstance(array, np.memmap) and array.mode == 'r' and not array.flags.writeable
        assert_bit_identical(np.asarray(array), reference(verts_file))
    with pytest.raises(ValueError):
        second[0, 0, 0] = 1.0
    record = json.loads((cache / 'training_verts.npy.meta').read_text())
    stat = os.stat(verts_file)
    assert (record['source_size'], record['source_mtime_ns'], record['shape']) == (stat.st_size, stat.st_mtime_ns,
                                                                                 [4, 778, 3])
    assert sorted(os.listdir(cache)) == ['training_verts.lock', 'training_verts.npy', 'training_verts.npy.meta']


def test_no_cache_dir_parses_every_time(verts_file, monkeypatch):
    parses = count_parses(monkeypatch)
    array = load_annotation(verts_file, (778, 3), None)
    load_annotation(verts_file, (778, 3), None)
    assert len(parses) == 2 and not isinstance(array, np.memmap) and array.flags.writeable


def rebuilt(verts_file, cache, monkeypatch, caplog, reason):
    parses = count_parses(monkeypatch)
    with caplog.at_level(logging.WARNING, logger='utils.files.annotations'):
        array = load_annotation(verts_file, (778, 3), cache)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(parses) == 1 and len(warnings) == 1, warnings
    assert re.search(reason, warnings[0]) and 'rebuilding' in warnings[0] and str(cache) in warnings[0]
    assert_bit_identical(np.asarray(array), reference(verts_file))
    return array


def test_stale_cache_is_rebuilt_with_a_warning(verts_file, tmp_path, monkeypatch, caplog):
    cache = tmp_path / 'cache'
    old = np.asarray(load_annotation(verts_file, (778, 3), cache)).copy()
    with open(verts_file) as f:
        verts = json.load(f)
    verts[1][2][0] = 0.123
    write(verts_file, json.dumps(verts))
    stat = os.stat(verts_file)
    os.utime(verts_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # mtime granularity is coarse
    array = rebuilt(verts_file, cache, monkeypatch, caplog, 'is stale: the JSON file changed')
    assert array[1, 2, 0] == np.float32(0.123) and old[1, 2, 0] != array[1, 2, 0]


def test_truncated_cache_is_rebuilt_with_a_warning(verts_file, tmp_path, monkeypatch, caplog):
    cache = tmp_path / 'cache'
    load_annotation(verts_file, (778, 3), cache)
    npy = cache / 'training_verts.npy'
    with open(npy, 'r+b') as f:
        f.truncate(npy.stat().st_size - 100)
    rebuilt(verts_file, cache, monkeypatch, caplog, r'is truncated: \d+ bytes where its header implies \d+')


@pytest.mark.parametrize('garbage', [b'', b'not a numpy file at all', b'\x93NUMPY\x01\x00\xff\xff{'])
def test_garbage_cache_is_rebuilt_with_a_warning(verts_file, tmp_path, monkeypatch, caplog, garbage):
    cache = tmp_path / 'cache'
    load_annotation(verts_file, (778, 3), cache)
    (cache / 'training_verts.npy').write_bytes(garbage)
    rebuilt(verts_file, cache, monkeypatch, caplog, 'is unreadable')


def test_cache_of_another_shape_or_without_record_is_rebuilt(verts_file, tmp_path, monkeypatch, caplog):
    cache = tmp_path / 'cache'
    load_annotation(verts_file, (778, 3), cache)
    meta = cache / 'training_verts.npy.meta'
    record = json.loads(meta.read_text())
    np.save(cache / 'training_verts.npy', np.zeros((4, 778, 2), np.float32))
    meta.write_text(json.dumps(dict(record, shape=[4, 778, 2])))
    rebuilt(verts_file, cache, monkeypatch, caplog, r'holds float32 \(4, 778, 2\)')
    caplog.clear()
    meta.unlink()
    rebuilt(verts_file, cache, monkeypatch, caplog, 'is incomplete: .*meta is missing')


def test_parse_error_leaves_no_cache(tmp_path):
    path = write(tmp_path / 'training_K.json', '[[[1, 0, 112], [0, 1, 112], [0, 0, 1]], [[1, 0]]]')
    cache = tmp_path / 'cache'
    with pytest.raises(DataError, match='entry 1 of shape'):
        load_annotation(path, (3, 3), cache)
    assert os.listdir(cache) == ['training_K.lock']


def test_build_removes_leftovers_of_killed_builds_only(verts_file, tmp_path):
    cache = tmp_path / 'cache'
    os.makedirs(cache)
    orphans = ['.training_verts.npy.abc123.tmp', '.training_verts.npy.meta.def456.tmp']
    others = ['.training_xyz.npy.abc123.tmp', 'notes.txt']
    for name in orphans + others:
        (cache / name).write_text('x')
    load_annotation(verts_file, (778, 3), cache)
    names = set(os.listdir(cache))
    assert not names & set(orphans) and set(others) <= names
    load_annotation(verts_file, (778, 3), cache)  # a cache hit touches nothing
    assert set(others) <= set(os.listdir(cache))


def test_unwritable_cache_folder(verts_file, tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    with pytest.raises(DataError, match='cannot write in the annotation cache folder .*file/cache.*cache_dir=None'):
        load_annotation(verts_file, (778, 3), blocker / 'cache')


class _Messages(logging.Handler):
    """Keeps the log messages; sets `waiting` when this process queues for the lock."""

    def __init__(self, waiting):
        super().__init__()
        self.messages, self.waiting = [], waiting

    def emit(self, record):
        self.messages.append(record.getMessage())
        if 'waiting' in record.getMessage():
            self.waiting.set()


def _load_concurrently(json_path, cache, waiting, results):
    """Child process: load, report what happened. The one that takes the lock builds only once
    the other has found the lock taken and queued (`waiting` set), so the order is forced."""
    original = annotations._build_cache

    def build_after_the_other_queued(*args):
        waiting.wait(timeout=60)  # a timeout leaves no waiter: the outcome assertion fails
        original(*args)
    annotations._build_cache = build_after_the_other_queued
    log = _Messages(waiting)
    logger = logging.getLogger('utils.files.annotations')
    logger.addHandler(log)
    logger.setLevel(logging.INFO)
    array = load_annotation(json_path, (778, 3), cache)
    results.put((any('building' in m for m in log.messages), any('waiting' in m for m in log.messages),
                 hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest(), isinstance(array, np.memmap)))


def test_two_processes_build_once_and_share(verts_file, tmp_path):
    cache = str(tmp_path / 'cache')
    context = multiprocessing.get_context('spawn')
    waiting, results = context.Event(), context.Queue()
    processes = [context.Process(target=_load_concurrently, args=(verts_file, cache, waiting, results))
                 for _ in range(2)]
    for process in processes:
        process.start()
    outcomes = sorted(results.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    expected = hashlib.sha1(reference(verts_file).tobytes()).hexdigest()
    # One process built the cache; the other waited for it, then mapped the same data.
    assert outcomes == [(False, True, expected, True), (True, False, expected, True)]


# --- cache folder -----------------------------------------------------------------------------------

def test_cache_dir_settings(tmp_path, caplog):
    root = tmp_path / 'FreiHAND'
    root.mkdir()
    assert resolve_cache_dir(root, None) is None and resolve_cache_dir(root, 'off') is None
    assert resolve_cache_dir(root, tmp_path / 'mine') == str(tmp_path / 'mine')
    with caplog.at_level(logging.INFO, logger='utils.files.annotations'):
        folder = resolve_cache_dir(root, 'auto')
    assert folder == str(root / '.sar_cache') and os.path.isdir(folder) and folder in caplog.text


def expected_fallback(xdg, root):
    return os.path.join(xdg, 'sar', 'annotations', hashlib.sha1(os.path.abspath(root).encode()).hexdigest()[:12])


def test_read_only_root_falls_back_to_the_user_cache(tmp_path, monkeypatch):
    root = tmp_path / 'FreiHAND'
    root.mkdir()
    xdg = tmp_path / 'xdg'
    monkeypatch.setenv('XDG_CACHE_HOME', str(xdg))
    # We run as root, where chmod does not stop writes: simulate a read-only data root.
    real_access = os.access
    monkeypatch.setattr(os, 'access', lambda path, mode: os.fspath(path) != str(root) and real_access(path, mode))
    folder = resolve_cache_dir(root, 'auto')
    assert folder == expected_fallback(str(xdg), root) and os.path.isdir(folder)
    assert not (root / '.sar_cache').exists()


def test_root_under_a_file_falls_back(tmp_path, monkeypatch):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    root = blocker / 'FreiHAND'
    assert resolve_cache_dir(root, 'auto') == expected_fallback(str(tmp_path / 'xdg'), root)
    monkeypatch.delenv('XDG_CACHE_HOME')
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    assert resolve_cache_dir(root, 'auto') == expected_fallback(str(tmp_path / 'home' / '.cache'), root)


def test_no_writable_folder_turns_the_cache_off(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    monkeypatch.setenv('XDG_CACHE_HOME', str(blocker / 'xdg'))
    with caplog.at_level(logging.WARNING, logger='utils.files.annotations'):
        assert resolve_cache_dir(blocker / 'FreiHAND', 'auto') is None
    assert 'annotation cache off' in caplog.text
