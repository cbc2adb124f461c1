"""The procedural stand-in's surface: a right-hand mesh of 778 vertices and 1538 triangles in
MANO's template frame (meters), swept along the skeleton (docs/method.md §9).

Vertex rings swept along the skeleton (a palm tube from the wrist ring, finger tubes with domed
tips), the four finger bases zipped to the palm's distal ring with shared web vertices, and the
thumb tube grown from a hole in the palm's thenar side. synthetic/standin.py rigs it (skinning
weights, joint regressor, shape and pose directions, pose space) into a MANO model file.
"""
import numpy as np
import scipy.sparse

from manopth import constants

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


def _add_palm(mesh, mcp):
    """The palm tube, leaving out the quads where the thumb attaches.

    Returns:
        rows (vertex ids per palm ring), the hole's boundary loop, the ids inside the hole.
    """
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
    return rows, hole_loop, removed


def _add_long_fingers(mesh, fingers):
    """Index to pinky: base rings at the webs (neighbours share the web vertex), then tubes.

    Returns:
        {finger: base ring ids}, {finger: (tip pole id, small tip ring ids)}.
    """
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
    return base, tips


def _zip_knuckles(mesh, last, base):
    """Zip the palm's distal ring `last` to the row of finger bases, back and palm side."""
    half = len(last) // 2
    back = np.concatenate([base['index'][:RING // 2 + 1]]
                          + [base[n][1:RING // 2 + 1] for n in LONG_FINGERS[1:]])
    front = np.concatenate([[base['pinky'][RING // 2]]]
                           + [np.append(base[n][RING // 2 + 1:], base[n][0])
                              for n in LONG_FINGERS[::-1]])
    mesh.zip(last[:half + 1], back)
    mesh.zip(np.append(last[half:], last[0]), front)


def _add_thumb(mesh, thumb, hole_loop):
    """The thumb: its base ring lies halfway between the hole loop and the first tube ring (a
    ruled blend that cannot fold), then the tube.

    Returns:
        (tip pole id, small tip ring ids), V boolean mask of the thumb root (hole loop and base
        ring).
    """
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
    return (pole, small), thumb_root


def _tip_order(mesh, removed, tips):
    """Drop the vertices inside the hole and renumber so the fingertip vertices sit at the
    indices both conventions expect (manopth: the pole; FreiHAND: the small ring's palmar
    vertex; the left model's middle tip 445: its dorsal vertex).

    Returns:
        keep (old ids kept), order (kept index of each new vertex), new index of each kept one,
        old id -> kept index (-1 for the removed).
    """
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
    return keep, order, new_of_kept, old_to_kept


def _build_mesh():
    """Assemble the hand, fingertips already at their conventional indices.

    Returns:
        verts V x 3 (m), faces F x 3, V x 2 joint pair per vertex (before smoothing), part
        name per vertex, and a V boolean mask of the thumb root (hole loop and base ring).
    """
    joints, fingers = _finger_table()
    mesh = _Mesh()
    mcp = np.array([fingers[n]['points'][0] for n in LONG_FINGERS])
    rows, hole_loop, removed = _add_palm(mesh, mcp)
    for v in hole_loop:
        mesh.joint[v] = (0, fingers['thumb']['first'])  # the thenar follows the thumb halfway
    base, tips = _add_long_fingers(mesh, fingers)
    _zip_knuckles(mesh, rows[-1], base)
    tips['thumb'], thumb_root = _add_thumb(mesh, fingers['thumb'], hole_loop)

    keep, order, new_of_kept, old_to_kept = _tip_order(mesh, removed, tips)
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
