"""The network's shape: the one list of the fields that fix SAR's weights (docs/method.md §4).

Config validation, model construction, the checkpoint/config consistency check, the ONNX
metadata and the benchmarks all read these fields through `NetworkSpec`; a field added here
is checked, built and compared everywhere.
"""
import dataclasses
from dataclasses import dataclass
from typing import Tuple

import numpy as np

from model.backbone import HIGH_STRIDE, MID_STRIDE, resnet_spec


def consistent_sizes(input_img_shape):
    """heatmap_size and feature_size that fit a square input (sides divisible by 32).

    Returns:
        (heatmap_size, feature_size): side of the stride-8 map, pixel count of the stride-32 map.
    """
    side = input_img_shape[0]
    return side // MID_STRIDE, (side // HIGH_STRIDE) ** 2


def _is_positive_int(value):
    """True for Python or numpy integers above 0 (bool excluded)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True)
class NetworkSpec:
    """The fields that shape SAR's weights (the published network by default).

    Attributes:
        backbone: 'resnet18', 'resnet34', 'resnet50', 'resnet101' or 'resnet152'.
        num_stage: refinement stages (>= 1); every stage's output is supervised.
        num_FMs: feature maps per vertex in the graph builder.
        feature_size: pixels of the stride-32 feature map, (input side / 32) ** 2.
        heatmap_size: side of the heatmaps, input side / 8.
        num_vert, num_joint: rows of the output (vertices first).
        input_img_shape: (H, W) of the input crop, square with sides divisible by 32.
    """
    backbone: str = 'resnet34'
    num_stage: int = 2
    num_FMs: int = 8
    feature_size: int = 64
    heatmap_size: int = 32
    num_vert: int = 778
    num_joint: int = 21
    input_img_shape: Tuple[int, int] = (256, 256)

    @classmethod
    def names(cls):
        """The field names, in order."""
        return tuple(field.name for field in dataclasses.fields(cls))

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

    def check(self):
        """Raise one ValueError listing every field that disagrees, with consistent values;
        returns self.

        The heatmaps must have the size of the stride-8 features they are fused with, and each
        vertex gets num_FMs maps of the stride-32 features, flattened (feature_size pixels each).
        """
        resnet_spec(self.backbone)  # ValueError naming the valid backbones
        problems = [f'{name}={getattr(self, name)!r} must be a positive integer'
                    for name in ('num_stage', 'num_FMs', 'feature_size', 'heatmap_size',
                                 'num_vert', 'num_joint')
                    if not _is_positive_int(getattr(self, name))]
        problems += self._size_problems()
        if problems:
            raise ValueError('inconsistent SAR configuration: ' + '; '.join(problems))
        return self

    def _size_problems(self):
        try:
            shape = tuple(self.input_img_shape)
        except TypeError:
            shape = ()
        if (len(shape) != 2 or not all(_is_positive_int(side) for side in shape)
                or shape[0] != shape[1] or shape[0] % HIGH_STRIDE != 0):
            return [f'input_img_shape={self.input_img_shape!r} must be square with sides '
                    f'divisible by {HIGH_STRIDE}, e.g. (128, 128) or (256, 256)']
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
        implied_side = heatmap_size * MID_STRIDE
        if (implied_side % HIGH_STRIDE == 0
                and consistent_sizes((implied_side,)) == (heatmap_size, feature_size)):
            message += f', or input_img_shape={(implied_side, implied_side)}'
        return [message]
