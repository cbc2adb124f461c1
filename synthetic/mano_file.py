"""Writing MANO model files in the official format without chumpy (docs/method.md §9).

`save_mano` writes the two forms `manopth.io.load_mano` reads: the official protocol-2 structure
(so that every code path that reads the licensed file is exercised by the procedural stand-in)
or a plain re-pickled one (the community form).
"""
import io
import pickle
import struct

import numpy as np
import scipy.sparse

from utils.files.atomic import atomic_open

# Keys the official files hold as chumpy `Ch` objects; `shapedirs` is a `Select`.
_CH_KEYS = ('v_template', 'weights', 'posedirs', 'J')
# The official `Select` picks 10 shape components out of a 778 x 3 x 20 array.
_SELECT_SOURCE_COMPONENTS = 20


class _Py2PickleWriter:
    """A minimal protocol-2 pickle emitter that writes exactly what Python 2 wrote for a MANO
    file: byte strings as BINSTRING (no `_codecs.encode`), arrays through
    `numpy.core.multiarray._reconstruct`, objects as GLOBAL + NEWOBJ + BUILD. Deterministic:
    dict items are written in sorted key order."""

    def __init__(self):
        self.out = io.BytesIO()

    def write(self, b):
        self.out.write(b)

    def global_(self, module, name):
        self.write(b'c' + module.encode() + b'\n' + name.encode() + b'\n')

    def bytes_(self, b):
        if len(b) < 256:
            self.write(b'U' + bytes([len(b)]) + b)
        else:
            self.write(b'T' + struct.pack('<i', len(b)) + b)

    def str_(self, s):
        self.bytes_(s.encode('latin1'))

    def int_(self, v):
        v = int(v)
        if 0 <= v < 256:
            self.write(b'K' + bytes([v]))
        elif 0 <= v < 65536:
            self.write(b'M' + struct.pack('<H', v))
        elif -2 ** 31 <= v < 2 ** 31:
            self.write(b'J' + struct.pack('<i', v))
        else:
            raw = v.to_bytes((v.bit_length() + 8) // 8, 'little', signed=True)
            self.write(b'\x8a' + bytes([len(raw)]) + raw)

    def tuple_(self, items):
        if not items:
            self.write(b')')
            return
        if len(items) > 3:
            self.write(b'(')
        for item in items:
            self.value(item)
        self.write({1: b'\x85', 2: b'\x86', 3: b'\x87'}.get(len(items), b't'))

    def dict_(self, d):
        self.write(b'}')
        if d:
            self.write(b'(')
            for key in sorted(d):
                self.str_(key)
                self.value(d[key])
            self.write(b'u')

    def set_(self, s):
        self.global_('__builtin__', 'set')
        self.write(b']')
        if s:
            self.write(b'(')
            for item in sorted(s):
                self.value(item)
            self.write(b'e')
        self.write(b'\x85R')

    def dtype_(self, dtype):
        self.global_('numpy', 'dtype')
        self.tuple_((dtype.str[1:], 0, 1))
        self.write(b'R')
        self.tuple_((3, dtype.str[0], None, None, None, -1, -1, 0))
        self.write(b'b')

    def array_(self, a):
        a = np.ascontiguousarray(a)
        if a.dtype.byteorder == '>':
            a = a.astype(a.dtype.newbyteorder('<'))
        self.global_('numpy.core.multiarray', '_reconstruct')
        self.global_('numpy', 'ndarray')
        self.tuple_((0,))
        self.bytes_(b'b')
        self.write(b'\x87R')
        self.write(b'(')
        self.int_(1)
        self.tuple_(tuple(a.shape))
        self.dtype_(a.dtype)
        self.write(b'\x89')  # not Fortran order
        self.bytes_(a.tobytes())
        self.write(b'tb')

    def object_(self, module, name, state):
        self.global_(module, name)
        self.write(b')\x81')  # EMPTY_TUPLE NEWOBJ: cls.__new__(cls)
        self.dict_(state)
        self.write(b'b')

    def value(self, v):
        if v is None:
            self.write(b'N')
        elif isinstance(v, (bool, np.bool_)):
            self.write(b'\x88' if v else b'\x89')
        elif isinstance(v, (int, np.integer)):
            self.int_(v)
        elif isinstance(v, (float, np.floating)):
            self.write(b'G' + struct.pack('>d', float(v)))
        elif isinstance(v, str):
            self.str_(v)
        elif isinstance(v, tuple):
            self.tuple_(v)
        elif isinstance(v, set):
            self.set_(v)
        elif isinstance(v, dict):
            self.dict_(v)
        elif isinstance(v, np.ndarray):
            self.array_(v)
        elif isinstance(v, _Py2Object):
            self.object_(v.module, v.name, v.state)
        else:
            raise TypeError(f"cannot write a value of type {type(v).__name__} to a MANO file")

    def dumps(self, obj):
        self.write(b'\x80\x02')
        self.value(obj)
        self.write(b'.')
        return self.out.getvalue()


class _Py2Object:
    def __init__(self, module, name, state):
        self.module, self.name, self.state = module, name, state


def _chumpy_ch(array):
    # The bookkeeping keys chumpy pickles beside the array (values as a fresh Ch has them).
    return _Py2Object('chumpy.ch', 'Ch', {
        'x': np.asarray(array, dtype=np.float64), '_dirty_vars': set(), '_itr': None,
        '_make_dense': False, '_make_sparse': False, '_depends_on_deps': {},
        '_status': 'undefined'})


def _to_official(data):
    """Plain arrays -> the object structure of the official Python-2 file."""
    out = {}
    for key, value in data.items():
        if key in _CH_KEYS:
            out[key] = _chumpy_ch(value)
        elif key == 'shapedirs':
            shapedirs = np.asarray(value, dtype=np.float64)
            nv, _, nb = shapedirs.shape
            # The official Select reads the first `nb` of 20 stored components; the other
            # components are not part of the model and are stored as zeros.
            source = np.zeros((nv, 3, _SELECT_SOURCE_COMPONENTS))
            source[..., :nb] = shapedirs
            idxs = np.arange(source.size).reshape(source.shape)[..., :nb].ravel()
            out[key] = _Py2Object('chumpy.reordering', 'Select', {
                'a': _chumpy_ch(source), 'idxs': idxs.astype(np.int64),
                'preferred_shape': (nv, 3, nb), '_dirty_vars': set(), '_itr': None,
                '_depends_on_deps': {}, '_status': 'undefined'})
        elif key == 'J_regressor':
            m = scipy.sparse.csc_matrix(value)
            m.sort_indices()
            out[key] = _Py2Object('scipy.sparse.csc', 'csc_matrix', {
                '_shape': tuple(int(s) for s in m.shape), 'maxprint': 50, 'format': 'csc',
                'data': m.data.astype(np.float64), 'indices': m.indices.astype(np.int32),
                'indptr': m.indptr.astype(np.int32), '_has_sorted_indices': True})
        else:
            out[key] = value
    return out


def save_mano(path, data, official=True):
    """Write a MANO model dict to `path` atomically.

    Args:
        data: dict as `load_mano` returns (plain arrays; J_regressor dense or sparse).
        official: True writes the official file's structure (protocol-2 pickle, chumpy Ch /
            Select objects, `scipy.sparse.csc` path; byte-identical for identical input);
            False writes a plain protocol-4 pickle of NumPy arrays (the community form).
    """
    if official:
        payload = _Py2PickleWriter().dumps(_to_official(data))
    else:
        plain = {k: (scipy.sparse.csc_matrix(v) if k == 'J_regressor' else v)
                 for k, v in data.items()}
        payload = pickle.dumps(plain, protocol=4)
    with atomic_open(path, 'wb') as f:
        f.write(payload)
