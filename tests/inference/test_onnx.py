"""ONNX export of the fused SAR (inference/onnx.py) on a small network.

The tests that export are marked slow (one export is several seconds of torch.export and
ONNX translation); the config and argument checks are fast.
"""
import json
import os

import onnx
import pytest
import torch

import config as config_module
from inference import onnx as onnx_export
from inference.onnx import OnnxExportError, OnnxSAR, check_config_agrees, export_onnx
from model import NetworkSpec, SAR

SMALL = dict(backbone='resnet18', input_img_shape=(64, 64), num_stage=2, num_FMs=2,
             feature_size=4, heatmap_size=8)


def _small_cfg_dict():
    return config_module.resolve(pretrained_backbone=False, **SMALL).to_dict()


@pytest.fixture(scope='module')
def fused(standin):
    torch.manual_seed(0)
    mano = standin
    model = SAR(mano['v_template'], mano['f'], NetworkSpec(**SMALL))
    with torch.no_grad():  # non-trivial batch norm statistics, so folding matters
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval().fuse_for_inference()


@pytest.fixture(scope='module')
def exported(fused, tmp_path_factory):
    path = tmp_path_factory.mktemp('onnx') / 'small.onnx'
    before = fused({'img': torch.ones(2, 3, 64, 64)})['coords']
    report = export_onnx(fused, _small_cfg_dict(), path, metadata={'mano': 'standin'})
    after = fused({'img': torch.ones(2, 3, 64, 64)})['coords']
    return path, report, before, after


@pytest.mark.slow  # exports (about 10 s on two busy cores)
def test_export_reports_and_leaves_pytorch_unchanged(exported):
    path, report, before, after = exported
    assert report['opset'] == onnx_export.OPSET == 18
    assert report['num_bytes'] == os.path.getsize(path)
    assert report['max_abs_diff'] <= 1e-4
    torch.testing.assert_close(after, before, rtol=0, atol=0)  # export does not touch the model
    onnx.checker.check_model(str(path))
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ['img'] and [o.name for o in graph.output] == ['coords']
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch axis


@pytest.mark.slow
@pytest.mark.parametrize('batch', [1, 3])
def test_onnx_runtime_matches_pytorch_at_any_batch(fused, exported, batch):
    path = exported[0]
    runtime = OnnxSAR(path, num_threads=1)
    assert runtime.eval() is runtime
    img = torch.randn(batch, 3, 64, 64, generator=torch.Generator().manual_seed(batch))
    with torch.inference_mode():
        expected = fused({'img': img})['coords']
        got = runtime({'img': img})['coords']
    assert isinstance(got, torch.Tensor) and got.shape == (batch, 799, 3)
    assert (got - expected).abs().max().item() <= 1e-4


@pytest.mark.slow
def test_metadata_round_trip(exported):
    path = exported[0]
    runtime = OnnxSAR(path)
    expected = _small_cfg_dict()
    assert runtime.config == expected  # input_img_shape back as a tuple
    assert runtime.config['input_img_shape'] == (64, 64)
    assert runtime.opset == 18 and runtime.torch_version == torch.__version__
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props['sar_config'])['backbone'] == 'resnet18'
    assert props['mano'] == 'standin'


@pytest.mark.slow
def test_onnx_sar_rejects_a_wrong_image(exported):
    runtime = OnnxSAR(exported[0])
    with pytest.raises(ValueError, match=r'B x 3 x 64 x 64.*\(1, 3, 32, 32\)'):
        runtime({'img': torch.zeros(1, 3, 32, 32)})


def test_file_without_metadata_is_a_clear_error(tmp_path):
    node = onnx.helper.make_node('Identity', ['img'], ['coords'])
    graph = onnx.helper.make_graph(
        [node], 'plain', [onnx.helper.make_tensor_value_info('img', onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info('coords', onnx.TensorProto.FLOAT, [1])])
    path = tmp_path / 'plain.onnx'
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid('', 18)]),
              str(path))
    with pytest.raises(ValueError, match=f"{path}.*'sar_config'"):
        OnnxSAR(path)
    with pytest.raises(FileNotFoundError, match='missing.onnx'):
        OnnxSAR(tmp_path / 'missing.onnx')


def test_check_config_agrees():
    cfg = _small_cfg_dict()
    stored = json.loads(json.dumps(cfg))  # as read back from a file: tuples became lists
    check_config_agrees(stored, cfg)
    check_config_agrees(stored, {**cfg, 'lr': 1.0, 'device': 'cuda'})  # not network fields
    with pytest.raises(ValueError, match=r"num_FMs: ONNX file 2, checkpoint config 8.*"
                                         r"depth_box: ONNX file 0.3, checkpoint config 0.25"):
        check_config_agrees(stored, {**cfg, 'num_FMs': 8, 'depth_box': 0.25})
    with pytest.raises(ValueError, match=r'input_img_shape: ONNX file \(64, 64\), checkpoint '
                                         r'config \(96, 96\)'):
        check_config_agrees(stored, {**cfg, 'input_img_shape': (96, 96)})


@pytest.mark.slow
def test_failed_self_check_leaves_no_file(fused, tmp_path, monkeypatch):
    path = tmp_path / 'out.onnx'
    real_run = onnx_export._run_session
    monkeypatch.setattr(onnx_export, '_run_session',
                        lambda session, img: real_run(session, img) + 1e-3)
    real_export, programs = torch.onnx.export, []

    def export_once(*args, **kwargs):  # the second export reuses the first (same arguments)
        if not programs:
            programs.append(real_export(*args, **kwargs))
        return programs[0]

    monkeypatch.setattr(torch.onnx, 'export', export_once)
    with pytest.raises(OnnxExportError, match=r'max \|difference\| 0.001.* no file written'):
        export_onnx(fused, _small_cfg_dict(), path)
    assert os.listdir(tmp_path) == []  # neither the file nor a temporary
    path.write_bytes(b'previous export')
    with pytest.raises(OnnxExportError):
        export_onnx(fused, _small_cfg_dict(), path)
    assert path.read_bytes() == b'previous export'  # an existing file is left untouched
    assert os.listdir(tmp_path) == ['out.onnx']


def test_export_refuses_bad_inputs(fused, tmp_path, standin):
    cfg = _small_cfg_dict()
    mano = standin
    unfused = SAR(mano['v_template'], mano['f'], NetworkSpec(**SMALL))
    with pytest.raises(ValueError, match='fuse_for_inference'):
        export_onnx(unfused.eval(), cfg, tmp_path / 'a.onnx')
    with pytest.raises(ValueError, match=r'input_img_shape: model \(64, 64\), cfg_dict \(96, 96\)'):
        export_onnx(fused, {**cfg, 'input_img_shape': (96, 96)}, tmp_path / 'a.onnx')
    with pytest.raises(ValueError, match=r'num_FMs: model 2, cfg_dict 8'):
        export_onnx(fused, {**cfg, 'num_FMs': 8}, tmp_path / 'a.onnx')
    with pytest.raises(ValueError, match='opset 17 is below 18'):
        export_onnx(fused, cfg, tmp_path / 'a.onnx', opset=17)
    with pytest.raises(ValueError, match='sample_batch must be >= 2'):
        export_onnx(fused, cfg, tmp_path / 'a.onnx', sample_batch=1)
    assert os.listdir(tmp_path) == []
