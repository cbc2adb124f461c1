"""Setting a run up: resolve the configuration (with the config.json saved beside a
checkpoint), start torchrun's process group, configure logging, log the environment and the
resolved configuration, and save it beside the outputs."""
import json
import os
import sys
from typing import NamedTuple

import torch

import config as config_module
from model.sar import check_config
from utils.errors import CheckpointError
from utils.runtime import distributed
from utils.files.atomic import atomic_write_json
from utils.runtime.logger import log_environment, setup_logger

CONFIG_FILE = 'config.json'  # beside every checkpoint: the resolved configuration


class Run(NamedTuple):
    """What the entry scripts get from `setup_run`."""
    cfg: config_module.Config
    rank: int
    world_size: int
    device: torch.device
    logger: object


def saved_config(checkpoint):
    """The Config saved beside `checkpoint` (config.json), or None when there is none."""
    path = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), CONFIG_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            values = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise config_module.ConfigError(f'{path} (the configuration saved beside {checkpoint}) '
                                        f'cannot be read: {err}; fix or delete it') from None
    if not isinstance(values, dict):
        raise config_module.ConfigError(f'{path}: expected a JSON object of config fields')
    return config_module.from_dict(values)


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
    config.json saved beside the checkpoint (when present) instead of config.py's defaults, so
    a checkpoint trained with `--preset cpu_demo` runs with its own network size and data
    without repeating the preset.
    """
    cfg = config_module.resolve(argv)
    wanted = [('checkpoint', cfg.checkpoint)] if from_checkpoint or cfg.continue_train else []
    for field, path in wanted + [('pre', cfg.pre)]:
        if path and not os.path.isfile(path):  # before anything is written
            raise CheckpointError(f'checkpoint not found: {path} (set --{field} PATH)')
    if from_checkpoint and cfg.onnx:
        return _resolve_for_onnx(argv, cfg)
    if from_checkpoint and cfg.checkpoint:
        base = saved_config(cfg.checkpoint)
        if base is not None:
            cfg = config_module.resolve(argv, base=base)
    return check_network(cfg)


def _resolve_for_onnx(argv, cfg):
    """The configuration of a run with `--onnx FILE`: the one stored in the file under the
    command line; a `--checkpoint` given as well must describe the same network."""
    from engine.onnx_export import check_config_agrees, read_config

    try:
        stored = read_config(cfg.onnx)
    except ValueError as err:
        raise config_module.ConfigError(str(err)) from None
    cfg = config_module.resolve(argv, base=config_module.from_dict(stored))
    try:
        check_config_agrees(stored, cfg.to_dict())  # overrides must not change the network
        if cfg.checkpoint:
            saved = saved_config(cfg.checkpoint) or config_module.cfg
            check_config_agrees(stored, saved.to_dict())
    except ValueError as err:
        raise config_module.ConfigError(str(err)) from None
    if cfg.device != 'cpu':
        raise config_module.ConfigError(f"--onnx runs ONNX Runtime on the CPU, but device is "
                                        f"{cfg.device!r}: add --device cpu")
    return check_network(cfg)


def setup_run(cfg, log_name):
    """Start distributed (under torchrun), log to output/log/<log_name>.log on rank 0, log the
    environment and the resolved configuration. Returns a `Run`."""
    rank, world_size, device = distributed.init_distributed(cfg.device)
    logger = setup_logger(os.path.join(cfg.log_dir, f'{log_name}.log'), rank)
    log_environment(logger)
    logger.info('resolved config:\n%s', config_module.dumps(cfg))
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True  # fixed input size: pick the fastest kernels once
    return Run(cfg, rank, world_size, device, logger)


def save_config(cfg, folder):
    """Write the resolved configuration to folder/config.json (atomically)."""
    path = os.path.join(folder, CONFIG_FILE)
    atomic_write_json(path, cfg.to_dict(), indent=2)
    return path


TRACEBACK_ENV = 'SAR_TRACEBACK'  # set to 1 to see the traceback of an expected error too


def expected_errors():
    """Errors whose message is the whole story (bad configuration, data, checkpoint, a missing
    file, a non-finite loss, a failed ONNX self-check): the entry scripts print them as one message, no traceback."""
    from engine.onnx_export import OnnxExportError
    from engine.training import NonFiniteLossError
    from utils.errors import DataError
    return (config_module.ConfigError, DataError, CheckpointError, FileNotFoundError,
            NotADirectoryError, FileExistsError, NonFiniteLossError, OnnxExportError)


def run_main(main, argv, prog):
    """Run an entry script's `main(argv)`; returns the process exit code.

    Expected errors print `<prog>: error: <message>` on stderr and exit 1 (the traceback only
    with SAR_TRACEBACK=1); Ctrl-C prints one line and exits 130; anything else is a bug and
    keeps its traceback.
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
    return 0
