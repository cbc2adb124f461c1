"""The one configuration of SAR. Edit the defaults below, or override any field on the
command line of train.py / test.py / demo.py:

    python train.py --batch_size 32 --lr 1e-4 --input_img_shape 256,256
    python train.py --preset cpu_demo

Resolution order: the defaults in this file, then the preset (if any), then the command-line
overrides, then the derived fields (left as None here), then the result is frozen. The entry
scripts log the resolved configuration and save it beside every checkpoint. Library code never
imports this module: the entry scripts pass plain values down.
"""
import dataclasses
import difflib
import json
import logging
import math
import typing
from dataclasses import dataclass

from dataset import DatasetFields
from utils.constants import DEPTH_BOX_M
from utils.errors import ConfigError
from utils.mano import DEFAULT_MANO_ROOT
from utils.network_spec import DEFAULT_HEAD, NetworkFields, consistent_sizes, experiment_name


@dataclass(frozen=True)
class Config(NetworkFields, DatasetFields):
    # The network fields (backbone, num_stage, num_FMs, feature_size, heatmap_size, num_vert,
    # num_joint, input_img_shape) and their defaults come first, from their one definition:
    # utils/network_spec.py NetworkFields; the fields a data set adds (e.g. ho3d_version) come
    # from its package (dataset/__init__.py DatasetFields). Override them here like any field
    # (`python train.py --backbone resnet18`), or edit their defaults where they are defined.
    # ---- data ----------------------------------------------------------------------------
    dataset: str = 'FreiHAND'  # data set name, a key of dataset.DATASETS: FreiHAND | HO3D | FreiHAND+HO3D | custom (docs/own_data.md)
    data_root: str = 'data/FreiHAND'  # the data set's folder, in its official layout (docs/data.md; docs/ho3d.md, docs/own_data.md)
    annotation_cache: str = 'auto'  # memory-mapped annotation arrays: 'auto' (<data_root>/.sar_cache, or ~/.cache/sar/annotations/<hash> for a read-only root), 'off', or a folder
    mano_root: str = DEFAULT_MANO_ROOT  # folder holding MANO_RIGHT.pkl
    depth_box: float = DEPTH_BOX_M  # m, root-relative depth range mapped to [-1, 1]
    hand_scale_m: float = 0.0326  # m, bone 9-10 (middle MCP -> PIP) of `--root_depth auto` / root_source auto: the median of training_scale.json of the stand-in synthetic set (docs/own_images.md)
    fx_as_fy: bool = False  # project targets and decode with fx for both axes, as the published code does (docs/method.md §11)
    as_published: bool = False  # decode exactly as the published code: fx for both axes (implies fx_as_fy), u, v floored to whole crop px, the network in fp32 whatever amp says (docs/method.md §11)

    # ---- model: head and initial weights (the network's shape: the network fields above) ---
    head: str = DEFAULT_HEAD  # SAIGB + GBBMR implementation, a key of model/heads.HEADS: fused (fast) | reference (docs/method.md §4 as written); same state dict
    pretrained_backbone: bool = True  # ImageNet weights (torchvision cache; docs/install.md)
    pre: str = ''  # optional checkpoint to initialise the network from (weights only)

    # ---- optimisation --------------------------------------------------------------------
    batch_size: int = 64  # images per optimizer step, total over all GPUs and micro-batches (per GPU and micro-batch: batch_size / (world size * accumulate))
    accumulate: int = 1  # micro-batches per optimizer step (gradient accumulation; BatchNorm sees each micro-batch alone)
    lr: float = 3e-4  # AdamW learning rate, cosine-annealed per epoch to 0
    weight_decay: float = 0.01  # AdamW weight decay
    adj_lr_scale: float = 1.0  # lr multiplier for the graph adjacencies (`adj`); 1: published
    total_epoch: int = 50  # epochs over 4*N training items
    amp: str = 'auto'  # mixed precision: auto (bf16 on CUDA and on CPUs with native bf16, else fp32; the log says which and why) | off | bf16 | fp16 (CUDA only, loss-scaled)
    channels_last: bool = True  # CUDA memory layout for the convolutions
    compile: bool = False  # torch.compile the network (CUDA; first iterations compile)
    seed: int = 0  # seeds weights init, shuffling and augmentation

    # ---- run -----------------------------------------------------------------------------
    device: str = 'cuda'  # cuda | cpu (no silent fallback: cuda without a GPU is an error)
    dist_timeout: int = 1800  # s, torchrun / srun: wait this long for the other processes (group set-up, each collective)
    num_worker: int = 8  # DataLoader worker processes per GPU
    output_root: str = 'output'  # logs, checkpoints, pred.json, vis
    experiment_name: typing.Optional[str] = None  # None: <backbone>_<num_stage>stage_<H>
    save_epoch: int = 1  # checkpoint every N epochs (and after the last)
    save_iter: int = 0  # also checkpoint every N optimizer steps inside an epoch (pre-emption; only the newest such checkpoint is kept); 0: off
    eval_interval: int = 0  # evaluate (and log the report) every N epochs when the evaluation GT exists; 0: never
    print_iter: int = 10  # log every N iterations (the only host syncs of the train loop)
    tensorboard: bool = True  # train.py: TensorBoard events under output/tb/<experiment> (rank 0)
    checkpoint: str = ''  # test.py / demo.py: checkpoint to load; train.py: to resume from
    onnx: str = ''  # test.py / demo.py: run this exported file with ONNX Runtime (CPU) instead of PyTorch
    continue_train: bool = False  # train.py: resume from `checkpoint`
    resume: str = ''  # train.py: 'auto' resumes from the newest checkpoint of the experiment
    root_source: str = 'rootnet'  # test.py wrist depths: 'rootnet' (bbox_root_freihand_output.json, the leaderboard's) or 'auto' (from the predicted hand's size and hand_scale_m)
    vis: bool = False  # test.py: render results to output/vis
    vis_num: int = 8  # test.py: how many samples to render with vis
    test_batch_size: int = 16  # test.py batch size (per process)
    preset: str = ''  # a name from PRESETS, applied before the command-line overrides

    # ---- derived paths (not settable) ----------------------------------------------------
    @property
    def log_dir(self):
        return f'{self.output_root}/log'

    @property
    def checkpoint_dir(self):
        return f'{self.output_root}/checkpoint/{self.experiment_name}'

    @property
    def tb_dir(self):
        return f'{self.output_root}/tb/{self.experiment_name}'

    @property
    def vis_dir(self):
        return f'{self.output_root}/vis'

    def to_dict(self):
        return dataclasses.asdict(self)


# Named bundles of overrides. `cpu_demo` is the real network scaled to train in minutes on
# two CPU cores (same code path, smaller backbone and input); used by `make demo`. 64 px: a
# training image costs 0.57x the CPU time of 96 px (fp32, one thread). depth_box 0.15 m (the
# published 0.3 m is twice a hand's reach from the wrist): the wrist-relative depths fill twice
# as much of [-1, 1], so the network leaves the flat-hand stage within the demo's iterations
# (tools/run_demo.py measures the depth spread).
PRESETS = {
    'cpu_demo': dict(
        device='cpu', backbone='resnet18', input_img_shape=(64, 64), num_stage=1,
        num_FMs=8, pretrained_backbone=False, batch_size=16, lr=1e-3, adj_lr_scale=0.01,
        total_epoch=3, depth_box=0.15,
        num_worker=1, amp='auto', channels_last=False, print_iter=20, eval_interval=1,
        data_root='data/FreiHAND_synth', mano_root='data/mano_standin',
        experiment_name='cpu_demo'),
}

cfg = Config()

_CHOICES = {
    'amp': ('auto', 'off', 'bf16', 'fp16'),
    'device': ('cuda', 'cpu'),
    'resume': ('', 'auto'),
    'root_source': ('rootnet', 'auto'),
    **DatasetFields.CHOICES,  # the data sets' fields' (e.g. ho3d_version), from their packages
}


logger = logging.getLogger(__name__)


# Valid ranges of the numeric fields: (lowest, highest or None, strict lower bound). Checked
# when a configuration is resolved, before anything touches the disk. The network's shape
# fields (utils/network_spec.NetworkFields, backbone ... input_img_shape; the backbone against
# the registry model/backbone.RESNET_SPECS) are checked by model.spec.check_spec when an entry
# script resolves its run (check_network).
_RANGES = {
    'depth_box': (0.0, None, True),
    'hand_scale_m': (0.0, None, True),
    'batch_size': (1, None, False),
    'accumulate': (1, None, False),
    'lr': (0.0, None, True),
    'weight_decay': (0.0, None, False),
    'adj_lr_scale': (0.0, None, True),
    'total_epoch': (1, None, False),
    'seed': (0, None, False),
    'num_worker': (0, None, False),
    'save_epoch': (1, None, False),
    'save_iter': (0, None, False),
    'dist_timeout': (1, None, False),
    'eval_interval': (0, None, False),
    'print_iter': (1, None, False),
    'vis_num': (0, None, False),
    'test_batch_size': (1, None, False),
    **DatasetFields.RANGES,  # the data sets' fields' (e.g. custom_repeat), from their packages
}


def _range_text(low, high, strict):
    text = f"{'>' if strict else '>='} {low}"
    return text if high is None else f'{text} and <= {high}'


def validate(config):
    """Raise ConfigError for the first field outside its valid range (numbers, the input
    size, the experiment name) or a combination that cannot run; returns `config`."""
    for name, (low, high, strict) in _RANGES.items():
        value = getattr(config, name)
        if value is None:
            continue  # a derived field not derived yet
        bad = (isinstance(value, float) and not math.isfinite(value)) or value < low or (
            strict and value == low) or (high is not None and value > high)
        if bad:
            raise ConfigError(f"config field '{name}' = {value!r} is out of range: it must be "
                              f"{_range_text(low, high, strict)}")
    name = config.experiment_name
    if name is not None and (not name or '/' in name or '\\' in name or name in ('.', '..')):
        raise ConfigError(f"config field 'experiment_name' = {name!r} must be a non-empty folder "
                          f"name without path separators")
    if config.amp == 'fp16' and config.device == 'cpu':
        raise ConfigError("config field 'amp' = 'fp16' needs device 'cuda': CPU fp16 autocast is "
                          "emulated on most CPUs (slower than fp32); use --amp auto (bf16 where "
                          "the CPU has it natively), --amp bf16 or --amp off")
    if config.as_published and config.amp in ('bf16', 'fp16'):
        raise ConfigError(f"config field 'amp' = {config.amp!r} contradicts as_published, which "
                          f"computes in fp32 as the published code does (amp 'auto' and 'off' "
                          f"both run fp32 with it): use --amp off, or drop --as_published")
    if config.continue_train and not config.checkpoint:
        raise ConfigError("continue_train is set but 'checkpoint' is empty: pass --checkpoint "
                          "PATH or use --resume auto")
    return config


def _parse_value(name, text, annotation):
    """Convert the command-line string `text` to the type of field `name`."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union and type(None) in args:
        if text.lower() == 'none':
            return None
        annotation = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    try:
        if annotation is bool:
            lowered = text.lower()
            if lowered in ('1', 'true', 'yes', 'on'):
                return True
            if lowered in ('0', 'false', 'no', 'off'):
                return False
            raise ValueError
        if origin is tuple:
            parts = text.replace('x', ',').split(',')
            if len(parts) != len(args):
                raise ValueError
            return tuple(a(p) for a, p in zip(args, parts))
        if annotation is int:
            return int(text)
        if annotation is float:
            return float(text)
        return str(text)
    except ValueError:
        expected = {bool: 'true or false', int: 'an integer', float: 'a number'}.get(
            annotation, f'{len(args)} comma-separated integers (e.g. 256,256)' if origin is tuple else 'a string')
        raise ConfigError(f"config field '{name}': cannot read {text!r} as {expected}") from None


def _check(name, value, annotation):
    """Type-check a Python value (from a preset or the file) against the field's annotation."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union and type(None) in args:
        if value is None:
            return
        annotation = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is tuple:
        ok = isinstance(value, tuple) and len(value) == len(args) and all(isinstance(v, int) for v in value)
    elif annotation is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, annotation)
    if not ok:
        raise ConfigError(f"config field '{name}' must be {annotation}, got {value!r}")


def _unknown(name, fields):
    close = difflib.get_close_matches(name, fields, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ''
    return ConfigError(f"unknown config field '{name}'.{hint} Fields are listed in config.py and "
                       f"docs/config.md.")


def parse_overrides(argv):
    """`['--lr', '1e-4', '--vis', ...]` -> {'lr': '1e-4', 'vis': 'true'} (strings, unparsed).

    `--key value` and `--key=value`; a bare boolean `--flag` means true.
    """
    fields = {f.name: f for f in dataclasses.fields(Config)}
    overrides = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith('--'):
            raise ConfigError(f"unexpected argument {arg!r}: overrides are written --field value")
        key, eq, value = arg[2:].partition('=')
        key = key.replace('-', '_')
        if key not in fields:
            raise _unknown(key, list(fields))
        if not eq:
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if fields[key].type is bool and (nxt is None or nxt.startswith('--')):
                value = 'true'
            elif nxt is None:
                raise ConfigError(f"config field '{key}' needs a value: --{key} VALUE")
            else:
                value = nxt
                i += 1
        overrides[key] = value
        i += 1
    return overrides


def resolve(argv=(), base=None, **overrides):
    """Resolve a configuration: defaults (or `base`), preset, command-line, keyword overrides,
    then the derived fields. Returns a frozen Config.

    Args:
        argv: command-line strings (`sys.argv[1:]` minus script-specific flags).
        base: a Config to start from (default: this file's `cfg`).
        overrides: Python values, type-checked (used by tests and the demo).
    """
    base = cfg if base is None else base
    fields = {f.name: f for f in dataclasses.fields(Config)}
    parsed = {k: _parse_value(k, v, fields[k].type) for k, v in parse_overrides(list(argv)).items()}
    for key, value in overrides.items():
        if key not in fields:
            raise _unknown(key, list(fields))
        _check(key, value, fields[key].type)
    values = {**parsed, **overrides}
    if values.get('fx_as_fy') is False and values.get('as_published', base.as_published):
        raise ConfigError("as_published decodes as the published code, which uses fx for both "
                          "axes, so it implies fx_as_fy: drop '--fx_as_fy false', or set "
                          "--as_published false")

    preset = values.get('preset', base.preset)
    if preset:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; presets: {sorted(PRESETS)}")
        for key, value in PRESETS[preset].items():
            _check(key, value, fields[key].type)
        values = {**PRESETS[preset], **values}
    for key, choices in _CHOICES.items():
        value = values.get(key, getattr(base, key))
        if value not in choices:
            raise ConfigError(f"config field '{key}' must be one of {choices}, got {value!r}")
    resolved = dataclasses.replace(base, **values)
    return derive(resolved)


def derive(config):
    """Fill the derived fields that are None from the (overridden) inputs."""
    heatmap_size, feature_size = consistent_sizes(config.input_img_shape)
    updates = {}
    if config.heatmap_size is None:
        updates['heatmap_size'] = heatmap_size
    if config.feature_size is None:
        updates['feature_size'] = feature_size
    if config.experiment_name is None:
        updates['experiment_name'] = experiment_name(config.backbone, config.num_stage,
                                                     config.input_img_shape)
    if config.as_published and not config.fx_as_fy:
        updates['fx_as_fy'] = True  # the published projection; as_published adds the floor
    return validate(dataclasses.replace(config, **updates))


def from_dict(values, source='a saved configuration'):
    """Rebuild a Config saved with `to_dict` (e.g. config.json beside a checkpoint, or the
    config stored in it).

    Every value is type-checked like a command-line override (ConfigError naming `source`, the
    field and the value); unknown keys (a field renamed or removed since the file was written)
    are named in a warning and skipped, so their values fall back to config.py's defaults.
    """
    fields = {f.name: f for f in dataclasses.fields(Config)}
    unknown = sorted(k for k in values if k not in fields)
    if unknown:
        logger.warning('%s: ignoring unknown config field(s) %s (renamed or removed since it was '
                       'written; config.py\'s defaults apply to them)', source, ', '.join(
                           f"'{k}'" for k in unknown))
    known = {}
    for key, value in values.items():
        if key not in fields:
            continue
        value = tuple(value) if isinstance(value, list) else value
        try:
            _check(key, value, fields[key].type)
        except ConfigError as err:
            raise ConfigError(f'{source}: {err}') from None
        known[key] = value
    for key, choices in _CHOICES.items():
        if key in known and known[key] not in choices:
            raise ConfigError(f"{source}: config field '{key}' must be one of {choices}, got "
                              f"{known[key]!r}")
    # A saved config is already resolved: its preset must not be applied a second time.
    known['preset'] = ''
    try:
        return validate(dataclasses.replace(Config(), **known))
    except ConfigError as err:
        raise ConfigError(f'{source}: {err}') from None


def dumps(config):
    """The resolved configuration as indented JSON (for logs and config.json)."""
    return json.dumps(config.to_dict(), indent=2, sort_keys=True)

