"""The fused SAR head (model/layers.py) against the reference head (model/reference_head.py).

The reference head computes docs/method.md §4 as written (row-normalised adjacency, L @
concat(features, template), fc, LeakyReLU(0.1), mesh2pose across the vertex dimension, the
beta scale, softmax over the pixels, expected column and row from the index grids, depth as
the pixel sum of p * z); tests/model/test_layers.py pins it, and the fused layers, to
hand-worked values. Here a float64 copy of the network with the reference head, loaded with
the fused network's state dict, is the reference; the fuse of the next stage and the three
losses per stage are written out below with einsums. Only the torchvision backbone parts are
run as modules (in the float64 copy, unfused), so the fused inference copy (batch norms
folded, separable max-pool) is checked as well. Compared: evaluation outputs (eval mode and
fuse_for_inference) and training losses within 1e-4, training gradients of every parameter
in float64, the two heads alone in training mode with the same dropout masks, the derived
tensors remembered between calls after parameter updates, and the CPU dropout mask.
Small inputs: ResNet-18, 64 px (8 x 8 heatmaps, 2 x 2 high-level maps), an icosphere of 42
vertices and 5 joints.
"""

import numpy as np
import pytest
import torch

from model import NetworkSpec, SAR
from model.layers import mix_and_project
from model.loss import stage_losses

NUM_JOINT = 5
SIDE = 64
TOLERANCE = dict(rtol=0, atol=1e-4)


def icosphere():
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=1)  # 42 vertices, 80 faces
    return np.asarray(sphere.vertices, np.float32) * 0.05, np.asarray(sphere.faces)


def small_model(num_stage, head='fused'):
    """A small SAR (ResNet-18, 64 px, 42 vertices, 5 joints) with the given head."""
    template, faces = icosphere()
    return SAR(template, faces, NetworkSpec(backbone='resnet18', num_stage=num_stage, num_FMs=8, feature_size=(SIDE // 32) ** 2, heatmap_size=SIDE // 8, num_vert=len(template), num_joint=NUM_JOINT, input_img_shape=(SIDE, SIDE)), head=head)


def randomise(module, generator):
    """Move every parameter and BN statistic of `module` away from its initial value."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith('adj'):
                # positive entries: row sums well away from zero, every row mixes vertices
                noise = torch.rand(param.shape, generator=generator, dtype=param.dtype)
                param.copy_(torch.eye(len(param), dtype=param.dtype) + 0.3 * noise)
            elif name.endswith('soft_heatmap.beta.weight'):
                param.copy_(0.5 + torch.rand(param.shape, generator=generator,
                                             dtype=param.dtype))
            elif param.requires_grad:
                param.add_(0.02 * torch.randn(param.shape, generator=generator,
                                              dtype=param.dtype))
        for submodule in module.modules():
            if isinstance(submodule, torch.nn.BatchNorm2d):
                count = submodule.num_features
                submodule.running_mean.copy_(0.1 * torch.randn(count, generator=generator))
                submodule.running_var.copy_(0.5 + torch.rand(count, generator=generator))
    return module


def randomised_model(num_stage, seed=0, head='fused'):
    """A small SAR whose every parameter and BN statistic is away from its initial value."""
    torch.manual_seed(seed)
    return randomise(small_model(num_stage, head), torch.Generator().manual_seed(seed + 1))


def reference_net(model, training):
    """A float64 copy of `model` with the reference head, in the given mode, dropouts off
    (the formulas are checked without the random masks; see
    test_heads_in_training_mode_with_the_same_dropout_masks for them)."""
    net = small_model(model.num_stage, head='reference').double()
    net.load_state_dict(model.state_dict(), strict=True)  # copies into float64, exactly
    net.train(training)
    for module in net.modules():
        if isinstance(module, torch.nn.Dropout):
            module.eval()
    return net


def reference_stages(net, img):
    """Every stage's (coords, prob, prob * z), batch-first, maps flattened to h*w pixels.

    The reference head computes each stage (docs/method.md §4); the fuse of the next stage is
    written out here.

    Args:
        net: from `reference_net`; its backbone modules and head are used as they are.
    """
    img = img.double()
    num_vert, side = net.num_vert, net.gbbmr[0].heatmap_size
    features_mid = net.extract_mid(img)
    stage_input = features_mid
    outputs = []
    for stage in range(net.num_stage):
        if stage > 0:
            _, prev_prob, prev_prob_z = outputs[-1]
            fuse = net.fuse[stage - 1]
            joint_maps = [maps[:, num_vert:].reshape(img.shape[0], -1, side, side)
                          for maps in (prev_prob, prev_prob_z)]
            stacked = torch.cat((features_mid, *joint_maps), dim=1)
            stage_input = (torch.einsum('oc,bchw->bohw', fuse.weight[:, :, 0, 0], stacked)
                           + fuse.bias[None, :, None, None])
        high = net.extract_high[stage](stage_input)  # (B, C, h, w)
        out = net.gbbmr[stage](net.saigb[stage](high), shared_columns=net.template, maps='all')
        outputs.append((out.coords, out.prob.flatten(2), out.prob_depth.flatten(2)))
    return outputs


def unit(vectors):
    return vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def reference_losses(stages, gt_uvd, faces, num_vert):
    """docs/method.md §5 per stage: coord L1, 0.1 * |unit pred edge . target normal|, edge length."""
    losses = {}
    faces = torch.as_tensor(faces, dtype=torch.long)
    gt_uvd = gt_uvd.double()
    for stage, (coords, _, _) in enumerate(stages):
        losses[f'coord_{stage}'] = (coords - gt_uvd).abs().mean()
        pred, gt = coords[:, :num_vert], gt_uvd[:, :num_vert]
        a, b, c = (pred[:, faces[:, k]] for k in range(3))
        ga, gb, gc = (gt[:, faces[:, k]] for k in range(3))
        pred_edges = torch.stack((b - a, c - a, c - b), dim=2)  # (B, F, 3, 3)
        gt_edges = torch.stack((gb - ga, gc - ga, gc - gb), dim=2)
        e1, e2 = unit(gb - ga), unit(gc - ga)
        cross = torch.stack((e1[..., 1] * e2[..., 2] - e1[..., 2] * e2[..., 1],
                             e1[..., 2] * e2[..., 0] - e1[..., 0] * e2[..., 2],
                             e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0]), dim=-1)
        normal = unit(cross)
        cosines = (unit(pred_edges) * normal[:, :, None]).sum(-1)
        losses[f'normal_{stage}'] = 0.1 * cosines.abs().mean()
        losses[f'edge_{stage}'] = (pred_edges.norm(dim=-1) - gt_edges.norm(dim=-1)).abs().mean()
    return losses


@pytest.mark.parametrize('num_stage', [1, 2])
def test_eval_outputs_equal_the_reference_head(num_stage):
    model = randomised_model(num_stage).eval()
    img = torch.randn(3, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(5))
    expected = reference_stages(reference_net(model, training=False), img)
    with torch.no_grad():
        coords = model({'img': img})['coords']
        stages = model.predict_stages(img)
        fused_coords = model.fuse_for_inference()({'img': img})['coords']
    torch.testing.assert_close(coords.double(), expected[-1][0], **TOLERANCE)
    torch.testing.assert_close(fused_coords.double(), expected[-1][0], **TOLERANCE)
    for ours, (ref_coords, ref_prob, ref_prob_z) in zip(stages, expected):
        side = model.gbbmr[0].heatmap_size
        torch.testing.assert_close(ours.coords.double(), ref_coords, **TOLERANCE)
        torch.testing.assert_close(ours.prob.double().flatten(2), ref_prob, **TOLERANCE)
        torch.testing.assert_close(ours.prob_depth.double().flatten(2), ref_prob_z, **TOLERANCE)
        assert ours.prob.shape[2:] == (side, side)
    # Gradients recorded in evaluation mode (no caches used) give the same outputs.
    torch.testing.assert_close(model({'img': img})['coords'].detach().double(), expected[-1][0],
                               **TOLERANCE)


def test_fused_copy_leaves_the_original_untouched():
    model = randomised_model(2).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = model.fuse_for_inference()
    after = model.state_dict()
    assert list(before) == list(after)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) > 0
    assert not any(p.requires_grad for p in fused.parameters())
    with pytest.raises(RuntimeError, match='fuse_for_inference'):
        fused.train()
    model.train()  # the original still trains


def test_training_losses_equal_the_reference_head_and_spec_losses():
    model = randomised_model(2).train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    generator = torch.Generator().manual_seed(7)
    img = torch.randn(2, 3, SIDE, SIDE, generator=generator)
    gt_uvd = torch.rand(2, model.num_vert + NUM_JOINT, 3, generator=generator) * 2 - 1
    # The reference copy first (the model's forward updates its BN running statistics).
    net = reference_net(model, training=True)
    expected = reference_losses(reference_stages(net, img), gt_uvd, model.faces, model.num_vert)
    losses = model({'img': img}, {'mesh_pose_uvd': gt_uvd})
    assert list(losses) == list(expected)
    for name in expected:
        torch.testing.assert_close(losses[name].double(), expected[name], **TOLERANCE)


def test_training_gradients_equal_the_reference_head_in_float64():
    # float64 on both sides: float32 gradients through batch norm over 2 x 2 maps differ
    # from float64 by about 1e-3 relative, which would hide a real difference.
    model = randomised_model(2).double().train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    generator = torch.Generator().manual_seed(7)
    img = torch.randn(2, 3, SIDE, SIDE, generator=generator, dtype=torch.float64)
    gt_uvd = torch.rand(2, model.num_vert + NUM_JOINT, 3, generator=generator,
                        dtype=torch.float64) * 2 - 1
    net = reference_net(model, training=True)
    expected = reference_losses(reference_stages(net, img), gt_uvd, model.faces, model.num_vert)
    losses = model({'img': img}, {'mesh_pose_uvd': gt_uvd})
    sum(losses.values()).backward()
    sum(expected.values()).backward()
    reference_params = dict(net.named_parameters())
    for name, param in model.named_parameters():
        if not param.requires_grad:
            assert param.grad is None and reference_params[name].grad is None, name
            continue
        reference_grad = reference_params[name].grad
        # mesh2pose_hm.bias shifts a whole joint map: the softmax ignores it (gradient ~0).
        scale = reference_grad.abs().max().item()
        torch.testing.assert_close(param.grad, reference_grad, rtol=0,
                                   atol=1e-9 * max(scale, 1.0), msg=lambda m: f'{name}: {m}')


@pytest.mark.parametrize('source, target', [('fused', 'reference'), ('reference', 'fused')])
def test_a_state_dict_loads_strictly_into_the_other_head_with_the_same_coords(source, target):
    trained = randomised_model(2, head=source).double().eval()
    torch.manual_seed(3)
    other = small_model(2, head=target).double().eval()
    assert [(k, v.shape) for k, v in other.state_dict().items()] == [
        (k, v.shape) for k, v in trained.state_dict().items()]
    other.load_state_dict(trained.state_dict(), strict=True)
    img = torch.randn(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(6),
                      dtype=torch.float64)
    with torch.no_grad():
        expected = trained({'img': img})['coords']
        torch.testing.assert_close(other({'img': img})['coords'], expected, rtol=0, atol=1e-10)
        torch.testing.assert_close(other.fuse_for_inference()({'img': img})['coords'], expected,
                                   rtol=0, atol=1e-10)


def test_heads_in_training_mode_with_the_same_dropout_masks(monkeypatch):
    # The two heads alone, float64, training mode with dropout on. Each head draws its masks
    # its own way and in its own layout, so both are handed the same masks (xy branch first).
    from model import layers
    from model.heads import get_head

    num_vert, batch, channels, num_fms, side = 42, 3, 16, 2, 4  # 2 x 2 high-level maps
    in_features = num_fms * 2 * 2 + 3
    generator = torch.Generator().manual_seed(0)
    modules = {}
    for name in ('fused', 'reference'):
        head = get_head(name)
        modules[name] = torch.nn.ModuleDict({
            'saigb': head.builder(channels, num_vert, num_fms),
            'gbbmr': head.regressor(num_vert, NUM_JOINT, in_features, side)}).double().train()
    randomise(modules['fused'], generator)
    modules['reference'].load_state_dict(modules['fused'].state_dict(), strict=True)
    features = torch.randn(batch, channels, 2, 2, generator=generator, dtype=torch.float64)
    template = torch.randn(num_vert, 3, generator=generator, dtype=torch.float64)
    masks = [2.0 * torch.randint(0, 2, (batch, num_vert, side * side), generator=generator,
                                 dtype=torch.float64) for _ in range(2)]  # kept: x / (1 - p)
    calls = {'fused': [], 'reference': []}

    def fused_dropout(x, p, training):
        calls['fused'].append((p, training))
        return x * masks[len(calls['fused']) - 1].transpose(0, 1)  # vertex-major

    def reference_dropout(x, p=0.5, training=True, inplace=False):
        calls['reference'].append((p, training))
        return x * masks[len(calls['reference']) - 1]

    monkeypatch.setattr(layers, 'dropout', fused_dropout)
    monkeypatch.setattr(torch.nn.functional, 'dropout', reference_dropout)
    weights = torch.randn(batch, num_vert + NUM_JOINT, 3, generator=generator,
                          dtype=torch.float64)
    outputs, inputs = {}, {}
    for name, module in modules.items():
        inputs[name] = features.clone().requires_grad_()
        out = module['gbbmr'](module['saigb'](inputs[name]), shared_columns=template, maps='all')
        ((out.coords * weights).sum() + out.prob_depth.sum()).backward()
        outputs[name] = out
    assert calls['fused'] == calls['reference'] == [(0.5, True)] * 2
    fused, reference = outputs['fused'], outputs['reference']
    for field in ('coords', 'prob', 'prob_depth'):
        torch.testing.assert_close(getattr(fused, field), getattr(reference, field),
                                   rtol=0, atol=1e-10, msg=lambda m: f'{field}: {m}')
    torch.testing.assert_close(inputs['fused'].grad, inputs['reference'].grad, rtol=0,
                               atol=1e-10)
    reference_params = dict(modules['reference'].named_parameters())
    for name, param in modules['fused'].named_parameters():
        reference_grad = reference_params[name].grad
        if not param.requires_grad:
            assert param.grad is None and reference_grad is None, name
            continue
        scale = reference_grad.abs().max().item()
        torch.testing.assert_close(param.grad, reference_grad, rtol=0,
                                   atol=1e-9 * max(scale, 1.0), msg=lambda m: f'{name}: {m}')


def test_cached_derived_tensors_follow_parameter_updates():
    model = randomised_model(1).eval()
    img = torch.randn(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        model({'img': img})  # fills the caches
        model.gbbmr[0].reg_xy[3].adj.mul_(torch.rand_like(model.gbbmr[0].reg_xy[3].adj) + 0.5)
        model.gbbmr[0].soft_heatmap.beta.weight.mul_(1.5)
        model.gbbmr[0].reg_z[0].fc.weight.add_(0.05)
        after_edit = model({'img': img})['coords']
    expected = reference_stages(reference_net(model, training=False), img)[-1][0]
    torch.testing.assert_close(after_edit.double(), expected, **TOLERANCE)
    # load_state_dict writes in place as well
    other = randomised_model(1, seed=11).eval()
    model.load_state_dict(other.state_dict())
    with torch.no_grad():
        after_load = model({'img': img})['coords']
    expected = reference_stages(reference_net(other, training=False), img)[-1][0]
    torch.testing.assert_close(after_load.double(), expected, **TOLERANCE)


@pytest.mark.parametrize('rows, in_features, out_features', [(6, 3, 7), (6, 7, 3), (8, 5, 5)])
@pytest.mark.parametrize('bias_kind', ['none', 'column', 'row'])
def test_mix_and_project_both_associations(rows, in_features, out_features, bias_kind):
    generator = torch.Generator().manual_seed(0)
    num_vert, batch = 6, 3
    mix = torch.randn(rows, num_vert, generator=generator, dtype=torch.float64)
    x = torch.randn(batch, num_vert, in_features, generator=generator, dtype=torch.float64)
    weight = torch.randn(out_features, in_features, generator=generator, dtype=torch.float64)
    bias_shape = {'none': None, 'column': (out_features,), 'row': (rows, out_features)}[bias_kind]
    bias = (None if bias_shape is None
            else torch.randn(bias_shape, generator=generator, dtype=torch.float64))
    expected = torch.zeros(batch, rows, out_features, dtype=torch.float64)
    for b in range(batch):
        for r in range(rows):
            for o in range(out_features):
                value = sum(mix[r, v] * x[b, v, f] * weight[o, f]
                            for v in range(num_vert) for f in range(in_features))
                if bias_kind == 'column':
                    value = value + bias[o]
                elif bias_kind == 'row':
                    value = value + bias[r, o]
                expected[b, r, o] = value
    out = mix_and_project(mix, x.transpose(0, 1).contiguous(), weight, bias)
    torch.testing.assert_close(out.transpose(0, 1), expected)


def test_inference_mode_then_training():
    # Derived tensors remembered under inference_mode are not reused where autograd records.
    model = randomised_model(1).eval()
    img = torch.randn(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        model({'img': img})
    model.train()
    losses = model({'img': img}, {'mesh_pose_uvd': torch.zeros(2, model.num_vert + NUM_JOINT, 3)})
    sum(losses.values()).backward()
    model.eval()
    with torch.inference_mode():
        again = model({'img': img})['coords']
    expected = reference_stages(reference_net(model, training=False), img)[-1][0]
    torch.testing.assert_close(again.double(), expected, **TOLERANCE)


def test_cpu_dropout_half_keeps_independent_fair_coins():
    from model.layers import dropout

    torch.manual_seed(0)
    x = torch.rand(1000, 1003) + 1.0  # odd size: the mask bits do not end on a byte
    out = dropout(x, 0.5, training=True)
    kept = out != 0
    torch.testing.assert_close(out[kept], 2 * x[kept])  # kept elements are scaled by 1/(1-p)
    count = kept.numel()
    assert abs(kept.float().mean().item() - 0.5) < 5 * 0.5 / count ** 0.5
    flat = kept.flatten()
    for position in range(8):  # every bit of the random bytes is a fair coin
        assert abs(flat[position::8].float().mean().item() - 0.5) < 5 * 0.5 / (count / 8) ** 0.5
    pairs = flat[:-1].long() * 2 + flat[1:].long()  # neighbouring decisions are independent
    frequencies = torch.bincount(pairs, minlength=4).float() / (count - 1)
    assert (frequencies - 0.25).abs().max() < 5 * (0.25 * 0.75 / count) ** 0.5
    assert not torch.equal(kept, dropout(x, 0.5, training=True) != 0)  # a new mask per call
    assert dropout(x, 0.5, training=False) is x
    torch.testing.assert_close(dropout(x, 0.0, training=True), x)


def test_joints_only_items_give_the_same_losses_and_gradients_with_both_heads():
    """A mixed batch (verts_valid 1, 0): the fused and reference heads agree (float64), and
    the joints-only item's vertex outputs get zero gradient."""
    fused = randomised_model(2).double().train()
    for module in fused.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    reference = small_model(2, head='reference').double().train()
    reference.load_state_dict(fused.state_dict(), strict=True)
    for module in reference.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    generator = torch.Generator().manual_seed(8)
    img = torch.randn(2, 3, SIDE, SIDE, generator=generator, dtype=torch.float64)
    gt_uvd = torch.rand(2, fused.num_vert + NUM_JOINT, 3, generator=generator,
                        dtype=torch.float64) * 2 - 1
    targets = {'mesh_pose_uvd': gt_uvd, 'verts_valid': torch.tensor([1.0, 0.0])}
    coords = {}
    losses = {}
    for name, model in (('fused', fused), ('reference', reference)):
        stages = model.predict_stages(img)
        for output in stages:
            output.coords.retain_grad()
        losses[name] = {f'{term}_{k}': value for k, output in enumerate(stages)
                        for term, value in stage_losses(output.coords, gt_uvd, model.faces,
                                                        model.num_vert,
                                                        targets['verts_valid']).items()}
        sum(losses[name].values()).backward()
        coords[name] = stages
    for term in losses['fused']:
        torch.testing.assert_close(losses['fused'][term], losses['reference'][term], rtol=0,
                                   atol=1e-9)
    for output in coords['fused']:
        assert torch.count_nonzero(output.coords.grad[1, :fused.num_vert]) == 0
        assert torch.count_nonzero(output.coords.grad[1, fused.num_vert:]) > 0
    # forward() takes the same mask from the targets
    model_losses = fused({'img': img}, targets)
    for term in losses['fused']:
        torch.testing.assert_close(model_losses[term], losses['fused'][term], rtol=0, atol=1e-9)
