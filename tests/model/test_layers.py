"""SAR layers of both heads against hand-worked values (docs/method.md §4).

Every test runs on the fused layers (model/layers.py) and on the reference layers
(model/reference_head.py). The fused layers work vertex-major (V x B x F, maps M x B x P), the
reference ones batch-first; the tests build inputs batch-first and convert at the boundary
(the helpers below), so the expected values read as in the method's description.
"""

import pytest
import torch

from model.layers import (GraphConv, GraphRegressor25D, SoftHeatmap, SpatialAwareGraphBuilder,
                          heatmap_px_to_normalised, row_normalise)
from model.reference_head import (ReferenceGraphBuilder, ReferenceGraphConv,
                                  ReferenceGraphRegressor, ReferenceSoftHeatmap)

ONE_HOT_LOGIT = 1e4  # exp(-1e4) underflows to 0 in float32: the softmax is exactly one-hot
LAYERS = {  # head name: (graph conv, soft heatmap, graph builder, graph regressor)
    'fused': (GraphConv, SoftHeatmap, SpatialAwareGraphBuilder, GraphRegressor25D),
    'reference': (ReferenceGraphConv, ReferenceSoftHeatmap, ReferenceGraphBuilder,
                  ReferenceGraphRegressor),
}
heads = pytest.mark.parametrize('head', list(LAYERS))


def vertex_major(tensor):
    return tensor.transpose(0, 1)


def run_graph_conv(head, conv, x):
    """x: B x n x F -> B x n x out."""
    return vertex_major(conv(vertex_major(x))) if head == 'fused' else conv(x)


def run_soft_heatmap(head, soft, heatmaps):
    """heatmaps: B x M x h x w -> prob B x M x h x w, uv_px B x M x 2."""
    if head == 'reference':
        return soft(heatmaps)
    prob, uv_px = soft(vertex_major(heatmaps.flatten(2)))  # (M, B, P) map-major
    return vertex_major(prob).reshape(heatmaps.shape), vertex_major(uv_px)


def run_builder(head, builder, features):
    """features: B x C x h x w -> B x V x F."""
    out = builder(features)
    return vertex_major(out) if head == 'fused' else out


def run_regressor(head, regressor, vert_features, **kwargs):
    """vert_features: B x V x F -> StageOutput (batch-first for both heads)."""
    return regressor(vertex_major(vert_features) if head == 'fused' else vert_features, **kwargs)


@heads
def test_soft_argmax_of_one_hot_heatmaps(head):
    heatmap_size = 8
    soft = LAYERS[head][1](num_maps=3, heatmap_size=heatmap_size)
    with torch.no_grad():
        soft.beta.weight.fill_(1.0)
    peaks = [(0, 0), (2, 5), (7, 3)]  # (row, column)
    heatmaps = torch.zeros(1, 3, heatmap_size, heatmap_size)
    for k, (row, col) in enumerate(peaks):
        heatmaps[0, k, row, col] = ONE_HOT_LOGIT
    prob, uv_px = run_soft_heatmap(head, soft, heatmaps)
    expected_px = torch.tensor([[[0., 0.], [5., 2.], [3., 7.]]])  # (column, row)
    torch.testing.assert_close(uv_px, expected_px)
    torch.testing.assert_close(prob, (heatmaps > 0).float())
    # normalisation: value / (8 // 2) - 1
    expected_norm = torch.tensor([[[-1., -1.], [5 / 4 - 1, 2 / 4 - 1], [3 / 4 - 1, 7 / 4 - 1]]])
    torch.testing.assert_close(heatmap_px_to_normalised(uv_px, heatmap_size), expected_norm)


@heads
def test_soft_heatmap_beta_scales_each_map_and_grids_are_frozen(head):
    soft = LAYERS[head][1](num_maps=2, heatmap_size=4)
    assert not soft.wx.requires_grad and not soft.wy.requires_grad
    assert soft.wx[1, 3].item() == 3 and soft.wy[1, 3].item() == 1  # column / row index
    with torch.no_grad():
        soft.beta.weight.copy_(torch.tensor([0.0, 2.0]).view(2, 1, 1, 1))
    heatmaps = torch.zeros(1, 2, 4, 4)
    heatmaps[0, :, 0, 0] = 1.0
    prob, uv_px = run_soft_heatmap(head, soft, heatmaps)
    # map 0: beta = 0 -> uniform, mean column = mean row = 1.5
    torch.testing.assert_close(uv_px[0, 0], torch.tensor([1.5, 1.5]))
    # map 1: logit 2 at (0, 0), 0 elsewhere: p00 = e^2 / (e^2 + 15); mean = (1 - p00) * 1.6
    # because the other 15 pixels have mean column (4 * 6 - 0) / 15 = 1.6
    e2 = torch.exp(torch.tensor(2.0))
    p00 = e2 / (e2 + 15)
    torch.testing.assert_close(prob[0, 1, 0, 0], p00)
    torch.testing.assert_close(uv_px[0, 1], torch.stack([(1 - p00) * 1.6] * 2))


def test_fused_soft_heatmap_prescaled_logits():
    soft = SoftHeatmap(num_maps=2, heatmap_size=4)
    with torch.no_grad():
        soft.beta.weight.copy_(torch.tensor([0.0, 2.0]).view(2, 1, 1, 1))
    heatmaps = torch.zeros(1, 2, 4, 4)
    heatmaps[0, :, 0, 0] = 1.0
    # prescaled: the scale is not applied a second time (map 0 then peaks like map 1 unscaled)
    prob_pre, _ = soft(heatmaps.reshape(1, 2, -1).transpose(0, 1), prescaled=True)
    e1 = torch.exp(torch.tensor(1.0))
    torch.testing.assert_close(prob_pre[0, 0, 0], e1 / (e1 + 15))


@heads
def test_graph_conv_row_normalisation_hand_worked(head):
    adj = torch.tensor([[1., 1., 0.],
                        [0., 2., 2.],
                        [1., 2., 1.]])
    # Row sums 2, 4, 4 (+1e-5): L = [[.5, .5, 0], [0, .5, .5], [.25, .5, .25]] up to 1e-5.
    conv = LAYERS[head][0](num_nodes=3, in_features=2, out_features=2)
    torch.testing.assert_close(conv.adj.detach(), torch.eye(3))
    with torch.no_grad():
        conv.adj.copy_(adj)
        conv.fc.weight.copy_(torch.eye(2))
        conv.fc.bias.zero_()
    x = torch.tensor([[[1., 10.], [3., 30.], [5., 50.]],
                      [[0., 1.], [0., 0.], [4., 0.]]])
    # sample 0: row 0 = (1 + 3)/2 = 2, 20; row 1 = (3 + 5)/2 = 4, 40;
    #           row 2 = .25 + 1.5 + 1.25 = 3, 30
    # sample 1: row 0 = 0, .5; row 1 = 2, 0; row 2 = 1, .25
    expected = torch.tensor([[[2., 20.], [4., 40.], [3., 30.]],
                             [[0., .5], [2., 0.], [1., .25]]])
    out = run_graph_conv(head, conv, x)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    sums = torch.tensor([2., 4., 4.]) + 1e-5
    torch.testing.assert_close(row_normalise(adj), adj / sums[:, None])
    # A row summing to 0 is divided by the 1e-5 alone (as published: it blows up).
    with torch.no_grad():
        conv.adj.copy_(torch.tensor([[1., -1., 0.], [0., 1., 0.], [0., 0., 1.]]))
    out = run_graph_conv(head, conv, x)
    torch.testing.assert_close(out[0, 0], torch.tensor([1. - 3., 10. - 30.]) / 1e-5)


@heads
def test_graph_builder_channel_layout(head):
    # Identity 1x1 conv: output channel c = input channel c, so the layout is visible.
    num_vert, num_fms, side = 3, 2, 2
    channels = num_vert * num_fms
    builder = LAYERS[head][2](channels, num_vert, num_fms)
    with torch.no_grad():
        builder.group[0].weight.copy_(torch.eye(channels).view(channels, channels, 1, 1))
        builder.group[0].bias.zero_()
    # feature value = 100 * channel + 10 * row + column (all >= 0, LeakyReLU leaves them)
    channel = torch.arange(channels).view(channels, 1, 1)
    row = torch.arange(side).view(1, side, 1)
    col = torch.arange(side).view(1, 1, side)
    features = (100 * channel + 10 * row + col).float()[None]
    out = run_builder(head, builder, features)
    assert out.shape == (1, num_vert, num_fms * side * side)
    # vertex 1 gets channels 2 (map 0) and 3 (map 1), each row-major
    expected_vertex1 = torch.tensor([200., 201., 210., 211., 300., 301., 310., 311.])
    torch.testing.assert_close(out[0, 1], expected_vertex1)
    # negative values take LeakyReLU's slope 0.1
    with torch.no_grad():
        builder.group[0].bias.fill_(-1000.0)
    torch.testing.assert_close(run_builder(head, builder, features)[0, 1],
                               0.1 * (expected_vertex1 - 1000.0))


@heads
def test_template_as_shared_columns_equals_concatenated_template(head):
    # The template columns given once (shared_columns) must act as if concatenated to every
    # sample's features, as docs/method.md §4 describes the graph builder's output.
    torch.manual_seed(0)
    num_vert, own, batch = 5, 6, 3
    regressor = LAYERS[head][3](num_vert=num_vert, num_joint=2, in_features=own + 3,
                                heatmap_size=4)
    regressor.eval()
    with torch.no_grad():
        for conv in (regressor.reg_xy[0], regressor.reg_z[0], regressor.reg_xy[3]):
            conv.adj.add_(0.1 * torch.rand(num_vert, num_vert))  # a non-trivial adjacency
    features = torch.randn(batch, num_vert, own)
    template = torch.randn(num_vert, 3)
    shared = run_regressor(head, regressor, features, shared_columns=template)
    concatenated = run_regressor(head, regressor, torch.cat(
        (features, template.expand(batch, -1, -1)), dim=2))
    torch.testing.assert_close(shared.coords, concatenated.coords, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(shared.prob, concatenated.prob, rtol=1e-5, atol=1e-7)


@heads
def test_graph_regressor_assembles_uvd_hand_worked(head):
    # V = 2 vertices, J = 1 joint, 4 x 4 heatmaps (16 pixels), 16 input features per vertex.
    # reg_xy: identity on the (positive) one-hot features -> vertex k peaks at its own pixel.
    # reg_z: second layer ignores its input (weight 0) and outputs the bias z[p] at pixel p.
    side, num_pixels = 4, 16
    regressor = LAYERS[head][3](num_vert=2, num_joint=1, in_features=num_pixels,
                                heatmap_size=side)
    regressor.eval()  # no dropout
    depth_per_pixel = torch.arange(num_pixels).float() / 10  # z at pixel p = p / 10
    with torch.no_grad():
        for layer in (regressor.reg_xy[0], regressor.reg_xy[3], regressor.reg_z[0]):
            layer.fc.weight.copy_(torch.eye(num_pixels))
            layer.fc.bias.zero_()
        regressor.reg_z[3].fc.weight.zero_()
        regressor.reg_z[3].fc.bias.copy_(depth_per_pixel)
        regressor.soft_heatmap.beta.weight.fill_(1.0)
        regressor.mesh2pose_hm.weight.copy_(torch.tensor([[0., 1.]]))  # joint map = vertex 1's
        regressor.mesh2pose_hm.bias.zero_()
        regressor.mesh2pose_dm.weight.copy_(torch.tensor([[0.5, 0.5]]))  # mean z map = z map
        regressor.mesh2pose_dm.bias.zero_()
    features = torch.zeros(1, 2, num_pixels)
    features[0, 0, 1 * side + 2] = ONE_HOT_LOGIT  # vertex 0 at row 1, column 2 -> pixel 6
    features[0, 1, 3 * side + 0] = ONE_HOT_LOGIT  # vertex 1 at row 3, column 0 -> pixel 12
    out = run_regressor(head, regressor, features)
    # u, v = column / 2 - 1, row / 2 - 1; d = z at the peak pixel
    expected = torch.tensor([[[2 / 2 - 1, 1 / 2 - 1, 0.6],
                              [0 / 2 - 1, 3 / 2 - 1, 1.2],
                              [0 / 2 - 1, 3 / 2 - 1, 1.2]]])
    torch.testing.assert_close(out.coords, expected)
    assert out.prob.shape == out.prob_depth.shape == (1, 3, side, side)
    assert out.prob_depth[0, 2, 3, 0].item() == pytest.approx(1.2)
