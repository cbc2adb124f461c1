"""SAR training losses (docs/method.md §5), stateless, in the crop-normalised uvd space.

Every function takes the face indices as an argument (the model keeps them in a buffer built
once) and takes its device from the inputs. Unit vectors use `F.normalize` semantics:
v / max(|v|, eps) with eps = 1e-12, so a zero-length edge gives a zero vector (and a zero
contribution) instead of NaN.
"""

import torch
import torch.nn.functional as F

NORMAL_LOSS_WEIGHT = 0.1  # the published weight of the normal term (already applied in the dict)
# The weight stage_losses applies to each term (the training loss is their plain sum).
LOSS_WEIGHTS = {'coord': 1.0, 'normal': NORMAL_LOSS_WEIGHT, 'edge': 1.0}
UNIT_EPS = 1e-12  # F.normalize's default: lengths below this are clamped before dividing


def coord_l1_loss(pred_uvd, gt_uvd):
    """L1 between predicted and target coordinates, mean over all elements.

    Args:
        pred_uvd, gt_uvd: B x N x 3 (crop-normalised uvd).
    Returns:
        scalar tensor.
    """
    return (pred_uvd - gt_uvd).abs().mean()


def face_edge_vectors(verts, faces):
    """The three edge vectors of every triangle (a, b, c): b - a, c - a, c - b.

    Args:
        verts: B x V x 3.
        faces: F x 3 long vertex indices.
    Returns:
        B x F x 3 (edge) x 3 (coordinate).
    """
    corner_a, corner_b, corner_c = verts[:, faces].unbind(dim=2)  # each (B, F, 3)
    return torch.stack((corner_b - corner_a, corner_c - corner_a, corner_c - corner_b), dim=2)


def normal_loss(pred_verts, gt_verts, faces, eps=UNIT_EPS):
    """Mean |unit predicted edge . unit target face normal| (unweighted).

    The target normal of face (A, B, C) is unit(cross(unit(B - A), unit(C - A))). A predicted
    face lying in the target face's plane scores 0.

    Args:
        pred_verts, gt_verts: B x V x 3.
        faces: F x 3 long.
        eps: length clamp of every normalisation (see the module docstring).
    Returns:
        scalar tensor, mean over batch, faces and the 3 edges.
    """
    pred_edges_unit = F.normalize(face_edge_vectors(pred_verts, faces), dim=-1, eps=eps)
    gt_edges = face_edge_vectors(gt_verts, faces)
    gt_ab_unit = F.normalize(gt_edges[:, :, 0], dim=-1, eps=eps)  # (B, F, 3)
    gt_ac_unit = F.normalize(gt_edges[:, :, 1], dim=-1, eps=eps)
    gt_normal = F.normalize(torch.linalg.cross(gt_ab_unit, gt_ac_unit, dim=-1), dim=-1, eps=eps)
    cosines = (pred_edges_unit * gt_normal.unsqueeze(2)).sum(dim=-1)  # (B, F, 3)
    return cosines.abs().mean()


def edge_length_loss(pred_verts, gt_verts, faces):
    """Mean | |predicted edge| - |target edge| | over batch, faces and the 3 edges.

    Args:
        pred_verts, gt_verts: B x V x 3.
        faces: F x 3 long.
    Returns:
        scalar tensor.
    """
    pred_lengths = torch.linalg.vector_norm(face_edge_vectors(pred_verts, faces), dim=-1)
    gt_lengths = torch.linalg.vector_norm(face_edge_vectors(gt_verts, faces), dim=-1)
    return (pred_lengths - gt_lengths).abs().mean()


def stage_losses(pred_uvd, gt_uvd, faces, num_vert, verts_valid=None):
    """The three docs/method.md §5 terms of one stage, normal already weighted by NORMAL_LOSS_WEIGHT.

    Args:
        pred_uvd, gt_uvd: B x (V+J) x 3 crop-normalised uvd, vertices first.
        faces: F x 3 long indices into the first num_vert rows.
        num_vert: V; the mesh terms use rows [0, V) only.
        verts_valid: optional B (1: the item's target vertices are real, 0: joints-only item,
            its vertex rows are placeholders): `masked_stage_losses`. None: every item has
            vertices, the published losses (training.loop.drop_full_mask passes None for a batch
            whose mask is all ones, so FreiHAND's batches keep them bit for bit).
    Returns:
        {'coord': scalar, 'normal': scalar, 'edge': scalar}.
    """
    if verts_valid is not None:
        return masked_stage_losses(pred_uvd, gt_uvd, faces, num_vert, verts_valid)
    pred_verts = pred_uvd[:, :num_vert]
    gt_verts = gt_uvd[:, :num_vert]
    return {
        'coord': LOSS_WEIGHTS['coord'] * coord_l1_loss(pred_uvd, gt_uvd),
        'normal': LOSS_WEIGHTS['normal'] * normal_loss(pred_verts, gt_verts, faces),
        'edge': LOSS_WEIGHTS['edge'] * edge_length_loss(pred_verts, gt_verts, faces),
    }


def masked_stage_losses(pred_uvd, gt_uvd, faces, num_vert, verts_valid):
    """The §5 terms when some items have joints only (docs/method.md §12, our extension).

    coord: mean L1 over every supervised coordinate of the batch (all joint rows; the vertex
    rows of items with vertices), so a joint weighs the same in every item; normal and edge:
    means over the items with vertices only (0 when there are none). A joints-only item's
    vertex rows get exactly zero gradient. With every item valid the values equal
    `stage_losses` up to summation order.

    Args:
        pred_uvd, gt_uvd: B x (V+J) x 3; faces: F x 3 long; num_vert: V.
        verts_valid: B, 1 for items with vertices, 0 for joints-only items.
    Returns:
        {'coord': scalar, 'normal': scalar, 'edge': scalar}.
    """
    valid = (verts_valid > 0).to(pred_uvd.dtype)  # (B,)
    batch, rows = pred_uvd.shape[:2]
    row_weight = torch.ones(batch, rows, dtype=pred_uvd.dtype, device=pred_uvd.device)
    row_weight = torch.cat((valid[:, None].expand(batch, num_vert), row_weight[:, num_vert:]), 1)
    coord = ((pred_uvd - gt_uvd).abs() * row_weight[..., None]).sum() / (row_weight.sum() * 3)

    pred_verts, gt_verts = pred_uvd[:, :num_vert], gt_uvd[:, :num_vert]
    face_terms = faces.shape[0] * 3  # per item: every face's three edges
    items = valid.sum().clamp(min=1.0)  # no valid item: the sums are 0, not 0 / 0
    pred_edges = face_edge_vectors(pred_verts, faces)
    gt_edges = face_edge_vectors(gt_verts, faces)
    pred_unit = F.normalize(pred_edges, dim=-1, eps=UNIT_EPS)
    gt_normal = F.normalize(torch.linalg.cross(F.normalize(gt_edges[:, :, 0], dim=-1, eps=UNIT_EPS),
                                               F.normalize(gt_edges[:, :, 1], dim=-1, eps=UNIT_EPS),
                                               dim=-1), dim=-1, eps=UNIT_EPS)
    cosines = (pred_unit * gt_normal.unsqueeze(2)).sum(dim=-1).abs()  # (B, F, 3)
    lengths = (torch.linalg.vector_norm(pred_edges, dim=-1)
               - torch.linalg.vector_norm(gt_edges, dim=-1)).abs()  # (B, F, 3)
    per_item = valid / (items * face_terms)  # (B,)
    return {
        'coord': LOSS_WEIGHTS['coord'] * coord,
        'normal': LOSS_WEIGHTS['normal'] * (cosines.sum(dim=(1, 2)) * per_item).sum(),
        'edge': LOSS_WEIGHTS['edge'] * (lengths.sum(dim=(1, 2)) * per_item).sum(),
    }
