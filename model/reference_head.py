"""The SAR head as docs/method.md §4 writes it: SAIGB and GBBMR, one equation per line.

Batch-first throughout (B x V x F, heatmaps B x M x h x w), the template concatenated to every
sample, mesh2pose applied across the vertex dimension, the heatmap scale as the published
grouped convolution. Same modules, parameter names, shapes and creation order as the fused
head of model/layers.py, so either head loads the other's state dict strictly and, from the
same seed, starts from the same weights. It computes the same function as the fused head
(tests/model/test_fast_path.py checks outputs and gradients in float64): read it to see what
the network does, start from it to change the head (docs/method.md, "Changing the head").
Select it with the config field `head: reference` (model/heads.py).
"""

import torch
from torch import nn

from model.layers import ADJ_ROW_SUM_EPS, DROPOUT_P, LEAKY_SLOPE, StageOutput


class ReferenceGraphConv(nn.Module):
    """out = fc(L @ x), L = adj / (row sums of adj + 1e-5), each row divided by its own sum.

    Args:
        num_nodes: n, graph size (778 MANO vertices).
        in_features, out_features: per-node feature sizes.
    Parameters: `adj` (n x n, the identity at initialisation, trainable) and `fc` (Linear).
    """

    def __init__(self, num_nodes, in_features, out_features):
        super().__init__()
        self.adj = nn.Parameter(torch.eye(num_nodes))
        self.fc = nn.Linear(in_features, out_features)

    def forward(self, x):
        """x: B x n x in_features -> B x n x out_features."""
        row_sums = self.adj.sum(dim=1, keepdim=True)  # (n, 1)
        adj_norm = self.adj / (row_sums + ADJ_ROW_SUM_EPS)  # L
        return self.fc(adj_norm @ x)


class ReferenceSoftHeatmap(nn.Module):
    """Scale each map by its `beta`, softmax over the pixels, expected column and row.

    Args:
        num_maps: M heatmaps (799 = 778 vertices + 21 joints).
        heatmap_size: side of the square heatmaps (px).
    Parameters: `beta` = Conv2d(M, M, 1, groups=M, bias=False) and the index grids `wx`
    (column index) and `wy` (row index), h x w, non-trainable (the published checkpoint holds
    them).
    """

    def __init__(self, num_maps, heatmap_size):
        super().__init__()
        rows, cols = torch.meshgrid(torch.arange(heatmap_size, dtype=torch.float32),
                                    torch.arange(heatmap_size, dtype=torch.float32),
                                    indexing='ij')
        self.wx = nn.Parameter(cols.contiguous(), requires_grad=False)
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
        scaled = self.beta(heatmaps)
        # The softmax in at least float32, also under autocast (bf16 probabilities would be
        # off by up to 0.4 % each).
        prob = torch.softmax(scaled.flatten(2), dim=2,
                             dtype=torch.promote_types(scaled.dtype, torch.float32))
        prob = prob.view(scaled.shape)
        u_px = (prob * self.wx).sum(dim=(2, 3))  # (B, M)
        v_px = (prob * self.wy).sum(dim=(2, 3))
        return prob, torch.stack((u_px, v_px), dim=2)


class ReferenceGraphBuilder(nn.Module):
    """SAIGB: a 1x1 conv gives num_FMs maps per vertex; vertex k reads its own maps.

    Channel c belongs to vertex c // num_FMs (map c % num_FMs); each map is flattened
    row-major. The template that docs/method.md §4 appends to every vertex's features is
    appended by ReferenceGraphRegressor (SAR passes it there as `shared_columns`).

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

    def forward(self, features_high):
        """B x C_high x h x w -> B x num_vert x (num_FMs*h*w)."""
        maps = self.group(features_high)  # (B, V*num_FMs, h, w)
        return maps.reshape(maps.shape[0], self.num_vert, -1)


def _reference_regressor(num_vert, in_features, out_features):
    """GraphConv, LeakyReLU(0.1), Dropout(0.5), GraphConv: SAR's reg_xy / reg_z."""
    return nn.Sequential(ReferenceGraphConv(num_vert, in_features, out_features),
                         nn.LeakyReLU(LEAKY_SLOPE),
                         nn.Dropout(DROPOUT_P),
                         ReferenceGraphConv(num_vert, out_features, out_features))


class ReferenceGraphRegressor(nn.Module):
    """GBBMR: per-vertex features -> heatmaps and depth maps -> uvd of vertices and joints.

    Args:
        num_vert, num_joint: V = 778, J = 21.
        in_features: per-vertex feature size with the template (num_FMs * feature_size + 3).
        heatmap_size: h = w of the heatmaps (32); each graph node regresses h*w values.
    """

    MAP_ROWS = ('all', 'joints', 'none')

    def __init__(self, num_vert, num_joint, in_features, heatmap_size):
        super().__init__()
        self.num_vert = num_vert
        self.heatmap_size = heatmap_size
        # Created in the fused head's order, so a seed gives both the same initial weights.
        self.soft_heatmap = ReferenceSoftHeatmap(num_vert + num_joint, heatmap_size)
        num_pixels = heatmap_size * heatmap_size
        self.reg_xy = _reference_regressor(num_vert, in_features, num_pixels)
        self.reg_z = _reference_regressor(num_vert, in_features, num_pixels)
        self.mesh2pose_hm = nn.Linear(num_vert, num_joint)
        self.mesh2pose_dm = nn.Linear(num_vert, num_joint)

    def forward(self, vert_features, shared_columns=None, maps='all'):
        """One stage's uvd and maps.

        Args:
            vert_features: B x V x F per-vertex features (from ReferenceGraphBuilder).
            shared_columns: None or V x S columns appended to every sample's features (the
                template, meters); F + S = in_features.
            maps: rows of prob / prob_depth to return: 'all' (V+J), 'joints' (J) or 'none'.
        Returns:
            StageOutput with coords B x (V+J) x 3 (crop-normalised u, v and the depth d) and the
            requested maps B x rows x h x w.
        """
        if maps not in self.MAP_ROWS:
            raise ValueError(f'maps must be one of {self.MAP_ROWS}, got {maps!r}')
        batch, side = vert_features.shape[0], self.heatmap_size
        x = vert_features
        if shared_columns is not None:
            template = shared_columns.to(x.dtype).expand(batch, -1, -1)  # (B, V, S)
            x = torch.cat((x, template), dim=2)  # (B, V, in_features)
        vert_hm = self.reg_xy(x)  # (B, V, h*w) vertex heatmap logits
        vert_dm = self.reg_z(x)  # (B, V, h*w) vertex depth maps
        # mesh2pose: Linear(V, J) across the vertex dimension, pixel by pixel.
        joint_hm = self.mesh2pose_hm(vert_hm.transpose(1, 2)).transpose(1, 2)  # (B, J, h*w)
        joint_dm = self.mesh2pose_dm(vert_dm.transpose(1, 2)).transpose(1, 2)
        heatmaps = torch.cat((vert_hm, joint_hm), dim=1).view(batch, -1, side, side)
        depth_maps = torch.cat((vert_dm, joint_dm), dim=1).view(batch, -1, side, side)
        prob, uv_px = self.soft_heatmap(heatmaps)  # (B, V+J, h, w), (B, V+J, 2)
        prob_depth = prob * depth_maps
        depth = prob_depth.sum(dim=(2, 3))  # (B, V+J): d = sum over the pixels of p * z
        uv = uv_px / (side // 2) - 1  # heatmap pixels -> [-1, 1]
        coords = torch.cat((uv, depth.unsqueeze(2).to(uv.dtype)), dim=2)  # (B, V+J, 3)
        if maps == 'none':
            return StageOutput(coords=coords, prob=None, prob_depth=None)
        first_row = 0 if maps == 'all' else self.num_vert
        return StageOutput(coords=coords, prob=prob[:, first_row:],
                           prob_depth=prob_depth[:, first_row:])
