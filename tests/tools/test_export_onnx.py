"""tools/export_onnx.py: a checkpoint with its config.json beside it -> a checked ONNX file,
which test.py runs (one export, shared by the module's tests)."""
import contextlib
import io
import json
import re

import pytest
import torch

import config as config_module
import test as test_script
from inference.onnx import OnnxSAR
from synthetic.fixture import make_freihand
from tests.helpers import save_random_checkpoint
from tools import export_onnx as tool

pytestmark = pytest.mark.slow


def network_args(root, mano_root):
    """A small network (num_FMs=2 is only in config.json: the export must read it to load the
    weights strictly) and a FreiHAND-layout folder under `root`."""
    return ['--device', 'cpu', '--backbone', 'resnet18', '--input_img_shape', '64,64',
            '--num_FMs', '2', '--pretrained_backbone', 'false', '--num_worker', '0',
            '--test_batch_size', '2', '--mano_root', mano_root,
            '--data_root', str(root / 'FreiHAND')]


@pytest.fixture(scope='module')
def exported(tmp_path_factory, standin_mano):
    """(arguments, checkpoint path, its network, the ONNX file, what the tool printed)."""
    root = tmp_path_factory.mktemp('export_onnx')
    make_freihand(str(root / 'FreiHAND'), num_samples=1, num_eval=3)
    args = network_args(root, standin_mano)
    ckpt = root / 'checkpoint' / 'snapshot_0.pth.tar'
    model = save_random_checkpoint(config_module.resolve(args), ckpt)
    out = root / 'sar.onnx'
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        tool.main(['--checkpoint', str(ckpt), '--out', str(out)])
    return args, ckpt, model, out, printed.getvalue()


def test_exports_a_checkpoint_with_its_saved_config(exported):
    _, ckpt, model, out, line = exported
    assert re.search(r'opset 18, [\d.]+ MiB, max \|ONNX Runtime - PyTorch\| [\d.e+-]+ ', line)
    runtime = OnnxSAR(out)
    assert runtime.config['num_FMs'] == 2 and runtime.config['backbone'] == 'resnet18'
    assert runtime.config['checkpoint'] == str(ckpt)
    img = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        expected = model({'img': img})['coords']
        got = runtime({'img': img})['coords']
    assert (got - expected).abs().max().item() <= 1e-4


def test_test_py_with_onnx_matches_pytorch_and_checks_the_checkpoint(exported, tmp_path):
    args, ckpt, _, onnx_path, _ = exported

    # PyTorch in fp32 (amp 'auto' would pick bf16 on a CPU with native bf16): ONNX Runtime
    # runs the fp32 graph.
    test_script.main([*args, '--checkpoint', str(ckpt), '--amp', 'off',
                      '--output_root', str(tmp_path / 'torch')])
    # The ONNX file alone (its metadata holds the configuration), then with its checkpoint.
    test_script.main(['--onnx', str(onnx_path), '--num_worker', '0',
                      '--output_root', str(tmp_path / 'onnx')])
    test_script.main(['--onnx', str(onnx_path), '--checkpoint', str(ckpt), '--num_worker', '0',
                      '--output_root', str(tmp_path / 'both')])
    torch_pred = json.loads((tmp_path / 'torch' / 'pred.json').read_text())
    for run in ('onnx', 'both'):
        onnx_pred = json.loads((tmp_path / run / 'pred.json').read_text())
        # 1e-4 in crop-normalised coords is about 7e-6 m in x, y and 3e-5 m in depth here.
        for a, b in zip(torch_pred, onnx_pred):
            assert abs(torch.tensor(a) - torch.tensor(b)).max().item() <= 5e-5

    # A checkpoint of another network is refused, naming the field.
    other = tmp_path / 'other'
    other.mkdir()
    torch.save({'net': {}}, other / 'snapshot_0.pth.tar')
    (other / 'config.json').write_text(config_module.dumps(
        config_module.resolve([*args, '--num_FMs', '4'])))
    with pytest.raises(config_module.ConfigError, match=r'num_FMs: ONNX file 2, checkpoint config 4'):
        test_script.main(['--onnx', str(onnx_path), '--checkpoint', str(other / 'snapshot_0.pth.tar'),
                          '--output_root', str(tmp_path / 'bad')])
    assert not (tmp_path / 'bad').exists()
