"""Fixtures of the data set tests: a tiny FreiHAND-layout folder (synthetic/fixture.py)."""
import pytest

from synthetic.fixture import make_freihand


@pytest.fixture
def freihand(tmp_path):
    """(root folder, ground truth dict) of a FreiHAND folder with 3 training and 2 evaluation samples."""
    root = tmp_path / 'FreiHAND'
    return str(root), make_freihand(str(root))
