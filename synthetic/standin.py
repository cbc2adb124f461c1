"""Procedural MANO stand-in: a right hand built from swept tubes, in the official file format.

The licensed MANO model (MANO_RIGHT.pkl) cannot be shipped, so tests, CI and the demo use this
hand instead. It has every key, shape, dtype and convention of the official file (docs/method.md §9):
778 vertices, 1538 faces, one 16-vertex wrist opening, MANO's template frame and size (meters;
fingers along -x, thumb towards +z, back of the hand +y), the 16 joints in MANO's order and
tree, fingertip vertices of both conventions (manopth 745/317/444(445)/556/673, FreiHAND
744/320/443/555/672) on the tips, smooth skinning weights, convex joint regressor rows, 10
shape directions, pose correctives, and a PCA pose space of 1554 sampled hand poses.

Construction: the surface (synthetic/standin_mesh.py: vertex rings swept along the skeleton,
the finger bases zipped to the palm, the thumb grown from the thenar side), then the rig here:
skinning weights, joint regressor, shape and pose directions and the sampled pose space.

`kintree_table` is stored as int64 with the root parent 2**32 - 1, as the official files hold it.
The seed only changes the sampled pose space; the geometry is fixed.

    python -m synthetic.standin --out DIR [--seed S]    writes DIR/MANO_RIGHT.pkl, MANO_LEFT.pkl
"""
import argparse
import os

import numpy as np
import scipy.optimize
import scipy.sparse
from scipy.spatial.transform import Rotation

from manopth import constants
from synthetic.mano_file import save_mano
from synthetic.standin_mesh import (FINGERS, LONG_FINGERS, THUMB_DORSAL_REFERENCE, _finger_table,
                                    _neighbours, _normalize, _shaped_template)


# ---------------------------------------------------------------------------------------------
# Model data
# ---------------------------------------------------------------------------------------------

WEIGHT_SMOOTHING_ITERATIONS = 6
REGRESSOR_NEIGHBOURS = 24  # vertices around a joint centre its regressor row may use
# Target size of each shape direction: RMS vertex offset per unit beta (m), decreasing like the
# variance of a PCA basis.
SHAPE_RMS = (0.0040, 0.0026, 0.0021, 0.0017, 0.0014, 0.0012, 0.0010, 0.0008, 0.0007, 0.0006)
BULGE = 0.0020  # m of outward bulge at a joint bent by 90 degrees (offsets LBS volume loss)
KNUCKLE = 0.0015  # m a flexed knuckle rises on the back and creases on the palm side, per sin


def _skinning_weights(pairs, adj):
    """V x 16 weights: each vertex's joint pair, smoothed over the surface (nonnegative, rows
    sum to 1 since averaging preserves both)."""
    n = len(pairs)
    weights = np.zeros((n, constants.NUM_MANO_JOINTS))
    np.add.at(weights, (np.arange(n), pairs[:, 0]), 0.5)
    np.add.at(weights, (np.arange(n), pairs[:, 1]), 0.5)
    degree = np.asarray(adj.sum(axis=1)).ravel()
    for _ in range(WEIGHT_SMOOTHING_ITERATIONS):
        weights = 0.5 * weights + 0.5 * (adj @ weights) / degree[:, None]
    return weights / weights.sum(axis=1, keepdims=True)


def _convex_combination(points, target):
    """Nonnegative weights summing to 1 with weights @ points == target (closest to uniform).

    points: K x 3 (m); target: 3 (m). Solved as a bounded least-squares problem whose exact
    constraints carry a large weight."""
    k = len(points)
    scale = 1.0 / np.ptp(points, axis=0).max()
    big = 1e3
    a = np.vstack([big * scale * points.T, big * np.ones((1, k)), np.eye(k)])
    b = np.concatenate([big * scale * target, [big], np.full(k, 1.0 / k)])
    w = scipy.optimize.lsq_linear(a, b, bounds=(0.0, 1.0), method='bvls').x
    w = np.where(w < 1e-9, 0.0, w)
    return w / w.sum()


def _joint_regressor(verts, joint_centres):
    """16 x V sparse regressor whose rows are convex combinations of the vertices around each
    joint, reproducing the joint centre."""
    rows = np.zeros((constants.NUM_MANO_JOINTS, len(verts)))
    for j, centre in enumerate(joint_centres):
        near = np.argsort(np.linalg.norm(verts - centre, axis=1), kind='stable')
        near = near[:REGRESSOR_NEIGHBOURS]
        rows[j, near] = _convex_combination(verts[near], centre)
        miss = np.linalg.norm(rows[j] @ verts - centre)
        assert miss < 2e-4, f'joint {j}: regressor misses its centre by {miss * 1000:.2f} mm'
    return scipy.sparse.csc_matrix(rows)


def _bone_frames(joints, fingers):
    """Per non-root joint k: (bone direction, dorsal direction, flexion axis); positive
    rotation about the flexion axis bends the finger towards the palm."""
    frames = {}
    for name, first, *_ in FINGERS:
        p = fingers[name]['points']
        dorsal_ref = np.asarray(THUMB_DORSAL_REFERENCE if name == 'thumb' else (0.0, 1.0, 0.0))
        for b in range(3):
            axis = _normalize(p[b + 1] - p[b])
            dorsal = _normalize(dorsal_ref - np.dot(dorsal_ref, axis) * axis)
            frames[first + b] = (axis, dorsal, np.cross(dorsal, axis))
    return frames


def _axis_points(verts, weights, joints):
    """Per vertex, the closest point on the bone of its dominant joint (the wrist's bone runs
    from the wrist to the middle MCP)."""
    children = {p: j for j, p in reversed(list(enumerate(constants.MANO_PARENTS))) if p >= 0}
    dominant = np.argmax(weights, axis=1)
    out = np.empty_like(verts)
    for k in range(constants.NUM_MANO_JOINTS):
        sel = dominant == k
        start = joints[k]
        end = joints[4] if k == 0 else joints[children[k]] if k in children else None
        if end is None:  # last segment: extend along the parent bone
            end = start + (start - joints[constants.MANO_PARENTS[k]])
        seg = end - start
        t = np.clip((verts[sel] - start) @ seg / (seg @ seg), 0.0, 1.0)
        out[sel] = start + t[:, None] * seg
    return out


def _shapedirs(verts, weights, joints, fingers):
    """V x 3 x 10 shape directions: interpretable smooth fields (size, finger length, palm
    width, thickness, thumb size, palm length, girth, ulnar finger length, thumb placement,
    fingertip taper), orthogonalised in that order and scaled to decreasing RMS size."""
    frames = _bone_frames(joints, fingers)
    finger_mask = {name: weights[:, first:first + 3].sum(axis=1) for name, first, *_ in FINGERS}
    palm = weights[:, 0]
    radial = verts - _axis_points(verts, weights, joints)
    ex, ey, ez = np.eye(3)
    fields = []
    fields.append(verts - joints[0])  # overall size about the wrist
    length = np.zeros_like(verts)
    for name, first, *_ in FINGERS:
        axis = frames[first][0]
        length += finger_mask[name][:, None] * ((verts - joints[first]) @ axis)[:, None] * axis
    fields.append(length)
    centre_z = joints[[1, 4, 7, 10]].mean(axis=0)[2]
    width = palm * (verts[:, 2] - centre_z)
    for name, first, *_ in FINGERS:
        width = width + finger_mask[name] * (joints[first, 2] - centre_z)
    fields.append(width[:, None] * ez)
    fields.append(radial[:, 1:2] * ey)  # thickness
    thumb = fingers['thumb']['first']
    fields.append(finger_mask['thumb'][:, None] * (verts - joints[thumb]))
    mcp_x = joints[[1, 4, 7, 10], 0].mean()
    along = np.clip((joints[0, 0] - verts[:, 0]) / (joints[0, 0] - mcp_x), 0.0, 1.0)
    long_mask = sum(finger_mask[n] for n in LONG_FINGERS)
    fields.append(-(palm * along + long_mask)[:, None] * ex)  # palm length
    fields.append((long_mask + finger_mask['thumb'])[:, None] * radial)  # finger girth
    ulnar = np.zeros_like(verts)
    for name, sign in zip(LONG_FINGERS, (-1.0, -0.3, 0.3, 1.0)):
        first = fingers[name]['first']
        axis = frames[first][0]
        along_finger = (verts - joints[first]) @ axis
        ulnar += sign * (finger_mask[name] * along_finger)[:, None] * axis
    fields.append(ulnar)
    fields.append(finger_mask['thumb'][:, None] * (-ex + 0.5 * ez))  # thumb placement
    distal = weights[:, [3, 6, 9, 12, 15]].sum(axis=1)
    fields.append(distal[:, None] * radial)  # fingertip taper
    basis = []
    for field, rms in zip(fields, SHAPE_RMS):
        v = field.ravel()
        for b in basis:
            v = v - (v @ b) * b
        v = v / np.linalg.norm(v)
        basis.append(v)
    n = len(verts)
    return np.stack([b.reshape(n, 3) * rms * np.sqrt(n) for b, rms in zip(basis, SHAPE_RMS)],
                    axis=2)


def _posedirs(verts, weights, joints, fingers):
    """V x 3 x 135 pose correctives, linear in each joint's (R - I) entries (row-major, joints
    1..15): a bulge around a bent joint (1 - cos angle = -trace(R - I) / 2) and a knuckle rise
    / palm-side crease proportional to the flexion component of the rotation's sine vector."""
    frames = _bone_frames(joints, fingers)
    posedirs = np.zeros((len(verts), 3, 9 * (constants.NUM_MANO_JOINTS - 1)))
    for k in range(1, constants.NUM_MANO_JOINTS):
        parent = constants.MANO_PARENTS[k]
        axis, dorsal, flex = frames[k]
        bump = np.clip(4.0 * weights[:, k] * weights[:, parent], 0.0, 1.0)
        r = verts - joints[k]
        r = r - np.outer(r @ axis, axis)
        out = r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-9)
        cols = slice(9 * (k - 1), 9 * k)
        bulge = np.zeros(9)
        bulge[[0, 4, 8]] = -0.5 * BULGE
        # flex . w, w = ((R21 - R12) / 2, (R02 - R20) / 2, (R10 - R01) / 2) = sin(angle) axis.
        sine = np.zeros(9)
        sine[[7, 5]] = 0.5 * flex[0], -0.5 * flex[0]
        sine[[2, 6]] = 0.5 * flex[1], -0.5 * flex[1]
        sine[[3, 1]] = 0.5 * flex[2], -0.5 * flex[2]
        side = (out @ dorsal)[:, None, None]
        posedirs[:, :, cols] += bump[:, None, None] * out[:, :, None] * (
            bulge[None, None, :] + KNUCKLE * side * sine[None, None, :])
    return posedirs


# ---------------------------------------------------------------------------------------------
# Pose space
# ---------------------------------------------------------------------------------------------

NUM_POSE_SAMPLES = 1554  # rows of hands_coeffs in the official files
SPREAD_SHARE = (1.0, 0.25, -0.55, -1.1)  # abduction per unit spread: index, middle, ring, pinky
CURL_OFFSET = (0.0, 0.03, 0.08, 0.12)  # the ulnar fingers rest a little more curled
OPPOSITION_TARGET = (-0.4, -0.75, -0.5)  # where an opposing thumb swings: under the palm
OPPOSITION_TWIST = -0.6  # rad about the thumb's own axis per unit opposition: pad to fingers


def _rotvec(*rotvecs):
    """Compose rotations given as axis-angle vectors (applied right to left) into one."""
    r = Rotation.identity()
    for v in rotvecs:
        r = r * Rotation.from_rotvec(v)
    return r.as_rotvec()


def _hand_pose(frames, curls, spread, opposition, thumb_curl, noise=None):
    """45 joint axis-angle values (joints 1..15, template axes, radians) from a few controls.

    curls: 4 finger curls (index, middle, ring, pinky; 0 straight, 1 fist); spread: finger
    abduction; opposition: thumb swing across the palm; thumb_curl: thumb MCP/IP flexion.
    noise: optional 15 x 3 per-joint jitter (flexion, abduction, twist) in radians."""
    noise = np.zeros((15, 3)) if noise is None else noise
    first_joint = {name: first for name, first, *_ in FINGERS}
    pose = np.zeros((15, 3))
    for name, curl, share in zip(LONG_FINGERS, curls, SPREAD_SHARE):
        first = first_joint[name]
        mcp = np.clip(1.25 * curl + noise[first - 1, 0], -0.35, 1.6)
        pip = np.clip(1.55 * curl + noise[first, 0], -0.05, 1.9)
        dip = np.clip(0.7 * pip + noise[first + 1, 0], -0.1, 1.3)
        axis, dorsal, flex = frames[first]
        pose[first - 1] = _rotvec((share * spread + noise[first - 1, 1]) * dorsal,
                                  noise[first - 1, 2] * axis, mcp * flex)
        pose[first] = pip * frames[first + 1][2]
        pose[first + 1] = dip * frames[first + 2][2]
    axis, dorsal, flex = frames[13]
    swing = _normalize(np.cross(axis, _normalize(np.asarray(OPPOSITION_TARGET))))
    pose[12] = _rotvec((opposition + noise[12, 0]) * swing,
                       (OPPOSITION_TWIST * opposition + noise[12, 2]) * axis)
    pose[13] = np.clip(0.7 * thumb_curl + noise[13, 0], -0.2, 1.0) * frames[14][2]
    pose[14] = np.clip(1.0 * thumb_curl + noise[14, 0], -0.3, 1.3) * frames[15][2]
    return pose.ravel()


# Named poses for pictures and demos: (finger curls, spread, opposition, thumb curl).
EXAMPLE_POSES = {
    'flat': ((0.0, 0.0, 0.0, 0.0), 0.0, 0.0, 0.0),
    'fist': ((1.15, 1.15, 1.15, 1.15), 0.0, 0.9, 0.9),
    'point': ((0.0, 1.1, 1.15, 1.2), 0.0, 0.8, 0.8),
    'spread': ((-0.05, -0.05, -0.05, -0.05), 0.4, -0.1, -0.1),
}


def example_pose(name, joints):
    """45 joint axis-angle values (radians, no hands_mean added: use flat_hand_mean=True,
    use_pca=False) of a named right-hand pose: 'flat', 'fist', 'point' or 'spread'.

    Args:
        name: a key of EXAMPLE_POSES.
        joints: 16 x 3 rest joints of the stand-in (its 'J', meters); the bending axes follow
            its bones.
    """
    if name not in EXAMPLE_POSES:
        raise ValueError(f"unknown example pose {name!r}; choose one of {sorted(EXAMPLE_POSES)}")
    curls, spread, opposition, thumb_curl = EXAMPLE_POSES[name]
    frames = _bone_frames(np.asarray(joints, dtype=np.float64), _finger_table()[1])
    return _hand_pose(frames, curls, spread, opposition, thumb_curl)


def _sample_poses(rng, frames, n=NUM_POSE_SAMPLES):
    """n x 45 plausible hand poses: correlated curls, spreads, thumb opposition, some pointing
    and two-finger poses."""
    poses = np.empty((n, 45))
    for i in range(n):
        mode = rng.random()
        grip = np.clip(rng.normal(0.3, 0.4), -0.15, 1.3)
        curls = grip + rng.normal(0.0, 0.2, 4) + np.asarray(CURL_OFFSET)
        if mode < 0.12:
            curls[0] = rng.normal(0.0, 0.08)  # pointing
        elif mode < 0.2:
            curls[:2] = rng.normal(0.0, 0.08, 2)  # two fingers out
        spread = np.clip(rng.normal(0.12, 0.15), -0.1, 0.45) * (1 - 0.7 * np.clip(grip, 0, 1))
        opposition = np.clip(rng.normal(0.25 + 0.4 * grip, 0.3), -0.2, 1.2)
        thumb_curl = np.clip(0.5 * grip + rng.normal(0.1, 0.25), -0.2, 1.2)
        noise = rng.normal(0.0, 1.0, (15, 3)) * np.array([0.08, 0.04, 0.03])
        poses[i] = _hand_pose(frames, curls, spread, opposition, thumb_curl, noise)
    return poses


def _pose_pca(poses):
    """Mean (45), components (45 x 45, orthonormal rows, decreasing variance, each row's
    largest entry positive) and coefficients (n x 45) of sampled poses."""
    mean = poses.mean(axis=0)
    centred = poses - mean
    variance, vectors = np.linalg.eigh(centred.T @ centred / (len(poses) - 1))
    components = vectors[:, np.argsort(variance)[::-1]].T
    signs = np.sign(components[np.arange(45), np.argmax(np.abs(components), axis=1)])
    components = components * signs[:, None]
    return mean, components, centred @ components.T


# ---------------------------------------------------------------------------------------------
# Public interface
# ---------------------------------------------------------------------------------------------

def build_standin(seed=0):
    """The right-hand stand-in model as the official file's dict of plain arrays (docs/method.md §9).

    Args:
        seed: seeds the sampled pose space (hands_mean / components / coeffs); the geometry,
            weights, regressor and blend shapes do not depend on it.
    Returns:
        dict: v_template 778 x 3 (m), f 1538 x 3 uint32, J_regressor 16 x 778 scipy CSC,
        J 16 x 3 (m), weights 778 x 16, kintree_table 2 x 16 int64 (root parent 2**32 - 1),
        posedirs 778 x 3 x 135, shapedirs 778 x 3 x 10, hands_components 45 x 45 (rows),
        hands_mean 45, hands_coeffs 1554 x 45, bs_style 'lbs', bs_type 'lrotmin', pose 48,
        betas 10, trans 3 (zeros), standin True.
    """
    verts, faces, pairs, _ = _shaped_template()
    design_joints, fingers = _finger_table()
    weights = _skinning_weights(pairs, _neighbours(faces, len(verts)))
    regressor = _joint_regressor(verts, design_joints)
    joints = regressor @ verts
    frames = _bone_frames(joints, fingers)
    hands_mean, components, coeffs = _pose_pca(
        _sample_poses(np.random.default_rng(seed), frames))
    parents = [constants.KINTREE_ROOT_PARENT] + list(constants.MANO_PARENTS[1:])
    return {
        'v_template': verts,
        'f': faces.astype(np.uint32),
        'J_regressor': regressor,
        'J': joints,
        'weights': weights,
        'kintree_table': np.array([parents, list(range(constants.NUM_MANO_JOINTS))],
                                  dtype=np.int64),
        'posedirs': _posedirs(verts, weights, joints, fingers),
        'shapedirs': _shapedirs(verts, weights, joints, fingers),
        'hands_components': components,
        'hands_mean': hands_mean,
        'hands_coeffs': coeffs,
        'bs_style': 'lbs',
        'bs_type': 'lrotmin',
        'pose': np.zeros(constants.NUM_POSE),
        'betas': np.zeros(constants.NUM_BETAS),
        'trans': np.zeros(3),
        'standin': True,
    }


def mirror_to_left(data):
    """The left hand as the mirror image of a right-hand model across the x = 0 plane.

    With M = diag(-1, 1, 1): points and offsets get x negated; a rotation R becomes M R M, so
    the pose feature entry (a, b) of (R - I) changes sign when exactly one of a, b is x, and an
    axis-angle (a, b, c) becomes (a, -b, -c). Faces are re-wound (mirroring flips orientation).
    hands_coeffs are coordinates in the (mirrored) component basis and stay as they are.
    """
    m = np.array([-1.0, 1.0, 1.0])
    feature_sign = np.tile(np.outer(m, m).ravel(), constants.NUM_MANO_JOINTS - 1)  # 135
    pose_sign = np.tile([1.0, -1.0, -1.0], 15)
    left = dict(data)
    left['v_template'] = data['v_template'] * m
    left['J'] = data['J'] * m
    left['f'] = np.ascontiguousarray(data['f'][:, ::-1])
    left['shapedirs'] = data['shapedirs'] * m[None, :, None]
    left['posedirs'] = data['posedirs'] * m[None, :, None] * feature_sign[None, None, :]
    left['hands_mean'] = data['hands_mean'] * pose_sign
    left['hands_components'] = data['hands_components'] * pose_sign[None, :]
    left['hands_coeffs'] = np.array(data['hands_coeffs'], copy=True)
    return left


def save_standin(folder, right):
    """Write MANO_RIGHT.pkl and MANO_LEFT.pkl (official format) of the stand-in `right`
    (build_standin's dict) into `folder`; returns {side: path}."""
    paths = {}
    for side, data in (('RIGHT', right), ('LEFT', mirror_to_left(right))):
        paths[side] = os.path.join(folder, f'MANO_{side}.pkl')
        save_mano(paths[side], data, official=True)
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m synthetic.standin',
        description='Write the procedural MANO stand-in (MANO_RIGHT.pkl, MANO_LEFT.pkl) in the '
                    'official file format. It is NOT the licensed MANO model.')
    parser.add_argument('--out', required=True, help='folder to write the two pickles into')
    parser.add_argument('--seed', type=int, default=0, help='seed of the sampled pose space')
    args = parser.parse_args(argv)
    for side, path in save_standin(args.out, build_standin(args.seed)).items():
        print(f'wrote {path} (procedural MANO stand-in, {side.lower()} hand, seed {args.seed})')


if __name__ == '__main__':
    main()
