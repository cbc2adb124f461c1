"""tools/export_onnx.py: a checkpoint with its config.json beside it -> a checked ONNX file."""
import re

import pytest
import torch

import config as config_module
from engine.onnx_export import OnnxSAR
from manopth.io import save_mano
from manopth.standin import build_standin
from model import SAR
from tools import export_onnx as tool


@pytest.mark.slow
def test_exports_a_checkpoint_with_its_saved_config(tmp_path, capsys):
    mano = build_standin(seed=0)
    save_mano(tmp_path / 'mano' / 'MANO_RIGHT.pkl', mano)
    # num_FMs=2 is only in config.json: the export must read it to load the weights strictly.
    cfg = config_module.resolve(backbone='resnet18', input_img_shape=(64, 64), num_FMs=2,
                                pretrained_backbone=False, device='cpu',
                                mano_root=str(tmp_path / 'mano'))
    model = SAR(mano['v_template'], mano['f'], backbone='resnet18', num_FMs=2,
                feature_size=cfg.feature_size, heatmap_size=cfg.heatmap_size,
                input_img_shape=(64, 64))
    folder = tmp_path / 'checkpoint'
    folder.mkdir()
    torch.save({'net': model.state_dict()}, folder / 'snapshot_0.pth.tar')
    (folder / 'config.json').write_text(config_module.dumps(cfg))
    out = tmp_path / 'sar.onnx'

    tool.main(['--checkpoint', str(folder / 'snapshot_0.pth.tar'), '--out', str(out)])
    line = capsys.readouterr().out
    assert re.search(r'opset 18, [\d.]+ MiB, max \|ONNX Runtime - PyTorch\| [\d.e+-]+ ', line)
    runtime = OnnxSAR(out)
    assert runtime.config['num_FMs'] == 2 and runtime.config['backbone'] == 'resnet18'
    assert runtime.config['checkpoint'] == str(folder / 'snapshot_0.pth.tar')
    img = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        expected = model.eval()({'img': img})['coords']
        got = runtime({'img': img})['coords']
    assert (got - expected).abs().max().item() <= 1e-4
