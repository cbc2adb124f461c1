"""A small SAR overfits one fixed batch (integration test of network, losses and gradients),
in fp32 and under CPU bf16 autocast (as train.py runs on a CPU with native bf16)."""

import numpy as np
import pytest
import torch

from inference.precision import autocast, cpu_bf16_flags
from model import NetworkSpec, SAR

NUM_JOINT = 5
BATCH = 2
STEPS = 120  # about 0.15 s each on 2 idle CPU cores; 80 left too little margin on some seeds
LEARNING_RATE = 1e-3


def sphere_targets(sphere_verts, generator):
    """One randomly rotated and shifted sphere per sample, crop-normalised uvd, joints = verts 0..4.

    Args:
        sphere_verts: V x 3 unit-sphere vertices.
    Returns:
        BATCH x (V + NUM_JOINT) x 3, u and v within [-0.7, 0.7], d within [-0.5, 0.5].
    """
    samples = []
    for _ in range(BATCH):
        rotation, _ = torch.linalg.qr(torch.randn(3, 3, generator=generator))
        rotated = sphere_verts @ rotation.T
        shift_uv = 0.2 * torch.rand(2, generator=generator) - 0.1
        uvd = torch.cat((0.6 * rotated[:, :2] + shift_uv, 0.5 * rotated[:, 2:]), dim=1)
        samples.append(torch.cat((uvd, uvd[:NUM_JOINT])))
    return torch.stack(samples)


# bf16 training as train.py runs it: where the CPU computes bf16 natively ('auto' picks it).
# Elsewhere bf16 runs emulated, about 10 times slower than fp32, and train.py trains in fp32;
# bf16's losses and gradients are checked on every CPU by tests/model/test_bf16.py.
NATIVE_BF16 = bool(cpu_bf16_flags())


@pytest.mark.slow
@pytest.mark.parametrize('amp_dtype', [
    None, pytest.param(torch.bfloat16, marks=pytest.mark.skipif(
        not NATIVE_BF16, reason='no native bf16 on this CPU: train.py trains in fp32 here'))],
    ids=['fp32', 'bf16'])
def test_small_sar_overfits_a_fixed_batch(amp_dtype):
    import trimesh

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    sphere = trimesh.creation.icosphere(subdivisions=2)  # 162 vertices, 320 faces
    sphere_verts = torch.tensor(np.asarray(sphere.vertices), dtype=torch.float32)
    model = SAR(0.05 * sphere_verts, np.asarray(sphere.faces), NetworkSpec(backbone='resnet18', num_stage=1, feature_size=16, heatmap_size=16, num_vert=len(sphere_verts), num_joint=NUM_JOINT, input_img_shape=(128, 128)))
    images = torch.randn(BATCH, 3, 128, 128, generator=generator)
    gt_uvd = sphere_targets(sphere_verts, generator)

    def eval_coord_l1():
        model.eval()
        with torch.no_grad():
            pred_uvd = model({'img': images})['coords']
        model.train()
        return (pred_uvd - gt_uvd).abs().mean().item()

    initial = eval_coord_l1()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    for _ in range(STEPS):
        with autocast(images.device, amp_dtype):
            losses = model({'img': images}, {'mesh_pose_uvd': gt_uvd})
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    final = eval_coord_l1()
    print(f'coord L1 {initial:.4f} -> {final:.4f} ({initial / final:.1f}x)')
    assert final <= initial / 5
