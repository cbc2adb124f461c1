"""Procedural MANO stand-in: a right hand built from swept tubes, in the official file format.

The licensed MANO model (MANO_RIGHT.pkl) cannot be shipped, so tests, CI and the demo use this
hand instead. It has every key, shape, dtype and convention of the official file (docs/method.md §9):
778 vertices, 1538 faces, one 16-vertex wrist opening, MANO's template frame and size (meters;
fingers along -x, thumb towards +z, back of the hand +y), the 16 joints in MANO's order and
tree, fingertip vertices of both conventions (manopth 745/317/444(445)/556/673, FreiHAND
744/320/443/555/672) on the tips, smooth skinning weights, convex joint regressor rows, 10
shape directions, pose correctives, and a PCA pose space of 1554 sampled hand poses.

Construction: vertex rings swept along the skeleton (a palm tube from the wrist ring, finger
tubes with domed tips), the four finger bases zipped to the palm's distal ring with shared
web vertices, and the thumb tube grown from a hole in the palm's thenar side.

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

# ---------------------------------------------------------------------------------------------
# Skeleton (template frame, meters)
# ---------------------------------------------------------------------------------------------

WRIST_JOINT = (0.0957, 0.0064, 0.0062)
# Fingers in MANO's joint order; per finger: first joint id, (MCP/CMC, PIP/MCP, DIP/IP)
# centres, distance from the last joint to the tip surface, tube half-width at base and tip.
FINGERS = (
    ('index', 1, ((0.0076, 0.0012, 0.0269), (-0.0251, 0.0052, 0.0291),
                  (-0.0473, 0.0039, 0.0282)), 0.0215, 0.0094, 0.0076),
    ('middle', 4, ((0.0010, 0.0049, 0.0014), (-0.0314, 0.0072, -0.0034),
                   (-0.0560, 0.0052, -0.0062)), 0.0230, 0.0097, 0.0078),
    ('pinky', 7, ((0.0269, -0.0037, -0.0373), (0.0110, -0.0041, -0.0495),
                  (-0.0055, -0.0029, -0.0573)), 0.0195, 0.0082, 0.0066),
    ('ring', 10, ((0.0144, 0.0022, -0.0198), (-0.0148, 0.0038, -0.0258),
                  (-0.0394, 0.0025, -0.0308)), 0.0220, 0.0091, 0.0074),
    ('thumb', 13, ((0.0733, -0.0095, 0.0271), (0.0519, -0.0156, 0.0513),
                   (0.0296, -0.0169, 0.0706)), 0.0240, 0.0112, 0.0092),
)
LONG_FINGERS = ('index', 'middle', 'ring', 'pinky')  # radial to ulnar: the order across the palm
# The thumb nail faces up, out and back in the flat hand (the pad half turned to the index).
THUMB_DORSAL_REFERENCE = (0.6, 0.66, 0.53)

RING = 12  # vertices around a finger tube: radial side, 5 dorsal, ulnar side, 5 palmar
TIP_RING = 6  # small ring around the pole of a fingertip dome
TIP_DORSAL, TIP_PALMAR = 1, 4  # small-ring vertices at 75 and 255 degrees (phase 0.25)
WRIST_RING = constants.WRIST_RING_SIZE


def _normalize(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _finger_table():
    """Designed joint centres (16 x 3, MANO order, m) and per finger: first joint id, the
    3 joint centres plus the tip-surface point (4 x 3), tube half-width at base and tip."""
    joints = np.zeros((constants.NUM_MANO_JOINTS, 3))
    joints[0] = WRIST_JOINT
    fingers = {}
    for name, first, centres, distal, r_base, r_tip in FINGERS:
        centres = np.asarray(centres, dtype=np.float64)
        joints[first:first + 3] = centres
        tip = centres[2] + distal * _normalize(centres[2] - centres[1])
        fingers[name] = dict(first=first, points=np.vstack([centres, tip[None]]),
                             r_base=r_base, r_tip=r_tip)
    return joints, fingers


# ---------------------------------------------------------------------------------------------
# Mesh assembly helpers
# ---------------------------------------------------------------------------------------------

class _Mesh:
    """Growing vertex / face lists; each vertex remembers its part and the pair of joints it
    is skinned to before smoothing (equal pair: one joint; a joint ring: parent and child)."""

    def __init__(self):
        self.verts, self.joint, self.part, self.faces = [], [], [], []

    def add(self, points, joint, part):
        points = np.atleast_2d(points)
        start = len(self.verts)
        self.verts.extend(points)
        pair = (joint, joint) if np.isscalar(joint) else tuple(joint)
        self.joint.extend([pair] * len(points))
        self.part.extend([part] * len(points))
        return np.arange(start, start + len(points))

    def strip(self, ring_a, ring_b):
        """Quads between two closed rings of equal size, ring_b distal of ring_a.

        Both rings run counter-clockwise about the distal direction, so the faces point out."""
        n = len(ring_a)
        assert len(ring_b) == n
        for j in range(n):
            k = (j + 1) % n
            self.faces.append((ring_a[j], ring_a[k], ring_b[k]))
            self.faces.append((ring_a[j], ring_b[k], ring_b[j]))

    def zip(self, line_a, line_b):
        """Triangles between two polylines (or closed rings given with their first vertex
        repeated at the end) of different sizes, advancing along whichever lags by arc length.
        Orientation as in `strip`: line_b lies distal of line_a."""
        pa, pb = (np.asarray([self.verts[i] for i in line]) for line in (line_a, line_b))
        ta, tb = (_arc_fraction(p) for p in (pa, pb))
        i = j = 0
        while i < len(line_a) - 1 or j < len(line_b) - 1:
            advance_a = j == len(line_b) - 1 or (i < len(line_a) - 1 and ta[i + 1] <= tb[j + 1])
            if advance_a:
                self.faces.append((line_a[i], line_a[i + 1], line_b[j]))
                i += 1
            else:
                self.faces.append((line_a[i], line_b[j + 1], line_b[j]))
                j += 1

    def fan(self, ring, pole):
        """Close a ring with triangles to a pole vertex distal of it."""
        n = len(ring)
        for j in range(n):
            self.faces.append((ring[j], ring[(j + 1) % n], pole))


def _arc_fraction(points):
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    t = np.concatenate([[0.0], np.cumsum(seg)])
    return t / t[-1]


def _ring(centre, axis, dorsal, half_width, half_height, n, phase=0.0, palmar_scale=1.0):
    """n points on an ellipse around `axis`, starting on the radial side (the side the lateral
    axis points to) and turning towards `dorsal`: counter-clockwise about `axis`."""
    dorsal = _normalize(dorsal - np.dot(dorsal, axis) * axis)
    lateral = np.cross(dorsal, axis)
    phi = 2 * np.pi * (np.arange(n) + phase) / n
    c, s = np.cos(phi), np.sin(phi)
    height = np.where(s > 0, half_height, half_height * palmar_scale)
    return centre + (half_width * c)[:, None] * lateral + (height * s)[:, None] * dorsal


# ---------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------

# Palm: rows of rings from the wrist opening to the knuckles. Row 0 is the wrist opening.
PALM_RING_SIZES = (WRIST_RING, 32, 32, 32, 32, 32, 32, 32, 30)
WRIST_X = 0.106  # the wrist opening lies a little proximal of the wrist joint
THUMB_HOLE_ROWS = (2, 5)  # palm rows bounding the hole the thumb grows from
THUMB_HOLE_COLS = (-2, 1)  # ring columns (0 = radial side) bounding it
THUMB_BLEND_STEPS = 1  # edges around the thumb root that the junction blend may move
THUMB_BLEND_ITERATIONS = 6


def _palm_ring(u, n, mcp):
    """Palm cross-section at row parameter u (0 wrist .. 1 knuckles), n points from the radial
    side over the back of the hand. `mcp`: 4 x 3 MCP centres of index, middle, ring, pinky."""
    phi = 2 * np.pi * np.arange(n) / n
    c, s = np.cos(phi), np.sin(phi)
    dorsal = s > 0
    zeta = np.sign(c) * np.abs(c) ** (2 / 2.6)
    eta = np.sign(s) * np.abs(s) ** np.where(dorsal, 2 / 2.4, 2 / 3.2)
    ease = u ** 0.8
    z_lo, z_hi = mcp[3, 2] - 0.0095, mcp[0, 2] + 0.0100  # knuckle-level palm edges
    centre_z = (1 - ease) * 0.0062 + ease * 0.5 * (z_lo + z_hi)
    half_width = (1 - ease) * 0.0285 + ease * 0.5 * (z_hi - z_lo)
    z = centre_z + half_width * zeta
    order = np.argsort(mcp[:, 2])
    knuckle_x = np.interp(z, mcp[order, 2], mcp[order, 0])
    knuckle_y = np.interp(z, mcp[order, 2], mcp[order, 1])
    palmar_lead = 0.008 * (1 - eta) / 2  # palm skin reaches further along the fingers
    x = (1 - u) * WRIST_X + u * (knuckle_x - palmar_lead)
    centre_y = (1 - ease) * 0.0050 + ease * knuckle_y
    t_dorsal = (1 - u) * 0.0135 + u * 0.0105
    t_palmar = (1 - u) * 0.0150 + u * 0.0105 + 0.004 * np.sin(np.pi * u)
    y = centre_y + np.where(dorsal, t_dorsal, t_palmar) * eta
    return np.stack([x, y, z], axis=1)


LONG_FINGER_STATIONS = ((0, 0.40), (0, 0.70), (1, 0.0), (1, 0.5), (2, 0.0), (2, 0.5), (2, 1.0))
THUMB_STATIONS = ((0, 0.45), (0, 0.85), (1, 0.0), (1, 0.5), (2, 0.0), (2, 0.5), (2, 1.0))


def _finger_rings(finger, stations):
    """Ring stations along a finger: (centre, axis, half-width, joint label) tuples.

    `stations`: (bone, fraction) pairs; fraction 1.0 of the last bone means the tip dome's
    equator (one tip radius short of the tip surface). The first station is the base ring."""
    p = finger['points']
    first = finger['first']
    bones = np.diff(p, axis=0)
    lengths = np.linalg.norm(bones, axis=1)
    dirs = bones / lengths[:, None]
    total = lengths.sum()
    r_tip = finger['r_tip']
    # (bone, fraction along bone) of each ring; joint rings sit exactly on PIP and DIP.
    end_fraction = (lengths[2] - r_tip) / lengths[2]
    out = []
    for bone, frac in stations:
        if bone == 2:
            frac = frac * end_fraction
        centre = p[bone] + frac * bones[bone]
        if frac == 0.0:
            axis = _normalize(dirs[bone - 1] + dirs[bone])
            label = (first + bone - 1, first + bone)  # a joint ring: half parent, half child
        else:
            axis = dirs[bone]
            label = first + bone
        s = lengths[:bone].sum() + frac * lengths[bone]
        radius = finger['r_base'] + (r_tip - finger['r_base']) * s / total
        out.append((centre, axis, radius, label))
    return out


def _add_finger(mesh, finger, part, dorsal_ref, stations, base):
    """Sweep a finger tube from its base ring (ids, already in the mesh) to a domed tip.
    Returns (ring ids, pole id, small tip ring ids)."""
    ring_ids = [base]
    for centre, axis, radius, label in stations[1:]:
        pts = _ring(centre, axis, dorsal_ref, radius, 0.88 * radius, RING, palmar_scale=1.06)
        ring_ids.append(mesh.add(pts, label, part))
    for a, b in zip(ring_ids[:-1], ring_ids[1:]):
        mesh.strip(a, b)
    centre, axis, radius, label = stations[-1]
    last = finger['first'] + 2
    # Dome: a 12-ring at 35 degrees latitude, a small ring at 68 degrees, the pole.
    lat = np.radians(35.0)
    pts = _ring(centre + radius * np.sin(lat) * axis, axis, dorsal_ref, radius * np.cos(lat),
                0.88 * radius * np.cos(lat), RING, palmar_scale=1.06)
    dome = mesh.add(pts, last, part)
    mesh.strip(ring_ids[-1], dome)
    lat = np.radians(68.0)
    pts = _ring(centre + radius * np.sin(lat) * axis, axis, dorsal_ref, radius * np.cos(lat),
                0.88 * radius * np.cos(lat), TIP_RING, phase=0.25)
    small = mesh.add(pts, last, part)
    mesh.zip(np.append(dome, dome[0]), np.append(small, small[0]))
    pole = mesh.add(centre + radius * axis, last, part)[0]
    mesh.fan(small, pole)
    return ring_ids, pole, small


def _boundary_loop(triangles):
    """The single boundary loop of a triangle patch, in the patch's own orientation."""
    edges = {(a, b) for t in triangles for a, b in zip(t, np.roll(t, -1))}
    nxt = {a: b for a, b in edges if (b, a) not in edges}
    start = min(nxt)
    loop = [start]
    while nxt[loop[-1]] != start:
        loop.append(nxt[loop[-1]])
    assert len(loop) == len(nxt), 'hole patch boundary is not a single loop'
    return np.asarray(loop)


def _build_mesh():
    """Assemble the hand, fingertips already at their conventional indices.

    Returns:
        verts V x 3 (m), faces F x 3, V x 2 joint pair per vertex (before smoothing), part
        name per vertex, and a V boolean mask of the thumb root (hole loop and base ring).
    """
    joints, fingers = _finger_table()
    mesh = _Mesh()
    mcp = np.array([fingers[n]['points'][0] for n in LONG_FINGERS])

    # Palm tube, leaving out the quads where the thumb attaches.
    n_rows = len(PALM_RING_SIZES)
    rows = [mesh.add(_palm_ring(r / (n_rows - 1), n, mcp), 0, 'palm')
            for r, n in enumerate(PALM_RING_SIZES)]
    hole = []
    for r in range(n_rows - 1):
        a, b = rows[r], rows[r + 1]
        if len(a) != len(b):
            mesh.zip(np.append(a, a[0]), np.append(b, b[0]))
            continue
        n = len(a)
        for j in range(n):
            k = (j + 1) % n
            quad = [(a[j], a[k], b[k]), (a[j], b[k], b[j])]
            in_hole = (THUMB_HOLE_ROWS[0] <= r < THUMB_HOLE_ROWS[1]
                       and (j - THUMB_HOLE_COLS[0]) % n < THUMB_HOLE_COLS[1] - THUMB_HOLE_COLS[0])
            (hole if in_hole else mesh.faces).extend(quad)
    hole_loop = _boundary_loop(hole)
    removed = sorted({v for t in hole for v in t} - set(hole_loop.tolist()))
    for v in hole_loop:
        mesh.joint[v] = (0, fingers['thumb']['first'])  # the thenar follows the thumb halfway

    # Long fingers: base rings at the webs; neighbours share the web vertex between them.
    stations = {n: _finger_rings(fingers[n], LONG_FINGER_STATIONS) for n in LONG_FINGERS}
    base_pts = {}
    for n in LONG_FINGERS:
        centre, axis, radius, _ = stations[n][0]
        base_pts[n] = _ring(centre, axis, np.array([0.0, 1.0, 0.0]), radius, 0.88 * radius,
                            RING, palmar_scale=1.06)
    for left, right in zip(LONG_FINGERS[:-1], LONG_FINGERS[1:]):
        web = 0.5 * (base_pts[left][RING // 2] + base_pts[right][0])
        base_pts[left][RING // 2] = base_pts[right][0] = web
    base = {}
    shared = None
    for n in LONG_FINGERS:
        label = fingers[n]['first']
        ids = np.empty(RING, dtype=np.int64)
        fresh = np.arange(RING) if shared is None else np.arange(1, RING)
        ids[fresh] = mesh.add(base_pts[n][fresh], label, n)
        if shared is not None:
            ids[0] = shared
        shared = ids[RING // 2]
        base[n] = ids
    tips = {}
    for n in LONG_FINGERS:
        _, pole, small = _add_finger(mesh, fingers[n], n, np.array([0.0, 1.0, 0.0]),
                                     stations[n], base[n])
        tips[n] = (pole, small)

    # Knuckles: zip the palm's distal ring to the row of finger bases, back and palm side.
    last = rows[-1]
    half = len(last) // 2
    back = np.concatenate([base['index'][:RING // 2 + 1]]
                          + [base[n][1:RING // 2 + 1] for n in LONG_FINGERS[1:]])
    front = np.concatenate([[base['pinky'][RING // 2]]]
                           + [np.append(base[n][RING // 2 + 1:], base[n][0])
                              for n in LONG_FINGERS[::-1]])
    mesh.zip(last[:half + 1], back)
    mesh.zip(np.append(last[half:], last[0]), front)

    # Thumb: its base ring lies halfway between the hole loop and the first tube ring (a ruled
    # blend that cannot fold), then the tube.
    thumb = fingers['thumb']
    thumb_dorsal = np.asarray(THUMB_DORSAL_REFERENCE)
    thumb_stations = _finger_rings(thumb, THUMB_STATIONS)
    centre, axis, radius, _ = thumb_stations[1]
    first_ring = _ring(centre, axis, thumb_dorsal, radius, 0.88 * radius, RING, palmar_scale=1.06)
    loop_pts = np.asarray([mesh.verts[i] for i in hole_loop])
    cost = [np.sum((np.roll(loop_pts, -k, axis=0) - first_ring) ** 2) for k in range(RING)]
    hole_loop = np.roll(hole_loop, -int(np.argmin(cost)))
    loop_pts = np.asarray([mesh.verts[i] for i in hole_loop])
    thumb_base = mesh.add(0.5 * (loop_pts + first_ring), thumb_stations[0][3], 'thumb')
    mesh.strip(hole_loop, thumb_base)
    thumb_rings, pole, small = _add_finger(mesh, thumb, 'thumb', thumb_dorsal, thumb_stations,
                                           thumb_base)
    thumb_root = np.zeros(len(mesh.verts), dtype=bool)
    thumb_root[np.concatenate([hole_loop, thumb_rings[0]])] = True
    tips['thumb'] = (pole, small)

    # Drop the vertices inside the hole, then renumber so the fingertip vertices sit at the
    # indices both conventions expect (manopth: the pole; FreiHAND: the small ring's palmar
    # vertex; the left model's middle tip 445: its dorsal vertex).
    keep = np.setdiff1d(np.arange(len(mesh.verts)), removed)
    old_to_kept = -np.ones(len(mesh.verts), dtype=np.int64)
    old_to_kept[keep] = np.arange(len(keep))
    targets = {}
    for k, name in enumerate(('thumb', 'index', 'middle', 'ring', 'pinky')):
        pole, small = tips[name]
        targets[constants.TIP_VERTS_MANOPTH_RIGHT[k]] = old_to_kept[pole]
        targets[constants.TIP_VERTS_FREIHAND[k]] = old_to_kept[small[TIP_PALMAR]]
    targets[constants.TIP_VERTS_MANOPTH_LEFT[2]] = old_to_kept[tips['middle'][1][TIP_DORSAL]]
    n_kept = len(keep)
    order = -np.ones(n_kept, dtype=np.int64)
    order[list(targets)] = list(targets.values())
    order[order < 0] = np.setdiff1d(np.arange(n_kept), list(targets.values()))
    new_of_kept = np.empty(n_kept, dtype=np.int64)
    new_of_kept[order] = np.arange(n_kept)
    verts = np.asarray(mesh.verts)[keep][order]
    faces = new_of_kept[old_to_kept[np.asarray(mesh.faces)]]
    labels = np.asarray(mesh.joint)[keep][order]
    parts = np.asarray(mesh.part)[keep][order]
    thumb_root = thumb_root[keep][order]
    return verts, faces, labels, parts, thumb_root


def _neighbours(faces, n_verts):
    """Vertex adjacency as a sparse 0/1 matrix (n_verts x n_verts)."""
    i = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    j = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    adj = scipy.sparse.coo_matrix((np.ones(len(i)), (i, j)), shape=(n_verts, n_verts)).tocsr()
    adj = ((adj + adj.T) > 0).astype(np.float64)
    return adj


def _grow(adj, mask, steps):
    """Extend a vertex mask by `steps` rings of neighbours."""
    for _ in range(steps):
        mask = mask | (adj @ mask.astype(np.float64) > 0)
    return mask


def _relax(verts, adj, movable, iterations):
    """Move `movable` vertices towards their neighbours' mean (the others stay): a discrete
    harmonic blend that smooths the creases where tubes meet."""
    degree = np.asarray(adj.sum(axis=1)).ravel()
    verts = verts.copy()
    for _ in range(iterations):
        mean = (adj @ verts) / degree[:, None]
        verts[movable] = mean[movable]
    return verts


def _shaped_template():
    """The assembled hand with the thumb root blended into the palm: (verts V x 3 (m),
    faces F x 3, V x 2 joint pairs, V part names)."""
    verts, faces, labels, parts, thumb_root = _build_mesh()
    adj = _neighbours(faces, len(verts))
    movable = _grow(adj, thumb_root, THUMB_BLEND_STEPS) & (parts != 'index') & (parts != 'thumb')
    movable[thumb_root] = True
    verts = _relax(verts, adj, movable, THUMB_BLEND_ITERATIONS)
    return verts, faces, labels, parts


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


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m synthetic.standin',
        description='Write the procedural MANO stand-in (MANO_RIGHT.pkl, MANO_LEFT.pkl) in the '
                    'official file format. It is NOT the licensed MANO model.')
    parser.add_argument('--out', required=True, help='folder to write the two pickles into')
    parser.add_argument('--seed', type=int, default=0, help='seed of the sampled pose space')
    args = parser.parse_args(argv)
    right = build_standin(args.seed)
    for side, data in (('RIGHT', right), ('LEFT', mirror_to_left(right))):
        path = os.path.join(args.out, f'MANO_{side}.pkl')
        save_mano(path, data, official=True)
        print(f'wrote {path} (procedural MANO stand-in, {side.lower()} hand, seed {args.seed})')


if __name__ == '__main__':
    main()
