"""docs/method.md §5 losses against values worked out by hand on a two-triangle mesh."""

import math

import pytest
import torch

from model.loss import (LOSS_WEIGHTS, coord_l1_loss, edge_length_loss, face_edge_vectors,
                        normal_loss, stage_losses)
from training.loop import drop_full_mask

# Unit square in the z = 0 plane split into two triangles; both target normals are +z:
#   face 0 = (v0, v1, v2): unit(v1 - v0) = (1, 0, 0), unit(v2 - v0) = (0, 1, 0), cross = (0, 0, 1)
#   face 1 = (v1, v3, v2): unit(v3 - v1) = (0, 1, 0), unit(v2 - v1) = (-1, 1, 0)/sqrt2,
#            cross = (0, 0, 1)/sqrt2 -> unit (0, 0, 1)
FACES = torch.tensor([[0, 1, 2], [1, 3, 2]])
GT_VERTS = torch.tensor([[0., 0., 0.], [1., 0., 0.], [0., 1., 0.], [1., 1., 0.]])
# Prediction: v3 lifted to z = 1, everything else exact.
PRED_VERTS = GT_VERTS.clone()
PRED_VERTS[3, 2] = 1.0
# Face 1 predicted edges (a, b, c) = (v1, v3', v2):
#   e1 = v3' - v1 = (0, 1, 1),  |e1| = sqrt2, unit . n = 1/sqrt2
#   e2 = v2 - v1 = (-1, 1, 0),  |e2| = sqrt2, unit . n = 0
#   e3 = v2 - v3' = (-1, 0, -1), |e3| = sqrt2, unit . n = -1/sqrt2
# Face 1 target lengths: |v3 - v1| = 1, |v2 - v1| = sqrt2, |v2 - v3| = 1.
# Face 0 is exact: zero normal and edge terms.
SQRT2 = math.sqrt(2.0)


def test_face_edge_vectors_order():
    edges = face_edge_vectors(PRED_VERTS[None], FACES)
    assert edges.shape == (1, 2, 3, 3)
    expected_face1 = torch.tensor([[0., 1., 1.], [-1., 1., 0.], [-1., 0., -1.]])
    torch.testing.assert_close(edges[0, 1], expected_face1)


def test_normal_loss_hand_worked():
    value = normal_loss(PRED_VERTS[None], GT_VERTS[None], FACES)
    # |e . n| per edge: face 0 (0, 0, 0), face 1 (1/sqrt2, 0, 1/sqrt2); mean of 6 = sqrt2 / 6
    assert value.item() == pytest.approx(SQRT2 / 6, rel=1e-6)


def test_normal_loss_ignores_edge_length_and_in_plane_motion():
    # Scaling the prediction by 3 and sliding v3 within the plane keep every edge in the plane.
    pred = GT_VERTS * 3.0
    pred[3, :2] += torch.tensor([0.4, -0.2])
    assert normal_loss(pred[None], GT_VERTS[None], FACES).item() == pytest.approx(0.0, abs=1e-7)


def test_edge_loss_hand_worked():
    value = edge_length_loss(PRED_VERTS[None], GT_VERTS[None], FACES)
    # ||pred| - |gt|| per edge: face 0 (0, 0, 0), face 1 (sqrt2 - 1, 0, sqrt2 - 1); mean of 6
    assert value.item() == pytest.approx((SQRT2 - 1) / 3, rel=1e-6)


def test_stage_losses_batch_mean_and_vertex_rows_only():
    # One joint row appended (row 4); batch of 2 where sample 1 is exact, so each mean halves.
    gt_joint = torch.tensor([[0.5, 0.5, 0.0]])
    pred_joint = torch.tensor([[0.5, 0.5, 0.3]])  # |dz| = 0.3; a mesh term reading it would change
    gt = torch.cat((GT_VERTS, gt_joint))[None].repeat(2, 1, 1)
    pred = gt.clone()
    pred[0] = torch.cat((PRED_VERTS, pred_joint))
    losses = stage_losses(pred, gt, FACES, num_vert=4)
    assert list(losses) == ['coord', 'normal', 'edge']
    # coord: |1| (v3 z) + |0.3| (joint z) over 2 samples x 5 rows x 3 coords = 1.3 / 30
    assert losses['coord'].item() == pytest.approx(1.3 / 30, rel=1e-6)
    assert coord_l1_loss(pred, gt).item() == pytest.approx(1.3 / 30, rel=1e-6)
    # normal: the published 0.1 x (sqrt2 + 0) / 12 entries; edge: 2 (sqrt2 - 1) / 12 entries
    assert losses['normal'].item() == pytest.approx(0.1 * SQRT2 / 12, rel=1e-6)
    assert losses['edge'].item() == pytest.approx(2 * (SQRT2 - 1) / 12, rel=1e-6)


def test_loss_weights_name_what_the_stage_dict_applies():
    # The monitor labels the curves with LOSS_WEIGHTS: each weighted term must equal its
    # weight times the unweighted function on the same input.
    pred, gt = PRED_VERTS[None], GT_VERTS[None]
    losses = stage_losses(pred, gt, FACES, num_vert=4)
    unweighted = {'coord': coord_l1_loss(pred, gt), 'normal': normal_loss(pred, gt, FACES),
                  'edge': edge_length_loss(pred, gt, FACES)}
    assert set(LOSS_WEIGHTS) == set(losses)
    for name, value in losses.items():
        assert value.item() == pytest.approx(LOSS_WEIGHTS[name] * unweighted[name].item(), rel=1e-6)


def test_degenerate_faces_give_finite_values_and_gradients():
    # Collapsed target face (normal undefined) and collapsed predicted face (edges of length 0):
    # F.normalize clamps the length to 1e-12, so those terms are 0, never NaN.
    gt = GT_VERTS.clone()
    gt[3] = gt[1]  # face 1 target: v1 == v3
    pred = PRED_VERTS.clone()
    pred[2] = pred[0]
    pred[1] = pred[0]  # face 0 prediction: a point
    pred.requires_grad_(True)
    total = normal_loss(pred[None], gt[None], FACES) + edge_length_loss(pred[None], gt[None], FACES)
    total.backward()
    assert torch.isfinite(total)
    assert torch.isfinite(pred.grad).all()
    # Face 0: predicted edges are zero vectors -> normal terms 0; face 1: target normal is the
    # zero vector -> normal terms 0. Edge terms: face 0 targets (1, 1, sqrt2) vs 0 -> 2 + sqrt2;
    # face 1 (v1, v3', v2) with v1 = v0 = (0,0,0): pred e1 = (1,1,1), e2 = (0,0,0), e3 = (-1,-1,-1)
    # -> sqrt3, 0, sqrt3; targets (v1, v1, v2): 0, sqrt2, sqrt2 -> |sqrt3| + sqrt2 + |sqrt3 - sqrt2|
    expected_edge = (2 + SQRT2 + math.sqrt(3) + SQRT2 + (math.sqrt(3) - SQRT2)) / 6
    assert total.item() == pytest.approx(expected_edge, rel=1e-6)


# ---- joints-only items (verts_valid; docs/method.md §12) ----

def mixed_batch():
    """pred, gt (3 x 6 x 3: the 4 square vertices, then 2 joints) with distinct errors per item."""
    generator = torch.Generator().manual_seed(0)
    gt = torch.cat((GT_VERTS, torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.8, 0.1]])))[None].repeat(3, 1, 1)
    pred = gt + 0.2 * torch.randn(gt.shape, generator=generator)
    return pred.requires_grad_(), gt


def test_an_all_valid_mask_gives_the_published_losses():
    # The masked means equal the published ones up to summation order; training drops an
    # all-ones mask on the host (drop_full_mask), so FreiHAND batches take the published path.
    pred, gt = mixed_batch()
    plain = stage_losses(pred, gt, FACES, num_vert=4)
    masked = stage_losses(pred, gt, FACES, num_vert=4, verts_valid=torch.ones(3))
    for name in plain:
        torch.testing.assert_close(masked[name], plain[name], rtol=1e-6, atol=0), name
    full = {'mesh_pose_uvd': gt, 'verts_valid': torch.ones(3)}
    assert drop_full_mask(full).keys() == {'mesh_pose_uvd'}
    mixed = {'mesh_pose_uvd': gt, 'verts_valid': torch.tensor([1.0, 0.0, 1.0])}
    assert drop_full_mask(mixed) is mixed


def test_joints_only_items_count_their_joint_rows_only():
    pred, gt = mixed_batch()
    gt[1, :4] = 123.0  # placeholder vertex rows of the joints-only item: must not matter
    losses = stage_losses(pred, gt, FACES, num_vert=4, verts_valid=torch.tensor([1.0, 0.0, 1.0]))
    error = (pred - gt).abs().detach()
    # Supervised coordinates: all 6 rows of items 0 and 2, the 2 joint rows of item 1.
    expected_coord = (error[0].sum() + error[2].sum() + error[1, 4:].sum()) / ((6 + 6 + 2) * 3)
    assert losses['coord'].item() == pytest.approx(expected_coord.item(), rel=1e-6)
    keep = torch.tensor([0, 2])
    assert losses['normal'].item() == pytest.approx(
        LOSS_WEIGHTS['normal'] * normal_loss(pred[keep, :4], gt[keep, :4], FACES).item(), rel=1e-6)
    assert losses['edge'].item() == pytest.approx(
        edge_length_loss(pred[keep, :4], gt[keep, :4], FACES).item(), rel=1e-6)


def test_a_joints_only_item_gets_no_gradient_on_its_vertex_rows():
    pred, gt = mixed_batch()
    losses = stage_losses(pred, gt, FACES, num_vert=4, verts_valid=torch.tensor([1.0, 0.0, 1.0]))
    sum(losses.values()).backward()
    assert torch.count_nonzero(pred.grad[1, :4]) == 0
    assert torch.count_nonzero(pred.grad[1, 4:]) == 6  # its joints are supervised
    assert torch.count_nonzero(pred.grad[0, :4]) > 0


def test_a_batch_without_vertices_trains_the_joints_only():
    pred, gt = mixed_batch()
    losses = stage_losses(pred, gt, FACES, num_vert=4, verts_valid=torch.zeros(3))
    assert losses['normal'].item() == 0.0 and losses['edge'].item() == 0.0
    assert losses['coord'].item() == pytest.approx(
        coord_l1_loss(pred[:, 4:], gt[:, 4:]).item(), rel=1e-6)
