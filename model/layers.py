"""SAR building blocks: graph convolution, soft heatmaps, the graph builder and the regressor.

Module and parameter names follow the published model (docs/method.md §4) so its checkpoint loads
strictly. Weight initialisation is PyTorch's default for every plain layer (Conv2d, Linear),
as the published code declares them plainly; the only exception is the graph adjacency,
which starts as the identity.

How the graph part is computed (same functions as docs/method.md §4, cheaper):
- Vertex-major layout. Per-vertex features are held as V x B x F tensors, so every product
  with an adjacency (V x V) is one plain matrix product over the whole batch, forward and
  backward, with no per-sample copy of the adjacency and no batched transposes. Every module
  `forward` here takes and returns vertex-major tensors; only the regressor's outputs are
  batch-first (what the losses and the next stage read).
- No concatenations. The template columns shared by every sample are split off the first
  graph convolution: fc(L @ [f, t]) = (L @ f) @ W_f^T + ((L @ t) @ W_t^T + b), the bracket a
  V x out constant for the batch. The joint regressor across vertices (`mesh2pose`) is folded
  into the last graph convolution: its rows become [L; W_m @ L] with per-row biases, which
  yields vertices and joints in one product, and the per-map heatmap scale `beta` is folded
  into the rows of the xy branch.
- Cheaper association. Each graph convolution computes L @ x @ W^T in the order with fewer
  multiply-adds ((L @ x) @ W^T when in < out, L @ (x @ W^T) otherwise).
- Derived tensors (normalised adjacencies, folded rows and biases, the index grid) are
  remembered while no gradient is recorded (evaluation, `torch.no_grad`, frozen parameters),
  keyed on the storage and version counter of the parameters they come from, so an optimiser
  step, `load_state_dict` or any in-place edit recomputes them. With gradients they are
  rebuilt on every call (a few ms), so training keeps exact gradients to every parameter.
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

ADJ_ROW_SUM_EPS = 1e-5  # added to each adjacency row sum before dividing (docs/method.md §4)
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


def _tensor_state(tensor):
    """Identity of a tensor's current values: storage, version counter, dtype, device."""
    # `_version` is bumped by every in-place update (optimizer.step, load_state_dict's copy_,
    # `with torch.no_grad(): p.fill_(...)`), which is exactly when a derived tensor goes stale.
    return tensor.data_ptr(), tensor._version, tensor.dtype, tensor.device, tuple(tensor.shape)


def derived_tensor(owner, name, sources, compute):
    """`compute()`, remembered on `owner` under `name` while no gradient is being recorded.

    Recomputed whenever a source tensor changes (new storage, in-place update, dtype or
    device). When autograd records (gradients enabled and a source requires them) or
    torch.compile traces, `compute()` runs every call so the graph reaches the sources.

    Args:
        owner: the module that keeps the cache (in its `_derived` dict).
        name: cache key within the owner.
        sources: tensors the result depends on (parameters, buffers).
        compute: function of no arguments returning the derived tensor(s).
    """
    if ((torch.is_grad_enabled() and any(t.requires_grad for t in sources))
            or torch.compiler.is_compiling() or any(t.is_inference() for t in sources)):
        return compute()
    cache = owner.__dict__.setdefault('_derived', {})
    # Results computed under torch.inference_mode are inference tensors, which autograd
    # must not save: they are only reused in inference mode. Under autocast the products
    # give bf16 results: they are only reused under the same autocast (an fp32 run after a
    # bf16 one must not read bf16-rounded tensors).
    device_type = sources[0].device.type
    autocast = (torch.get_autocast_dtype(device_type)
                if torch.is_autocast_enabled(device_type) else None)
    key = (torch.is_inference_mode_enabled(), autocast, *(_tensor_state(t) for t in sources))
    hit = cache.get(name)
    if hit is not None and hit[0] == key:
        return hit[1]
    value = compute()
    # The detached references pin the sources' storage while the entry lives, so no other
    # tensor can reuse those addresses and be mistaken for them (e.g. after `.to()` swaps
    # a parameter's data).
    cache[name] = (key, value, tuple(t.detach() for t in sources))
    return value


def _records_grad(tensor):
    """True when autograd records operations on `tensor`."""
    return torch.is_grad_enabled() and tensor.requires_grad


def _add(fresh, other):
    """fresh + other, in place on `fresh` (an intermediate) when autograd does not record.

    Under autograd an in-place update of a view (most intermediates here are views of a
    matrix product) makes the backward zero-fill and copy the whole base tensor.
    """
    return fresh + other if _records_grad(fresh) or _records_grad(other) else fresh.add_(other)


def _leaky_relu(fresh, negative_slope):
    """LeakyReLU of an intermediate, in place when autograd does not record (see _add)."""
    return F.leaky_relu(fresh, negative_slope, inplace=not _records_grad(fresh))


def dropout(x, p, training):
    """F.dropout(x, p, training), with a faster mask for p = 0.5 on the CPU.

    Each element is kept independently with probability 1 - p and scaled by 1 / (1 - p)
    either way. For p = 0.5 on the CPU the keep decisions are the bits of uniform random
    bytes (8 independent fair coins per byte): about 9x faster than the CPU Bernoulli
    sampler on this network's 778 x B x 1024 activations. Other p and other devices use
    F.dropout.
    """
    if not training or p == 0.0:
        return x
    if p != 0.5 or x.device.type != 'cpu':
        return F.dropout(x, p, training=True)
    count = x.numel()
    random_bytes = torch.randint(0, 256, ((count + 7) // 8, 1), dtype=torch.uint8,
                                 device=x.device)
    shifts = torch.arange(8, dtype=torch.uint8, device=x.device)
    scale = ((random_bytes >> shifts) & 1) << 1  # 0 (dropped) or 2 = 1 / (1 - p) (kept)
    return x * scale.view(-1)[:count].view(x.shape)


def mix_and_project(mix, x_vm, weight, bias=None):
    """mix @ x @ weight^T + bias for a vertex-major x, in the association with fewer FLOPs.

    Args:
        mix: R x V row mixing (a normalised adjacency, possibly with extra rows).
        x_vm: V x B x F_in, vertex-major features.
        weight: F_out x F_in (nn.Linear layout).
        bias: None, F_out (same for every row) or R x F_out (one bias per output row).
    Returns:
        R x B x F_out.
    """
    rows, num_vert = mix.shape
    _, batch, in_features = x_vm.shape
    out_features = weight.shape[0]
    mix_first = (rows * num_vert * in_features + rows * in_features * out_features
                 <= num_vert * in_features * out_features + rows * num_vert * out_features)
    column_bias = bias is not None and bias.dim() == 1
    if mix_first:
        mixed = torch.mm(mix, x_vm.reshape(num_vert, batch * in_features))  # (R, B*F_in)
        flat = mixed.view(rows * batch, in_features)
        out = (torch.addmm(bias, flat, weight.t()) if column_bias
               else torch.mm(flat, weight.t()))  # (R*B, F_out)
    else:
        projected = torch.mm(x_vm.reshape(num_vert * batch, in_features), weight.t())
        projected = projected.view(num_vert, batch * out_features)
        out = (torch.addmm(bias.repeat(batch), mix, projected) if column_bias
               else torch.mm(mix, projected))  # (R, B*F_out)
    out = out.view(rows, batch, out_features)
    if bias is not None and not column_bias:
        # In the product's dtype: under autocast a float32 bias would promote the whole
        # R x B x F_out tensor to float32.
        out = _add(out, bias.unsqueeze(1).to(out.dtype))
    return out


def _expected_pixel(prob_flat, grid):
    """(prob_flat @ grid[0], prob_flat @ grid[1]) in at least float32, also under autocast.

    Args:
        prob_flat: ... x P.
        grid: 2 x P, column and row index of every pixel.
    Returns:
        ... x 2.
    """
    # Two matrix-vector products: a product with a 2-column matrix takes MKL's slow path
    # (about 7x slower here). float32 even under autocast: bf16 would round u, v (up to
    # 31 px) to about 0.1 px.
    dtype = torch.promote_types(prob_flat.dtype, torch.float32)
    with torch.autocast(prob_flat.device.type, enabled=False):
        flat = prob_flat.reshape(-1, prob_flat.shape[-1]).to(dtype)
        grid = grid.to(dtype)
        uv = torch.stack((torch.mv(flat, grid[0]), torch.mv(flat, grid[1])), dim=-1)
    return uv.view(*prob_flat.shape[:-1], 2)


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

    def normalised_adj(self):
        """L = rownorm(adj), n x n (remembered while no gradient is recorded)."""
        return derived_tensor(self, 'normalised_adj', (self.adj,),
                              lambda: row_normalise(self.adj))

    def forward(self, x_vm):
        """x_vm: n x B x in_features (vertex-major) -> n x B x out_features."""
        return mix_and_project(self.normalised_adj(), x_vm, self.fc.weight, self.fc.bias)


class SoftHeatmap(nn.Module):
    """Per-map learnt temperature, softmax over the pixels and soft-argmax (docs/method.md §4).

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

    def map_scale(self):
        """The per-map scale of `beta` as an M vector."""
        return self.beta.weight.view(-1)

    def pixel_grid(self):
        """2 x P: column and row index of every pixel, row-major (remembered)."""
        return derived_tensor(self, 'pixel_grid', (self.wx, self.wy), lambda: torch.stack(
            (self.wx.reshape(-1), self.wy.reshape(-1))))

    def forward(self, logits_vm, prescaled=False):
        """Probabilities and expected pixel of every map.

        Args:
            logits_vm: M x B x P map-major logits, P = h*w pixels in row-major order.
            prescaled: the logits already carry the per-map scale `beta` (GraphRegressor25D
                folds it into its last graph convolution); False applies it here.
        Returns:
            prob: M x B x P, each map sums to 1 over its pixels.
            uv_px: M x B x 2, expected (column, row) in heatmap pixels.
        """
        if not prescaled:
            # A 1x1 depthwise conv without bias is one scale per map; multiplying by its
            # weight directly avoids the slow grouped-convolution path (same function).
            logits_vm = logits_vm * self.map_scale().view(-1, 1, 1)
        # The softmax in at least float32, as CUDA autocast runs it (CPU autocast would keep
        # bf16): bf16 probabilities (8 significant bits) are each off by up to 0.4 %, and
        # u, v (up to 31 px) and the depth sums that weigh with them inherit it.
        prob = torch.softmax(logits_vm, dim=-1,
                             dtype=torch.promote_types(logits_vm.dtype, torch.float32))
        return prob, _expected_pixel(prob, self.pixel_grid())


class SpatialAwareGraphBuilder(nn.Module):
    """Spatial-aware initial graph builder (`saigb`): feature maps -> per-vertex features.

    A 1x1 conv makes num_FMs maps per vertex; channel c = vertex * num_FMs + map and each map
    is flattened row-major, so vertex k gets the num_FMs * h * w values of its own maps. The
    template vertex (meters) that docs/method.md §4 appends to every vertex's features is the
    same for every sample: GraphRegressor25D takes it as `shared_columns` instead of a
    concatenated copy per sample.

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
        """Per-vertex image features (without the template, see the class docstring).

        Args:
            features_high: B x C_high x h x w.
        Returns:
            num_vert x B x (num_FMs*h*w), vertex-major.
        """
        conv, leaky = self.group
        batch, channels, height, width = features_high.shape
        out_channels = conv.out_channels
        # The 1x1 conv as one matrix product over all samples and pixels: on the small
        # stride-32 map it runs at the machine's matmul rate, the conv kernel far below.
        pixels = features_high.reshape(batch, channels, height * width).transpose(0, 1)
        pixels = pixels.reshape(channels, batch * height * width)  # (C, B*h*w)
        maps = torch.addmm(conv.bias.unsqueeze(1), conv.weight.view(out_channels, channels),
                           pixels)  # (V*num_FMs, B*h*w)
        # In place is cheap here under autograd too: `maps` is a fresh tensor, not a view.
        maps = F.leaky_relu(maps, leaky.negative_slope, inplace=True)
        maps = maps.view(self.num_vert, out_channels // self.num_vert, batch, height * width)
        return maps.transpose(1, 2).reshape(self.num_vert, batch, -1)


def _graph_regressor(num_vert, in_features, out_features):
    """Sequential(GraphConv, LeakyReLU(0.1), Dropout(0.5), GraphConv): SAR's reg_xy / reg_z."""
    return nn.Sequential(GraphConv(num_vert, in_features, out_features),
                         nn.LeakyReLU(LEAKY_SLOPE),
                         nn.Dropout(DROPOUT_P),
                         GraphConv(num_vert, out_features, out_features))


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

    MAP_ROWS = ('all', 'joints', 'none')

    def __init__(self, num_vert, num_joint, in_features, heatmap_size):
        super().__init__()
        self.num_vert = num_vert
        self.heatmap_size = heatmap_size
        self.soft_heatmap = SoftHeatmap(num_vert + num_joint, heatmap_size)
        num_pixels = heatmap_size * heatmap_size
        self.reg_xy = _graph_regressor(num_vert, in_features, num_pixels)
        self.reg_z = _graph_regressor(num_vert, in_features, num_pixels)
        self.mesh2pose_hm = nn.Linear(num_vert, num_joint)
        self.mesh2pose_dm = nn.Linear(num_vert, num_joint)

    def _first_bias(self, conv, shared_columns):
        """Per-vertex bias of the first graph conv with the shared columns folded in: V x out.

        fc(L @ [f, t]) = (L @ f) @ W_f^T + (L @ t) @ W_t^T + b; this is the last two terms.
        """
        num_shared = shared_columns.shape[1]

        def compute():
            mixed_shared = torch.mm(conv.normalised_adj(), shared_columns.to(conv.adj.dtype))
            return torch.addmm(conv.fc.bias, mixed_shared, conv.fc.weight[:, -num_shared:].t())

        return derived_tensor(conv, 'first_bias',
                              (conv.adj, conv.fc.weight, conv.fc.bias, shared_columns), compute)

    def _last_rows(self, conv, mesh2pose, map_scale):
        """The last graph conv with mesh2pose folded in (and the scale of each map).

        Vertices: fc(L @ h) = L @ h @ W^T + b. Joints: mesh2pose(vertex maps) =
        (W_m @ L) @ h @ W^T + (W_m @ 1) b^T + b_m. Both scaled per map by `map_scale`.

        Returns:
            mix (V+J) x V and bias (V+J) x out.
        """
        sources = (conv.adj, conv.fc.bias, mesh2pose.weight, mesh2pose.bias)
        if map_scale is not None:
            sources += (map_scale,)

        def compute():
            adj_norm = conv.normalised_adj()
            mix = torch.cat((adj_norm, torch.mm(mesh2pose.weight, adj_norm)), dim=0)
            bias_vert = conv.fc.bias.unsqueeze(0).expand(self.num_vert, -1)
            bias_joint = torch.addr(mesh2pose.bias.unsqueeze(1).expand(-1, bias_vert.shape[1]),
                                    mesh2pose.weight.sum(dim=1), conv.fc.bias)
            bias = torch.cat((bias_vert, bias_joint), dim=0)
            if map_scale is not None:
                mix = mix * map_scale.unsqueeze(1)
                bias = bias * map_scale.unsqueeze(1)
            return mix, bias

        return derived_tensor(conv, 'last_rows', sources, compute)

    def _branch(self, regressor, vert_features_vm, shared_columns, mesh2pose, map_scale):
        """One regressor (reg_xy or reg_z) with mesh2pose: (V+J) x B x h*w maps."""
        first, leaky, drop, last = regressor
        if shared_columns is None:
            hidden = first(vert_features_vm)
        else:
            num_own = vert_features_vm.shape[2]
            hidden = mix_and_project(first.normalised_adj(), vert_features_vm,
                                     first.fc.weight[:, :num_own],
                                     self._first_bias(first, shared_columns))
        hidden = dropout(_leaky_relu(hidden, leaky.negative_slope), drop.p, drop.training)
        mix, bias = self._last_rows(last, mesh2pose, map_scale)
        return mix_and_project(mix, hidden, last.fc.weight, bias)

    def forward(self, vert_features_vm, shared_columns=None, maps='all'):
        """The stage on vertex-major features; batch-first outputs.

        Args:
            vert_features_vm: V x B x F, per-vertex features (F = in_features, or
                in_features - S with `shared_columns`).
            shared_columns: None or V x S columns shared by every sample (the template),
                appended to each sample's features.
            maps: which rows of prob / prob_depth to return: 'all' (V+J), 'joints' (J, what
                the next stage fuses) or 'none' (both None).
        Returns:
            StageOutput with coords B x (V+J) x 3 and the requested maps B x rows x h x w.
        """
        if maps not in self.MAP_ROWS:
            raise ValueError(f'maps must be one of {self.MAP_ROWS}, got {maps!r}')
        side = self.heatmap_size
        logits = self._branch(self.reg_xy, vert_features_vm, shared_columns,
                              self.mesh2pose_hm, self.soft_heatmap.map_scale())
        depth_maps = self._branch(self.reg_z, vert_features_vm, shared_columns,
                                  self.mesh2pose_dm, None)  # (V+J, B, h*w)
        prob, uv_px = self.soft_heatmap(logits, prescaled=True)  # (V+J, B, h*w), (V+J, B, 2)
        prob_depth = prob * depth_maps
        depth = prob_depth.sum(dim=-1, keepdim=True)  # (V+J, B, 1)
        coords = torch.cat((heatmap_px_to_normalised(uv_px, side), depth.to(uv_px.dtype)), dim=-1)
        coords = coords.transpose(0, 1).contiguous()  # (B, V+J, 3)
        if maps == 'none':
            return StageOutput(coords=coords, prob=None, prob_depth=None)
        first_row = 0 if maps == 'all' else self.num_vert

        def batch_first(rows_vm):
            return rows_vm[first_row:].transpose(0, 1).unflatten(-1, (side, side))  # a view

        return StageOutput(coords=coords, prob=batch_first(prob),
                           prob_depth=batch_first(prob_depth))
