"""Tests of the local FreiHAND evaluation (docs/method.md §8) against independent computations:
identities (exact, shifted and similarity-transformed predictions), a three-sample case
worked out by hand, scipy's orthogonal Procrustes and brute-force nearest neighbours."""
import json
import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.transform import Rotation

from dataset.freihand import eval as fe

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SCORE_KEYS = ('xyz_mean3d', 'xyz_auc3d', 'xyz_al_mean3d', 'xyz_al_auc3d',
              'mesh_mean3d', 'mesh_auc3d', 'mesh_al_mean3d', 'mesh_al_auc3d',
              'f_score_5', 'f_al_score_5', 'f_score_15', 'f_al_score_15')  # docs/method.md §8, in order
# Aligned AUC of an exact prediction: the +1e-8 of the normalisation leaves ~1e-9 m errors,
# so PCK(t=0) = 0 and PCK(t>0) = 1: trapezoid sum (0 + 1)/2 + 98 * 1 = 98.5 over 99 intervals.
AUC_EXACT_ALIGNED = 98.5 / 99


def random_hand(rng, num_samples, num_points):
    """Hand-sized random point sets: about 5 cm spread around a point 0.4-0.8 m in front."""
    centre = rng.uniform([-0.1, -0.1, 0.4], [0.1, 0.1, 0.8], size=(num_samples, 1, 3))
    return centre + rng.normal(scale=0.05, size=(num_samples, num_points, 3))


def test_exact_prediction_scores_perfectly():
    rng = np.random.default_rng(0)
    xyz, verts = random_hand(rng, 4, 21), random_hand(rng, 4, 778)
    scores = fe.evaluate(xyz, verts, xyz.copy(), verts.copy())
    for prefix in ('xyz', 'mesh'):
        assert scores[f'{prefix}_mean3d'] == 0.0
        assert scores[f'{prefix}_auc3d'] == 1.0
        assert scores[f'{prefix}_al_mean3d'] < 1e-6  # cm
        assert AUC_EXACT_ALIGNED - 1e-12 <= scores[f'{prefix}_al_auc3d'] <= 1.0
    for key in ('f_score_5', 'f_al_score_5', 'f_score_15', 'f_al_score_15'):
        assert scores[key] == 1.0
    assert scores['mesh_available'] and scores['num_pred_verts'] == 778


def test_shift_by_one_cm():
    rng = np.random.default_rng(1)
    xyz, verts = random_hand(rng, 5, 21), random_hand(rng, 5, 778)
    direction = np.array([1.0, -2.0, 2.0]) / 3.0  # unit vector
    shift = 0.01 * direction  # exactly 1 cm
    scores = fe.evaluate(xyz, verts, xyz + shift, verts + shift)
    assert scores['xyz_mean3d'] == pytest.approx(1.0, abs=1e-9)
    assert scores['mesh_mean3d'] == pytest.approx(1.0, abs=1e-9)
    assert scores['xyz_al_mean3d'] < 1e-6
    assert scores['mesh_al_mean3d'] < 1e-6
    # Every error is 1 cm: PCK is 0 up to t_19 = 0.009596 and 1 from t_20 = 0.010101 on, so
    # S = p_0/2 + (p_1 + ... + p_98) + p_99/2 = 0 + 79 + 1/2 = 79.5 and AUC = S / 99.
    assert scores['xyz_auc3d'] == pytest.approx(79.5 / 99, abs=1e-12)
    assert scores['mesh_auc3d'] == pytest.approx(79.5 / 99, abs=1e-12)


def test_similarity_copy_aligns_to_zero():
    rng = np.random.default_rng(2)
    xyz, verts = random_hand(rng, 6, 21), random_hand(rng, 6, 778)
    def random_similarity(points, seed):
        rotation = Rotation.random(6, random_state=seed).as_matrix()  # (6, 3, 3), det +1
        scale = rng.uniform(0.5, 2.0, size=(6, 1, 1))
        translation = rng.normal(scale=0.2, size=(6, 1, 3))
        return scale * points @ np.swapaxes(rotation, 1, 2) + translation

    # Different transforms for keypoints and vertices: each set is aligned with its own.
    xyz_pred, verts_pred = random_similarity(xyz, 3), random_similarity(verts, 4)
    scores = fe.evaluate(xyz, verts, xyz_pred, verts_pred)
    assert scores['xyz_mean3d'] > 1.0  # the unaligned copy is far off
    assert scores['xyz_al_mean3d'] < 1e-6
    assert scores['mesh_al_mean3d'] < 1e-6
    assert scores['f_al_score_5'] == 1.0 and scores['f_al_score_15'] == 1.0
    np.testing.assert_allclose(fe.align_similarity(verts, verts_pred), verts, atol=1e-8)


@pytest.mark.parametrize('num_points', [21, 778])
def test_procrustes_agrees_with_scipy(num_points):
    rng = np.random.default_rng(num_points)
    gt = random_hand(rng, 8, num_points)
    rotation = Rotation.random(8, random_state=4).as_matrix()
    pred = gt @ rotation * 1.3 + rng.normal(scale=0.02, size=gt.shape)
    transform = fe.fit_similarity(gt, pred)
    aligned = fe.align_similarity(gt, pred)
    for i in range(8):
        gt_c = gt[i] - gt[i].mean(axis=0)
        pred_c = pred[i] - pred[i].mean(axis=0)
        gt_n = gt_c / (np.linalg.norm(gt_c) + 1e-8)
        pred_n = pred_c / (np.linalg.norm(pred_c) + 1e-8)
        # scipy: R minimising |gt_n R - pred_n|, equivalently |gt_n - pred_n R^T|.
        rotation, scale = orthogonal_procrustes(gt_n, pred_n)
        np.testing.assert_allclose(transform.rotation[i], rotation, atol=1e-10)
        assert transform.scale[i] == pytest.approx(scale, rel=1e-12)
        # docs/method.md §8: pred_aligned = (pred_n R^T) * s * |gt_c| + mean(gt); the 1e-8 difference
        # between |gt_c| and the normaliser |gt_c| + 1e-8 moves points by < 1e-8 m.
        expected = pred_n @ rotation.T * scale * np.linalg.norm(gt_c) + gt[i].mean(axis=0)
        np.testing.assert_allclose(aligned[i], expected, atol=1e-8)


def hand_worked_case():
    """Three samples whose scores are worked out by hand in `test_three_samples_by_hand`.

    Ground-truth vertices: a 28 x 28 grid in the plane z = 0 with 6 cm spacing (first 778 grid
    points row by row; vertex 1 is 6 cm from vertex 0), so every vertex's nearest other vertex is
    6 cm away. Keypoints: any 21 points (random).
    Sample 0: exact prediction.
    Sample 1: keypoints shifted by 1 cm along x; vertices shifted by exactly 5 mm along z
              (z = 0 -> 0.005: the distance is exactly 0.005 m in floating point).
    Sample 2: keypoints shifted by 3 cm along x; vertices exact except predicted vertex 0, put
              onto ground-truth vertex 1 (6 cm from where it belongs).
    """
    rng = np.random.default_rng(5)
    rows, columns = np.divmod(np.arange(778), 28)  # row-major: vertex 1 = (0.06, 0, 0)
    verts = np.stack([columns * 0.06, rows * 0.06, np.zeros(778)], axis=-1)
    verts_gt = np.stack([verts] * 3)
    xyz_gt = random_hand(rng, 3, 21)
    xyz_pred = xyz_gt + np.array([[0.0, 0, 0], [0.01, 0, 0], [0.03, 0, 0]])[:, None]
    verts_pred = verts_gt.copy()
    verts_pred[1, :, 2] = 0.005
    verts_pred[2, 0] = verts_gt[2, 1]
    return xyz_gt, verts_gt, xyz_pred, verts_pred


# Hand-worked values of `hand_worked_case` (thresholds t_i = 0.05 i / 99, i = 0..99, step
# h = 0.05/99; AUC = h * S / 0.05 = S / 99 with the trapezoid sum
# S = p_0/2 + p_1 + ... + p_98 + p_99/2):
# - keypoints, unaligned: every keypoint has errors {0, 1 cm, 3 cm} over the samples.
#   Mean = (0 + 1 + 3)/3 = 4/3 cm. 0.01 lies between t_19 = 0.009596 and t_20 = 0.010101,
#   0.03 between t_59 = 0.029798 and t_60 = 0.030303, so p_i = 1/3 (i <= 19), 2/3 (20..59),
#   1 (60..99): S = 1/6 + 19/3 + 40*2/3 + 39 + 1/2 = 1/6 + 33 + 39 + 1/2 = 218/3 -> AUC 218/297.
# - vertices, unaligned: vertex 0 has errors {0, 0.5 cm, 6 cm}, the other 777 {0, 0.5 cm, 0}.
#   Mean = (6.5/3 + 777 * 0.5/3) / 778 = (6.5 + 388.5) / 2334 = 395/2334 cm.
#   0.005 lies between t_9 = 0.004545 and t_10 = 0.005051; 0.06 is above every threshold.
#   Others: p = 2/3 (i <= 9), 1 (10..99): S = 1/3 + 9*2/3 + 89 + 1/2 = 575/6 -> 575/594.
#   Vertex 0: p = 1/3 (i <= 9), 2/3 (10..99): S = 1/6 + 9/3 + 89*2/3 + 1/3 = 377/6 -> 377/594.
#   Mean over vertices: (777 * 575 + 377) / (778 * 594) = 447152/462132.
# - F-scores, unaligned (strict <):
#   sample 0: every distance 0 -> P = R = 1 -> F = 1 at 5 and 15 mm.
#   sample 1: every nearest distance is exactly 5 mm (the next vertex is >= 6 cm away):
#     at 5 mm P = R = 0 -> F = 0; at 15 mm P = R = 1 -> F = 1.
#   sample 2: every predicted vertex sits on a gt vertex -> P = 1; gt vertex 0's nearest
#     prediction is 6 cm away, all others 0 -> R = 777/778; at both thresholds
#     F = 2 * (777/778) / (1 + 777/778) = 1554/1555.
#   F@5 = (1 + 0 + 1554/1555)/3 = 3109/4665; F@15 = (1 + 1 + 1554/1555)/3 = 4664/4665.
HAND_WORKED = {
    'xyz_mean3d': Fraction(4, 3),
    'xyz_auc3d': Fraction(218, 297),
    'mesh_mean3d': Fraction(395, 2334),
    'mesh_auc3d': Fraction(447152, 462132),
    'f_score_5': Fraction(3109, 4665),
    'f_score_15': Fraction(4664, 4665),
}


def test_three_samples_by_hand():
    assert np.sqrt(0.005 ** 2) == 0.005  # the 5 mm distance of sample 1 is exact
    scores = fe.evaluate(*hand_worked_case())
    for key, value in HAND_WORKED.items():
        assert scores[key] == pytest.approx(float(value), abs=1e-12), key
    assert scores['xyz_al_mean3d'] < 1e-6  # only translations on the keypoints
    # AUC is linear in the curve: the mean over points of the AUCs is the AUC of the mean curve.
    mean_curve = scores['pck_curves']['mesh']
    auc_of_mean_curve = np.trapezoid(mean_curve, fe.PCK_THRESHOLDS_M) / 0.05
    assert auc_of_mean_curve == pytest.approx(float(HAND_WORKED['mesh_auc3d']))


def test_pck_thresholds_and_curve():
    np.testing.assert_allclose(fe.PCK_THRESHOLDS_M, np.arange(100) * (0.05 / 99), rtol=1e-15, atol=0)
    errors = np.array([[0.0, 0.02], [0.01, 0.06]])  # 2 samples x 2 points
    curves = fe.pck_curves(errors, np.array([0.0, 0.01, 0.05]))
    # point 0: errors {0, 0.01}: <= 0 -> 1/2, <= 0.01 -> 2/2, <= 0.05 -> 1
    # point 1: errors {0.02, 0.06}: 0, 0, 1/2
    np.testing.assert_array_equal(curves, [[0.5, 1.0, 1.0], [0.0, 0.0, 0.5]])


def test_nearest_distances_match_brute_force():
    rng = np.random.default_rng(6)
    a, b = random_hand(rng, 5, 50), random_hand(rng, 5, 70)
    brute = np.linalg.norm(a[:, :, None] - b[:, None], axis=-1).min(axis=2)
    np.testing.assert_allclose(fe.nearest_distances(a, b), brute, rtol=1e-12)
    np.testing.assert_allclose(fe.nearest_distances(a, b, num_workers=2), brute, rtol=1e-12)
    cut = fe.nearest_distances(a, b, max_distance=0.01)
    np.testing.assert_array_equal(np.isinf(cut), brute >= 0.01)
    np.testing.assert_allclose(cut[brute < 0.01], brute[brute < 0.01], rtol=1e-12)


def test_f_scores_small_sets_by_hand():
    gt = np.array([[[0.0, 0, 0], [1.0, 0, 0]]])
    # prediction: one point 3 mm from gt 0, one 10 mm from gt 1, one far away
    pred = np.array([[[0.003, 0, 0], [1.0, 0.01, 0], [5.0, 0, 0]]])
    # 5 mm: R = 1/2 (gt 0 only), P = 1/3 -> F = 2 * 1/6 / (5/6) = 2/5
    # 15 mm: R = 1, P = 2/3 -> F = (4/3) / (5/3) = 4/5
    np.testing.assert_allclose(fe.f_scores(gt, pred), [[0.4, 0.8]], rtol=1e-12)
    assert fe.f_scores(gt, gt + 1.0).tolist() == [[0.0, 0.0]]  # P = R = 0 -> 0, not NaN
    # Strict <: a distance of exactly 5 mm (z = 0 -> 0.005, exact in floating point) is a miss.
    # gt 0 and pred 0 are 5 mm apart, gt 1 = pred 1: at 5 mm P = R = 1/2 -> F = 1/2; at 15 mm F = 1.
    pred = np.array([[[0.0, 0, 0.005], [1.0, 0, 0]]])
    np.testing.assert_allclose(fe.f_scores(gt, pred), [[0.5, 1.0]], rtol=1e-12)


def test_other_vertex_count_uses_keypoint_transform(tmp_path):
    rng = np.random.default_rng(7)
    xyz, verts = random_hand(rng, 2, 21), random_hand(rng, 2, 778)
    rotation = Rotation.from_euler('xyz', [30, -50, 70], degrees=True).as_matrix()

    def transform(points):
        return 1.5 * points @ rotation.T + np.array([0.3, -0.2, 0.4])

    far = rng.normal(scale=0.01, size=(2, 222, 3)) + 5.0  # > 4 m from every gt vertex
    verts_pred = transform(np.concatenate([verts, far], axis=1))  # (2, 1000, 3)
    scores = fe.evaluate(xyz, verts, transform(xyz), verts_pred)
    assert not scores['mesh_available'] and scores['num_pred_verts'] == 1000
    for key in fe.MESH_SCORE_KEYS:
        assert scores[key] is None
    assert set(scores['pck_curves']) == {'xyz', 'xyz_al'}
    # Unaligned: the transformed copy is ~0.5 m away -> nothing within 15 mm.
    assert scores['f_score_5'] == 0.0 and scores['f_score_15'] == 0.0
    # Aligned with the keypoint transform, the 778 copies land on the gt vertices (P counts
    # 778 of 1000 predicted, R = 1): F = 2 * 0.778 / 1.778 = 778/889 at both thresholds.
    assert scores['f_al_score_5'] == pytest.approx(778 / 889, abs=1e-12)
    assert scores['f_al_score_15'] == pytest.approx(778 / 889, abs=1e-12)
    report = fe.format_report(scores)
    assert report.count('unavailable: the prediction has 1000 vertices per sample') == 2
    out_dir = tmp_path / 'eval'
    written = sorted(os.path.basename(p) for p in fe.write_outputs(scores, out_dir))
    assert written == ['pck_data.json', 'pck_xyz.png', 'pck_xyz_aligned.png', 'scores.html',
                       'scores.txt']
    keys = [line.split(': ')[0] for line in (out_dir / 'scores.txt').read_text().splitlines()]
    assert keys == [key for key in SCORE_KEYS if not key.startswith('mesh_')]
    assert '<td>mesh_mean3d</td><td>unavailable</td>' in (out_dir / 'scores.html').read_text()


def test_report_layout_matches_seed():
    scores = {'xyz_auc3d': 0.229, 'xyz_mean3d': 6.14, 'xyz_al_auc3d': 0.871, 'xyz_al_mean3d': 0.65,
              'mesh_auc3d': 0.228, 'mesh_mean3d': 6.14, 'mesh_al_auc3d': 0.866,
              'mesh_al_mean3d': 0.67, 'f_score_5': 0.130, 'f_al_score_5': 0.724,
              'f_score_15': 0.392, 'f_al_score_15': 0.981, 'num_pred_verts': 778}
    seed = ('Evaluation 3D KP results:\n'
            'auc=0.229, mean_kp3d_avg=6.14 cm\n'
            'Evaluation 3D KP ALIGNED results:\n'
            'auc=0.871, mean_kp3d_avg=0.65 cm\n'
            '\n'
            'Evaluation 3D MESH results:\n'
            'auc=0.228, mean_kp3d_avg=6.14 cm\n'
            'Evaluation 3D MESH ALIGNED results:\n'
            'auc=0.866, mean_kp3d_avg=0.67 cm\n'
            '\n'
            'F-scores\n'
            'F@5.0mm = 0.130 \tF_aligned@5.0mm = 0.724\n'
            'F@15.0mm = 0.392 \tF_aligned@15.0mm = 0.981')
    assert fe.format_report(scores) == seed


def write_json(path, value):
    with open(path, 'w') as f:
        json.dump(value, f)


@pytest.fixture
def tiny_freihand(tmp_path):
    """A FreiHAND root with the hand-worked ground truth and a matching pred.json."""
    xyz_gt, verts_gt, xyz_pred, verts_pred = hand_worked_case()
    gt_dir = tmp_path / 'FreiHAND'
    gt_dir.mkdir()
    write_json(gt_dir / 'evaluation_xyz.json', xyz_gt.tolist())
    write_json(gt_dir / 'evaluation_verts.json', verts_gt.tolist())
    pred = [xyz_pred.tolist(), verts_pred.tolist()]
    write_json(tmp_path / 'pred.json', pred)
    return gt_dir, tmp_path / 'pred.json', pred


def check_outputs(out_dir):
    lines = (out_dir / 'scores.txt').read_text().splitlines()
    values = dict(line.split(': ') for line in lines)
    assert list(values) == list(SCORE_KEYS)
    for key, value in HAND_WORKED.items():
        assert float(values[key]) == pytest.approx(float(value), abs=1e-6), key  # written as %f
    pck = json.loads((out_dir / 'pck_data.json').read_text())
    assert pck['thresholds_m'] == pytest.approx(list(np.arange(100) * 0.05 / 99), abs=1e-15)
    assert set(pck['curves']) == {'xyz', 'xyz_al', 'mesh', 'mesh_al'}
    assert len(pck['per_keypoint']['xyz']) == 21
    page = (out_dir / 'scores.html').read_text()
    for png in ('pck_xyz.png', 'pck_xyz_aligned.png', 'pck_mesh.png', 'pck_mesh_aligned.png'):
        assert (out_dir / png).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
        assert f'src="{png}"' in page
    assert 'auc=0.734, mean_kp3d_avg=1.33 cm' in page
    assert not [p for p in os.listdir(out_dir) if p.endswith('.tmp')]


def test_cli_end_to_end(tiny_freihand, tmp_path, capsys):
    gt_dir, pred_path, _ = tiny_freihand
    out_dir = tmp_path / 'eval'
    fe.main(['--gt', str(gt_dir), '--pred', str(pred_path), '--out', str(out_dir)])
    printed = capsys.readouterr().out
    assert printed.startswith('Evaluation 3D KP results:\nauc=0.734, mean_kp3d_avg=1.33 cm\n')
    assert 'F@5.0mm = 0.666 \tF_aligned@5.0mm' in printed  # 3109/4665 = 0.66645
    check_outputs(out_dir)


def test_cli_as_module():
    # `python -m dataset.freihand.eval` reaches main (the evaluation itself: test_cli_end_to_end).
    result = subprocess.run([sys.executable, '-m', 'dataset.freihand.eval', '--help'],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('usage: python -m dataset.freihand.eval')
    assert all(option in result.stdout for option in ('--gt', '--pred', '--cache', '--out'))


def _set(pred, list_index, sample, point, coordinate, value):
    pred[list_index][sample][point][coordinate] = value
    return pred


# (name, how to break a valid [xyz_list, verts_list] of 3 samples, fragments the message must hold)
MALFORMED = [
    ('top level dict', lambda p: {'xyz': p[0]}, ['top level is dict', '[xyz_list, verts_list]']),
    ('three lists', lambda p: p + [[]], ['top level is a list of 3 entries', 'two lists']),
    ('verts not a list', lambda p: [p[0], 5], ['verts_list (pred[1]) is int 5']),
    ('too few samples', lambda p: [p[0][:2], p[1][:2]],
     ['the lists have 2 samples, the ground truth has 3']),
    ('lists differ', lambda p: [p[0], p[1][:2]],
     ['xyz_list (pred[0]) has 3 samples but verts_list (pred[1]) has 2']),
    ('20 keypoints', lambda p: [p[0][:1] + [p[0][1][:20]] + p[0][2:], p[1]],
     ['xyz_list (pred[0]) sample 1 has 20 points, expected 21']),
    ('2 coordinates', lambda p: _set(p, 0, 2, 4, slice(2, 3), []),
     ['xyz_list (pred[0]) sample 2 point 4 is a list of 2 entries', 'expected [x, y, z]']),
    ('flat keypoints', lambda p: [[sum(p[0][0], [])] + p[0][1:], p[1]],
     ['xyz_list (pred[0]) sample 0 is a flat list of 63 values, expected 21 points']),
    ('777 vertices', lambda p: [p[0], [p[1][0], p[1][1][:777], p[1][2]]],
     ['verts_list (pred[1]) sample 1 has 777 points, expected 778']),
    ('sample not a list', lambda p: [p[0], [p[1][0], p[1][1], 'mesh']],
     ['verts_list (pred[1]) sample 2 is str', 'expected a list of 778 points']),
    ('NaN', lambda p: _set(p, 1, 2, 5, 1, float('nan')),
     ['verts_list (pred[1]) sample 2 point 5 coordinate 1 is nan', 'finite']),
    ('Infinity', lambda p: _set(p, 0, 0, 0, 2, float('inf')),
     ['xyz_list (pred[0]) sample 0 point 0 coordinate 2 is inf']),
    ('string number', lambda p: _set(p, 0, 1, 3, 0, '0.1'),
     ["xyz_list (pred[0]) sample 1 point 3 coordinate 0 is str '0.1'", 'expected a number']),
    ('boolean', lambda p: _set(p, 1, 0, 7, 2, True),
     ['verts_list (pred[1]) sample 0 point 7 coordinate 2 is bool True']),
    ('null', lambda p: _set(p, 1, 1, 9, 0, None),
     ['verts_list (pred[1]) sample 1 point 9 coordinate 0 is NoneType None']),
]


@pytest.mark.parametrize('name,breaker,fragments', MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_pred_rejected_nothing_written(tiny_freihand, tmp_path, name, breaker, fragments):
    gt_dir, pred_path, pred = tiny_freihand
    bad_path = tmp_path / 'bad_pred.json'
    pred_copy = json.loads(json.dumps(pred))  # the breakers edit in place
    bad_path.write_text(json.dumps(breaker(pred_copy)))
    out_dir = tmp_path / 'eval'
    with pytest.raises(SystemExit) as excinfo:
        fe.main(['--gt', str(gt_dir), '--pred', str(bad_path), '--out', str(out_dir)])
    message = str(excinfo.value.code)
    assert str(bad_path) in message
    for fragment in fragments:
        assert fragment in message
    assert not out_dir.exists()


def test_not_json_rejected(tiny_freihand, tmp_path):
    gt_dir, _, _ = tiny_freihand
    bad_path = tmp_path / 'truncated.json'
    bad_path.write_text('[[[1.0, 2.0,\n')
    with pytest.raises(fe.EvaluationInputError, match='truncated.json is not valid JSON: .* line 2'):
        fe.load_pred(bad_path, num_samples=3)
    with pytest.raises(SystemExit):
        fe.main(['--gt', str(gt_dir), '--pred', str(bad_path), '--out', str(tmp_path / 'eval')])
    assert not (tmp_path / 'eval').exists()


def test_missing_ground_truth_named(tmp_path, tiny_freihand):
    _, pred_path, _ = tiny_freihand
    empty = tmp_path / 'empty_root'
    empty.mkdir()
    with pytest.raises(SystemExit) as excinfo:
        fe.main(['--gt', str(empty), '--pred', str(pred_path), '--out', str(tmp_path / 'eval')])
    message = str(excinfo.value.code)
    assert f'ground-truth file not found: {empty / "evaluation_xyz.json"}' in message
    assert 'FreiHAND v2 evaluation set' in message
    assert not (tmp_path / 'eval').exists()


def test_evaluate_rejects_bad_arrays():
    rng = np.random.default_rng(8)
    xyz, verts = random_hand(rng, 2, 21), random_hand(rng, 2, 778)
    bad = verts.copy()
    bad[1, 3, 0] = np.nan
    with pytest.raises(fe.EvaluationInputError, match='verts_pred sample 1 point 3 coordinate 0 is nan'):
        fe.evaluate(xyz, verts, xyz, bad)
    with pytest.raises(fe.EvaluationInputError, match=r'xyz_pred has shape \(2, 20, 3\), expected B x'):
        fe.evaluate(xyz, verts, xyz[:, :20], verts)
    with pytest.raises(fe.EvaluationInputError, match='sample counts differ'):
        fe.evaluate(xyz, verts, xyz[:1], verts[:1])


def test_ground_truth_through_the_cache_is_exact_float64(tmp_path, monkeypatch):
    # load_gt reads the ground truth exactly as json.load does (the leaderboard's values), and a
    # second read maps the float64 cache instead of parsing.
    rng = np.random.default_rng(11)
    xyz_gt = rng.uniform(-0.1, 0.1, (30, 21, 3)) + [0.0, 0.0, 0.7]
    verts_gt = rng.uniform(-0.1, 0.1, (30, 778, 3)) + [0.0, 0.0, 0.7]
    write_json(tmp_path / 'evaluation_xyz.json', xyz_gt.tolist())
    write_json(tmp_path / 'evaluation_verts.json', verts_gt.tolist())
    for cache in ('off', 'auto'):
        xyz_read, verts_read = fe.load_gt(tmp_path, cache)
        np.testing.assert_array_equal(xyz_read, xyz_gt)
        np.testing.assert_array_equal(verts_read, verts_gt)
    assert (tmp_path / '.sar_cache' / 'evaluation_verts.f64.npy').is_file()
    from dataset.freihand import annotations

    def no_parse(*args, **kwargs):
        raise AssertionError('parsed again despite the cache')
    monkeypatch.setattr(annotations, 'parse_exact', no_parse)
    np.testing.assert_array_equal(fe.load_gt(tmp_path)[1], verts_gt)
