"""SAR network: published checkpoint layout, configurations, errors, gradients (docs/method.md §4, 5)."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from model import HEADS, SAR
from utils.network_spec import NetworkSpec

MANIFEST = Path(__file__).resolve().parent / 'data' / 'sar_checkpoint_keys.txt'  # copy of shared/sar_checkpoint_keys.txt
BN_BUFFER_SUFFIXES = ('running_mean', 'running_var', 'num_batches_tracked')
NUM_VERT, NUM_FACES, NUM_JOINT = 778, 1538, 21


def random_template_and_faces(num_vert=NUM_VERT, num_faces=NUM_FACES, seed=0):
    rng = np.random.default_rng(seed)
    template = rng.normal(scale=0.05, size=(num_vert, 3)).astype(np.float32)  # meters
    faces = rng.integers(0, num_vert, size=(num_faces, 3)).astype(np.uint32)  # MANO's dtype
    return template, faces


def read_manifest():
    """[(key, shape tuple)] with 'scalar' -> ()."""
    entries = []
    for line in MANIFEST.read_text().splitlines():
        key, shape = line.split()
        entries.append((key, () if shape == 'scalar' else tuple(int(n) for n in shape.split('x'))))
    return entries


@pytest.fixture(scope='module', params=list(HEADS))
def default_model(request):
    """The default network with each head (the published layout either way)."""
    torch.manual_seed(0)
    return SAR(*random_template_and_faces(), head=request.param)


def test_state_dict_matches_published_checkpoint(default_model):
    manifest = read_manifest()
    assert len(manifest) == 380
    ours = [(key, tuple(value.shape)) for key, value in default_model.state_dict().items()]
    assert dict(ours) == dict(manifest)
    assert [key for key, _ in ours] == [key for key, _ in manifest]  # same order as well
    # A strict load of a state dict with the published layout works (template and faces are
    # not in the state dict: they are non-persistent buffers).
    published_like = {key: torch.zeros(shape) for key, shape in manifest}
    for key, _ in manifest:
        if key.endswith('num_batches_tracked'):
            published_like[key] = torch.zeros((), dtype=torch.long)
    default_model.load_state_dict(published_like, strict=True)


def test_parameter_count_is_58_85_million(default_model):
    # docs/method.md §4's 58.85 M counts parameters, not the BN running statistics: the manifest without
    # BN buffers sums to 58,854,490, and so do our nn.Parameters (including the two 32 x 32
    # index grids per stage; the trainable ones alone, 58,850,394, also round to 58.85 M).
    from_manifest = sum(math.prod(shape) for key, shape in read_manifest()
                        if not key.endswith(BN_BUFFER_SUFFIXES))
    assert from_manifest == 58_854_490
    ours = sum(p.numel() for p in default_model.parameters())
    assert ours == from_manifest
    assert round(ours / 1e6, 2) == 58.85
    trainable = sum(p.numel() for p in default_model.parameters() if p.requires_grad)
    assert trainable == from_manifest - 2 * 2 * 32 * 32
    assert round(trainable / 1e6, 2) == 58.85


def test_default_eval_forward(default_model):
    default_model.eval()
    with torch.no_grad():
        out = default_model({'img': torch.randn(1, 3, 256, 256)})
    assert list(out) == ['coords']
    assert out['coords'].shape == (1, 799, 3)
    # u, v are expectations of pixel indices 0..31 mapped by / 16 - 1
    assert out['coords'][..., :2].min() >= -1 and out['coords'][..., :2].max() <= 31 / 16 - 1


@pytest.mark.parametrize('backbone, num_stage, mid_channels', [
    ('resnet18', 1, 128), ('resnet18', 3, 128), ('resnet50', 1, 512), ('resnet50', 3, 512)])
def test_small_input_shapes(backbone, num_stage, mid_channels):
    model = SAR(*random_template_and_faces(), NetworkSpec(backbone=backbone, num_stage=num_stage, feature_size=16, heatmap_size=16, input_img_shape=(128, 128))).eval()
    assert len(model.fuse) == num_stage - 1
    for fuse in model.fuse:
        assert (fuse.in_channels, fuse.out_channels) == (mid_channels + 2 * NUM_JOINT,
                                                         mid_channels)
    with torch.no_grad():
        stages = model.predict_stages(torch.randn(2, 3, 128, 128))
    assert len(stages) == num_stage
    for stage in stages:
        assert stage.coords.shape == (2, 799, 3)
        assert stage.prob.shape == stage.prob_depth.shape == (2, 799, 16, 16)
        torch.testing.assert_close(stage.prob.sum(dim=(2, 3)), torch.ones(2, 799))
        # d is the pixel sum of prob_depth
        torch.testing.assert_close(stage.coords[..., 2], stage.prob_depth.sum(dim=(2, 3)))


@pytest.mark.parametrize('overrides, fragments', [
    (dict(input_img_shape=(128, 128), heatmap_size=32, feature_size=64),
     ['heatmap_size=32 and feature_size=64 disagree with input_img_shape=(128, 128)',
      'use heatmap_size=16 and feature_size=16', 'or input_img_shape=(256, 256)']),
    (dict(input_img_shape=(128, 128), heatmap_size=16, feature_size=64),
     ['feature_size=64 disagrees with input_img_shape=(128, 128)', 'feature_size=16']),
    (dict(heatmap_size=16), ['heatmap_size=16 disagrees', 'use heatmap_size=32']),
    (dict(input_img_shape=(100, 100)), ['input_img_shape=(100, 100)', 'divisible by 32']),
    (dict(input_img_shape=(256, 128)), ['input_img_shape=(256, 128)', 'square']),
    (dict(backbone='vgg16'), ["backbone='vgg16'", 'resnet18', 'resnet34', 'resnet50']),
    (dict(num_stage=0), ['num_stage=0', 'positive integer']),
    (dict(head='plain'), ["head='plain'", 'fused', 'reference', 'model/heads.py']),
])
def test_inconsistent_config_raises(overrides, fragments):
    head = overrides.pop('head', 'fused')
    with pytest.raises(ValueError) as info:
        SAR(*random_template_and_faces(), NetworkSpec(**overrides), head=head)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_template_and_faces_are_validated():
    template, faces = random_template_and_faces()
    with pytest.raises(ValueError, match=r'template .*\(778, 3\).*got .*\(777, 3\)'):
        SAR(template[:-1], faces)
    with pytest.raises(ValueError, match=r'faces .*integer.*float'):
        SAR(template, faces.astype(np.float32))
    bad_faces = faces.copy()
    bad_faces[0, 0] = NUM_VERT
    with pytest.raises(ValueError, match=r'outside \[0, 778\)'):
        SAR(template, bad_faces)


def small_sphere_model(num_stage=2, head='fused'):
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=1)  # 42 vertices, 80 faces
    template = np.asarray(sphere.vertices, np.float32) * 0.05
    model = SAR(template, np.asarray(sphere.faces), NetworkSpec(backbone='resnet18', num_stage=num_stage, feature_size=16, heatmap_size=16, num_vert=len(template), num_joint=5, input_img_shape=(128, 128)), head=head)
    return model, len(template) + 5


@pytest.mark.parametrize('head', list(HEADS))
def test_training_forward_loss_names_and_input_checks(head):
    torch.manual_seed(0)
    model, num_rows = small_sphere_model(num_stage=2, head=head)
    assert model.template.dtype == torch.float32 and model.faces.dtype == torch.long
    assert 'template' not in model.state_dict() and 'faces' not in model.state_dict()
    model.train()
    losses = model({'img': torch.randn(2, 3, 128, 128)},
                   {'mesh_pose_uvd': torch.rand(2, num_rows, 3) * 2 - 1})
    assert list(losses) == ['coord_0', 'normal_0', 'edge_0', 'coord_1', 'normal_1', 'edge_1']
    assert all(value.ndim == 0 and torch.isfinite(value) for value in losses.values())
    with pytest.raises(ValueError, match=r"needs targets\['mesh_pose_uvd'\]"):
        model({'img': torch.randn(2, 3, 128, 128)})
    with pytest.raises(ValueError, match=r'must have shape \(2, 47, 3\)'):
        model({'img': torch.randn(2, 3, 128, 128)}, {'mesh_pose_uvd': torch.zeros(2, 46, 3)})
    with pytest.raises(ValueError, match=r'B x 3 x 128 x 128'):
        model({'img': torch.randn(2, 3, 256, 256)})


@pytest.mark.parametrize('head', list(HEADS))
def test_gradients_reach_every_trainable_parameter(head):
    torch.manual_seed(0)
    model, num_rows = small_sphere_model(num_stage=2, head=head)
    model.train()
    losses = model({'img': torch.randn(2, 3, 128, 128)},
                   {'mesh_pose_uvd': torch.rand(2, num_rows, 3) * 2 - 1})
    sum(losses.values()).backward()
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {f'gbbmr.{i}.soft_heatmap.{grid}' for i in range(2) for grid in ('wx', 'wy')}
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, name
            assert torch.isfinite(param.grad).all(), name
            assert param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name


def test_every_head_starts_from_the_same_weights_for_a_seed():
    # The heads create the same modules in the same order: a seed gives the same network.
    state_dicts = []
    for head in HEADS:
        torch.manual_seed(0)
        state_dicts.append(small_sphere_model(num_stage=2, head=head)[0].state_dict())
    first = state_dicts[0]
    for other in state_dicts[1:]:
        assert list(other) == list(first)
        assert all(torch.equal(other[key], first[key]) for key in first)
