"""ONNX export of the fused SAR inference network, and an ONNX Runtime drop-in for it.

The exported graph is the evaluation forward of `SAR.fuse_for_inference()` (docs/method.md
§4): input `img` (B x 3 x H x W float32, ImageNet-normalised RGB crop, docs/method.md §2,
dynamic batch axis) -> output `coords` (B x 799 x 3 crop-normalised uvd, decoded as in
docs/method.md §7). The resolved configuration travels inside the file (metadata_props), so
a runtime can decode the output and check it against a checkpoint's config.json.

Exporter: torch.onnx.export with dynamo=True (torch.export, then ONNX Script). The older
TorchScript (trace) exporter cannot export this network: it has no ONNX symbolic for
`aten::addr`, which folds mesh2pose into the last graph convolution (model/layers.py). The
dynamo exporter decomposes it, traces the derived tensors (normalised adjacencies, folded
rows) as graph operations on the parameters (ONNX Runtime folds them into constants when it
loads the file), and exports the float32 `autocast(enabled=False)` blocks and `torch.mv` as
plain MatMuls. It implements opset 18 and above only, hence OPSET = 18 (ONNX Runtime >= 1.14
runs it); a lower request is refused rather than silently kept at 18.

Tested with torch 2.14, onnx 1.23, onnxscript 0.7 and onnxruntime 1.32.
"""
import json
import os

import numpy as np
import torch
from torch import nn

from inference.decoding import Decoding
from utils.network_spec import NetworkSpec
from utils.errors import UserError
from utils.files.atomic import atomic_open

# onnx and onnxruntime are imported where they are used: check_config_agrees needs neither.

OPSET = 18  # lowest opset the dynamo exporter implements (see the module docstring)
# max |ONNX Runtime - PyTorch| over the sample coords: 1e-4 of the crop-normalised range is
# 0.013 px on a 256 px crop and 0.03 mm of depth. Measured: 3e-7 on the small test network;
# 7.5e-5 on the default network with random weights, whose depths span about +-11 (a trained
# network's about +-1, docs/method.md §3) and rounding differences grow with the values.
SELF_CHECK_TOLERANCE = 1e-4
SELF_CHECK_SEED = 0  # seeds the random sample batch of the self-check
INPUT_NAME = 'img'
OUTPUT_NAME = 'coords'
CONFIG_KEY = 'sar_config'  # metadata_props: the resolved config as JSON
OPSET_KEY = 'sar_opset'
TORCH_VERSION_KEY = 'sar_torch_version'
# Config fields that change the network (its NetworkSpec) or the decoding of its output
# (docs/method.md §4, §7).
NETWORK_FIELDS = NetworkSpec.names() + Decoding.ENCODED_WITH


class OnnxExportError(RuntimeError, UserError):
    """The exported file failed its self-check (opset, ONNX checker, ONNX Runtime vs PyTorch);
    nothing was written."""


class _CoordsOnly(nn.Module):
    """Tensor-in, tensor-out view of the fused network: img B x 3 x H x W -> coords B x P x 3."""

    def __init__(self, fused_model):
        super().__init__()
        self.net = fused_model

    def forward(self, img):
        return self.net({'img': img})['coords']


def _normalise_value(value):
    """JSON round-trips tuples as lists; compare them as tuples."""
    return tuple(value) if isinstance(value, (list, tuple)) else value


def check_config_agrees(onnx_cfg, checkpoint_cfg):
    """Raise ValueError unless the fields that shape the network and its decoding agree.

    Args:
        onnx_cfg: the config dict stored in an exported file (`OnnxSAR.config`).
        checkpoint_cfg: a config dict (e.g. config.json beside a checkpoint, or
            `Config.to_dict()` of the resolved command line).
    Raises:
        ValueError naming every field of NETWORK_FIELDS that differs (or is missing) with
        both values.
    """
    problems = []
    for name in NETWORK_FIELDS:
        ours = _normalise_value(onnx_cfg.get(name, '<missing>'))
        theirs = _normalise_value(checkpoint_cfg.get(name, '<missing>'))
        if ours != theirs:
            problems.append(f'{name}: ONNX file {ours!r}, checkpoint config {theirs!r}')
    if problems:
        raise ValueError('the ONNX file was exported from a different network configuration: '
                         + '; '.join(problems) + '. Export the checkpoint you mean to use '
                         '(python -m tools.export_onnx --checkpoint PATH --out FILE).')


def read_config(path):
    """The resolved config dict stored in an exported file (input_img_shape as a tuple).

    Raises FileNotFoundError for a missing file, ValueError for a file without SAR metadata.
    """
    import onnx

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'ONNX file {path} does not exist; write one with '
                                f'python -m tools.export_onnx --checkpoint PATH --out FILE')
    return _config_from_metadata(path, {entry.key: entry.value
                                        for entry in onnx.load(path).metadata_props})


def _config_from_metadata(path, meta):
    """The config dict of an exported file's metadata {key: value} (ValueError if absent)."""
    if CONFIG_KEY not in meta:
        raise ValueError(f'{path} has no {CONFIG_KEY!r} metadata, so its configuration is '
                         f'unknown: it was not written by inference.onnx.export_onnx. '
                         f'Re-export it with python -m tools.export_onnx')
    config = json.loads(meta[CONFIG_KEY])
    config['input_img_shape'] = tuple(config['input_img_shape'])
    return config


def _check_model_and_config(fused_model, cfg_dict):
    """ValueError unless `fused_model` is a fused SAR on the CPU that `cfg_dict` describes."""
    if not getattr(fused_model, 'inference_only', False):
        raise ValueError('export_onnx needs the network made by SAR.fuse_for_inference() '
                         '(batch norms folded, evaluation only); got a model with '
                         f'inference_only={getattr(fused_model, "inference_only", None)!r}')
    devices = {p.device.type for p in fused_model.parameters()}
    if devices != {'cpu'}:
        raise ValueError(f'export_onnx runs on the CPU (the self-check uses ONNX Runtime\'s '
                         f'CPUExecutionProvider); the model is on {sorted(devices)}: call '
                         f'.cpu() on it first')
    missing = [name for name in NETWORK_FIELDS if name not in cfg_dict]
    if missing:
        raise ValueError(f'cfg_dict lacks the network fields {missing}; pass the resolved '
                         f'config (Config.to_dict())')
    model_fields = fused_model.spec.to_dict()  # the shape the network was built with
    wrong = [f'{name}: model {value!r}, cfg_dict {_normalise_value(cfg_dict[name])!r}'
             for name, value in model_fields.items()
             if _normalise_value(cfg_dict[name]) != _normalise_value(value)]
    if wrong:
        raise ValueError('cfg_dict does not describe the model (the file would carry a wrong '
                         'config): ' + '; '.join(wrong))


def _session(model, num_threads=None):
    """ONNX Runtime CPU session for a file path or serialised model bytes."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if num_threads is not None:
        options.intra_op_num_threads = int(num_threads)
        options.inter_op_num_threads = 1  # the graph is one chain: parallel nodes are rare
    return onnxruntime.InferenceSession(model, options, providers=['CPUExecutionProvider'])


def _run_session(session, img):
    """coords (numpy B x P x 3) of ONNX Runtime for img (numpy B x 3 x H x W float32)."""
    return session.run([OUTPUT_NAME], {INPUT_NAME: img})[0]


def export_onnx(fused_model, cfg_dict, out_path, opset=OPSET, sample_batch=2, metadata=None,
                tolerance=SELF_CHECK_TOLERANCE):
    """Export the fused SAR to ONNX, check it with ONNX Runtime, then write `out_path`.

    The file is written only after both checks pass (onnx.checker and max |ONNX Runtime -
    PyTorch| <= tolerance on a random N(0, 1) batch), through a temporary file and a rename,
    so a failed export leaves no file (and an existing `out_path` untouched).

    Args:
        fused_model: `SAR.fuse_for_inference()` on the CPU.
        cfg_dict: the resolved config (`Config.to_dict()`), stored as JSON under CONFIG_KEY;
            its NETWORK_FIELDS must be present and agree with the model.
        out_path: the .onnx file to write.
        opset: ONNX opset of the default domain, >= OPSET (the dynamo exporter's minimum).
        sample_batch: batch of the sample export and self-check, >= 2 (torch.export treats
            a size-1 dimension as fixed, which would lose the dynamic batch axis).
        metadata: optional {key: str} added to metadata_props (e.g. which MANO template).
        tolerance: max |ONNX Runtime - PyTorch| allowed on the sample coords.
    Returns:
        dict(path, opset, num_bytes, max_abs_diff, sample_batch).
    Raises:
        ValueError for a wrong model, config or argument; OnnxExportError when a check fails.
    """
    import onnx

    if opset < OPSET:
        raise ValueError(f'opset {opset} is below {OPSET}, the lowest the dynamo exporter '
                         f'implements (the TorchScript exporter cannot export SAR: no ONNX '
                         f'symbolic for aten::addr); use opset >= {OPSET}')
    if sample_batch < 2:
        raise ValueError(f'sample_batch must be >= 2 so the batch axis stays dynamic; got '
                         f'{sample_batch}')
    _check_model_and_config(fused_model, cfg_dict)
    height, width = fused_model.input_img_shape
    generator = torch.Generator().manual_seed(SELF_CHECK_SEED)
    sample = torch.randn(sample_batch, 3, height, width, generator=generator)
    wrapper = _CoordsOnly(fused_model).eval()
    with torch.no_grad():
        reference = wrapper(sample).numpy()

    program = torch.onnx.export(
        wrapper, (sample,), dynamo=True, opset_version=opset, verbose=False,
        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        dynamic_shapes={'img': {0: torch.export.Dim('batch')}})
    proto = program.model_proto
    exported_opset = {entry.domain: entry.version for entry in proto.opset_import}.get('')
    if exported_opset != opset:
        raise OnnxExportError(f'asked for opset {opset}, the exporter produced opset '
                              f'{exported_opset}; use opset={exported_opset}')
    entries = {CONFIG_KEY: json.dumps(cfg_dict, sort_keys=True), OPSET_KEY: str(opset),
               TORCH_VERSION_KEY: torch.__version__, **(metadata or {})}
    for key, value in entries.items():
        proto.metadata_props.add(key=key, value=str(value))
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()

    got = _run_session(_session(data), sample.numpy())
    if got.shape != reference.shape:
        raise OnnxExportError(f'ONNX Runtime returned coords of shape {got.shape}, PyTorch '
                              f'{reference.shape}; no file written')
    max_abs_diff = float(np.max(np.abs(got.astype(np.float64) - reference)))
    if not max_abs_diff <= tolerance:  # also catches NaN
        raise OnnxExportError(f'ONNX Runtime and PyTorch disagree on the sample batch: max '
                              f'|difference| {max_abs_diff:.3g} > tolerance {tolerance:g}; no '
                              f'file written to {out_path}')
    with atomic_open(out_path, 'wb') as f:
        f.write(data)
    return dict(path=os.fspath(out_path), opset=opset, num_bytes=len(data),
                max_abs_diff=max_abs_diff, sample_batch=sample_batch)


class OnnxSAR:
    """An exported SAR run by ONNX Runtime on the CPU, a drop-in for the PyTorch network in
    the inference loop: `model.eval()`, then `model({'img': img})['coords']`.

    Args:
        path: .onnx file written by `export_onnx`.
        num_threads: ONNX Runtime intra-op threads (None: ONNX Runtime's default, one per
            physical core).
    Attributes:
        config: the resolved config dict stored at export (input_img_shape as a tuple).
        opset, torch_version: from the metadata.
    Raises:
        ValueError if the file has no SAR metadata (not made by export_onnx).
    """

    def __init__(self, path, num_threads=None):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f'ONNX file {self.path} does not exist; write one with '
                                    f'python -m tools.export_onnx --checkpoint PATH --out FILE')
        self.session = _session(self.path, num_threads)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.config = _config_from_metadata(self.path, meta)
        self.opset = int(meta[OPSET_KEY]) if OPSET_KEY in meta else None
        self.torch_version = meta.get(TORCH_VERSION_KEY)

    def eval(self):
        """No-op (the file is evaluation-only); returns self like nn.Module.eval."""
        return self

    def __call__(self, inputs):
        """{'img': B x 3 x H x W float32 CPU tensor} -> {'coords': B x 799 x 3 tensor}."""
        img = inputs['img']
        height, width = self.config['input_img_shape']
        if img.ndim != 4 or tuple(img.shape[1:]) != (3, height, width):
            raise ValueError(f"inputs['img'] must be B x 3 x {height} x {width} "
                             f"(input_img_shape of {self.path}); got {tuple(img.shape)}")
        if img.device.type != 'cpu':
            raise ValueError(f'OnnxSAR runs on the CPU (CPUExecutionProvider); the image is on '
                             f'{img.device}: use --device cpu')
        img_np = np.ascontiguousarray(img.detach().numpy(), dtype=np.float32)
        return {'coords': torch.from_numpy(_run_session(self.session, img_np))}
