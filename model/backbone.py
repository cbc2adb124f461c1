"""torchvision ResNet backbones split the way SAR uses them (SPEC 4).

SAR cuts a ResNet in two: the mid-level part (stem, layer1, layer2; stride 8) is shared by all
stages, and every stage owns its own high-level part (layer3, layer4; stride 32). ImageNet
weights come through torchvision's weights API and the torch hub cache; nothing is downloaded
unless `pretrained=True` is asked for and the file is not cached yet.
"""

import os
from typing import NamedTuple
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn


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
MID_STRIDE = 8  # px of input per px of the layer2 feature map
HIGH_STRIDE = 32  # px of input per px of the layer4 feature map


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

    Raises RuntimeError saying which file to place where when it is not cached and cannot be
    downloaded (e.g. no internet).
    """
    spec = resnet_spec(name)
    cached_path = imagenet_weights_path(name)
    try:
        return spec.weights.get_state_dict(progress=False)
    except OSError as err:  # URLError, HTTPError, timeouts and connection errors are all OSError
        raise RuntimeError(
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
