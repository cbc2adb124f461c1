"""A random (not hand-shaped) MANO model in the official file format (tests/helpers.py)."""
import pytest

from synthetic.mano_file import save_mano
from tests.helpers import random_mano_data


@pytest.fixture(scope='session')
def random_mano():
    """The random right-hand model as a dict of plain arrays."""
    return random_mano_data(0)


@pytest.fixture(scope='session')
def random_mano_dir(tmp_path_factory, random_mano):
    """A folder with MANO_RIGHT.pkl and MANO_LEFT.pkl (official format) of random models."""
    folder = tmp_path_factory.mktemp('random_mano')
    save_mano(folder / 'MANO_RIGHT.pkl', random_mano)
    save_mano(folder / 'MANO_LEFT.pkl', random_mano_data(1))
    return folder
