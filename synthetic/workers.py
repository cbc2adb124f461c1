"""What the two generators (synthetic/freihand.py, synthetic/ho3d.py) share: the checks of
their arguments and output folder, the rendering workers, the projected box of a mesh and the
command line's error handling."""
import dataclasses
import logging
import multiprocessing
import os
import sys

import numpy as np
from tqdm import tqdm

from utils.runtime.threads import opencv_single_threaded

@dataclasses.dataclass(frozen=True, kw_only=True)
class Run:
    """How a generator runs (the files do not depend on it).

    workers: rendering processes (1 renders in this process; each worker process builds its
    own OpenGL renderer). overwrite: allow a non-empty output folder (only the generator's own
    files are replaced). progress: a tqdm progress bar. render: False writes grey frames
    instead of renders (HO3D's generator: fast, for tests of the loaders).
    """
    workers: int = 1
    overwrite: bool = False
    progress: bool = True
    render: bool = True


_faces = None  # F x 3 faces of the mesh this process renders, set by init_worker


def init_worker(faces, single_threaded=False):
    """Per-process setup; `single_threaded` for pool workers, which parallelise across samples."""
    global _faces
    _faces = faces
    if single_threaded:
        # Before this process creates its OpenGL context: Mesa's llvmpipe rasteriser otherwise
        # starts one thread per core in every worker and oversubscribes the cores.
        os.environ.setdefault('LP_NUM_THREADS', '1')
        opencv_single_threaded()


def worker_faces():
    """The faces given to this process's init_worker."""
    return _faces


def render_all(render_one, tasks, faces, workers, progress, unit='sample'):
    """[render_one(task) for task in tasks], in this process (`workers` 1) or in `workers`
    spawned ones, in task order; `render_one` is a module-level function (pickled by name)."""
    results = []
    bar = tqdm(total=len(tasks), unit=unit, desc='rendering', disable=not progress)
    if workers == 1:
        init_worker(faces)
        for task in tasks:
            results.append(render_one(task))
            bar.update()
    else:
        # 'spawn': fresh processes, no OpenGL context or torch thread pool inherited by fork.
        context = multiprocessing.get_context('spawn')
        with context.Pool(workers, initializer=init_worker, initargs=(faces, True)) as pool:
            for value in pool.imap(render_one, tasks, chunksize=4):
                results.append(value)
                bar.update()
    bar.close()
    return results


def check_counts(**counts):
    """Each count (num_train, num_eval, workers) >= 1 and `seed` >= 0, as plain integers."""
    for name, value in counts.items():
        minimum = 0 if name == 'seed' else 1
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
            raise ValueError(f'{name} must be an integer >= {minimum}, got {value!r}')


def check_root(root, overwrite, contents):
    """Refuse a file, or a non-empty folder unless `overwrite`, at `root`; changes nothing.
    `contents` names what --overwrite replaces (for the message)."""
    if os.path.exists(root) and not os.path.isdir(root):
        raise NotADirectoryError(f'--root {root} exists and is not a folder; choose a folder path')
    if os.path.isdir(root) and os.listdir(root) and not overwrite:
        raise FileExistsError(
            f'--root {os.path.abspath(root)} is not empty; choose an empty or new folder, or pass '
            f'--overwrite (generate(..., overwrite=True)) to replace {contents} in it')


def projected_bounds(verts_cam, K):
    """(u_min, v_min, u_max, v_max), pixels, of the vertices (V x 3, camera frame, meters)
    projected with K (3 x 3)."""
    u = K[0, 0] * verts_cam[:, 0] / verts_cam[:, 2] + K[0, 2]
    v = K[1, 1] * verts_cam[:, 1] / verts_cam[:, 2] + K[1, 2]
    return u.min(), v.min(), u.max(), v.max()


def run_command(parser, generate, logger):
    """Run `generate()` for a generator's command line: INFO lines of the generator's `logger`
    only (PyOpenGL logs chatter at INFO); a bad argument or folder exits with status 2."""
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s',
                        stream=sys.stdout)
    logger.setLevel(logging.INFO)
    try:
        generate()
    except (FileExistsError, FileNotFoundError, NotADirectoryError, ValueError) as err:
        parser.exit(2, f'error: {err}\n')
