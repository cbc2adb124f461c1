"""Where a checkpoint's configuration comes from (run.config.saved_config), the notes that say so,
and overrides that contradict the checkpoint's network."""
import logging

import pytest
import torch

import config
from run.config import resolve_config, saved_config
from utils.runtime.launch import log_config_notes


def _checkpoint(path, cfg=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {'net': {}, 'last_epoch': 0}
    if cfg is not None:
        state['config'] = cfg.to_dict()
    torch.save(state, path)
    return path


def test_the_config_stored_in_the_checkpoint_comes_first(tmp_path):
    stored = config.resolve(preset='cpu_demo', depth_box=0.25)
    path = _checkpoint(tmp_path / 'exp' / 'snapshot_0.pth.tar', stored)
    beside = config.resolve(depth_box=0.4)  # a config.json that disagrees
    (tmp_path / 'exp' / 'config.json').write_text(config.dumps(beside))
    cfg, note = saved_config(str(path))
    assert cfg.depth_box == 0.25 and cfg.input_img_shape == (64, 64)
    assert str(path) in note and 'stored in' in note


def test_config_json_beside_a_checkpoint_without_one(tmp_path):
    path = _checkpoint(tmp_path / 'exp' / 'snapshot_0.pth.tar')
    (tmp_path / 'exp' / 'config.json').write_text(config.dumps(config.resolve(depth_box=0.4)))
    cfg, note = saved_config(str(path))
    assert cfg.depth_box == 0.4 and 'config.json' in note and 'stores none' in note


def test_a_checkpoint_without_any_config_keeps_the_defaults_and_says_so(tmp_path, caplog):
    path = _checkpoint(tmp_path / 'authors.pth.tar')
    cfg, note = saved_config(str(path))
    assert cfg is None and "config.py's defaults" in note
    resolved, notes = resolve_config(['--checkpoint', str(path), '--device', 'cpu'],
                                     from_checkpoint=True)
    assert resolved.backbone == config.cfg.backbone and notes == (note,)
    with caplog.at_level(logging.INFO):
        log_config_notes(logging.getLogger('sar'), notes)
    assert "config.py's defaults" in caplog.text and str(path) in caplog.text


def test_a_run_from_config_py_has_no_notes_and_notes_do_not_carry_over(tmp_path):
    path = _checkpoint(tmp_path / 'exp' / 'snapshot_0.pth.tar', config.resolve(preset='cpu_demo'))
    _, notes = resolve_config(['--checkpoint', str(path), '--device', 'cpu'], from_checkpoint=True)
    assert len(notes) == 1 and 'stored in' in notes[0] and str(path) in notes[0]
    _, notes = resolve_config(['--device', 'cpu'])  # the next resolution starts afresh
    assert notes == ()


def test_an_override_contradicting_the_checkpoint_names_it_and_the_trained_value(tmp_path):
    path = _checkpoint(tmp_path / 'snapshot_2.pth.tar', config.resolve(preset='cpu_demo'))
    with pytest.raises(config.ConfigError) as err:
        resolve_config(['--checkpoint', str(path), '--input_img_shape', '128,128'],
                       from_checkpoint=True)
    message = str(err.value)
    assert str(path) in message and 'input_img_shape=(64, 64)' in message
    assert 'input_img_shape=(128, 128)' in message and '--input_img_shape' in message
    assert 'heatmap_size' not in message and 'feature_size' not in message
    # Decoding fields may change.
    cfg, _ = resolve_config(['--checkpoint', str(path), '--as_published', 'true'],
                            from_checkpoint=True)
    assert cfg.as_published and cfg.fx_as_fy and cfg.input_img_shape == (64, 64)


def test_a_bad_value_in_the_stored_config_names_the_checkpoint_and_field(tmp_path):
    path = tmp_path / 'snapshot_0.pth.tar'
    values = config.resolve(device='cpu').to_dict()
    values['num_stage'] = 'two'
    torch.save({'net': {}, 'config': values}, path)
    with pytest.raises(config.ConfigError, match=r"stored in .*snapshot_0\.pth\.tar: config field "
                                                 r"'num_stage'"):
        saved_config(str(path))
