"""A bulk parser for FreiHAND's big numeric JSON files (docs/method.md §1).

The files are lists of N entries of one nested shape (training_verts.json: N x 778 x 3 numbers,
about 1 GB of text). `read_float_array` parses them in chunks with vectorised numpy operations
instead of building Python lists: peak memory is the output plus a few chunks. The values are
bit-identical to `np.asarray(json.load(f), dtype=np.float32)`: each number is computed in
float64 from its decimal digits (mantissa up to 19 digits, exact power of ten up to 10^22:
at most 3 float64 ulps from the correctly rounded value) and rounded to float32; the rare
numbers whose float64 estimate lies within 16 ulps of a float32 rounding boundary, or outside
that fast path (longer mantissas, larger exponents, float32 subnormals), are converted by
Python exactly as json then numpy convert them. NaN and Infinity (not JSON) are rejected.
Malformed files raise DataError naming the file, the byte offset and the entry.
"""
import collections
import itertools
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from utils.errors import DataError

CHUNK_BYTES = 1 << 20  # bytes of text per parsing step: its temporaries stay in the CPU caches
FIX = 're-download or re-extract it'

# Byte classes. Number bytes are DIGIT and above; BAD marks bytes that never belong in these files.
WS, OPEN, CLOSE, COMMA, DIGIT, MINUS, PLUS, DOT, EXP, BAD = 0, 1, 2, 3, 4, 5, 6, 7, 8, 255
_CLASSES = np.full(256, BAD, dtype=np.uint8)
for _chars, _cls in ((b' \t\n\r', WS), (b'[', OPEN), (b']', CLOSE), (b',', COMMA), (b'0123456789', DIGIT),
                     (b'-', MINUS), (b'+', PLUS), (b'.', DOT), (b'eE', EXP)):
    _CLASSES[list(_chars)] = _cls
_CLASS_TABLE = bytes(_CLASSES.tolist())  # for bytes.translate: a fast lookup, no OpenCV pool to fork
_TOKEN_NAMES = {OPEN: "'['", CLOSE: "']'", COMMA: "','", DIGIT: 'a number'}
PAD = 24  # spaces before each parsed region: digit words may reach 24 bytes back
TAIL = 3  # spaces after it: run ends look 2 bytes ahead

_U64 = np.uint64
_NIBBLES = _U64(0x0F0F0F0F0F0F0F0F)  # the digit values of eight ASCII digits
# _DIGITS_OF[m]: the digit values of the m highest bytes of a little-endian word, i.e. the last
# m digits in text order (the bytes before them belong to other text).
_DIGITS_OF = np.array([0x0F0F0F0F0F0F0F0F & ~((1 << (8 * (8 - m))) - 1) for m in range(9)], dtype=np.uint64)
_POW10_U64 = np.array([10 ** k for k in range(20)], dtype=np.uint64)
_POW10_F64 = np.array([10.0 ** k for k in range(23)])  # exact in float64 up to 10^22
_MAX_TOP_WORD = 1843  # a 24-digit run is below 2^64 when its leading 8 digits are at most this
_BAND_ULPS = 16  # float64 ulps kept clear of float32 rounding boundaries on the fast path


def _eight_digits(v):
    """Values of the 8 digits per word (digit values 0-9 in its bytes, the first digit lowest)."""
    v = (v * _U64(10 * 256 + 1)) >> _U64(8)  # two-digit values in bytes 0, 2, 4, 6
    mask = _U64(0x000000FF000000FF)
    return ((v & mask) * _U64(100 + (1000000 << 32)) + ((v >> _U64(16)) & mask) * _U64(1 + (10000 << 32))) >> _U64(32)


def _digit_values(buf, words, starts, lengths):
    """(uint64 values, fits) of the digit runs buf[starts:starts + lengths]; fits: the run has at
    most 24 digits and its value is below 2^64. words: the little-endian uint64 at every byte."""
    values = (buf[starts] & np.uint8(15)).astype(np.uint64)  # right for one-digit runs
    fits = lengths <= 24
    for count in (1, 2, 3):  # runs spanning `count` 8-byte words that end where the run ends
        idx = np.flatnonzero((lengths > max(8 * count - 8, 1)) & (lengths <= 8 * count))
        if len(idx):
            end = starts[idx] + lengths[idx]
            total = _eight_digits(words[end - 8 * count] & _DIGITS_OF[lengths[idx] - 8 * (count - 1)])
            if count == 3:
                fits[idx] &= total <= _MAX_TOP_WORD
            for k in range(count - 1, 0, -1):
                total = total * _U64(10 ** 8) + _eight_digits(words[end - 8 * k] & _NIBBLES)
            values[idx] = total
    return values, fits


def _region_numbers(buf, cls):
    """Validate and convert the numbers of one region (see _regions).

    buf: uint8 text bytes; cls: their byte classes. Returns (starts: index of each number's
    first byte, values: float32 or None, bad: index of the first malformed number or None).
    A number is an integer digit run, then optionally '.' and a fraction run, then optionally
    'e' or 'E', a sign and an exponent run; each run is checked against its neighbours.
    """
    is_digit = cls == DIGIT
    edges = np.flatnonzero(is_digit[1:] != is_digit[:-1]) + 1
    rs, lengths = edges[0::2], edges[1::2] - edges[0::2]  # digit runs buf[rs:rs + lengths]
    re = rs + lengths
    p, p2, p3 = cls[rs - 1], cls[rs - 2], cls[rs - 3]
    n, n1, n2 = cls[re], cls[re + 1], cls[re + 2]
    sign_p, sign_n1 = (p == MINUS) | (p == PLUS), (n1 == MINUS) | (n1 == PLUS)
    is_int = (p < DIGIT) | ((p == MINUS) & (p2 < DIGIT))  # the run begins a number
    is_frac = (p == DOT) & (p2 == DIGIT)
    is_exp = ((p == EXP) & (p2 == DIGIT)) | (sign_p & (p2 == EXP) & (p3 == DIGIT))
    ok = (is_int | (is_frac & np.roll(is_int, 1)) | (is_exp & ~np.roll(is_exp, 1))) & (
        (n < DIGIT) | ((n == DOT) & is_int & (n1 == DIGIT))
        | ((n == EXP) & ~is_exp & ((n1 == DIGIT) | (sign_n1 & (n2 == DIGIT)))))
    ok &= ~(is_int & (lengths > 1) & (buf[rs] == ord('0')))  # no leading zeros
    minus = is_int & (p == MINUS)
    num = np.flatnonzero(is_int)  # run index of each number's integer digits
    negative = minus[num]
    starts = rs[num] - negative
    # Every '-', '+', '.' and 'e' must sit where a digit run above expects it.
    used = [rs[minus] - 1, rs[is_frac] - 1, rs[is_exp] - 1, rs[is_exp & sign_p] - 2]
    specials = cls[:len(cls) - TAIL] > DIGIT
    if not ok.all() or sum(map(len, used)) != np.count_nonzero(specials):
        stray = np.setdiff1d(np.flatnonzero(specials), np.concatenate(used))
        bad = [int(rs[np.argmin(ok)])] if not ok.all() else []
        return starts, None, min(bad + [int(s) for s in stray[:1]])

    words = np.ndarray((len(buf) - 7,), dtype='<u8', buffer=buf, strides=(1,))
    run_value, fits = _digit_values(buf, words, rs, lengths)
    last = len(rs) - 1
    has_frac = np.append(is_frac, False)[num + 1]
    exp_run = num + 1 + has_frac
    has_exp = np.append(is_exp, [False, False])[exp_run]
    frac_run, exp_run = np.minimum(num + 1, last), np.minimum(exp_run, last)
    frac_len = np.where(has_frac, lengths[frac_run], 0)
    exp_value = run_value[exp_run].astype(np.int64)
    exponent = np.where(has_exp, np.where(p[exp_run] == MINUS, -exp_value, exp_value), 0) - frac_len
    int_value = run_value[num]
    fast = (fits[num] & (~has_frac | fits[frac_run]) & (~has_exp | (lengths[exp_run] <= 4))
            & ((int_value == 0) | (lengths[num] + frac_len <= 19)) & (np.abs(exponent) <= 22))
    mantissa = int_value * _POW10_U64[np.minimum(frac_len, 19)] + np.where(has_frac, run_value[frac_run], 0)
    mantissa = mantissa.astype(np.float64)  # exact below 2^53, else rounded once
    power = _POW10_F64[np.minimum(np.abs(exponent), 22)]
    estimate = np.where(exponent >= 0, mantissa * power, mantissa / power)  # within 3 ulps
    bits = estimate.view(np.uint64)
    binade = bits >> _U64(52)  # float32 normal numbers lie in binades 1023-126 .. 1023+127
    near = np.abs((bits & _U64(0x1FFFFFFF)).astype(np.int64) - (1 << 28)) <= _BAND_ULPS
    fast &= (estimate == 0) | ((binade >= 1023 - 126) & (binade <= 1023 + 127) & ~near)
    with np.errstate(over='ignore'):
        values = estimate.astype(np.float32)
    is_float = has_frac | has_exp
    np.negative(values, out=values, where=negative & (is_float | (mantissa != 0)))  # json: "-0" is int 0
    slow = np.flatnonzero(~fast)
    if len(slow):  # exactly what json.load then np.asarray(..., float32) do
        ends = re[np.where(has_exp, exp_run, np.where(has_frac, frac_run, num))]
        exact = [(float if is_float[i] else int)(bytes(buf[starts[i]:ends[i]])) for i in slow]
        with np.errstate(over='ignore'):
            values[slow] = np.asarray(exact, dtype=np.float32)
    return starts, values, None


def _entry_pattern(entry_shape):
    """Token kinds of one entry of `entry_shape` (a number is DIGIT)."""
    if not entry_shape:
        return [DIGIT]
    inner = _entry_pattern(entry_shape[1:])
    return [OPEN] + (inner + [COMMA]) * (entry_shape[0] - 1) + inner + [CLOSE]


def _regions(f, chunk_bytes):
    """Yield (region, file offset of its text): fresh uint8 arrays of PAD spaces, about
    `chunk_bytes` of text ending where no number continues, and TAIL spaces."""
    carry, offset = b'', 0  # an unfinished number, carried into the next region
    while True:
        buf = np.empty(PAD + len(carry) + chunk_bytes + TAIL, dtype=np.uint8)
        buf[:PAD] = ord(' ')
        buf[PAD:PAD + len(carry)] = np.frombuffer(carry, dtype=np.uint8)
        count = f.readinto(memoryview(buf)[PAD + len(carry):PAD + len(carry) + chunk_bytes])
        end = split = PAD + len(carry) + count
        if count:  # end the region after its last byte that cannot be inside a number
            low = max(PAD, end - 64)
            stops = np.flatnonzero((_CLASSES[buf[low:end]] - np.uint8(DIGIT)) > EXP - DIGIT)
            if not len(stops) and low > PAD:
                low, stops = PAD, np.flatnonzero((_CLASSES[buf[PAD:end]] - np.uint8(DIGIT)) > EXP - DIGIT)
            if not len(stops):
                carry = bytes(buf[PAD:end])
                continue
            split = low + int(stops[-1]) + 1
        carry = bytes(buf[split:end])
        buf[split:split + TAIL] = ord(' ')
        yield buf[:split + TAIL], offset
        offset += split - PAD
        if not count:
            return


def _scan(region):
    """The order-independent work on a region (run by worker threads).

    Returns (cls, positions, kinds, values, first_bad, bad_char): byte classes; token byte
    indices and kinds (OPEN, CLOSE, COMMA, DIGIT for a number); the float32 numbers (None if
    malformed); the index of the first malformed byte or number and of the first byte that never
    belongs in these files (len(region) if none).
    """
    cls = np.frombuffer(region.tobytes().translate(_CLASS_TABLE), dtype=np.uint8)
    bad_char = int(np.argmax(cls == BAD)) if cls.max() == BAD else len(cls)
    starts, values, bad_number = _region_numbers(region, cls)
    mark = (cls - np.uint8(OPEN)) < 3  # '[', ']' or ','
    mark[starts] = True
    positions = np.flatnonzero(mark)
    first_bad = min(bad_char, len(cls) if bad_number is None else bad_number)
    return cls, positions, np.minimum(cls[positions], DIGIT), values, first_bad, bad_char


class _TokenStream:
    """Checks a file's tokens against its layout, region by region in file order.

    Token 0 is the list's '['; token g >= 1 must be pattern[(g - 1) % period], the pattern being
    one entry and a ','; a ']' in place of a ',' ends the list.
    """

    def __init__(self, path, entry_shape, what):
        self.path, self.entry_shape, self.what = path, entry_shape, what
        self.pattern = np.array(_entry_pattern(entry_shape) + [COMMA], dtype=np.uint8)
        self.period, self.tiled = len(self.pattern), self.pattern
        self.seen, self.closed = 0, False  # tokens before the current region; list ended
        self.entry_start = 0  # file offset of the latest entry's first token

    def fail(self, offset, problem, token=None):
        where = f'at byte {offset}' + ('' if token is None else f' (entry {max(token - 1, 0) // self.period})')
        layout = ' x '.join(['N', *map(str, self.entry_shape)])
        raise DataError(f'{self.what} {self.path} {problem} {where}; expected a JSON list of {layout} '
                        f'numbers; {FIX}.')

    def check(self, region, offset, scanned):
        """Validate a region (see _regions) from its _scan result; return its numbers or None."""
        cls, positions, kinds, values, first_bad, bad_char = scanned
        text = cls[PAD:len(cls) - TAIL]

        def at(index):
            return offset + int(index) - PAD

        if self.closed or not self.seen:
            used = np.flatnonzero(text)
            if self.closed and len(used):
                self.fail(at(PAD + used[0]), 'has data after the end of the list')
            if self.closed or not len(used):
                return None
            if text[used[0]] != OPEN:
                self.fail(at(PAD + used[0]), f'is not a list (it starts with {chr(region[PAD + used[0]])!r})')
        if len(self.tiled) < len(kinds) + self.period:
            self.tiled = np.tile(self.pattern, len(kinds) // self.period + 2)
        phase = (self.seen - 1) % self.period
        want = self.tiled[phase:phase + len(kinds)]
        if not self.seen:
            want = np.concatenate([[OPEN], self.tiled[:len(kinds)]])[:len(kinds)]
        mismatch = np.flatnonzero(kinds != want)
        stop = int(positions[mismatch[0]]) if len(mismatch) else len(cls)
        if first_bad < stop:
            if bad_char == first_bad:
                problem = 'where only numbers, brackets, commas and whitespace belong'
            else:  # a malformed number: show it from its first byte
                problem = 'which is not a JSON number'
                while DIGIT <= cls[first_bad - 1] < BAD:
                    first_bad -= 1
            with open(self.path, 'rb') as f:
                f.seek(at(first_bad))
                snippet = re.split(rb'[\s,\[\]]', f.read(24) + b' ', maxsplit=1)[0].decode('ascii', 'replace')
            self.fail(at(first_bad), f'holds {snippet!r}, {problem},',
                      self.seen + int(np.searchsorted(positions, first_bad)))
        if len(mismatch):
            i = int(mismatch[0])
            token, got, wanted = self.seen + i, int(kinds[i]), int(want[i])
            if got == CLOSE and token == 1:
                self.fail(at(stop), 'is an empty list')
            if not (got == CLOSE and token % self.period == 0):  # a ']' ends the list only between entries
                first = 1 + (token - 1) // self.period * self.period  # the entry's first token
                if first >= self.seen:
                    self.entry_start = at(positions[first - self.seen])
                shape = _entry_shape_at(self.path, self.entry_start)
                if shape is not None and shape != self.entry_shape:
                    entry = (token - 1) // self.period
                    self.fail(at(stop), f'has entry {entry} of shape {shape}, not {self.entry_shape},')
                self.fail(at(stop), f'is not valid JSON for this layout: {_TOKEN_NAMES[got]} where '
                          f'{_TOKEN_NAMES[wanted]} belongs', token)
            self.closed = True
            rest = np.flatnonzero(text[stop + 1 - PAD:])
            if len(rest):
                self.fail(at(stop + 1 + rest[0]), 'has data after the end of the list')
            return values[:np.count_nonzero(kinds[:i] == DIGIT)]
        last_first = 1 + (self.seen + len(kinds) - 2) // self.period * self.period  # latest entry start
        if self.seen <= last_first < self.seen + len(kinds):
            self.entry_start = at(positions[last_first - self.seen])
        self.seen += len(kinds)
        return values

    def finish(self, size):
        if not self.closed:
            if not self.seen:
                self.fail(size, 'is empty: no JSON value')
            self.fail(size, 'is not valid JSON: the list is not closed (a truncated file?)', self.seen)


def _entry_shape_at(path, offset):
    """Shape of the JSON value at byte `offset` of `path` (for messages), 'ragged', or None."""
    with open(path, 'rb') as f:
        f.seek(offset)
        text = f.read(4 << 20).decode('ascii', errors='replace')
    try:
        value = json.JSONDecoder().raw_decode(text)[0]
    except ValueError:
        return None
    try:
        return np.asarray(value, dtype=np.float64).shape
    except (ValueError, TypeError):
        return 'ragged'


def iter_values(path, entry_shape, what, chunk_bytes, workers=None):
    """Yield the numbers of `path` as flat float32 arrays in file order; DataError if malformed.

    Worker threads scan regions (numpy releases the GIL in its loops); this thread checks them
    in order. At most 2 x workers regions are in flight.
    """
    stream = _TokenStream(path, entry_shape, what)
    workers = workers or min(4, len(os.sched_getaffinity(0)))
    with open(path, 'rb') as f, ThreadPoolExecutor(workers) as pool:
        pending = collections.deque()
        for item in itertools.chain(_regions(f, chunk_bytes), [None]):  # None: the end
            if item is not None:
                pending.append((*item, pool.submit(_scan, item[0])))
            while pending and (item is None or len(pending) > 2 * workers or pending[0][2].done()):
                region, offset, future = pending.popleft()
                values = stream.check(region, offset, future.result())
                if values is not None and len(values):
                    yield values
        stream.finish(os.fstat(f.fileno()).st_size)


def read_float_array(path, entry_shape, what='annotation file', chunk_bytes=CHUNK_BYTES):
    """Parse a JSON list of N entries of nested shape `entry_shape` into an N x entry_shape
    float32 array, equal bit for bit to np.asarray(json.load(f), np.float32).

    path: e.g. training_verts.json, entry_shape (778, 3) (meters); evaluation_scale.json, ()
    (a list of numbers). what: what the file is, for messages. chunk_bytes: text per step.
    Raises DataError naming the file, the byte offset and the entry of the first problem.
    """
    path, entry_shape = os.fspath(path), tuple(int(s) for s in entry_shape)
    try:
        out, count = np.empty(os.path.getsize(path) // 8 + 16, dtype=np.float32), 0
        for values in iter_values(path, entry_shape, what, chunk_bytes):
            if count + len(values) > len(out):  # realloc: large blocks grow without a copy
                out.resize(max(2 * len(out), count + len(values)), refcheck=False)
            out[count:count + len(values)] = values
            count += len(values)
    except OSError as err:
        raise DataError(f'cannot read {what} {path} ({err}); check the file and its permissions.') from err
    out.resize(count, refcheck=False)
    return out.reshape((-1,) + entry_shape)
