"""The network's shape: the one definition of the fields that fix SAR's weights, their defaults
and the sizes derived from the input (docs/method.md §4).

`NetworkFields` declares each field and its default once. config.Config inherits it (so the
fields are config fields, set on the command line like any other), `NetworkSpec` adds the
checks and comparisons; model construction, the checkpoint/config consistency check, the ONNX
metadata and the benchmarks read the fields through `NetworkSpec.names()`. A field added here is
configured, checked, built and compared everywhere.

This module is pure data (no torch); the backbone registry itself (model/backbone.RESNET_SPECS)
is passed to `NetworkSpec.check`.
"""
import dataclasses
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

DEFAULT_HEAD = 'fused'  # the head registry's default (model/heads.HEADS); config.py's too
MID_STRIDE = 8  # px of input per px of the backbone's layer2 feature map (the heatmaps' side)
HIGH_STRIDE = 32  # px of input per px of the backbone's layer4 feature map


def consistent_sizes(input_img_shape):
    """heatmap_size and feature_size of an input of (H, W) px: the one derivation of the sizes.

    Returns:
        (heatmap_size, feature_size): side of the stride-8 map (H / 8), pixel count of the
        stride-32 map ((H / 32) * (W / 32)).
    """
    height, width = input_img_shape
    return height // MID_STRIDE, (height // HIGH_STRIDE) * (width // HIGH_STRIDE)


def experiment_name(backbone, num_stage, input_img_shape):
    """The default experiment name of a network: '<backbone>_<num_stage>stage_<H>'."""
    return f'{backbone}_{num_stage}stage_{input_img_shape[0]}'


def _is_positive_int(value):
    """True for Python or numpy integers above 0 (bool excluded)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True)
class NetworkFields:
    """The fields that shape SAR's weights and their defaults: the published network."""
    # ---- network ---------------------------------------------------------------------------
    backbone: str = 'resnet34'  # a key of model/backbone.py RESNET_SPECS: resnet18 | resnet34 | resnet50 | resnet101 | resnet152
    num_stage: int = 2  # SAIGB + GBBMR stages (>= 1; published: 2); every stage's output is supervised
    num_FMs: int = 8  # feature maps per vertex in the graph builder
    feature_size: Optional[int] = None  # px per map; None: (H/32)*(W/32) = 64
    heatmap_size: Optional[int] = None  # heatmap side, px; None: H/8 = 32
    num_vert: int = 778  # MANO vertices (the output's first rows)
    num_joint: int = 21  # FreiHAND joints (the output's last rows)
    input_img_shape: Tuple[int, int] = (256, 256)  # network input, px (H, W): square, sides divisible by 32


@dataclass(frozen=True)
class NetworkSpec(NetworkFields):
    """A network's shape (the published network by default); feature_size and heatmap_size
    left None are derived from input_img_shape (`consistent_sizes`).

    Attributes: those of NetworkFields.
    """

    def __post_init__(self):
        sizes = dict(zip(('heatmap_size', 'feature_size'), consistent_sizes(
            self.input_img_shape))) if _square_shape(self.input_img_shape) else {}
        for name, value in sizes.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)

    @classmethod
    def names(cls):
        """The field names, in order."""
        return tuple(field.name for field in dataclasses.fields(NetworkFields))

    @classmethod
    def from_config(cls, cfg):
        """The spec of a resolved configuration (or any object with these attributes)."""
        return cls(**{name: getattr(cfg, name) for name in cls.names()})

    @classmethod
    def from_dict(cls, values):
        """The spec of a dict of config fields (others ignored); KeyError naming a missing one."""
        missing = [name for name in cls.names() if name not in values]
        if missing:
            raise KeyError(f'network fields missing: {missing}')
        spec = {name: values[name] for name in cls.names()}
        spec['input_img_shape'] = tuple(spec['input_img_shape'])
        return cls(**spec)

    def to_dict(self):
        return {name: getattr(self, name) for name in self.names()}

    def differences(self, other):
        """[(name, ours, theirs)] of the fields where `other` differs."""
        return [(name, getattr(self, name), getattr(other, name)) for name in self.names()
                if getattr(self, name) != getattr(other, name)]

    def check(self, backbones):
        """Raise one ValueError listing every field that disagrees, with consistent values;
        returns self.

        backbones: the names of the backbone registry (model/backbone.RESNET_SPECS).
        The heatmaps must have the size of the stride-8 features they are fused with, and each
        vertex gets num_FMs maps of the stride-32 features, flattened (feature_size pixels each).
        """
        if self.backbone not in backbones:
            raise ValueError(f'backbone={self.backbone!r} is not supported; valid options: '
                             f'{", ".join(sorted(backbones))}')
        problems = [f'{name}={getattr(self, name)!r} must be a positive integer'
                    for name in ('num_stage', 'num_FMs', 'feature_size', 'heatmap_size',
                                 'num_vert', 'num_joint')
                    if not _is_positive_int(getattr(self, name))]
        problems += self._size_problems()
        if problems:
            raise ValueError('inconsistent SAR configuration: ' + '; '.join(problems))
        return self

    def _size_problems(self):
        if not _square_shape(self.input_img_shape):
            return [f'input_img_shape={self.input_img_shape!r} must be square with sides '
                    f'divisible by {HIGH_STRIDE}, e.g. (128, 128) or (256, 256)']
        shape = tuple(self.input_img_shape)
        heatmap_size, feature_size = self.heatmap_size, self.feature_size
        if not (_is_positive_int(heatmap_size) and _is_positive_int(feature_size)):
            return []
        good_sizes = consistent_sizes(shape)
        wrong = [f'{name}={value!r}' for name, value, good in
                 (('heatmap_size', heatmap_size, good_sizes[0]),
                  ('feature_size', feature_size, good_sizes[1])) if value != good]
        if not wrong:
            return []
        verb = 'disagree' if len(wrong) > 1 else 'disagrees'
        message = (f'{" and ".join(wrong)} {verb} with input_img_shape={shape} (heatmaps '
                   f'have the side of the stride-{MID_STRIDE} features, feature_size is the '
                   f'pixel count of the stride-{HIGH_STRIDE} features): use heatmap_size='
                   f'{good_sizes[0]} and feature_size={good_sizes[1]}')
        implied = (heatmap_size * MID_STRIDE,) * 2
        if implied[0] % HIGH_STRIDE == 0 and consistent_sizes(implied) == (heatmap_size,
                                                                           feature_size):
            message += f', or input_img_shape={implied}'
        return [message]


def _square_shape(shape):
    """True for a square (H, W) of positive integers divisible by HIGH_STRIDE."""
    try:
        shape = tuple(shape)
    except TypeError:
        return False
    return (len(shape) == 2 and all(_is_positive_int(side) for side in shape)
            and shape[0] == shape[1] and shape[0] % HIGH_STRIDE == 0)
