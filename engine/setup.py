"""Setting a run up: resolve the configuration (with the config.json saved beside a
checkpoint), start the process group (torchrun or srun), take the experiment lock of a
training run, configure logging, log the environment and the resolved configuration, and save
it beside the outputs."""
import contextlib
import errno
import fcntl
import json
import os
import sys
from typing import NamedTuple

import torch

import config as config_module
from model.sar import check_config
from utils.errors import CheckpointError
from utils.runtime import distributed
from utils.runtime.checkpoint import load_checkpoint
from utils.files.atomic import atomic_write_json, remove_stale_temporaries
from utils.runtime.logger import log_environment, setup_logger

CONFIG_FILE = 'config.json'  # beside every checkpoint: the resolved configuration
# Decoding choices a run may make on any network, ONNX files included (docs/method.md §11).
DECODING_SWITCHES = ('fx_as_fy', 'as_published')


class Run(NamedTuple):
    """What the entry scripts get from `setup_run`."""
    cfg: config_module.Config
    rank: int
    world_size: int
    device: torch.device
    logger: object


# Fields that shape the network's weights: a run that loads a checkpoint must keep the values
# it was trained with (decoding fields such as depth_box, fx_as_fy, as_published may change).
NETWORK_SHAPE_FIELDS = ('backbone', 'num_stage', 'num_FMs', 'feature_size', 'heatmap_size',
                        'num_vert', 'num_joint', 'input_img_shape')
_PENDING_NOTES = []  # what resolve_config found, logged once the log is set up (log_config_notes)


def saved_config(checkpoint):
    """The configuration a checkpoint was trained with, and where it was found.

    In this order: the 'config' stored in the checkpoint itself (every checkpoint train.py
    writes has one), then config.json beside it; neither (the authors' released checkpoint)
    gives None. Returns (Config or None, a sentence for the log naming the source).
    """
    ckpt = load_checkpoint(checkpoint)
    stored = ckpt.get('config')
    if stored is not None:
        if not isinstance(stored, dict):
            raise CheckpointError(f"{checkpoint}: its 'config' entry is a "
                                  f"{type(stored).__name__}, expected a dict of config fields")
        source = f'the configuration stored in {checkpoint}'
        return config_module.from_dict(stored, source), f'configuration: {source}'
    path = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), CONFIG_FILE)
    if not os.path.isfile(path):
        return None, (f'configuration: {checkpoint} stores none and there is no {CONFIG_FILE} '
                      f'beside it (as with the authors\' released checkpoint): config.py\'s '
                      f'defaults, the published configuration')
    try:
        with open(path) as f:
            values = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise config_module.ConfigError(f'{path} (the configuration saved beside {checkpoint}) '
                                        f'cannot be read: {err}; fix or delete it') from None
    if not isinstance(values, dict):
        raise config_module.ConfigError(f'{path}: expected a JSON object of config fields')
    return (config_module.from_dict(values, path),
            f'configuration: {path} (beside {checkpoint}, which stores none)')


def check_against_checkpoint(cfg, trained, checkpoint):
    """ConfigError naming `checkpoint` and the trained values when the resolved `cfg` changes a
    field that shapes the network (a command-line override that contradicts the weights)."""
    changed = [(name, getattr(cfg, name), getattr(trained, name)) for name in NETWORK_SHAPE_FIELDS
               if getattr(cfg, name) != getattr(trained, name)]
    if changed:
        raise config_module.ConfigError(
            f'{checkpoint} was trained with ' + ', '.join(
                f'{name}={theirs!r}' for name, _, theirs in changed) + ' but the command line '
            'asks for ' + ', '.join(f'{name}={ours!r}' for name, ours, _ in changed)
            + ': its weights only fit the network they were trained with; drop '
            + ' '.join(f'--{name}' for name, _, _ in changed) + ' (or train a new checkpoint)')


def log_config_notes(logger):
    """Log (once) what resolve_config found, e.g. where a checkpoint's configuration came from;
    called once the log is set up (setup_run, demo.py)."""
    for note in _PENDING_NOTES:
        logger.info('%s', note)
    _PENDING_NOTES.clear()


def check_network(cfg):
    """ConfigError (before anything touches the disk) for sizes the network would refuse, or
    a CUDA device on a machine without one."""
    if cfg.device == 'cuda' and not torch.cuda.is_available():
        raise config_module.ConfigError("device='cuda' but CUDA is not available on this machine: "
                                        "add --device cpu (or install a CUDA build of torch and "
                                        "a driver)")
    try:
        check_config(cfg.backbone, cfg.num_stage, cfg.num_FMs, cfg.feature_size,
                     cfg.heatmap_size, cfg.num_vert, cfg.num_joint, cfg.input_img_shape)
    except ValueError as err:
        raise config_module.ConfigError(str(err)) from None
    return cfg


def resolve_config(argv, from_checkpoint=False):
    """The validated configuration of a run: config.py, preset, command line (config.resolve),
    then the network's own size checks.

    from_checkpoint: for runs that load `--checkpoint` (test.py, demo.py): start from the
    configuration the checkpoint was trained with (`saved_config`: stored in it, else
    config.json beside it; the log says which) instead of config.py's defaults, so a checkpoint
    trained with `--preset cpu_demo` runs with its own network size, data and decoding without
    repeating the preset. Overrides of the network's shape are refused
    (`check_against_checkpoint`).
    """
    _PENDING_NOTES.clear()  # notes of an earlier resolution in this process are not this run's
    cfg = config_module.resolve(argv)
    wanted = [('checkpoint', cfg.checkpoint)] if from_checkpoint or cfg.continue_train else []
    for field, path in wanted + [('pre', cfg.pre)]:
        if path and not os.path.isfile(path):  # before anything is written
            raise CheckpointError(f'checkpoint not found: {path} (set --{field} PATH)')
    if from_checkpoint and cfg.onnx:
        return _resolve_for_onnx(argv, cfg)
    if from_checkpoint and cfg.checkpoint:
        base, note = saved_config(cfg.checkpoint)
        _PENDING_NOTES.append(note)
        if base is not None:  # without one, loading the weights is the check
            cfg = config_module.resolve(argv, base=base)
            check_against_checkpoint(cfg, base, cfg.checkpoint)
    return check_network(cfg)


def _resolve_for_onnx(argv, cfg):
    """The configuration of a run with `--onnx FILE`: the one stored in the file under the
    command line; a `--checkpoint` given as well must describe the same network."""
    from engine.onnx_export import check_config_agrees, read_config

    try:
        stored = read_config(cfg.onnx)
    except ValueError as err:
        raise config_module.ConfigError(str(err)) from None
    cfg = config_module.resolve(argv, base=config_module.from_dict(stored, cfg.onnx))
    _PENDING_NOTES.append(f'configuration: the one stored in {cfg.onnx}')
    try:
        # Overrides must not change the network; the published decoding may be asked for.
        check_config_agrees(stored, {**cfg.to_dict(), **{k: stored.get(k) for k in
                                                         DECODING_SWITCHES}})
        if cfg.checkpoint and not os.path.isfile(cfg.checkpoint):
            # Only the path recorded at export (a given --checkpoint was checked above): an
            # exported file runs without its checkpoint.
            _PENDING_NOTES.append(f'{cfg.onnx} was exported from {cfg.checkpoint}, which is not '
                                  f'here: nothing to check it against')
        elif cfg.checkpoint:
            saved, note = saved_config(cfg.checkpoint)
            _PENDING_NOTES.append(f'{note} (checked against {cfg.onnx})')
            check_config_agrees(stored, (saved or config_module.cfg).to_dict())
    except ValueError as err:
        raise config_module.ConfigError(str(err)) from None
    if cfg.device != 'cpu':
        raise config_module.ConfigError(f"--onnx runs ONNX Runtime on the CPU, but device is "
                                        f"{cfg.device!r}: add --device cpu")
    return check_network(cfg)


def setup_run(cfg, log_name, lock=None):
    """Start distributed (under torchrun or srun), log to output/log/<log_name>.log on rank 0,
    log the environment and the resolved configuration. Returns a `Run`.

    lock: an ExperimentLock that rank 0 acquires after the process group formed and before
    anything is written; when it is held elsewhere every rank raises ExperimentLockedError.
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
    logger = setup_logger(os.path.join(cfg.log_dir, f'{log_name}.log'), rank)
    if lock is not None and lock.note:
        logger.info(lock.note)
    log_environment(logger)
    log_config_notes(logger)
    logger.info('resolved config:\n%s', config_module.dumps(cfg))
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True  # fixed input size: pick the fastest kernels once
    return Run(cfg, rank, world_size, device, logger)


LOCK_FILE = 'train.lock'  # beside the checkpoints: the pid of the train.py writing them


class ExperimentLockedError(RuntimeError):
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
def training_run(cfg, log_name):
    """setup_run for train.py holding the experiment lock beside the checkpoints (rank 0)
    while the block runs; the lock file is removed at the end."""
    lock = ExperimentLock(cfg.checkpoint_dir)
    try:
        yield setup_run(cfg, log_name, lock=lock)
    finally:
        lock.release()


def check_batch_split(cfg, world_size):
    """ConfigError unless batch_size splits evenly over world_size processes and
    cfg.accumulate micro-batches (checked before anything is written)."""
    parts = world_size * cfg.accumulate
    if cfg.batch_size % parts:
        raise config_module.ConfigError(
            f"batch_size {cfg.batch_size} is not divisible by the world size {world_size} x "
            f"accumulate {cfg.accumulate} = {parts}: batch_size is the total per optimizer step "
            f"over all processes and micro-batches; choose a multiple of {parts}")


def launch_summary(cfg, world_size):
    """The lines saying how the run is spread: the world size and batch split, the launcher
    and nodes, and each node's ranks (a collective: every rank calls it)."""
    launch = distributed.launch_from_env()
    per_process = cfg.batch_size // world_size
    split = (f'world size {world_size}: batch {per_process} per process, {cfg.batch_size} in '
             f'total')
    if cfg.accumulate > 1:
        split += (f', accumulated over {cfg.accumulate} micro-batches of '
                  f'{per_process // cfg.accumulate}')
    nodes = f'{launch.launcher} launch, {launch.num_nodes} node{"s" * (launch.num_nodes > 1)}'
    return [split, nodes, *distributed.rank_layout()]


def prepare_checkpoint_dir(cfg, logger):
    """Create the checkpoint folder, remove the temporaries an interrupted write left there,
    and save the resolved configuration (config.json) in it (rank 0)."""
    os.makedirs(cfg.checkpoint_dir, exist_ok=True)
    for stale in remove_stale_temporaries(cfg.checkpoint_dir):
        logger.info('removed %s, left by an interrupted write of an earlier run', stale)
    save_config(cfg, cfg.checkpoint_dir)


def save_config(cfg, folder):
    """Write the resolved configuration to folder/config.json (atomically)."""
    path = os.path.join(folder, CONFIG_FILE)
    atomic_write_json(path, cfg.to_dict(), indent=2)
    return path


TRACEBACK_ENV = 'SAR_TRACEBACK'  # set to 1 to see the traceback of an expected error too


def expected_errors():
    """Errors whose message is the whole story (bad configuration, data, checkpoint, a missing
    file, an output that cannot be written, a non-finite loss, a failed ONNX self-check): the
    entry scripts print them as one message, no traceback."""
    from engine.onnx_export import OnnxExportError
    from engine.training import NonFiniteLossError
    from utils.errors import DataError, LaunchError, OutputError
    return (config_module.ConfigError, DataError, CheckpointError, FileNotFoundError,
            NotADirectoryError, FileExistsError, OutputError, NonFiniteLossError,
            OnnxExportError, LaunchError, ExperimentLockedError)


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
