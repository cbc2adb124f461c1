import dataclasses
import inspect
import json

import pytest

import config


def test_overrides_are_typed_and_derived_fields_follow_them():
    c = config.resolve(['--batch_size', '32', '--lr=1e-4', '--vis', '--input_img_shape', '128,128'])
    assert (c.batch_size, c.lr, c.vis, c.input_img_shape) == (32, 1e-4, True, (128, 128))
    # Derived after the overrides: heatmap side = 128 / 8, feature size = (128 / 32)^2.
    assert c.heatmap_size == 16 and c.feature_size == 16
    assert c.experiment_name == 'resnet34_2stage_128'


def test_defaults_are_the_published_ones():
    c = config.resolve([])
    assert (c.backbone, c.num_stage, c.num_FMs, c.feature_size, c.heatmap_size) == ('resnet34', 2, 8, 64, 32)
    assert (c.batch_size, c.lr, c.weight_decay, c.total_epoch, c.depth_box) == (64, 3e-4, 0.01, 50, 0.3)
    assert c.head == 'fused'


def test_head_is_checked_against_the_registered_heads():
    # The registry (model/heads.py) is the one list: check_network refuses other names.
    from run.config import check_network
    from model.heads import HEADS
    from model.sar import SAR
    from utils.network_spec import DEFAULT_HEAD

    # One default: the registry's, config's and SAR's.
    assert config.Config.head == DEFAULT_HEAD == 'fused' and DEFAULT_HEAD in HEADS
    assert inspect.signature(SAR).parameters['head'].default == DEFAULT_HEAD
    assert config.resolve(['--head', 'reference']).head == 'reference'
    with pytest.raises(config.ConfigError, match="head='plain'"):
        check_network(config.resolve(['--head', 'plain', '--device', 'cpu']))


@pytest.mark.parametrize('argv, message', [
    (['--bacth_size', '3'], "unknown config field 'bacth_size'. Did you mean batch_size"),
    (['--lr', 'abc'], "config field 'lr': cannot read 'abc' as a number"),
    (['--num_stage', '2.5'], "config field 'num_stage': cannot read '2.5' as an integer"),
    (['--amp', 'fp8'], "config field 'amp' must be one of"),
    (['--input_img_shape', '12'], "config field 'input_img_shape'"),
    (['--vis', 'maybe'], "config field 'vis': cannot read 'maybe' as true or false"),
    (['--preset', 'nope'], "unknown preset 'nope'"),
    (['lr', '3'], "overrides are written --field value"),
])
def test_bad_overrides_name_the_field(argv, message):
    with pytest.raises(config.ConfigError, match=message.replace('(', r'\(').replace('.', r'\.')):
        config.resolve(argv)


def test_keyword_overrides_are_type_checked():
    with pytest.raises(config.ConfigError, match="'batch_size' must be"):
        config.resolve(batch_size='64')
    assert config.resolve(lr=1).lr == 1


def test_preset_then_command_line():
    c = config.resolve(['--preset', 'cpu_demo', '--total_epoch', '5'])
    assert c.device == 'cpu' and c.backbone == 'resnet18' and c.total_epoch == 5
    assert c.heatmap_size == 8  # derived from the preset's 64 px input: 64 / 8


def test_config_is_frozen_and_round_trips():
    c = config.resolve(['--input_img_shape', '128x128'])
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.lr = 1.0
    again = config.from_dict(json.loads(config.dumps(c)))
    assert again == c


def test_from_dict_names_unknown_keys_and_checks_every_value(caplog):
    values = json.loads(config.dumps(config.resolve(['--lr', '1e-4'])))
    values['learning_rate'] = 3e-4  # a field renamed since the file was written
    with caplog.at_level('WARNING', logger='config'):
        c = config.from_dict(values, 'old/config.json')
    assert c.lr == 1e-4
    warnings = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']
    assert len(warnings) == 1 and "'learning_rate'" in warnings[0] and 'old/config.json' in warnings[0]
    for field, bad, words in (('num_stage', '2', "'num_stage' must be"),
                              ('fx_as_fy', 'yes', "'fx_as_fy' must be"),
                              ('input_img_shape', [96, 96, 3], "'input_img_shape' must be"),
                              ('amp', 'fp8', "'amp' must be one of"),
                              ('lr', -1.0, "'lr' = -1.0 is out of range")):
        with pytest.raises(config.ConfigError, match=f"^old/config.json: config field {words}"):
            config.from_dict({**values, field: bad}, 'old/config.json')


def test_as_published_implies_fx_as_fy_and_refuses_its_contradiction():
    c = config.resolve(['--as_published', 'true'])
    assert c.as_published and c.fx_as_fy
    assert config.resolve(['--fx_as_fy', 'true']).as_published is False  # the finer switch alone
    with pytest.raises(config.ConfigError, match='as_published .* implies fx_as_fy'):
        config.resolve(['--as_published', 'true', '--fx_as_fy', 'false'])
    base = config.resolve(['--as_published', 'true'])
    with pytest.raises(config.ConfigError, match='implies fx_as_fy'):
        config.resolve(['--fx_as_fy', 'false'], base=base)


def test_config_reference_lists_every_field_with_its_default():
    # docs/config.md (written by make docs) is the manual's table: it must follow config.py.
    import ast
    import dataclasses
    import os
    import re
    page = open(os.path.join(os.path.dirname(__file__), '..', 'docs', 'config.md')).read()
    rows = dict(re.findall(r'^\| `(\w+)` \| `[^`]*` \| `([^`]*)` \|', page, flags=re.M))
    for field in dataclasses.fields(config.Config):
        assert field.name in rows, f'docs/config.md lacks {field.name}'
        assert ast.literal_eval(rows[field.name]) == field.default, field.name


def test_a_preset_trains_on_ho3d_as_written():
    # cpu_demo evaluates every epoch; HO3D has no training-time evaluation, so train.py skips it
    # (training.evaluation.evaluation_set): no data set rule in config.py, no refusal.
    assert config.PRESETS['cpu_demo']['eval_interval'] > 0
    cfg = config.resolve(['--preset', 'cpu_demo', '--dataset', 'HO3D', '--ho3d_version', 'v3'])
    assert cfg.eval_interval == config.PRESETS['cpu_demo']['eval_interval']
    from run.config import check_network  # the data set's own check (its registry entry)
    check_network(config.resolve(['--preset', 'cpu_demo', '--dataset', 'HO3D', '--eval_interval', '1']))
    with pytest.raises(config.ConfigError, match='ho3d_root'):
        check_network(config.resolve(['--preset', 'cpu_demo', '--dataset', 'FreiHAND+HO3D']))
    with pytest.raises(config.ConfigError, match="'HO4D'"):
        check_network(config.resolve(['--preset', 'cpu_demo', '--dataset', 'HO4D']))

@pytest.mark.parametrize('argv, field', [
    (['--dataset', 'HO3D', '--ho3d_version', 'v4'], 'ho3d_version'),
    (['--dataset', 'FreiHAND+HO3D', '--ho3d_root', 'x', '--ho3d_version', 'v1'], 'ho3d_version'),
    (['--ho3d_version', 'v1'], 'ho3d_version'),  # refused even when no HO3D set is used
    (['--dataset', 'custom', '--custom_repeat', '0'], 'custom_repeat'),
    (['--custom_repeat', '-2'], 'custom_repeat'),
])
def test_a_data_sets_own_fields_are_checked_whatever_the_data_set(argv, field):
    """The data sets' fields (dataset.DatasetFields) parse like any field, and their packages'
    CHOICES and RANGES refuse a bad value when the configuration resolves (before anything
    touches the disk), whichever data set is chosen."""
    with pytest.raises(config.ConfigError, match=field):
        config.resolve(['--preset', 'cpu_demo', *argv])
    assert {'ho3d_version', 'ho3d_root', 'freihand_root', 'custom_repeat'} <= {
        f.name for f in dataclasses.fields(config.Config)}


def test_a_saved_config_with_a_bad_data_set_field_names_it():
    saved = {**config.Config().to_dict(), 'ho3d_version': 'v9'}
    with pytest.raises(config.ConfigError, match="config.json.*ho3d_version"):
        config.from_dict(saved, source='config.json')
