import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse

from manopth.io import load_mano
from synthetic.mano_file import save_mano
from tests.helpers import random_mano_data


def _assert_same(expected, loaded):
    for key, value in expected.items():
        got = loaded[key]
        if scipy.sparse.issparse(value):
            assert scipy.sparse.issparse(got), key
            value, got = value.toarray(), got.toarray()
        if isinstance(value, np.ndarray):
            assert got.shape == value.shape, key
            np.testing.assert_array_equal(got, value, err_msg=key)
        else:
            assert got == value, key


def test_official_and_plain_pickles_load_to_identical_arrays(tmp_path):
    data = random_mano_data(3)
    save_mano(tmp_path / 'official.pkl', data, official=True)
    save_mano(tmp_path / 'plain.pkl', data, official=False)
    official, plain = load_mano(tmp_path / 'official.pkl'), load_mano(tmp_path / 'plain.pkl')
    _assert_same(data, official)
    _assert_same(data, plain)
    assert official['standin'] is False and plain['standin'] is False


def test_official_form_uses_chumpy_and_old_scipy_path(tmp_path):
    save_mano(tmp_path / 'm.pkl', random_mano_data(0))
    raw = (tmp_path / 'm.pkl').read_bytes()
    assert raw[:2] == b'\x80\x02'  # protocol 2
    for name in (b'chumpy.ch\nCh\n', b'chumpy.reordering\nSelect\n',
                 b'scipy.sparse.csc\ncsc_matrix\n', b'numpy.core.multiarray\n_reconstruct\n'):
        assert name in raw
    assert b'_codecs' not in raw  # byte strings written as Python 2 did


def test_refuses_foreign_global_before_running_it(tmp_path):
    marker = tmp_path / 'pwned'
    payload = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    path = tmp_path / 'evil.pkl'
    path.write_bytes(payload)
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load global 'os\.system'") as err:
        load_mano(path)
    assert str(path) in str(err.value)
    assert not marker.exists()


def test_refuses_builtin_eval(tmp_path):
    path = tmp_path / 'evil.pkl'
    path.write_bytes(b"c__builtin__\neval\n(S'1+1'\ntR.")
    with pytest.raises(pickle.UnpicklingError, match=r"__builtin__\.eval"):
        load_mano(path)


def test_protocol0_copyreg_reconstructor_path(tmp_path, monkeypatch):
    """Old pickles build chumpy objects through copy_reg._reconstructor(cls, object, None)."""
    class Ch:
        pass
    Ch.__module__, Ch.__qualname__ = 'chumpy.ch', 'Ch'
    fake = types.ModuleType('chumpy.ch')
    fake.Ch = Ch
    monkeypatch.setitem(sys.modules, 'chumpy', types.ModuleType('chumpy'))
    monkeypatch.setitem(sys.modules, 'chumpy.ch', fake)
    data = random_mano_data(4)
    ch = Ch()
    ch.__dict__.update({'x': data['v_template'], '_dirty_vars': {'a'}})
    data['v_template'] = ch
    path = tmp_path / 'p0.pkl'
    path.write_bytes(pickle.dumps(data, protocol=0))
    assert b'copyreg\n_reconstructor' in path.read_bytes() or b'copy_reg\n_reconstructor' in path.read_bytes()
    loaded = load_mano(path)
    np.testing.assert_array_equal(loaded['v_template'], ch.x)


def test_missing_file_says_where_to_get_mano(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_mano(tmp_path)
    message = str(err.value)
    assert str(tmp_path / 'MANO_RIGHT.pkl') in message
    assert 'mano.is.tue.mpg.de' in message and 'synthetic.standin' in message


def test_missing_key_and_wrong_shape_are_named(tmp_path):
    data = random_mano_data(0)
    del data['weights']
    save_mano(tmp_path / 'a.pkl', data)
    with pytest.raises(ValueError, match="'weights' is missing"):
        load_mano(tmp_path / 'a.pkl')
    data = random_mano_data(0)
    data['posedirs'] = data['posedirs'][:, :, :10]
    save_mano(tmp_path / 'b.pkl', data)
    with pytest.raises(ValueError, match=r"'posedirs' has shape \(778, 3, 10\)"):
        load_mano(tmp_path / 'b.pkl')


def test_standin_flag_warns(tmp_path, caplog):
    data = random_mano_data(0)
    data['standin'] = True
    save_mano(tmp_path / 's.pkl', data)
    with caplog.at_level('WARNING'):
        assert load_mano(tmp_path / 's.pkl')['standin'] is True
    assert 'STAND-IN' in caplog.text


def test_official_writer_is_deterministic(tmp_path):
    save_mano(tmp_path / 'a.pkl', random_mano_data(5))
    save_mano(tmp_path / 'b.pkl', random_mano_data(5))
    assert (tmp_path / 'a.pkl').read_bytes() == (tmp_path / 'b.pkl').read_bytes()
