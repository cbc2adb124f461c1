"""The procedural MANO stand-in: topology, frame, fingertips, model data, mirror, files.

Checks use independent computations: trimesh for topology and volume, a small NumPy linear
blend skinning written here from docs/method.md §9, a brute-force segment/triangle intersection test.
"""
import numpy as np
import pytest
import trimesh

from manopth import constants
from manopth.io import load_mano
from synthetic.standin import build_standin, example_pose, main, mirror_to_left

FINGER_NAMES = ('thumb', 'index', 'middle', 'ring', 'pinky')
FIRST_JOINT = {'index': 1, 'middle': 4, 'pinky': 7, 'ring': 10, 'thumb': 13}
X_MIRROR = np.array([-1.0, 1.0, 1.0])


@pytest.fixture(scope='module')
def right(standin):
    return standin


@pytest.fixture(scope='module')
def left(right):
    return mirror_to_left(right)


def _edges_used_once(faces):
    directed = {(a, b) for f in faces for a, b in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0]))}
    return [(a, b) for a, b in directed if (b, a) not in directed]


def _capped(verts, faces):
    """Close the wrist opening with a fan to the centroid of its ring, wound like the mesh."""
    boundary = _edges_used_once(faces)
    ring = sorted({v for e in boundary for v in e})
    centre = len(verts)
    cap = [(b, a, centre) for a, b in boundary]
    return trimesh.Trimesh(np.vstack([verts, verts[ring].mean(axis=0)]),
                           np.vstack([faces, cap]), process=False)


def _rodrigues(axisang):
    angle = np.linalg.norm(axisang)
    if angle < 1e-12:
        return np.eye(3)
    k = axisang / angle
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def _forward(model, pose48, betas):
    """docs/method.md §9 forward model in plain NumPy: verts (778 x 3, m) and joints (16 x 3, m)."""
    v_shaped = model['v_template'] + model['shapedirs'] @ betas
    rest_joints = model['J_regressor'] @ v_shaped
    rots = [_rodrigues(pose48[3 * k:3 * k + 3]) for k in range(16)]
    features = np.concatenate([(r - np.eye(3)).ravel() for r in rots[1:]])
    v_posed = v_shaped + model['posedirs'] @ features
    parents = model['kintree_table'][0].astype(np.int64)
    world = []
    for k in range(16):
        local = np.eye(4)
        local[:3, :3] = rots[k]
        local[:3, 3] = rest_joints[k] - (rest_joints[parents[k]] if k else 0)
        world.append(local if k == 0 else world[parents[k]] @ local)
    world = np.stack(world)
    joints = world[:, :3, 3]
    moved = world.copy()
    moved[:, :3, 3] -= np.einsum('kij,kj->ki', world[:, :3, :3], rest_joints)
    blend = np.einsum('vk,kij->vij', model['weights'], moved)
    verts = np.einsum('vij,vj->vi', blend[:, :3, :3], v_posed) + blend[:, :3, 3]
    return verts, joints


def _segment_hits(p0, p1, tris):
    """Which of the segments p0 -> p1 (N x 3) cross the triangles (N x 3 x 3), strictly."""
    e1, e2 = tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]
    d = p1 - p0
    h = np.cross(d, e2)
    det = np.einsum('ij,ij->i', e1, h)
    ok = np.abs(det) > 1e-18
    det = np.where(ok, det, 1.0)
    s = p0 - tris[:, 0]
    u = np.einsum('ij,ij->i', s, h) / det
    q = np.cross(s, e1)
    w = np.einsum('ij,ij->i', d, q) / det
    t = np.einsum('ij,ij->i', e2, q) / det
    return ok & (u >= 0) & (w >= 0) & (u + w <= 1) & (t > 0) & (t < 1)


# --- topology --------------------------------------------------------------------------------

def test_keys_shapes_and_dtypes(right):
    assert right['v_template'].shape == (constants.NUM_VERTS, 3)
    assert right['f'].shape == (constants.NUM_FACES, 3) and right['f'].dtype == np.uint32
    assert right['J_regressor'].shape == (16, 778) and right['J_regressor'].format == 'csc'
    assert right['J'].shape == (16, 3)
    assert right['weights'].shape == (778, 16)
    assert right['posedirs'].shape == (778, 3, 135)
    assert right['shapedirs'].shape == (778, 3, 10)
    assert right['hands_components'].shape == (45, 45)
    assert right['hands_mean'].shape == (45,)
    assert right['hands_coeffs'].shape == (1554, 45)
    assert (right['bs_style'], right['bs_type']) == ('lbs', 'lrotmin')
    for key, size in (('pose', 48), ('betas', 10), ('trans', 3)):
        assert np.array_equal(right[key], np.zeros(size))
    assert right['standin'] is True
    assert right['f'].max() == 777 and len(np.unique(right['f'])) == 778  # every vertex used


def test_kintree(right):
    kintree = right['kintree_table']
    assert kintree.dtype == np.int64
    assert kintree[0, 0] == 2 ** 32 - 1
    assert list(kintree[0, 1:]) == [0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14]
    assert list(kintree[1]) == list(range(16))


def test_single_wrist_opening_of_16_vertices(right):
    boundary = _edges_used_once(right['f'])
    assert len(boundary) == 16
    following = dict(boundary)
    assert len(following) == 16  # each boundary vertex starts exactly one boundary edge
    loop = [boundary[0][0]]
    while following[loop[-1]] != loop[0]:
        loop.append(following[loop[-1]])
    assert len(loop) == 16  # one loop through all of them
    ring = right['v_template'][loop]
    assert ring[:, 0].min() > right['v_template'][:, 0].max() - 0.005  # at the wrist end (+x)


def test_closed_manifold_with_outward_winding(right):
    mesh = trimesh.Trimesh(right['v_template'], right['f'], process=False)
    assert mesh.euler_number == 1  # a disc: V - E + F = 1
    assert mesh.is_winding_consistent
    capped = _capped(right['v_template'], right['f'].astype(np.int64))
    assert capped.is_watertight and capped.is_winding_consistent
    assert capped.euler_number == 2
    assert 150e-6 < capped.volume < 450e-6  # m^3, a hand's volume, positive = outward normals


def test_no_degenerate_or_self_intersecting_triangles(right):
    mesh = trimesh.Trimesh(right['v_template'], right['f'], process=False)
    assert mesh.area_faces.min() > 0.2e-6  # m^2
    assert np.degrees(mesh.face_angles.min()) > 3.0
    faces = right['f'].astype(np.int64)
    tris = right['v_template'][faces]
    lo, hi = tris.min(axis=1), tris.max(axis=1)
    crossings = 0
    for i in range(len(faces)):
        other = np.flatnonzero(np.all(lo <= hi[i], axis=1) & np.all(hi >= lo[i], axis=1))
        other = other[(other > i) & ~np.isin(faces[other], faces[i]).any(axis=1)]
        for e in range(3):
            a, b = tris[i, e], tris[i, (e + 1) % 3]
            crossings += _segment_hits(np.tile(a, (len(other), 1)), np.tile(b, (len(other), 1)),
                                       tris[other]).sum()
            crossings += _segment_hits(tris[other, e], tris[other, (e + 1) % 3],
                                       np.repeat(tris[i][None], len(other), axis=0)).sum()
    assert crossings == 0


# --- frame and fingertips -----------------------------------------------------------------------

def test_template_frame_and_size(right):
    v, joints = right['v_template'], right['J']
    assert np.allclose(joints[0], [0.096, 0.006, 0.006], atol=0.003)  # docs/method.md §9 wrist
    extent = np.ptp(v, axis=0)
    assert 0.17 < extent[0] < 0.21 and 0.035 < extent[1] < 0.07 and 0.14 < extent[2] < 0.19
    tips = {n: v[t] for n, t in zip(FINGER_NAMES, constants.TIP_VERTS_MANOPTH_RIGHT)}
    for name in ('index', 'middle', 'ring', 'pinky'):
        assert tips[name][0] < joints[FIRST_JOINT[name]][0] - 0.04  # fingers point to -x
    assert tips['thumb'][2] > 0.07 and tips['pinky'][2] < -0.05  # thumb +z, pinky -z
    assert tips['middle'][0] == v[:, 0].min()  # the middle finger reaches furthest
    thumb_cmc = joints[13]
    assert thumb_cmc[1] < joints[[1, 4, 7, 10], 1].min()  # CMC low, on the palm side


@pytest.mark.parametrize('finger', range(5))
def test_tip_vertices_at_finger_ends(right, finger):
    name = FINGER_NAMES[finger]
    v, joints, weights = right['v_template'], right['J'], right['weights']
    last = FIRST_JOINT[name] + 2
    direction = joints[last] - joints[last - 1]
    direction /= np.linalg.norm(direction)
    on_last = np.flatnonzero(weights.argmax(axis=1) == last)
    reach = v[on_last] @ direction
    top = on_last[np.argsort(-reach)[:8]]
    for tips in (constants.TIP_VERTS_MANOPTH_RIGHT, constants.TIP_VERTS_MANOPTH_LEFT,
                 constants.TIP_VERTS_FREIHAND):
        assert tips[finger] in top, f'{name} tip {tips[finger]}'
        assert reach.max() - v[tips[finger]] @ direction < 0.0015


def test_finger_flexion_is_positive_about_z(right):
    # Flexing the middle finger's MCP and PIP by +90 degrees about +z curls it into the palm.
    pose = np.zeros(48)
    pose[3 * 4 + 2] = pose[3 * 5 + 2] = np.pi / 2
    verts, _ = _forward(right, pose, np.zeros(10))
    tip = constants.TIP_VERTS_MANOPTH_RIGHT[2]
    rest_tip = right['v_template'][tip]
    assert verts[tip, 1] < rest_tip[1] - 0.02  # towards -y, the palm side
    palm_side = right['v_template'][right['weights'][:, 0] > 0.99, 1].min()
    assert verts[tip, 1] < palm_side  # in front of the palm


# --- model data -----------------------------------------------------------------------------

def test_weights_nonnegative_normalised_and_smooth(right):
    weights = right['weights']
    assert weights.min() >= 0
    assert np.allclose(weights.sum(axis=1), 1, atol=1e-12)
    edges = trimesh.Trimesh(right['v_template'], right['f'], process=False).edges_unique
    change = np.abs(weights[edges[:, 0]] - weights[edges[:, 1]]).max(axis=1)
    assert change.max() < 0.4 and np.percentile(change, 90) < 0.3
    # A vertex on a phalanx follows the joint at the phalanx's proximal end.
    for tips in (constants.TIP_VERTS_MANOPTH_RIGHT, constants.TIP_VERTS_FREIHAND):
        for name, tip in zip(FINGER_NAMES, tips):
            assert weights[tip].argmax() == FIRST_JOINT[name] + 2
    assert weights[_edges_used_once(right['f'])[0][0]].argmax() == 0  # wrist ring: wrist


def test_joint_regressor_convex_and_local(right):
    regressor = right['J_regressor'].toarray()
    assert regressor.min() >= 0
    assert np.allclose(regressor.sum(axis=1), 1, atol=1e-12)
    assert np.allclose(right['J'], regressor @ right['v_template'], atol=1e-15)
    for j in range(16):
        used = right['v_template'][regressor[j] > 0]
        assert np.linalg.norm(used - right['J'][j], axis=1).max() < 0.025


def test_shapedirs_pca_like(right):
    dirs = right['shapedirs'].reshape(-1, 10)
    gram = dirs.T @ dirs
    assert np.allclose(gram - np.diag(np.diag(gram)), 0, atol=1e-12)  # orthogonal
    rms = np.sqrt(np.diag(gram) / 778)
    assert np.all(np.diff(rms) < 0)  # ordered by decreasing effect
    largest = np.linalg.norm(right['shapedirs'], axis=1).max(axis=0)
    assert np.all((largest > 0.001) & (largest < 0.01))  # mm-scale per unit beta
    bigger = right['v_template'] + 2 * right['shapedirs'][:, :, 0]
    assert np.ptp(bigger, axis=0).prod() > np.ptp(right['v_template'], axis=0).prod()


def test_posedirs_small_and_local(right):
    posedirs = right['posedirs'].reshape(778, 3, 15, 9)
    weights = right['weights']
    for k in range(1, 16):
        parent = constants.MANO_PARENTS[k]
        moved = np.abs(posedirs[:, :, k - 1]).max(axis=(1, 2)) > 0
        assert moved.any()
        assert np.all(weights[moved, k] * weights[moved, parent] > 0)
    # 90 degrees about any axis moves no vertex by more than a few millimetres.
    for axis in np.eye(3):
        feature = (_rodrigues(np.pi / 2 * axis) - np.eye(3)).ravel()
        offsets = np.einsum('vcjf,f->vcj', posedirs, feature)
        assert np.linalg.norm(offsets, axis=1).max() < 0.005


def test_pose_space(right):
    components, coeffs, mean = right['hands_components'], right['hands_coeffs'], right['hands_mean']
    assert np.allclose(components @ components.T, np.eye(45), atol=1e-12)
    assert np.allclose(coeffs.mean(axis=0), 0, atol=1e-12)  # centred on hands_mean
    assert np.all(np.diff(coeffs.var(axis=0)) <= 1e-15)  # decreasing variance
    poses = coeffs @ components + mean
    assert np.abs(poses).max() < np.pi
    # The mean pose is a relaxed hand: every long fingertip moves towards the palm a little.
    verts, _ = _forward(right, np.concatenate([np.zeros(3), mean]), np.zeros(10))
    for name, tip in zip(FINGER_NAMES[1:], constants.TIP_VERTS_MANOPTH_RIGHT[1:]):
        drop = right['v_template'][tip, 1] - verts[tip, 1]
        assert 0.005 < drop < 0.08, name


def test_example_poses(right):
    assert np.array_equal(example_pose('flat', right['J']), np.zeros(45))
    tips = list(constants.TIP_VERTS_MANOPTH_RIGHT)
    rest_reach = np.linalg.norm(right['v_template'][tips] - right['J'][0], axis=1)
    fist, _ = _forward(right, np.concatenate([np.zeros(3), example_pose('fist', right['J'])]),
                       np.zeros(10))
    fist_reach = np.linalg.norm(fist[tips] - right['J'][0], axis=1)
    assert np.all(fist_reach[1:] < 0.7 * rest_reach[1:])  # every long finger curled in
    point, _ = _forward(right, np.concatenate([np.zeros(3), example_pose('point', right['J'])]),
                        np.zeros(10))
    assert np.allclose(point[tips[1]], right['v_template'][tips[1]], atol=1e-3)  # index straight
    with pytest.raises(ValueError, match='fist'):
        example_pose('wave', right['J'])


# --- determinism, files, mirror --------------------------------------------------------------

def test_deterministic_and_seed_only_changes_pose_space(right):
    again = build_standin(seed=0)
    other = build_standin(seed=1)
    for key, value in right.items():
        if key == 'J_regressor':
            assert (value != again[key]).nnz == 0 and (value != other[key]).nnz == 0
        elif isinstance(value, np.ndarray):
            assert np.array_equal(value, again[key]), key
            if not key.startswith('hands_'):
                assert np.array_equal(value, other[key]), key
    assert not np.array_equal(right['hands_mean'], other['hands_mean'])


def test_cli_files_byte_identical_and_loadable(tmp_path, right, capsys):
    for run in ('a', 'b'):
        main(['--out', str(tmp_path / run), '--seed', '0'])
    assert 'MANO_RIGHT.pkl' in capsys.readouterr().out
    for name in ('MANO_RIGHT.pkl', 'MANO_LEFT.pkl'):
        assert (tmp_path / 'a' / name).read_bytes() == (tmp_path / 'b' / name).read_bytes()
    loaded = load_mano(tmp_path / 'a' / 'MANO_RIGHT.pkl')
    assert loaded['standin'] is True
    for key in ('v_template', 'weights', 'posedirs', 'shapedirs', 'hands_components', 'J'):
        assert np.array_equal(loaded[key], right[key]), key
    assert np.array_equal(loaded['f'], right['f'])
    assert np.array_equal(loaded['J_regressor'].toarray(), right['J_regressor'].toarray())
    assert list(loaded['kintree_table'][0]) == list(right['kintree_table'][0])


def test_left_is_the_mirror_image(right, left):
    assert np.array_equal(left['v_template'], right['v_template'] * X_MIRROR)
    assert np.array_equal(left['J'], right['J'] * X_MIRROR)
    capped = _capped(left['v_template'], left['f'].astype(np.int64))
    assert capped.is_winding_consistent and capped.volume > 0
    assert np.allclose(left['hands_components'] @ left['hands_components'].T, np.eye(45))
    # Posing the left model with the mirrored pose gives the mirrored right-hand result:
    # axis-angle (a, b, c) mirrors to (a, -b, -c); shape coefficients are shared.
    rng = np.random.default_rng(3)
    pose = rng.normal(scale=0.4, size=48)
    betas = rng.normal(size=10)
    right_verts, right_joints = _forward(right, pose, betas)
    left_verts, left_joints = _forward(left, pose * np.tile([1.0, -1.0, -1.0], 16), betas)
    assert np.allclose(left_verts, right_verts * X_MIRROR, atol=1e-12)
    assert np.allclose(left_joints, right_joints * X_MIRROR, atol=1e-12)
    # The PCA pose space mirrors the same way.
    right_pose = right['hands_coeffs'][7] @ right['hands_components'] + right['hands_mean']
    left_pose = left['hands_coeffs'][7] @ left['hands_components'] + left['hands_mean']
    assert np.allclose(left_pose, right_pose * np.tile([1.0, -1.0, -1.0], 15))
