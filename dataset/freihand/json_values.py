"""Checking parsed JSON values that should hold numeric arrays, with errors that say where
they are malformed.

The big fixed-shape annotation arrays (FreiHAND's training and evaluation files, for the data
loader and the evaluator alike) go through the bulk parser of dataset/freihand/json_numbers.py; this
module checks the JSON this project parses whole: pred.json (dataset/freihand/eval/files.py,
whose mesh may have any vertex count) and the RootNet file. A list of entries (samples) of one
nested shape that is malformed raises an error naming the file, the list, the entry and the
point/coordinate, what was found and what was expected.
"""
import json
import os

import numpy as np

from utils.errors import DataError

POINT_LEVELS = ('point', 'coordinate')  # names of the nesting levels of an N x 3 entry


def describe(value):
    """Short description of a JSON value for error messages."""
    if isinstance(value, list):
        return f'a list of {len(value)} entries'
    text = repr(value)
    return f'{type(value).__name__} {text[:40]}{"..." if len(text) > 40 else ""}'


def read_json(path, what, error=DataError):
    """Parse a JSON file; returns (value, needs_type_scan).

    needs_type_scan is False when the text holds only lists and numbers (numpy then converts
    it losslessly); otherwise strings, booleans, nulls or objects are hunted down value by value
    (numpy would turn true into 1.0). Errors (`error`) name the file and the position.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except FileNotFoundError:
        raise error(f'{what} not found: {path}') from None
    except UnicodeDecodeError as err:
        raise error(f'{path} is not UTF-8 text (byte {err.start}); expected a JSON file') from None
    except OSError as err:
        raise error(f'cannot read {what} {path} ({err}); check the file and its permissions') from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise error(f'{path} is not valid JSON: {err.msg} at line {err.lineno} column '
                    f'{err.colno}; re-download or re-create it') from None
    return value, any(token in text for token in ('"', 'true', 'false', 'null', '{'))


def _expected(shape, levels):
    """Words for a value of nested `shape` (None: any length, the same in every entry)."""
    if not shape:
        return 'a number'
    if shape == (3,) and levels[-1] == 'coordinate':
        return '[x, y, z] (3 numbers, meters)'
    count = 'N' if shape[0] is None else shape[0]
    if len(shape) == 1:
        return f'a list of {count} numbers'
    return f'a list of {count} {levels[-len(shape)]}s'


def _check_value(value, shape, label, levels):
    """Message for the first malformed part of `value` (nested `shape`), or None."""
    if not shape:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f'{label} is {describe(value)}, expected a number'
        return None
    if not isinstance(value, list):
        return f'{label} is {describe(value)}, expected {_expected(shape, levels)}'
    level = levels[-len(shape)] if len(shape) <= len(levels) else 'entry'
    if len(shape) > 1:
        if len(value) == 0:
            return f'{label} is an empty list, expected {_expected(shape, levels)}'
        if not isinstance(value[0], list):
            return (f'{label} is a flat list of {len(value)} values, expected {shape[0]} '
                    f'{level}s (a list of lists, shape {" x ".join(map(str, shape))})')
    if len(value) != shape[0]:
        if len(shape) == 1:
            return f'{label} is {describe(value)}, expected {_expected(shape, levels)}'
        return (f'{label} has {len(value)} {level}s, expected {shape[0]} (shape '
                f'{" x ".join(map(str, shape))}, the same in every entry)')
    for j, part in enumerate(value):
        problem = _check_value(part, shape[1:], f'{label} {level} {j}', levels)
        if problem:
            return problem
    return None


def find_malformed(entries, where, entry_shape, item='sample', levels=POINT_LEVELS):
    """Message naming the first malformed entry of the list `entries`, or None.

    entry_shape: the nested shape of one entry; a leading None means "any length, the same in
    every entry" (the count most entries have is expected).
    """
    entry_shape = tuple(entry_shape)
    if entry_shape and entry_shape[0] is None:
        lengths = [len(e) for e in entries if isinstance(e, list)]
        common = int(np.bincount(lengths).argmax()) if lengths else None
        entry_shape = (common,) + entry_shape[1:]
    for i, entry in enumerate(entries):
        problem = _check_value(entry, entry_shape, f'{where} {item} {i}'.strip(), levels)
        if problem:
            return problem
    return None


def entries_to_array(entries, source, where, entry_shape, *, dtype=np.float64, type_scan=True,
                     error=DataError, item='sample'):
    """Convert a JSON list of entries of one nested shape to an array, or raise `error`.

    Args:
        entries: the parsed JSON value (a list with one entry per sample).
        source: file path for messages; where: which list, e.g. 'xyz_list (pred[0])' ('' for
            the whole file).
        entry_shape: nested shape of one entry, e.g. (21, 3), (3, 3) or () for numbers; a
            leading None accepts any length that every entry shares.
        dtype: of the result (the numbers are converted by numpy straight from the JSON floats).
        type_scan: check every value's type before converting (see `read_json`).
    Returns:
        N x entry_shape array.
    """
    if not isinstance(entries, list):
        raise error(f'{source}: {where or "the file"} is {describe(entries)}, expected a list '
                    f'with one entry per sample')
    if not entries:
        raise error(f'{source}: {where or "the file"} is empty, expected one entry per sample')
    problem = find_malformed(entries, where, entry_shape, item, POINT_LEVELS) if type_scan else None
    array = None
    if problem is None:
        try:
            array = np.array(entries, dtype=dtype)
        except (ValueError, TypeError):  # ragged nesting: find where below
            array = None
        expected = tuple(entry_shape)
        shape_ok = (array is not None and array.ndim == 1 + len(expected) and all(
            e is None or e == a for e, a in zip(expected, array.shape[1:])))
        if not shape_ok:
            problem = find_malformed(entries, where, entry_shape, item, POINT_LEVELS)
            assert problem is not None, f'{where}: numpy cannot convert it, yet no entry is malformed'
    if problem is not None:
        raise error(f'{source}: {problem}; re-create or re-download the file')
    bad = np.argwhere(~np.isfinite(array))
    if len(bad):
        index = tuple(int(k) for k in bad[0])
        place = ' '.join(f'{name} {k}' for name, k in zip((item,) + POINT_LEVELS, index))
        raise error(f'{source}: {where} {place} is {array[index]}; every coordinate must be '
                    f'a finite number (meters)'.replace(':  ', ': '))
    return array
