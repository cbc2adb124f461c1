"""Stateless MANO maths: rotations, blend shapes, the kinematic chain and skinning.

Tensor in, tensor out; device and dtype come from the inputs. Shapes use B (batch),
V (vertices, 778), J (joints, 16), P (pose-corrective features, 135), S (betas, 10).
"""
import torch
import torch.nn.functional as F


def batch_rodrigues(axisang):
    """Axis-angle vectors to rotation matrices (Rodrigues' formula).

    Args:
        axisang: N x 3, rotation axis times angle (radians).
    Returns:
        N x 3 x 3 rotation matrices.
    """
    # The epsilon keeps the norm (and its gradient) finite at the zero rotation.
    angle = torch.linalg.vector_norm(axisang + 1e-8, dim=1, keepdim=True)  # N x 1
    axis = axisang / angle
    cos, sin = torch.cos(angle)[:, :, None], torch.sin(angle)[:, :, None]
    x, y, z = axis.unbind(dim=1)
    zeros = torch.zeros_like(x)
    skew = torch.stack([zeros, -z, y, z, zeros, -x, -y, x, zeros], dim=1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=axisang.dtype, device=axisang.device)
    return eye + sin * skew + (1 - cos) * torch.bmm(skew, skew)


def rot6d_to_rotmat(rot6d, robust=False):
    """Continuous 6D rotation representation (two 3D columns) to rotation matrices.

    Args:
        rot6d: N x 6, the first and second columns of the rotation, unnormalised.
        robust: treat both columns symmetrically (orthogonalise about their bisector) instead
            of Gram-Schmidt from the first; less sensitive to a badly scaled first column.
    Returns:
        N x 3 x 3 rotation matrices (columns x, y, z).
    """
    a1, a2 = rot6d[:, 0:3], rot6d[:, 3:6]
    if robust:
        x, y = F.normalize(a1, dim=1), F.normalize(a2, dim=1)
        middle = F.normalize(x + y, dim=1)
        orth = F.normalize(x - y, dim=1)
        b1 = F.normalize(middle + orth, dim=1)
        b2 = F.normalize(middle - orth, dim=1)
    else:
        b1 = F.normalize(a1, dim=1)
        b2 = F.normalize(a2 - (b1 * a2).sum(dim=1, keepdim=True) * b1, dim=1)
    b3 = torch.cross(b1, b2, dim=1)
    return torch.stack([b1, b2, b3], dim=2)


def blend_shapes(betas, shapedirs):
    """Shape offsets: B x S betas, V x 3 x S directions -> B x V x 3."""
    return torch.einsum('bs,vcs->bvc', betas, shapedirs)


def pose_features(rot_mats):
    """Pose-corrective features (R_k - I) of the non-root joints.

    Args:
        rot_mats: B x J x 3 x 3 local rotations, root first.
    Returns:
        B x 9(J-1) (135 for MANO), row-major per joint.
    """
    eye = torch.eye(3, dtype=rot_mats.dtype, device=rot_mats.device)
    return (rot_mats[:, 1:] - eye).flatten(1)


def kinematic_levels(parents):
    """Group joints by depth in the tree ("from base to tips") so each level is one batched
    matrix product. `parents`: sequence with -1 for the root. Returns a list of index lists."""
    depth = []
    for j, p in enumerate(parents):
        depth.append(0 if p < 0 else depth[p] + 1)
        if p >= j:
            raise ValueError(f"kinematic tree parents must precede their children; joint {j} "
                             f"has parent {p}")
    return [[j for j, d in enumerate(depth) if d == level] for level in range(max(depth) + 1)]


def batch_rigid_transform(rot_mats, joints, parents, levels=None):
    """Pose the kinematic chain.

    Args:
        rot_mats: B x J x 3 x 3 local rotations (root first).
        joints: B x J x 3 rest-pose joint locations.
        parents: length-J sequence, -1 for the root.
        levels: optional precomputed `kinematic_levels(parents)`.
    Returns:
        posed_joints: B x J x 3 joint locations after posing.
        rel_transforms: B x J x 4 x 4 global transforms with the rest joint removed, i.e.
            mapping a rest-pose point rigidly attached to joint k to its posed location.
    """
    if levels is None:
        levels = kinematic_levels(parents)
    B, J = joints.shape[:2]
    children = [j for j, p in enumerate(parents) if p >= 0]
    rel_joints = joints.clone()  # each joint relative to its parent; the root stays absolute
    rel_joints[:, children] = joints[:, children] - joints[:, [parents[j] for j in children]]
    local = torch.zeros(B, J, 4, 4, dtype=joints.dtype, device=joints.device)
    local[:, :, :3, :3] = rot_mats
    local[:, :, :3, 3] = rel_joints
    local[:, :, 3, 3] = 1
    world = [None] * J
    for level in levels:
        if parents[level[0]] < 0:
            for j in level:
                world[j] = local[:, j]
            continue
        parent_world = torch.stack([world[parents[j]] for j in level], dim=1)  # B x L x 4 x 4
        posed = parent_world @ local[:, level]
        for i, j in enumerate(level):
            world[j] = posed[:, i]
    world = torch.stack(world, dim=1)  # B x J x 4 x 4
    posed_joints = world[:, :, :3, 3]
    # Remove the rest joint: G_k [x; 1] - G_k [j_k; 0] so the transform applies to rest points.
    rest = torch.einsum('bjmn,bjn->bjm', world[:, :, :3, :3], joints)
    rel_transforms = world.clone()
    rel_transforms[:, :, :3, 3] = world[:, :, :3, 3] - rest
    return posed_joints, rel_transforms


SKIN_CHUNK = 64  # samples blended at a time: small temporaries stay in cache and in the heap


def skin(weights, transforms, points):
    """Linear blend skinning: each point moved by its weighted sum of joint transforms.

    Args:
        weights: V x J skinning weights.
        transforms: B x J x 4 x 4 (rigid, last row 0 0 0 1), e.g. `batch_rigid_transform`'s.
        points: B x V x 3 rest-pose points.
    Returns:
        B x V x 3, sum_j w_vj (R_j p_v + t_j).
    """
    num_joints = transforms.shape[1]
    num_points = weights.shape[0]
    moved_chunks = []
    # Per chunk of samples: blend the 3 x 4 transforms in one matrix product (V x J times
    # J x 12b), then apply them with three multiply-adds per coordinate. An einsum over
    # B x V x 3 x 4 runs as B*V tiny matrix products plus a large transposing copy, and
    # whole-batch temporaries of tens of MB cost more in page faults than in arithmetic.
    for first in range(0, transforms.shape[0], SKIN_CHUNK):
        chunk = transforms[first:first + SKIN_CHUNK, :, :3, :]  # (b, J, 3, 4)
        batch = chunk.shape[0]
        per_joint = chunk.permute(1, 0, 2, 3).reshape(num_joints, batch * 12)
        blended = torch.mm(weights, per_joint).view(num_points, batch, 3, 4)  # (V, b, 3, 4)
        points_vb = points[first:first + SKIN_CHUNK].transpose(0, 1).unsqueeze(2)  # (V, b, 1, 3)
        moved = blended[..., 3].addcmul(blended[..., 0], points_vb[..., 0])
        moved = moved.addcmul(blended[..., 1], points_vb[..., 1])
        moved = moved.addcmul(blended[..., 2], points_vb[..., 2])  # (V, b, 3)
        moved_chunks.append(moved.transpose(0, 1))
    return torch.cat(moved_chunks, dim=0)


def lbs(betas, rot_mats, v_template, shapedirs, posedirs, J_regressor, parents, weights,
        levels=None):
    """MANO forward: shape and pose blend shapes, then linear blend skinning.

    Args:
        betas: B x S shape coefficients.
        rot_mats: B x J x 3 x 3 local joint rotations, root first.
        v_template: V x 3 template (meters).
        shapedirs: V x 3 x S.
        posedirs: V x 3 x P, P = 9 (J - 1).
        J_regressor: J x V dense joint regressor.
        parents: length-J parents, -1 for the root.
        weights: V x J skinning weights.
    Returns:
        verts: B x V x 3 posed vertices (meters, before any translation).
        joints: B x J x 3 posed joints (meters).
    """
    v_shaped = v_template + blend_shapes(betas, shapedirs)  # B x V x 3
    rest_joints = torch.einsum('jv,bvc->bjc', J_regressor, v_shaped)  # B x J x 3
    v_posed = v_shaped + torch.einsum('vcp,bp->bvc', posedirs, pose_features(rot_mats))
    joints, transforms = batch_rigid_transform(rot_mats, rest_joints, parents, levels)
    return skin(weights, transforms, v_posed), joints
