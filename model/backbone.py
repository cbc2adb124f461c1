"""torchvision ResNet backbones split the way SAR uses them (docs/method.md §4).

SAR cuts a ResNet in two: the mid-level part (stem, layer1, layer2; stride 8) is shared by all
stages, and every stage owns its own high-level part (layer3, layer4; stride 32). ImageNet
weights come through torchvision's weights API and the torch hub cache; nothing is downloaded
unless `pretrained=True` is asked for and the file is not cached yet.
"""

import os
from typing import NamedTuple
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from utils.errors import CheckpointError


class ResNetSpec(NamedTuple):
    """How to build one torchvision ResNet and the channel counts SAR sees."""

    builder: object  # torchvision.models.resnetXX
    weights: object  # torchvision weights enum member (ImageNet)
    mid_channels: int  # output channels of layer2 (stride 8)
    high_channels: int  # output channels of layer4 (stride 32)


RESNET_SPECS = {
    'resnet18': ResNetSpec(torchvision.models.resnet18,
                           torchvision.models.ResNet18_Weights.IMAGENET1K_V1, 128, 512),
    'resnet34': ResNetSpec(torchvision.models.resnet34,
                           torchvision.models.ResNet34_Weights.IMAGENET1K_V1, 128, 512),
    'resnet50': ResNetSpec(torchvision.models.resnet50,
                           torchvision.models.ResNet50_Weights.IMAGENET1K_V1, 512, 2048),
    'resnet101': ResNetSpec(torchvision.models.resnet101,
                            torchvision.models.ResNet101_Weights.IMAGENET1K_V1, 512, 2048),
    'resnet152': ResNetSpec(torchvision.models.resnet152,
                            torchvision.models.ResNet152_Weights.IMAGENET1K_V1, 512, 2048),
}
# The strides (px of input per px of the layer2 / layer4 maps) are utils/network_spec.py's
# MID_STRIDE and HIGH_STRIDE, beside the sizes derived from them.


def resnet_spec(name):
    """Look up a backbone by name; ValueError naming the valid options otherwise."""
    if name not in RESNET_SPECS:
        raise ValueError(f'backbone={name!r} is not supported; valid options: '
                         f'{", ".join(sorted(RESNET_SPECS))}')
    return RESNET_SPECS[name]


def imagenet_weights_path(name):
    """Where torchvision caches the ImageNet weights of backbone `name` (may not exist yet)."""
    filename = os.path.basename(urlparse(resnet_spec(name).weights.url).path)
    return os.path.join(torch.hub.get_dir(), 'checkpoints', filename)


def load_imagenet_state_dict(name):
    """ImageNet state dict of backbone `name` from the torch hub cache (downloading if absent).

    Raises CheckpointError (a RuntimeError) saying which file to place where when it is not
    cached and cannot be downloaded (e.g. no internet).
    """
    spec = resnet_spec(name)
    cached_path = imagenet_weights_path(name)
    try:
        return spec.weights.get_state_dict(progress=False)
    except OSError as err:  # URLError, HTTPError, timeouts and connection errors are all OSError
        raise CheckpointError(
            f'ImageNet weights for backbone {name!r} are not cached and could not be downloaded '
            f'from {spec.weights.url} ({err}). Download that file elsewhere and place it at '
            f'{cached_path} (i.e. torch.hub.get_dir()/checkpoints/'
            f'{os.path.basename(cached_path)}), or build the model with '
            f'pretrained_backbone=False (random initialisation, e.g. before loading a '
            f'SAR checkpoint).') from err


def build_resnet(name, imagenet_state_dict=None):
    """One torchvision ResNet, ImageNet-initialised if a state dict is given.

    Without a state dict the layers keep torchvision's own initialisation. Every call returns
    a new module with its own weights, so stages never share parameters.
    """
    resnet = resnet_spec(name).builder(weights=None)
    if imagenet_state_dict is not None:
        resnet.load_state_dict(imagenet_state_dict, strict=True)
    return resnet


def mid_level_features(resnet):
    """Sequential(conv1, bn1, relu, maxpool, layer1, layer2): B x 3 x H x W -> stride-8 map."""
    return nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool,
                         resnet.layer1, resnet.layer2)


def high_level_features(resnet):
    """Sequential(layer3, layer4): stride-8 map -> stride-32 map."""
    return nn.Sequential(resnet.layer3, resnet.layer4)


def fold_batch_norms(module):
    """Fold every BatchNorm2d that directly follows a Conv2d into it, in place (evaluation only).

    Pairs are adjacent (Conv2d, BatchNorm2d) entries of an nn.Sequential (the stem,
    downsample branches) and the `conv<k>` / `bn<k>` attributes of torchvision's residual
    blocks. The batch norm becomes nn.Identity and the conv gets the bias
    bn.weight * (b - running_mean) / sqrt(running_var + eps) + bn.bias and a weight scaled by
    bn.weight / sqrt(running_var + eps) per output channel, which is the same function as
    conv followed by bn in evaluation mode.

    Args:
        module: an nn.Module in evaluation mode; its sub-modules are replaced.
    Returns:
        the same module.
    """
    if module.training:
        raise ValueError('fold_batch_norms needs a module in evaluation mode (call .eval()): '
                         'folding uses the running statistics')
    for parent in list(module.modules()):
        if isinstance(parent, nn.Sequential):
            for index in range(len(parent) - 1):
                conv, bn = parent[index], parent[index + 1]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    parent[index] = torch.nn.utils.fuse_conv_bn_eval(conv, bn)
                    parent[index + 1] = nn.Identity()
        for name, conv in list(parent.named_children()):
            bn_name = 'bn' + name[len('conv'):]
            bn = getattr(parent, bn_name, None) if name.startswith('conv') else None
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(parent, name, torch.nn.utils.fuse_conv_bn_eval(conv, bn))
                setattr(parent, bn_name, nn.Identity())
    return module


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _strided_max(x, dim, kernel, stride, out_size):
    """max over i < kernel of x.narrow(dim, i, ...)[::stride] along `dim`: out_size entries."""
    span = stride * (out_size - 1) + 1
    windows = [x.narrow(dim, offset, span) for offset in range(kernel)]
    index = [slice(None)] * x.dim()
    index[dim] = slice(None, None, stride)
    result = windows[0][tuple(index)]
    for window in windows[1:]:
        result = torch.maximum(result, window[tuple(index)])
    return result


class SeparableMaxPool2d(nn.Module):
    """Evaluation-only nn.MaxPool2d: a pass of strided maxima along the columns, then rows.

    The same values as the pooling it replaces (a maximum is exact), about 4x faster on the
    CPU for ResNet's 3x3 / stride-2 pool in NCHW layout. Training keeps nn.MaxPool2d: where
    a window holds tied maxima (common after a ReLU) the gradient here would be shared
    between them instead of going to one element.

    Args:
        pool: the nn.MaxPool2d (dilation 1, ceil_mode False, no indices).
    """

    def __init__(self, pool):
        super().__init__()
        if not self.supports(pool):
            raise ValueError(f'SeparableMaxPool2d needs dilation 1, ceil_mode=False and '
                             f'return_indices=False; got {pool}')
        self.kernel_size = _pair(pool.kernel_size)
        self.stride = _pair(pool.stride if pool.stride is not None else pool.kernel_size)
        self.padding = _pair(pool.padding)

    @staticmethod
    def supports(pool):
        return (isinstance(pool, nn.MaxPool2d) and _pair(pool.dilation) == (1, 1)
                and not pool.ceil_mode and not pool.return_indices)

    def forward(self, x):
        """x: B x C x H x W -> B x C x H' x W' (nn.MaxPool2d's output size)."""
        (kernel_h, kernel_w), (stride_h, stride_w) = self.kernel_size, self.stride
        pad_h, pad_w = self.padding
        out_h = (x.shape[-2] + 2 * pad_h - kernel_h) // stride_h + 1
        out_w = (x.shape[-1] + 2 * pad_w - kernel_w) // stride_w + 1
        padded = F.pad(x, (pad_w, pad_w, pad_h, pad_h), value=float('-inf'))
        columns = _strided_max(padded, -1, kernel_w, stride_w, out_w)
        return _strided_max(columns, -2, kernel_h, stride_h, out_h)


def use_inference_max_pools(module):
    """Replace every supported nn.MaxPool2d in `module` by SeparableMaxPool2d, in place.

    Returns:
        the same module (evaluation only, see SeparableMaxPool2d).
    """
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if SeparableMaxPool2d.supports(child):
                setattr(parent, name, SeparableMaxPool2d(child))
    return module
