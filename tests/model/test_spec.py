"""utils.network_spec.NetworkSpec: the one list of the fields that shape the network."""
import dataclasses

import pytest

import config
from inference.onnx import NETWORK_FIELDS
from run.config import check_against_checkpoint
from utils.network_spec import NetworkSpec, consistent_sizes


def test_the_default_spec_is_the_published_network_and_the_config_default():
    # docs/method.md §4: ResNet-34, 2 stages, 8 maps per vertex, 64 px maps, 32 px heatmaps.
    assert NetworkSpec() == NetworkSpec('resnet34', 2, 8, 64, 32, 778, 21, (256, 256))
    assert NetworkSpec.from_config(config.resolve([])) == NetworkSpec()
    assert set(NetworkSpec.names()) <= {field.name for field in dataclasses.fields(config.Config)}


def test_consistent_sizes_follow_the_strides():
    # stride 8 and 32: a 128 px input has 16 px heatmaps and 4 x 4 = 16 pixel feature maps.
    assert consistent_sizes((128, 128)) == (16, 16)
    assert consistent_sizes((256, 256)) == (32, 64)


def test_every_spec_field_is_compared_with_the_checkpoint_and_stored_in_onnx():
    trained = config.resolve(['--preset', 'cpu_demo'])
    for name in NetworkSpec.names():
        assert name in NETWORK_FIELDS
        other = {'backbone': 'resnet50', 'input_img_shape': (128, 128)}.get(
            name, 7 if name != 'num_stage' else 3)
        changed = dataclasses.replace(trained, **{name: other})
        with pytest.raises(config.ConfigError, match=f'--{name}'):
            check_against_checkpoint(changed, trained, 'ckpt.pth.tar')
    assert NetworkSpec.from_config(trained).differences(NetworkSpec.from_config(trained)) == []
