"""Launching an entry script: run_main (expected errors as one message), the process group,
the experiment lock of a training run, logging of the environment and the resolved
configuration."""
import contextlib
import errno
import fcntl
import json
import os
import sys
from typing import NamedTuple

import torch

from utils.errors import UserError
from utils.runtime import distributed
from utils.runtime.logger import log_environment, setup_logger


class Run(NamedTuple):
    """What the entry scripts get from `setup_run`."""
    cfg: object  # the resolved config.Config
    rank: int
    world_size: int
    device: torch.device
    logger: object


def log_config_notes(logger, notes):
    """Log what resolve_config found (its `notes`, e.g. where a checkpoint's configuration came
    from), once the log is set up (setup_run, demo.py, app.py)."""
    for note in notes:
        logger.info('%s', note)


def setup_run(cfg, log_name, lock=None, guard=None, notes=()):
    """Start distributed (under torchrun or srun), log to output/log/<log_name>.log on rank 0,
    log the environment, `notes` (resolve_config's) and the resolved configuration. Returns a
    `Run`.

    lock: an ExperimentLock that rank 0 acquires after the process group formed and before
    anything is written; when it is held elsewhere every rank raises ExperimentLockedError.
    guard: `guard(cfg, rank)`, called on every rank once the group formed (and the lock is held),
    before anything is written; it raises a UserError to refuse the run (collectives allowed).
    """
    rank, world_size, device = distributed.init_distributed(cfg.device, cfg.dist_timeout)
    if lock is not None:
        refusal = None
        if rank == 0:
            try:
                lock.acquire()
            except ExperimentLockedError as err:
                refusal = str(err)
        refusal = distributed.all_gather_objects(refusal)[0]  # every rank learns rank 0's answer
        if refusal:
            distributed.cleanup()
            raise ExperimentLockedError(refusal if rank == 0 else f'rank 0: {refusal}')
    if guard is not None:
        try:
            guard(cfg, rank)
        except UserError:
            distributed.cleanup()
            raise
    logger = setup_logger(os.path.join(cfg.log_dir, f'{log_name}.log'), rank)
    if lock is not None and lock.note:
        logger.info(lock.note)
    log_environment(logger)
    log_config_notes(logger, notes)
    logger.info('resolved config:\n%s', json.dumps(cfg.to_dict(), indent=2, sort_keys=True))
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True  # fixed input size: pick the fastest kernels once
    return Run(cfg, rank, world_size, device, logger)


LOCK_FILE = 'train.lock'  # beside the checkpoints: the pid of the train.py writing them


class ExperimentLockedError(RuntimeError, UserError):
    """Another live train.py holds the experiment's lock; the message names its pid."""


class ExperimentLock:
    """The lock file `folder`/train.lock: an exclusive fcntl.flock held while the run lasts,
    with the holder's pid inside. The kernel drops a flock when its process dies however it
    dies, so a lock file whose flock can be taken belongs to a dead run and is taken over
    (`note` says so for the log).
    """

    def __init__(self, folder):
        self.folder = folder
        self.path = os.path.join(folder, LOCK_FILE)
        self.fd = None
        self.note = ''

    def acquire(self):
        """Take the lock or raise ExperimentLockedError naming the holder's pid."""
        os.makedirs(self.folder, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                holder = _read_pid(fd)
                os.close(fd)
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                raise ExperimentLockedError(
                    f'another train.py (pid {holder or "unknown"}) is training into '
                    f'{self.folder}: it holds the lock file {self.path}. Wait for it to finish '
                    f'or stop it, or train under another --experiment_name') from None
            if _same_file(fd, self.path):
                break
            os.close(fd)  # the holder removed the file between our open and flock: again
        previous = _read_pid(fd)
        if previous:
            self.note = (f'cleared the lock file {self.path} of process {previous}, which no '
                         f'longer runs')
        os.ftruncate(fd, 0)
        os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)
        self.fd = fd
        return self

    def release(self):
        """Remove the lock file and drop the lock (a no-op when not held)."""
        if self.fd is None:
            return
        if _same_file(self.fd, self.path):
            os.remove(self.path)
        os.close(self.fd)
        self.fd = None


def _read_pid(fd):
    return os.pread(fd, 64, 0).decode(errors='replace').strip()


def _same_file(fd, path):
    try:
        here, held = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino)


@contextlib.contextmanager
def training_run(cfg, log_name, guard=None, notes=()):
    """setup_run for train.py holding the experiment lock beside the checkpoints (rank 0)
    while the block runs; the lock file is removed at the end. guard, notes: as in setup_run."""
    lock = ExperimentLock(cfg.checkpoint_dir)
    try:
        yield setup_run(cfg, log_name, lock=lock, guard=guard, notes=notes)
    finally:
        lock.release()


TRACEBACK_ENV = 'SAR_TRACEBACK'  # set to 1 to see the traceback of an expected error too


def expected_errors():
    """Errors whose message is the whole story (every utils.errors.UserError: bad configuration,
    data, checkpoint, output, launch, a non-finite loss, a failed ONNX self-check, a held
    experiment lock; and a missing file): the entry scripts print them as one message, no
    traceback."""
    return (UserError, FileNotFoundError, NotADirectoryError, FileExistsError)


def file_error_message(err):
    """One line for an OSError that names its file (e.g. the log file in a read-only output
    folder, an image folder without permission), or None for one that names none (a bug)."""
    if err.filename is None:
        return None
    code = f' ({errno.errorcode[err.errno]})' if err.errno in errno.errorcode else ''
    return (f'{err.filename}: {err.strerror or err}{code}; check the path, its permissions and '
            f'the free space')


def run_main(main, argv, prog):
    """Run an entry script's `main(argv)`; returns the process exit code.

    Expected errors, and OSErrors that name their file, print `<prog>: error: <message>` on
    stderr and exit 1 (the traceback only with SAR_TRACEBACK=1); Ctrl-C prints one line and
    exits 130; anything else is a bug and keeps its traceback.
    """
    try:
        main(argv)
    except KeyboardInterrupt:
        print(f'\n{prog}: interrupted (files being written were left as they were before: '
              f'checkpoints and outputs are only replaced once complete)', file=sys.stderr)
        return 130
    except expected_errors() as err:
        if os.environ.get(TRACEBACK_ENV, '') not in ('', '0'):
            raise
        print(f'{prog}: error: {err}', file=sys.stderr)
        return 1
    except OSError as err:
        message = file_error_message(err)
        if message is None or os.environ.get(TRACEBACK_ENV, '') not in ('', '0'):
            raise
        print(f'{prog}: error: {message}', file=sys.stderr)
        return 1
    return 0
