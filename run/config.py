"""The configuration of a run: config.py, preset and command line, checked against the
network's own size rules and, for runs that load a checkpoint or an ONNX file, against the
configuration saved with it; and its copy saved beside the checkpoints (config.json)."""
import json
import os
from typing import NamedTuple, Tuple

import torch

import config as config_module
import dataset as datasets
from inference.decoding import Decoding
from model.heads import get_head
from model.spec import check_spec
from utils.network_spec import NetworkSpec
from utils.errors import CheckpointError, ConfigError
from utils.files.atomic import atomic_write_json
from utils.runtime.checkpoint import load_checkpoint

CONFIG_FILE = 'config.json'  # beside every checkpoint: the resolved configuration


class Resolved(NamedTuple):
    """What `resolve_config` returns."""
    cfg: object  # the validated config.Config
    notes: Tuple[str, ...]  # sentences for the run's log (where its configuration came from),
    # logged once the log is set up (utils.runtime.launch.setup_run(notes=...), log_config_notes)


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
        raise ConfigError(f'{path} (the configuration saved beside {checkpoint}) '
                          f'cannot be read: {err}; fix or delete it') from None
    if not isinstance(values, dict):
        raise ConfigError(f'{path}: expected a JSON object of config fields')
    return (config_module.from_dict(values, path),
            f'configuration: {path} (beside {checkpoint}, which stores none)')


def check_against_checkpoint(cfg, trained, checkpoint):
    """ConfigError naming `checkpoint` and the trained values when the resolved `cfg` changes a
    field that shapes the network (a command-line override that contradicts the weights)."""
    # The fields that shape the weights (utils/network_spec.NetworkSpec) must keep their trained values;
    # decoding fields such as depth_box, fx_as_fy, as_published may change.
    changed = NetworkSpec.from_config(cfg).differences(NetworkSpec.from_config(trained))
    if changed:
        raise ConfigError(
            f'{checkpoint} was trained with ' + ', '.join(
                f'{name}={theirs!r}' for name, _, theirs in changed) + ' but the command line '
            'asks for ' + ', '.join(f'{name}={ours!r}' for name, ours, _ in changed)
            + ': its weights only fit the network they were trained with; drop '
            + ' '.join(f'--{name}' for name, _, _ in changed) + ' (or train a new checkpoint)')


def check_network(cfg):
    """ConfigError (before anything touches the disk) for sizes the network would refuse, a
    data set that is not registered or refuses the configuration (its entry's check), or a
    CUDA device on a machine without one."""
    if cfg.device == 'cuda' and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but CUDA is not available on this machine: "
                          "add --device cpu (or install a CUDA build of torch and a driver)")
    try:
        check_spec(NetworkSpec.from_config(cfg))
        get_head(cfg.head)
        datasets.entry(cfg.dataset).check(cfg)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return cfg


def resolve_config(argv, from_checkpoint=False):
    """The validated configuration of a run: config.py, preset, command line (config.resolve),
    then the network's own size checks. Returns `Resolved(cfg, notes)`.

    from_checkpoint: for runs that load `--checkpoint` (test.py, demo.py): start from the
    configuration the checkpoint was trained with (`saved_config`: stored in it, else
    config.json beside it; the notes say which) instead of config.py's defaults, so a checkpoint
    trained with `--preset cpu_demo` runs with its own network size, data and decoding without
    repeating the preset. Overrides of the network's shape are refused
    (`check_against_checkpoint`).
    """
    cfg = config_module.resolve(argv)
    wanted = [('checkpoint', cfg.checkpoint)] if from_checkpoint or cfg.continue_train else []
    for field, path in wanted + [('pre', cfg.pre)]:
        if path and not os.path.isfile(path):  # before anything is written
            raise CheckpointError(f'checkpoint not found: {path} (set --{field} PATH)')
    if from_checkpoint and cfg.onnx:
        return _resolve_for_onnx(argv, cfg)
    notes = ()
    if from_checkpoint and cfg.checkpoint:
        base, note = saved_config(cfg.checkpoint)
        notes = (note,)
        if base is not None:  # without one, loading the weights is the check
            cfg = config_module.resolve(argv, base=base)
            check_against_checkpoint(cfg, base, cfg.checkpoint)
    return Resolved(check_network(cfg), notes)


def _resolve_for_onnx(argv, cfg):
    """`Resolved` of a run with `--onnx FILE`: the configuration stored in the file under the
    command line; a `--checkpoint` given as well must describe the same network."""
    from inference.onnx import check_config_agrees, read_config

    try:
        stored = read_config(cfg.onnx)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    cfg = config_module.resolve(argv, base=config_module.from_dict(stored, cfg.onnx))
    notes = [f'configuration: the one stored in {cfg.onnx}']
    try:
        # Overrides must not change the network; the published decoding may be asked for.
        check_config_agrees(stored, {**cfg.to_dict(), **{k: stored.get(k) for k in
                                                         Decoding.SWITCHES}})
        if cfg.checkpoint and not os.path.isfile(cfg.checkpoint):
            # Only the path recorded at export (a given --checkpoint was checked above): an
            # exported file runs without its checkpoint.
            notes.append(f'{cfg.onnx} was exported from {cfg.checkpoint}, which is not '
                         f'here: nothing to check it against')
        elif cfg.checkpoint:
            saved, note = saved_config(cfg.checkpoint)
            notes.append(f'{note} (checked against {cfg.onnx})')
            check_config_agrees(stored, (saved or config_module.cfg).to_dict())
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if cfg.device != 'cpu':
        raise ConfigError(f"--onnx runs ONNX Runtime on the CPU, but device is "
                          f"{cfg.device!r}: add --device cpu")
    return Resolved(check_network(cfg), tuple(notes))


def save_config(cfg, folder):
    """Write the resolved configuration to folder/config.json (atomically)."""
    path = os.path.join(folder, CONFIG_FILE)
    atomic_write_json(path, cfg.to_dict(), indent=2)
    return path
