"""Fixtures shared across test folders, each made once per session when a test asks: the
procedural MANO stand-in (as arrays and as a folder), a random MANO model's folder, a short
synthetic hand clip with its ground truth (synthetic/clip.py), the detector extra's check, and
the free-space check before a run that trains (pytest.ini removes what passed tests wrote)."""
import os
import shutil
import tempfile

import pytest

from tests.helpers import CLIP_FRAMES, CLIP_SIZE, random_mano_data


@pytest.fixture(scope='session')
def standin():
    """The procedural MANO stand-in, synthetic.standin.build_standin(seed=0): a dict of arrays
    in the official keys, shared by the session (copy before changing it)."""
    from synthetic.standin import build_standin
    return build_standin(seed=0)


@pytest.fixture(scope='session')
def standin_mano(tmp_path_factory, standin):
    """Folder holding the stand-in's MANO_RIGHT.pkl and MANO_LEFT.pkl, as
    `python -m synthetic.standin --out DIR` writes them."""
    from synthetic.standin import save_standin
    folder = tmp_path_factory.mktemp('standin_mano')
    save_standin(str(folder), standin)
    return str(folder)


@pytest.fixture(scope='session')
def random_mano():
    """A random (not hand-shaped) right-hand MANO model as a dict of plain arrays
    (tests/helpers.random_mano_data(0)), shared by the session."""
    return random_mano_data(0)


@pytest.fixture(scope='session')
def random_mano_dir(tmp_path_factory, random_mano):
    """A folder with MANO_RIGHT.pkl (random_mano) and MANO_LEFT.pkl (random_mano_data(1)) in
    the official format."""
    from synthetic.mano_file import save_mano
    folder = tmp_path_factory.mktemp('random_mano')
    save_mano(folder / 'MANO_RIGHT.pkl', random_mano)
    save_mano(folder / 'MANO_LEFT.pkl', random_mano_data(1))
    return folder


@pytest.fixture(scope='session')
def clip(tmp_path_factory, standin_mano):
    """(folder, ground truth) of a CLIP_FRAMES-frame clip rendered with the stand-in."""
    os.environ.setdefault('PYOPENGL_PLATFORM', 'osmesa')
    from synthetic.clip import ClipSpec, generate_clip, read_clip
    folder = str(tmp_path_factory.mktemp('clip'))
    generate_clip(folder, standin_mano, ClipSpec(num_frames=CLIP_FRAMES, image_size=CLIP_SIZE),
                  progress=False)
    return folder, read_clip(folder)


REQUIRE_DETECTOR_ENV = 'SAR_REQUIRE_DETECTOR'  # set by .ci/run: the detector tests must run


@pytest.fixture
def detector_extra():
    """The detector extra (`make detector`) is installed; without it the test is skipped, or
    fails where $SAR_REQUIRE_DETECTOR is set (CI installs the extra, so it must run there)."""
    from wild.detector import INSTALL_COMMAND, detector_available, detector_python
    if not detector_available():
        why = f'the detector extra is not installed ({detector_python()} cannot import mediapipe)'
        if os.environ.get(REQUIRE_DETECTOR_ENV, '') not in ('', '0'):
            pytest.fail(f'{why}, and ${REQUIRE_DETECTOR_ENV} requires it: {INSTALL_COMMAND}')
        pytest.skip(f'{why}: {INSTALL_COMMAND}')


# The whole suite's peak use of its temporary folder: 3.2 GiB (fresh run, df sampled every 3 s;
# the training tests' checkpoints, e.g. 8 snapshots of 200 MB in the multi-node test).
SUITE_PEAK_GIB = 4


def pytest_collection_finish(session):
    """Stop before a run that trains (slow tests) when the temporary folder's disk has less
    than SUITE_PEAK_GIB free, naming the folder and how to fix it: otherwise the run fails
    minutes later with one "No space left on device" after another."""
    if session.config.option.collectonly:
        return
    if not any(item.get_closest_marker('slow') for item in session.items):
        return
    folder = (session.config.option.basetemp or os.environ.get('PYTEST_DEBUG_TEMPROOT')
              or tempfile.gettempdir())
    folder = os.path.abspath(folder)
    while not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    free_gib = shutil.disk_usage(folder).free / 2 ** 30
    if free_gib < SUITE_PEAK_GIB:
        pytest.exit(f'{folder} has {free_gib:.1f} GiB free; the tests that train write up to '
                    f'{SUITE_PEAK_GIB} GiB there. Free space (old pytest-of-* folders in '
                    f'{tempfile.gettempdir()} can go), point TMPDIR or --basetemp at a larger '
                    f'disk, or run `-m "not slow"`.', returncode=3)
