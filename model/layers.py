"""SAR building blocks: graph convolution, soft heatmaps, the graph builder and the regressor.

Module and parameter names follow the published model (SPEC 4) so its checkpoint loads
strictly. Weight initialisation is PyTorch's default for every plain layer (Conv2d, Linear),
as the published code declares them plainly; the only exception is the graph adjacency,
which starts as the identity.
"""

from typing import NamedTuple

import torch
from torch import nn

ADJ_ROW_SUM_EPS = 1e-5  # added to each adjacency row sum before dividing (SPEC 4)
LEAKY_SLOPE = 0.1  # negative slope of every LeakyReLU in SAR
DROPOUT_P = 0.5  # dropout between the two graph convolutions of each regressor


def row_normalise(adj, eps=ADJ_ROW_SUM_EPS):
    """Divide every row of an adjacency matrix by its own sum (+ eps).

    Args:
        adj: n x n.
        eps: added to the row sums; rows summing to -eps still blow up (as published).
    Returns:
        n x n, L[i, j] = adj[i, j] / (sum_k adj[i, k] + eps).
    """
    return adj / (adj.sum(dim=1, keepdim=True) + eps)


def soft_argmax_2d(prob_flat, grid_x, grid_y):
    """Expected column and row of per-map probability distributions over the pixels.

    Args:
        prob_flat: B x M x P, each row sums to 1; P = h*w pixels in row-major order.
        grid_x: h x w column index of every pixel.
        grid_y: h x w row index of every pixel.
    Returns:
        B x M x 2, (u, v) in heatmap pixels (column, row).
    """
    u = torch.matmul(prob_flat, grid_x.reshape(-1))  # (B, M)
    v = torch.matmul(prob_flat, grid_y.reshape(-1))  # (B, M)
    return torch.stack((u, v), dim=-1)


def heatmap_px_to_normalised(uv_px, heatmap_size):
    """Heatmap pixels to the crop-normalised range: value / (heatmap_size // 2) - 1.

    Args:
        uv_px: ... x 2 (column, row) in heatmap pixels.
        heatmap_size: side of the square heatmap (px).
    Returns:
        ... x 2 with pixel 0 -> -1 and pixel heatmap_size // 2 -> 0.
    """
    return uv_px / (heatmap_size // 2) - 1


class GraphConv(nn.Module):
    """Graph convolution with a learnt dense adjacency: out = fc(rownorm(adj) @ x).

    Args:
        num_nodes: n, graph size (778 MANO vertices).
        in_features, out_features: per-node feature sizes.
    Parameters: `adj` (n x n, identity at init, trainable) and `fc` (Linear, PyTorch default
    init).
    """

    def __init__(self, num_nodes, in_features, out_features):
        super().__init__()
        self.adj = nn.Parameter(torch.eye(num_nodes))
        self.fc = nn.Linear(in_features, out_features)

    def forward(self, x):
        """x: B x n x in_features -> B x n x out_features."""
        # The normalised adjacency is computed once per call and broadcast over the batch by
        # matmul; no per-sample copy of the n x n matrix.
        return self.fc(torch.matmul(row_normalise(self.adj), x))


class SoftHeatmap(nn.Module):
    """Per-map learnt temperature, softmax over the pixels and soft-argmax (SPEC 4).

    Args:
        num_maps: M heatmaps (799 = 778 vertices + 21 joints).
        heatmap_size: side of the square heatmaps (px).
    Parameters: `beta` (Conv2d(M, M, 1, groups=M, bias=False): one scale per map, PyTorch
    default init) and the index grids `wx` (column index) and `wy` (row index), h x w,
    stored as non-trainable parameters because the published checkpoint holds them.
    """

    def __init__(self, num_maps, heatmap_size):
        super().__init__()
        rows, cols = torch.meshgrid(torch.arange(heatmap_size, dtype=torch.float32),
                                    torch.arange(heatmap_size, dtype=torch.float32),
                                    indexing='ij')
        self.wx = nn.Parameter(cols.contiguous(), requires_grad=False)  # meshgrid returns views
        self.wy = nn.Parameter(rows.contiguous(), requires_grad=False)
        self.beta = nn.Conv2d(num_maps, num_maps, 1, groups=num_maps, bias=False)

    def forward(self, heatmaps):
        """Probabilities and expected pixel of every map.

        Args:
            heatmaps: B x M x h x w logits.
        Returns:
            prob: B x M x h x w, each map sums to 1.
            uv_px: B x M x 2, expected (column, row) in heatmap pixels.
        """
        batch, num_maps, height, width = heatmaps.shape
        # A 1x1 depthwise conv without bias is one scale per map; multiplying by its weight
        # directly avoids the slow grouped-convolution path and is the same function.
        scaled = heatmaps * self.beta.weight.view(1, num_maps, 1, 1)
        prob_flat = torch.softmax(scaled.reshape(batch, num_maps, height * width), dim=-1)
        uv_px = soft_argmax_2d(prob_flat, self.wx, self.wy)
        return prob_flat.view(batch, num_maps, height, width), uv_px


class SpatialAwareGraphBuilder(nn.Module):
    """Spatial-aware initial graph builder (`saigb`): feature maps -> per-vertex features.

    A 1x1 conv makes num_FMs maps per vertex; channel c = vertex * num_FMs + map and each map
    is flattened row-major, so vertex k gets the num_FMs * h * w values of its own maps. The
    template vertex (meters) is appended to every vertex's features.

    Args:
        in_channels: C_high of the backbone (512 for ResNet-18/34).
        num_vert: 778.
        num_fms: feature maps per vertex (8).
    """

    def __init__(self, in_channels, num_vert, num_fms):
        super().__init__()
        self.num_vert = num_vert
        self.group = nn.Sequential(nn.Conv2d(in_channels, num_fms * num_vert, 1),
                                   nn.LeakyReLU(LEAKY_SLOPE))

    def forward(self, features_high, template):
        """
        Args:
            features_high: B x C_high x h x w.
            template: num_vert x 3 template vertices (meters).
        Returns:
            B x num_vert x (num_FMs*h*w + 3).
        """
        batch = features_high.shape[0]
        vert_features = self.group(features_high).reshape(batch, self.num_vert, -1)
        template_batch = template.to(vert_features.dtype).expand(batch, -1, -1)
        return torch.cat((vert_features, template_batch), dim=2)


def _graph_regressor(num_vert, in_features, out_features):
    """Sequential(GraphConv, LeakyReLU(0.1), Dropout(0.5), GraphConv): SAR's reg_xy / reg_z."""
    return nn.Sequential(GraphConv(num_vert, in_features, out_features),
                         nn.LeakyReLU(LEAKY_SLOPE),
                         nn.Dropout(DROPOUT_P),
                         GraphConv(num_vert, out_features, out_features))


def _mesh_to_pose(linear, vert_maps):
    """Linear across the vertex dimension, per pixel: B x V x P -> B x J x P."""
    return linear(vert_maps.transpose(1, 2)).transpose(1, 2)


class StageOutput(NamedTuple):
    """One stage's outputs (V vertices then J joints)."""

    coords: torch.Tensor  # B x (V+J) x 3 crop-normalised uvd: u, v in [-1, 1] over the crop, d
    #                       the regressed depth (root-relative depth / depth_box once trained)
    prob: torch.Tensor  # B x (V+J) x h x w softmax heatmaps
    prob_depth: torch.Tensor  # B x (V+J) x h x w, prob * depth heatmap (pixel sum gives d)


class GraphRegressor25D(nn.Module):
    """Graph-based 2.5D mesh regression (`gbbmr`): vertex features -> uvd of vertices and joints.

    Args:
        num_vert, num_joint: V = 778, J = 21.
        in_features: per-vertex feature size (num_FMs * feature_size + 3 = 515).
        heatmap_size: h = w of the heatmaps (32); each graph node regresses h*w values.
    """

    def __init__(self, num_vert, num_joint, in_features, heatmap_size):
        super().__init__()
        self.heatmap_size = heatmap_size
        self.soft_heatmap = SoftHeatmap(num_vert + num_joint, heatmap_size)
        num_pixels = heatmap_size * heatmap_size
        self.reg_xy = _graph_regressor(num_vert, in_features, num_pixels)
        self.reg_z = _graph_regressor(num_vert, in_features, num_pixels)
        self.mesh2pose_hm = nn.Linear(num_vert, num_joint)
        self.mesh2pose_dm = nn.Linear(num_vert, num_joint)

    def forward(self, vert_features):
        """vert_features: B x V x in_features -> StageOutput (see there)."""
        batch = vert_features.shape[0]
        side = self.heatmap_size
        vert_hm_xy = self.reg_xy(vert_features)  # (B, V, h*w)
        vert_hm_z = self.reg_z(vert_features)  # (B, V, h*w)
        hm_xy = torch.cat((vert_hm_xy, _mesh_to_pose(self.mesh2pose_hm, vert_hm_xy)), dim=1)
        hm_z = torch.cat((vert_hm_z, _mesh_to_pose(self.mesh2pose_dm, vert_hm_z)), dim=1)
        num_maps = hm_xy.shape[1]
        prob, uv_px = self.soft_heatmap(hm_xy.view(batch, num_maps, side, side))
        prob_depth = prob * hm_z.view(batch, num_maps, side, side)
        depth = prob_depth.sum(dim=(2, 3))  # (B, V+J)
        uv = heatmap_px_to_normalised(uv_px, side)
        coords = torch.cat((uv, depth.unsqueeze(-1)), dim=-1)  # (B, V+J, 3)
        return StageOutput(coords=coords, prob=prob, prob_depth=prob_depth)
