"""Fixtures shared across test folders: the procedural MANO stand-in and a short synthetic
hand clip with its ground truth (synthetic/clip.py), made once per session when a test asks."""
import os

import pytest

from tests.helpers import CLIP_FRAMES, CLIP_SIZE


@pytest.fixture(scope='session')
def standin_mano(tmp_path_factory):
    """Folder holding the procedural MANO stand-in (python -m synthetic.standin)."""
    from synthetic.standin import main as standin_main
    folder = tmp_path_factory.mktemp('standin_mano')
    standin_main(['--out', str(folder)])
    return str(folder)


@pytest.fixture(scope='session')
def clip(tmp_path_factory, standin_mano):
    """(folder, ground truth) of a CLIP_FRAMES-frame clip rendered with the stand-in."""
    os.environ.setdefault('PYOPENGL_PLATFORM', 'osmesa')
    from synthetic.clip import generate_clip, read_clip
    folder = str(tmp_path_factory.mktemp('clip'))
    generate_clip(folder, standin_mano, num_frames=CLIP_FRAMES, image_size=CLIP_SIZE,
                  progress=False)
    return folder, read_clip(folder)
