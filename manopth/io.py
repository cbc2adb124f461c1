"""Reading MANO model files without chumpy (docs/method.md §9).

The official `MANO_RIGHT.pkl` / `MANO_LEFT.pkl` are Python-2 pickles whose values include
chumpy objects (`chumpy.ch.Ch`, `chumpy.reordering.Select`) and a sparse matrix under SciPy's
old module path. chumpy does not import on current Python / NumPy, and a pickle can run
arbitrary code, so `load_mano` uses a restricted unpickler: it resolves only the handful of
globals such a file legitimately references, maps the chumpy objects to inert placeholders,
and converts everything to plain NumPy arrays afterwards.

Both forms are accepted: the official Python-2 structure and the community re-pickled one
(plain NumPy arrays). `synthetic.mano_file.save_mano` writes either form.
"""
import codecs
import logging
import os
import pickle

import numpy as np
import scipy.sparse

from manopth import constants

logger = logging.getLogger(__name__)

MANO_DOWNLOAD_HINT = (
    "MANO is distributed under licence: register at https://mano.is.tue.mpg.de, download "
    "'Models & Code', and copy mano_v1_2/models/MANO_RIGHT.pkl (and MANO_LEFT.pkl) into this "
    "folder (or point `mano_root` in config.py at the folder holding them). Without the licence, "
    "`python -m synthetic.standin --out DIR` writes a procedural stand-in with the same format.")

# Keys and shapes every MANO model file has (docs/method.md §9); `None` means any length on that axis.
REQUIRED_SHAPES = {
    'v_template': (constants.NUM_VERTS, 3),
    'f': (None, 3),
    'J_regressor': (constants.NUM_MANO_JOINTS, constants.NUM_VERTS),
    'weights': (constants.NUM_VERTS, constants.NUM_MANO_JOINTS),
    'kintree_table': (2, constants.NUM_MANO_JOINTS),
    'posedirs': (constants.NUM_VERTS, 3, 9 * (constants.NUM_MANO_JOINTS - 1)),
    'shapedirs': (constants.NUM_VERTS, 3, constants.NUM_BETAS),
    'hands_components': (45, 45),
    'hands_mean': (45,),
}


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------

class _ChumpyState:
    """Inert stand-in for a pickled chumpy object: it only records the pickled state."""

    def __setstate__(self, state):
        self.state = state


class _ChPlaceholder(_ChumpyState):
    """`chumpy.ch.Ch`: the array is `state['x']`."""

    def to_numpy(self):
        return _to_plain(self.state['x'])


class _SelectPlaceholder(_ChumpyState):
    """`chumpy.reordering.Select`: value = a.x.ravel()[idxs].reshape(preferred_shape)."""

    def to_numpy(self):
        a = _to_plain(self.state['a'])
        idxs = np.asarray(self.state['idxs']).ravel()
        return np.asarray(a).ravel()[idxs].reshape(tuple(self.state['preferred_shape']))


class _SparsePlaceholder:
    """A pickled `scipy.sparse` CSC/CSR matrix (old or new module path), rebuilt on load."""

    format = None

    def __setstate__(self, state):
        self.state = state

    def to_scipy(self):
        s = self.state
        shape = tuple(s.get('_shape', s.get('shape')))
        cls = scipy.sparse.csr_matrix if self.format == 'csr' else scipy.sparse.csc_matrix
        return cls((np.asarray(s['data']), np.asarray(s['indices']), np.asarray(s['indptr'])),
                   shape=shape)


class _CscPlaceholder(_SparsePlaceholder):
    format = 'csc'


class _CsrPlaceholder(_SparsePlaceholder):
    format = 'csr'


def _numpy_reconstructors():
    """NumPy's pickle reconstruction functions, obtained through public methods so the
    module path (numpy.core vs numpy._core) of the installed NumPy does not matter."""
    array = np.zeros(1)
    return {
        '_reconstruct': array.__reduce__()[0],
        '_frombuffer': array.__reduce_ex__(5)[0],
        'scalar': np.float64(0).__reduce__()[0],
    }


def numpy_pickle_globals():
    """{(module, name): object} of the globals a pickle of NumPy arrays, dtypes and scalars
    names (both numpy.core and numpy._core paths), plus `_codecs.encode`, with which Python 3
    writes byte strings at protocols < 3 (a pure text encoding, it runs nothing else). For
    restricted unpicklers of plain-data files (this module's, dataset/ho3d/reader.py's)."""
    numpy_fns = _numpy_reconstructors()
    allowed = {}
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        allowed[(module, '_reconstruct')] = numpy_fns['_reconstruct']
        allowed[(module, 'scalar')] = numpy_fns['scalar']
    for module in ('numpy.core.numeric', 'numpy._core.numeric'):
        allowed[(module, '_frombuffer')] = numpy_fns['_frombuffer']
    allowed[('numpy', 'ndarray')] = np.ndarray
    allowed[('numpy', 'dtype')] = np.dtype
    allowed[('_codecs', 'encode')] = codecs.encode
    return allowed


def _allowed_globals():
    import copyreg
    allowed = numpy_pickle_globals()
    for module in ('copy_reg', 'copyreg'):
        allowed[(module, '_reconstructor')] = copyreg._reconstructor
    for module in ('__builtin__', 'builtins'):
        allowed[(module, 'set')] = set
        # `copyreg._reconstructor(cls, object, None)` names `object` as the base class.
        allowed[(module, 'object')] = object
    allowed[('chumpy.ch', 'Ch')] = _ChPlaceholder
    allowed[('chumpy.reordering', 'Select')] = _SelectPlaceholder
    for module in ('scipy.sparse.csc', 'scipy.sparse._csc', 'scipy.sparse'):
        allowed[(module, 'csc_matrix')] = _CscPlaceholder
    for module in ('scipy.sparse.csr', 'scipy.sparse._csr', 'scipy.sparse'):
        allowed[(module, 'csr_matrix')] = _CsrPlaceholder
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals a MANO model file needs; anything else is refused before it
    can run (`find_class` is called when the pickle names a global, before any call)."""

    def __init__(self, file, path):
        super().__init__(file, encoding='latin1')
        self.path = path
        self.allowed = _allowed_globals()

    def find_class(self, module, name):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"{self.path}: refusing to load global '{module}.{name}'. A MANO model file "
                f"only references NumPy arrays, SciPy sparse matrices, chumpy Ch/Select objects, "
                f"copyreg._reconstructor, set and _codecs.encode; this file is not a MANO model (or was "
                f"tampered with). Nothing in it was executed.") from None


def _to_plain(value):
    """Convert placeholders (recursively through containers) to NumPy / SciPy values."""
    if isinstance(value, _ChumpyState):
        return value.to_numpy()
    if isinstance(value, _SparsePlaceholder):
        return value.to_scipy()
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_plain(v) for v in value)
    return value


def load_mano(path):
    """Load a MANO model pickle (official chumpy form or plain re-pickled) into a dict.

    Args:
        path: a `MANO_RIGHT.pkl` / `MANO_LEFT.pkl` file, or the folder holding MANO_RIGHT.pkl.
    Returns:
        dict of NumPy arrays (float64 / integer), `J_regressor` as a scipy.sparse CSC matrix,
        strings for `bs_style` / `bs_type`; `standin` is True for the procedural stand-in.
    Raises:
        FileNotFoundError with download instructions if the file is missing;
        pickle.UnpicklingError naming the offending global for anything but a model file;
        ValueError naming the key for a missing key or a wrong shape.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, 'MANO_RIGHT.pkl')
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MANO model file not found: {path}. {MANO_DOWNLOAD_HINT}")
    with open(path, 'rb') as f:
        raw = _RestrictedUnpickler(f, path).load()
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a pickled dict of MANO arrays, got {type(raw).__name__}")
    data = {str(k): _to_plain(v) for k, v in raw.items()}

    for key, shape in REQUIRED_SHAPES.items():
        if key not in data:
            raise ValueError(f"{path}: key '{key}' is missing; a MANO model file has "
                             f"{sorted(REQUIRED_SHAPES)}")
        got = tuple(data[key].shape)
        if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got)):
            raise ValueError(f"{path}: '{key}' has shape {got}, expected {shape}")
    if not scipy.sparse.issparse(data['J_regressor']):
        data['J_regressor'] = scipy.sparse.csc_matrix(np.asarray(data['J_regressor']))
    for key, value in data.items():
        if isinstance(value, np.ndarray) and value.dtype.kind == 'f':
            data[key] = value.astype(np.float64, copy=False)
    data['standin'] = bool(data.get('standin', False))
    if data['standin']:
        logger.warning("%s is the procedural MANO STAND-IN, not the licensed MANO model: "
                       "results are not comparable with published numbers.", path)
    return data
