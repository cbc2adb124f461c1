"""Backbone split, channel counts and ImageNet weight loading without any download."""

import os
import urllib.error

import numpy as np
import pytest
import torch
import torchvision

from model import NetworkSpec, SAR
from model.backbone import (build_resnet, high_level_features, imagenet_weights_path,
                            mid_level_features, resnet_spec)


@pytest.mark.parametrize('name', ['resnet18', 'resnet34', 'resnet50'])
def test_channel_counts_and_strides(name):
    spec = resnet_spec(name)
    resnet = build_resnet(name).eval()
    with torch.no_grad():
        mid = mid_level_features(resnet)(torch.zeros(1, 3, 64, 96))
        high = high_level_features(resnet)(mid)
    assert mid.shape == (1, spec.mid_channels, 64 // 8, 96 // 8)
    assert high.shape == (1, spec.high_channels, 64 // 32, 96 // 32)


def test_unknown_backbone_lists_options():
    with pytest.raises(ValueError, match='resnet18, resnet34, resnet50'):
        resnet_spec('resnet35')


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    """torch hub cache redirected to an empty folder; any download attempt fails offline."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))

    def refuse_download(url, dst, *args, **kwargs):
        raise urllib.error.URLError('downloads are disabled in tests')

    monkeypatch.setattr(torch.hub, 'download_url_to_file', refuse_download)
    return tmp_path


def small_template_faces():
    template = np.random.default_rng(0).normal(scale=0.05, size=(778, 3)).astype(np.float32)
    faces = np.array([[0, 1, 2], [2, 3, 4]])
    return template, faces


SMALL_CONFIG = dict(backbone='resnet18', num_stage=2, feature_size=16, heatmap_size=16,
                    input_img_shape=(128, 128))


def test_missing_weights_error_says_where_to_put_them(empty_torch_home):
    expected_path = empty_torch_home / 'hub' / 'checkpoints' / 'resnet18-f37072fd.pth'
    assert imagenet_weights_path('resnet18') == str(expected_path)
    with pytest.raises(RuntimeError) as info:
        SAR(*small_template_faces(), NetworkSpec(**SMALL_CONFIG), pretrained_backbone=True)
    message = str(info.value)
    assert 'resnet18-f37072fd.pth' in message
    assert str(expected_path) in message
    assert 'torch.hub.get_dir()/checkpoints' in message
    assert 'pretrained_backbone=False' in message
    assert 'downloads are disabled in tests' in message  # the cause is kept


def test_cached_imagenet_weights_initialise_every_part_separately(empty_torch_home):
    # A stand-in "ImageNet" file (random weights, not the model's own init) in the cache.
    torch.manual_seed(123)
    reference = torchvision.models.resnet18(weights=None).state_dict()
    path = imagenet_weights_path('resnet18')
    os.makedirs(os.path.dirname(path))
    torch.save(reference, path)
    torch.manual_seed(0)
    model = SAR(*small_template_faces(), NetworkSpec(**SMALL_CONFIG), pretrained_backbone=True)
    torch.testing.assert_close(model.extract_mid[0].weight, reference['conv1.weight'])
    torch.testing.assert_close(model.extract_mid[5][1].conv2.weight,
                               reference['layer2.1.conv2.weight'])
    torch.testing.assert_close(model.extract_mid[1].running_var, reference['bn1.running_var'])
    for stage in range(2):
        torch.testing.assert_close(model.extract_high[stage][0][0].conv1.weight,
                                   reference['layer3.0.conv1.weight'])
        torch.testing.assert_close(model.extract_high[stage][1][1].bn2.bias,
                                   reference['layer4.1.bn2.bias'])
    # each stage owns its copy: changing one leaves the other untouched
    with torch.no_grad():
        model.extract_high[0][1][1].conv2.weight.add_(1.0)
    torch.testing.assert_close(model.extract_high[1][1][1].conv2.weight,
                               reference['layer4.1.conv2.weight'])


def test_random_backbones_differ_per_stage():
    torch.manual_seed(0)
    model = SAR(*small_template_faces(), NetworkSpec(**SMALL_CONFIG))
    assert not torch.equal(model.extract_high[0][0][0].conv1.weight,
                           model.extract_high[1][0][0].conv1.weight)


@pytest.mark.parametrize('kernel, stride, padding, size', [
    (3, 2, 1, (33, 40)), (2, 2, 0, (8, 9)), (3, 1, 1, (5, 5)), ((3, 2), (2, 1), (1, 0), (7, 6))])
def test_separable_max_pool_equals_max_pool(kernel, stride, padding, size):
    from model.backbone import SeparableMaxPool2d

    pool = torch.nn.MaxPool2d(kernel, stride, padding)
    x = torch.relu(torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0)))
    x[0, 0, :4, :4] = 0  # tied maxima
    assert torch.equal(SeparableMaxPool2d(pool)(x), pool(x))


def test_fold_batch_norms_keeps_the_eval_function():
    from model.backbone import fold_batch_norms

    torch.manual_seed(0)
    net = high_level_features(build_resnet('resnet18'))
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
    net.eval()
    x = torch.randn(2, 128, 16, 16)
    with torch.no_grad():
        expected = net(x)
        folded = fold_batch_norms(net)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        torch.testing.assert_close(folded(x), expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match='evaluation mode'):
        fold_batch_norms(high_level_features(build_resnet('resnet18')))
