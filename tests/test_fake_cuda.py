"""The CUDA paths of training and evaluation, checked on a fake CUDA device (no GPU needed).

How a CUDA device is faked on this machine (torch 2.14, a CUDA build, no driver):
- `FakeTensorMode(allow_non_fake_inputs=True)` turns every tensor the code makes into a
  FakeTensor (shape, dtype, device, no storage) and propagates devices as CUDA would. A real
  CPU tensor moved with `.to('cuda')` inside the mode becomes a fake CUDA tensor without
  touching the driver, so the batch goes to the device through training.loop.to_device exactly
  as the loader's CPU batch does. Mixing a fake CUDA tensor with a CPU tensor of one or more
  dimensions raises FakeTensorDeviceMismatchError, as CUDA would.
- CUDA accepts 0-dimensional CPU tensors (a constant `torch.tensor(0.1)`) and CPU index
  tensors, and so does the fake mode. The house style has none of them in a CUDA step (each is
  a host allocation and, for indices, a copy every call), so `DeviceAudit`, a dispatch mode
  inside the fake mode, fails on the first aten op that takes or returns a tensor off the
  CUDA device (a CPU factory call such as `torch.zeros(3)` included). The negative controls
  below run deliberately broken copies through the same checks.
- The network is built by run.network.build_model as train.py and test.py build it: the
  SAR constructor runs on real CPU tensors (as on a GPU machine; parameters created inside the
  mode cannot be moved by Module.to: swapping a FakeTensor parameter fails on the weak
  reference the mode keeps to it), then one `.to(device, memory_format=channels_last)` makes
  every parameter and buffer a fake CUDA tensor.
- Mixed precision: torch.autocast('cuda') disables itself where CUDA is not available, so
  `amp_definitely_not_available` and `is_bf16_supported` are patched to say what a bf16 GPU
  says; inference.precision.resolve_amp then picks bf16 for amp='auto' (fp16 for amp='fp16')
  and the autocast dispatch casts the fake CUDA tensors as it casts real ones (the tests
  check that the convolutions and matrix products ran in that dtype).

Not covered, and why: the backward pass (the autograd engine starts a CUDA device thread,
which needs a device: `hasPrimaryContext expects a valid device index`), so neither the
gradients nor what follows them (GradScaler's unscaling, the fused AdamW step) run here; the
host side of evaluation (`Decoding.to_camera`, `split`) is numpy on the copied coordinates,
so it runs on arrays of the network output's shape. Values are not computed at all: the
numbers are checked on the CPU by the other tests.
"""
import types

import numpy as np
import pytest
import torch
from torch._subclasses.fake_tensor import (FakeTensor, FakeTensorDeviceMismatchError,
                                           FakeTensorMode, unset_fake_temporarily)
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.data import default_collate

import config
import inference.network
import model.layers
import model.loss
import model.sar
from inference.decoding import Decoding
from inference.precision import resolve_amp
from model.loss import face_edge_vectors, stage_losses
from run.network import build_model
from tests.helpers import random_mano_data
from training.loop import forward_losses, to_device

CUDA = torch.device('cuda', 0)
BATCH = 2
LOSS_NAMES = sorted(f'{term}_{stage}' for term in ('coord', 'normal', 'edge') for stage in (0, 1))
# Ops whose output dtype shows the precision autocast chose (under inference_mode the
# composite ones, conv2d, linear and matmul, reach the dispatch modes undecomposed).
PRODUCT_OPS = ('aten.convolution.default', 'aten.conv2d.default', 'aten.mm.default',
               'aten.addmm.default', 'aten.linear.default', 'aten.matmul.default',
               'aten.bmm.default')
# The data pointer of a FakeTensor (model.layers.derived_tensor's cache key) warns; its value
# does not matter here (nothing is computed), and on a real device it is the storage address.
FAKE_DATA_PTR = 'ignore:Accessing the data pointer of FakeTensor'


class CpuTensorError(AssertionError):
    """An aten op took or returned a tensor off the CUDA device."""


class DeviceAudit(TorchDispatchMode):
    """Raise CpuTensorError on the first aten op with a tensor argument or result off `device`;
    record the output dtypes of PRODUCT_OPS (in `product_dtypes`)."""

    def __init__(self, device):
        super().__init__()
        self.device = device
        self.product_dtypes = set()
        self.ops = 0

    def _check(self, func, tensors, role):
        for tensor in tensors:
            if isinstance(tensor, torch.Tensor) and tensor.device != self.device:
                raise CpuTensorError(f'{func} {role} a {tuple(tensor.shape)} {tensor.dtype} '
                                     f'tensor on {tensor.device}, not {self.device}')

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self._check(func, tree_flatten((args, kwargs))[0], 'took')
        out = func(*args, **kwargs)
        self._check(func, tree_flatten(out)[0], 'returned')
        self.ops += 1
        if str(func) in PRODUCT_OPS:
            self.product_dtypes.add(out.dtype)
        return out


@pytest.fixture
def fake_cuda(monkeypatch):
    """The patches the module docstring explains: autocast on a bf16 GPU, SAR built on real CPU
    tensors. Returns a function making a new FakeTensorMode (enter it with `with`)."""
    monkeypatch.setattr(torch.cuda.amp.common, 'amp_definitely_not_available', lambda: False)
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda *args, **kwargs: True)
    real_sar = inference.network.SAR

    def sar_on_real_cpu_tensors(*args, **kwargs):
        with unset_fake_temporarily():
            return real_sar(*args, **kwargs)

    monkeypatch.setattr(inference.network, 'SAR', sar_on_real_cpu_tensors)
    return lambda: FakeTensorMode(allow_non_fake_inputs=True)


def loader_batch(cfg, seed=0):
    """(inputs, targets, meta) of BATCH items as the DataLoader collates the data set's items
    (dataset.base.HandCropDataset: float32 arrays), on the CPU."""
    rng = np.random.default_rng(seed)
    rows = cfg.num_vert + cfg.num_joint
    items = []
    for _ in range(BATCH):
        K = np.array([[480.0, 0, 112], [0, 480.0, 112], [0, 0, 1]], np.float32)
        items.append((
            {'img': rng.normal(size=(3, *cfg.input_img_shape)).astype(np.float32)},
            {'mesh_pose_uvd': rng.uniform(-1, 1, size=(rows, 3)).astype(np.float32)},
            {'K': K, 'bb2img_trans': np.array([[0.5, 0, 40], [0, 0.5, 30]], np.float32),
             'root_depth': np.float32(0.6)}))
    return default_collate(items)


def mano_arrays():
    data = random_mano_data(0)
    return types.SimpleNamespace(template=data['v_template'], faces=data['f'])


def run_training_forward(cfg, fake_mode):
    """train.py's model on CUDA and one micro-batch's forward with the losses, as
    train_one_epoch runs it (to_device, then training.loop.forward_losses), under a
    DeviceAudit. Returns (losses, total, audit, amp_dtype)."""
    amp_dtype = resolve_amp(cfg.amp, CUDA).dtype  # train.py: log_amp
    inputs, targets, _ = loader_batch(cfg)
    with fake_mode:
        network = build_model(cfg, mano_arrays(), CUDA)
        network.train()
        inputs = to_device(inputs, CUDA, channels_last=cfg.channels_last)
        targets = to_device(targets, CUDA)
        with DeviceAudit(CUDA) as audit:
            losses, total = forward_losses(network, inputs, targets, amp_dtype)
    return losses, total, audit, amp_dtype


def run_evaluation_forward(cfg, fake_mode):
    """test.py's network (build_model, batch norms folded as load_for_inference does) and
    Decoding on CUDA, the crops moved as inference.predict moves them, under a DeviceAudit.
    Returns (coords, meta, decoding, audit, amp_dtype)."""
    amp_dtype = resolve_amp(cfg.amp, CUDA).dtype  # test.py: inference_amp
    decoding = Decoding.from_config(cfg, CUDA, amp_dtype)
    inputs, _, meta = loader_batch(cfg)
    with fake_mode as mode:
        network = build_model(cfg, mano_arrays(), CUDA, pretrained_backbone=False)
        fused = network.fuse_for_inference()
        # The loader's CPU batch as a fake CPU tensor: under inference_mode the fake mode does
        # not convert a real tensor's `.to('cuda')` (it runs the real copy, which needs a driver).
        img_cpu = mode.from_tensor(inputs['img'])
        with torch.inference_mode():
            img = img_cpu.to(CUDA, non_blocking=True)  # inference.predict's host -> device copy
            with DeviceAudit(CUDA) as audit:
                coords = decoding.device_coords(fused, img)
    return coords, meta, decoding, audit, amp_dtype


def config_for(head, amp):
    """The default configuration (device cuda, channels_last) with `head` and `amp`."""
    cfg = config.resolve(head=head, amp=amp, pretrained_backbone=False)
    assert cfg.device == 'cuda' and cfg.channels_last
    return cfg


# amp -> (the autocast dtype resolve_amp picks on a bf16 GPU, the products' dtype)
PRECISIONS = {'off': (None, torch.float32), 'auto': (torch.bfloat16, torch.bfloat16),
              'fp16': (torch.float16, torch.float16)}


def expected_product_dtype(amp):
    return PRECISIONS[amp][1]


@pytest.mark.filterwarnings(FAKE_DATA_PTR)
@pytest.mark.parametrize('amp', ['off', 'auto', 'fp16'])
@pytest.mark.parametrize('head', ['fused', 'reference'])
def test_training_forward_and_losses_stay_on_cuda(fake_cuda, head, amp):
    cfg = config_for(head, amp)
    losses, total, audit, amp_dtype = run_training_forward(cfg, fake_cuda())
    assert amp_dtype == PRECISIONS[amp][0]
    assert audit.ops > 500  # the whole network ran under the audit
    assert audit.product_dtypes == {expected_product_dtype(amp)}
    assert sorted(losses) == LOSS_NAMES
    for name, value in {**losses, 'total': total}.items():
        assert isinstance(value, FakeTensor), name
        assert (value.device, value.dtype, value.shape) == (CUDA, torch.float32, ()), name


@pytest.mark.filterwarnings(FAKE_DATA_PTR)
@pytest.mark.parametrize('amp', ['off', 'auto'])
@pytest.mark.parametrize('head', ['fused', 'reference'])
def test_evaluation_forward_and_decoding_stay_on_cuda(fake_cuda, head, amp):
    cfg = config_for(head, amp)
    coords, meta, decoding, audit, _ = run_evaluation_forward(cfg, fake_cuda())
    assert decoding.channels_last
    assert audit.ops > 100
    assert audit.product_dtypes == {expected_product_dtype(amp)}
    rows = cfg.num_vert + cfg.num_joint
    assert isinstance(coords, FakeTensor)
    assert (coords.device, coords.dtype, coords.shape) == (CUDA, torch.float32, (BATCH, rows, 3))
    # The host side, on arrays of the copied coordinates' shape and dtype (see the docstring):
    # zeros decode to the crop centre at the root depth.
    host_coords = np.zeros(tuple(coords.shape), np.float32)
    xyz = decoding.to_camera(host_coords, meta['root_depth'].numpy(),
                             meta['bb2img_trans'].numpy(), meta['K'].numpy())
    joints, verts = decoding.split(xyz)
    assert joints.shape == (BATCH, cfg.num_joint, 3) and verts.shape == (BATCH, cfg.num_vert, 3)
    np.testing.assert_allclose(xyz[..., 2], 0.6, rtol=1e-6)


# ---- negative controls: broken copies with a CPU tensor fail the same checks ----------------

def losses_with_cpu_constant(*args, **kwargs):
    """stage_losses with the normal term scaled by a 0-dimensional CPU tensor."""
    losses = stage_losses(*args, **kwargs)
    losses['normal'] = losses['normal'] * torch.tensor(1.0)
    return losses


def edges_with_cpu_index(verts, faces):
    """model.loss.face_edge_vectors indexing the vertices with a CPU copy of the faces."""
    return face_edge_vectors(verts, faces.cpu())


def heatmap_px_to_normalised_with_cpu_constant(uv_px, heatmap_size):
    """model.layers.heatmap_px_to_normalised with the half size as a CPU (2,) tensor."""
    return uv_px / torch.full((2,), float(heatmap_size // 2)) - 1


@pytest.mark.filterwarnings(FAKE_DATA_PTR)
@pytest.mark.parametrize('target, broken, expected', [
    ((model.sar, 'stage_losses'), losses_with_cpu_constant,
     r'aten.lift_fresh.* a \(\) torch.float32 tensor on cpu'),
    ((model.loss, 'face_edge_vectors'), edges_with_cpu_index,
     r'aten._to_copy.* returned a \(1538, 3\) torch.int64 .* on cpu'),
], ids=['0-dim constant', 'index tensor'])
def test_audit_fails_on_a_cpu_tensor_in_the_losses(fake_cuda, monkeypatch, target, broken,
                                                   expected):
    """CPU tensors CUDA (and the fake mode) accept: the audit names the op that made them."""
    monkeypatch.setattr(*target, broken)
    with pytest.raises(CpuTensorError, match=expected):
        run_training_forward(config_for('fused', 'off'), fake_cuda())


@pytest.mark.filterwarnings(FAKE_DATA_PTR)
def test_audit_fails_on_a_cpu_constant_in_a_layer(fake_cuda, monkeypatch):
    """A CPU operand of one or more dimensions in the fused head's evaluation forward."""
    monkeypatch.setattr(model.layers, 'heatmap_px_to_normalised',
                        heatmap_px_to_normalised_with_cpu_constant)
    with pytest.raises(CpuTensorError, match=r'aten.full.* returned a \(2,\) .* on cpu'):
        run_evaluation_forward(config_for('fused', 'off'), fake_cuda())
    # Without the audit the fake mode itself refuses the mix (a non-scalar CPU operand).
    with fake_cuda():
        with pytest.raises(FakeTensorDeviceMismatchError, match='cuda:0 and cpu'):
            model.layers.heatmap_px_to_normalised(torch.zeros(3, 2, device=CUDA), 32)
