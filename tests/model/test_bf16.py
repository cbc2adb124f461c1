"""SAR under CPU bf16 autocast (torch.autocast('cpu', dtype=torch.bfloat16)), against the
same network in fp32 (itself checked against a float64 transcription in test_fast_path.py).

What must hold, as under CUDA autocast: the soft-argmax probabilities and the output
coordinates stay float32; the decoded points agree with fp32 within a generous bound (the
measured bound on trained networks is in docs/performance.md); a training step gives
float32 losses and gradients close to fp32's; derived tensors remembered under bf16 are not
reused by an fp32 call.
"""
import copy

import numpy as np
import pytest
import torch

from model import NetworkSpec, SAR
from model.layers import SoftHeatmap
from utils.constants import TRAINING_BOX_CENTER, TRAINING_BOX_SIZE
from utils.transforms import decode_uvd, get_affine

SIDE = 64
SMALL = dict(backbone='resnet18', input_img_shape=(SIDE, SIDE), num_stage=2, num_FMs=2,
             feature_size=4, heatmap_size=8)
BETA_SCALE = 5.0  # sharper heatmaps than at initialisation, nearer a trained network's
K = np.array([[500.0, 0.0, 112.0], [0.0, 500.0, 112.0], [0.0, 0.0, 1.0]])  # FreiHAND framing
ROOT_DEPTH_M = 0.7
# Generous bounds (measured on this network: mean 0.035 mm, 99th percentile 0.10 mm, max
# |normalised difference| 1.3e-3): an op left in bf16 where precision needs fp32 (the
# soft-argmax, the depth sum, the coordinates) or an overflow exceeds them.
MEAN_MM, P99_MM = 0.3, 1.0
NORMALISED = 5e-3  # the bound on the network output (crop-normalised units), docs/performance.md


@pytest.fixture(scope='module')
def small_sar(standin):
    torch.manual_seed(0)
    mano = standin
    model = SAR(mano['v_template'], mano['f'], NetworkSpec(**SMALL))
    with torch.no_grad():
        for stage in model.gbbmr:
            stage.soft_heatmap.beta.weight.mul_(BETA_SCALE)
    return model.eval()


def batch(size=8, seed=1):
    return torch.randn(size, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(seed))


def decoded_mm(coords):
    """(B, 799, 3) crop-normalised -> camera frame, mm (docs/method.md §7)."""
    coords = coords.detach().float().numpy()
    count = len(coords)
    _, crop2img = get_affine(TRAINING_BOX_CENTER, TRAINING_BOX_SIZE, (SIDE, SIDE))
    return 1000 * decode_uvd(coords, np.full(count, ROOT_DEPTH_M),
                             np.broadcast_to(crop2img, (count, 2, 3)),
                             np.broadcast_to(K, (count, 3, 3)), crop_size=(SIDE, SIDE),
                             depth_box=0.3)


def test_soft_heatmap_probabilities_stay_float32_under_cpu_autocast():
    soft = SoftHeatmap(num_maps=4, heatmap_size=8)
    logits = (4 * torch.randn(4, 2, 64, generator=torch.Generator().manual_seed(0)))
    logits_bf16 = logits.to(torch.bfloat16)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        prob, uv_px = soft(logits_bf16, prescaled=True)
    assert prob.dtype == torch.float32 and uv_px.dtype == torch.float32
    expected = torch.softmax(logits_bf16.double(), dim=-1)  # the same bf16 logits, float64
    torch.testing.assert_close(prob.double(), expected, rtol=0, atol=1e-6)
    grid = torch.stack(torch.meshgrid(torch.arange(8.), torch.arange(8.), indexing='ij'))
    expected_uv = torch.stack(((expected * grid[1].reshape(-1).double()).sum(-1),
                               (expected * grid[0].reshape(-1).double()).sum(-1)), dim=-1)
    torch.testing.assert_close(uv_px.double(), expected_uv, rtol=0, atol=1e-5)


def test_decoded_bf16_agrees_with_fp32(small_sar):
    inputs = {'img': batch()}
    for network in (small_sar, small_sar.fuse_for_inference()):
        with torch.inference_mode():
            reference = network(inputs)['coords']
            with torch.autocast('cpu', dtype=torch.bfloat16):
                coords = network(inputs)['coords']
        assert coords.dtype == torch.float32
        assert (coords - reference).abs().max().item() < NORMALISED
        dist_mm = np.linalg.norm(decoded_mm(coords) - decoded_mm(reference), axis=-1)
        assert dist_mm.mean() < MEAN_MM and np.percentile(dist_mm, 99) < P99_MM, (
            dist_mm.mean(), np.percentile(dist_mm, 99))
        # bf16 really ran: the products rounded (an autocast that did nothing gives 0)
        assert dist_mm.max() > 1e-4


def test_an_fp32_call_after_a_bf16_call_is_fp32(small_sar):
    # The graph head remembers derived tensors between calls without gradients; those made
    # under bf16 autocast (bf16 products) must not be reused by an fp32 call.
    inputs = {'img': batch(2)}
    model = copy.deepcopy(small_sar)
    fresh = copy.deepcopy(small_sar)
    with torch.inference_mode():
        with torch.autocast('cpu', dtype=torch.bfloat16):
            model(inputs)
        after_bf16 = model(inputs)['coords']
        expected = fresh(inputs)['coords']
    assert torch.equal(after_bf16, expected)


def test_bf16_training_step_gives_float32_losses_and_gradients_close_to_fp32(small_sar):
    model = copy.deepcopy(small_sar).train()
    img = batch(4, seed=2)
    gt_uvd = torch.rand(4, 799, 3, generator=torch.Generator().manual_seed(3)) * 2 - 1
    results = {}
    for name, enabled in (('fp32', False), ('bf16', True)):
        torch.manual_seed(5)  # the same dropout masks
        model.zero_grad(set_to_none=True)
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=enabled):
            losses = model({'img': img}, {'mesh_pose_uvd': gt_uvd})
        assert all(value.dtype == torch.float32 for value in losses.values()), name
        sum(losses.values()).backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all()
                   for g in grads), name
        results[name] = (torch.stack(list(losses.values())).detach(),
                         torch.cat([g.flatten() for g in grads]))
    (loss32, grad32), (loss16, grad16) = results['fp32'], results['bf16']
    torch.testing.assert_close(loss16, loss32, rtol=2e-2, atol=1e-4)
    # The gradient of an untrained network on random targets is small and noisy: bf16's
    # rounding in the backward products turns it by a fair angle (measured cosine 0.91 with
    # fp32's). A gradient lost or cut under autocast (a detached fp32 island, a wrong cast)
    # gives far less; whether bf16 training learns is test_overfit.py's bf16 case.
    cosine = torch.nn.functional.cosine_similarity(grad16, grad32, dim=0).item()
    assert cosine > 0.8, cosine
