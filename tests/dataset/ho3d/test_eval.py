"""Tests for dataset/ho3d/eval: the 14 official HO3D scores against an independent per-sample
transcription of the official formulas (docs/ho3d.md §6, written out here as plain loops),
hand-worked cases, the malformed-file checks and the command line."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dataset.ho3d import eval as ho3d_eval
from utils.errors import EvaluationInputError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
KEYS = ['xyz_mean3d', 'xyz_auc3d', 'xyz_procrustes_al_mean3d', 'xyz_procrustes_al_auc3d',
        'xyz_scale_trans_al_mean3d', 'xyz_scale_trans_al_auc3d', 'mesh_mean3d', 'mesh_auc3d',
        'mesh_al_mean3d', 'mesh_al_auc3d', 'f_score_5', 'f_al_score_5', 'f_score_15', 'f_al_score_15']
# FreiHAND order read from HO3D's: freihand[k] = ho3d[TO_FREIHAND[k]].
TO_FREIHAND = [0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20]


# ---------------------------------------------------------------------------------------------
# The official formulas, one sample at a time
# ---------------------------------------------------------------------------------------------

def procrustes(gt, pred):
    """pred aligned onto gt: centred, unit Frobenius norm (+1e-8), rotation and scale from the
    SVD of pred_n^T gt_n, back to gt's scale and mean."""
    gt_c, pred_c = gt - gt.mean(axis=0), pred - pred.mean(axis=0)
    gt_norm = np.sqrt((gt_c ** 2).sum()) + 1e-8
    pred_norm = np.sqrt((pred_c ** 2).sum()) + 1e-8
    gt_n, pred_n = gt_c / gt_norm, pred_c / pred_norm
    u, singular, vt = np.linalg.svd(pred_n.T @ gt_n)
    rotation = u @ vt  # pred_n @ rotation ~ gt_n
    return pred_n @ rotation * singular.sum() * gt_norm + gt.mean(axis=0)


def scale_translation(gt, pred):
    """The official order, line by line (docs/ho3d.md §6): divide pred by its own |j4 - j0|
    when that is above 0, multiply by gt's, then move the wrist onto gt's."""
    current = pred.copy()
    length = np.sqrt(np.sum(np.square(current[4] - current[0])))
    if length > 0:
        current = current / length
    current = current * np.sqrt(np.sum(np.square(gt[4] - gt[0])))
    relative = current - current[0:1, :]
    return relative + gt[0:1, :]


def point_scores(errors):
    """(mean in cm, AUC) of per-sample lists of per-point errors (m): per point the mean over
    samples and the PCK (<=) over 100 thresholds in [0, 0.05] m, trapezoid AUC / 0.05."""
    errors = np.array(errors)  # (samples, points)
    thresholds = np.linspace(0.0, 0.05, 100)
    means, aucs = [], []
    for k in range(errors.shape[1]):
        column = errors[:, k]
        means.append(np.mean(column))
        pck = [np.mean(column <= t) for t in thresholds]
        area = sum((pck[i] + pck[i + 1]) / 2 * (thresholds[i + 1] - thresholds[i]) for i in range(99))
        aucs.append(area / 0.05)
    return 100 * np.mean(means), np.mean(aucs)


def f_score(gt, pred, threshold):
    distances = np.sqrt(((gt[:, None] - pred[None]) ** 2).sum(axis=-1))  # (V_gt, V_pred)
    recall = np.mean(distances.min(axis=1) < threshold)
    precision = np.mean(distances.min(axis=0) < threshold)
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def official_scores(xyz_gt, verts_gt, xyz_pred, verts_pred):
    rows = {name: [] for name in ('xyz', 'xyz_p', 'xyz_st', 'mesh', 'mesh_al')}
    fs = {key: [] for key in ('f_score_5', 'f_al_score_5', 'f_score_15', 'f_al_score_15')}
    for i in range(len(xyz_gt)):
        g, p, vg, vp = xyz_gt[i], xyz_pred[i], verts_gt[i], verts_pred[i]
        rows['xyz'].append(np.linalg.norm(p - g, axis=1))
        rows['xyz_p'].append(np.linalg.norm(procrustes(g, p) - g, axis=1))
        rows['xyz_st'].append(np.linalg.norm(scale_translation(g, p) - g, axis=1))
        aligned = procrustes(vg, vp)
        rows['mesh'].append(np.linalg.norm(vp - vg, axis=1))
        rows['mesh_al'].append(np.linalg.norm(aligned - vg, axis=1))
        for mm in (5, 15):
            fs[f'f_score_{mm}'].append(f_score(vg, vp, mm / 1000))
            fs[f'f_al_score_{mm}'].append(f_score(vg, aligned, mm / 1000))
    out = {}
    for name, prefix in (('xyz', 'xyz'), ('xyz_p', 'xyz_procrustes_al'), ('xyz_st', 'xyz_scale_trans_al'),
                         ('mesh', 'mesh'), ('mesh_al', 'mesh_al')):
        out[prefix + '_mean3d'], out[prefix + '_auc3d'] = point_scores(rows[name])
    out.update({key: np.mean(values) for key, values in fs.items()})
    return out


def random_case(seed, num=4):
    """Ground truth near z = -0.5 m (OpenGL) and predictions of mixed quality."""
    rng = np.random.default_rng(seed)
    xyz_gt = rng.normal(0, 0.03, (num, 21, 3)) + [0, 0, -0.5]
    verts_gt = rng.normal(0, 0.03, (num, 778, 3)) + [0, 0, -0.5]
    angle = rng.uniform(-0.3, 0.3, num)
    rotation = np.stack([[[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]] for a in angle])
    scale = rng.uniform(0.8, 1.2, (num, 1, 1))
    shift = rng.normal(0, 0.01, (num, 1, 3))
    xyz_pred = (xyz_gt - [0, 0, -0.5]) @ rotation * scale + [0, 0, -0.5] + shift + rng.normal(0, 0.005, xyz_gt.shape)
    verts_pred = (verts_gt - [0, 0, -0.5]) @ rotation * scale + [0, 0, -0.5] + shift + rng.normal(0, 0.004, verts_gt.shape)
    return xyz_gt, verts_gt, xyz_pred, verts_pred


# ---------------------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------------------

def test_the_14_scores_equal_the_transcription_of_the_official_formulas():
    case = random_case(0)
    ours = ho3d_eval.evaluate(*case, num_workers=1)
    reference = official_scores(*case)
    assert list(ours)[:14] == KEYS
    for key in KEYS:
        assert ours[key] == pytest.approx(reference[key], rel=1e-9, abs=1e-12), key
    assert 0 < ours['f_al_score_5'] < 1  # the case exercises the thresholds


def test_a_hand_worked_case():
    """gt wrist at (0, 0, -0.5) and middle MCP (j4) at (3, 4, 0) / 128 m from it (5/128 m);
    the prediction is the ground truth doubled and moved 1/64 m along x, the mesh moved 4 mm
    along x. Coordinates are multiples of 1/128, so every step below is exact in float64.

    Scale-translation: |p4 - p0| = 10/128 m, so the factor is 0.5: 0.5 * (2 g + t) = g + t / 2,
    whose wrist moved onto g0 is g itself: error 0 at every joint, PCK 1 at every threshold
    (0 included), AUC 1. Unaligned joints: |2 g + t - g| = |g + t| per joint. Mesh: every
    vertex 0.4 cm off (mean 0.4 cm); every nearest distance is at most 4 mm < 5 mm, so
    F@5 = F@15 = 1. Procrustes undoes scale and shift: aligned errors ~0 (the +1e-8 of the
    normalisation leaves ~1e-9 m), F_al = 1.
    """
    rng = np.random.default_rng(1)
    gt = rng.integers(-6, 7, (1, 21, 3)) / 128 + [0, 0, -0.5]
    gt[0, 0], gt[0, 4] = [0, 0, -0.5], [3 / 128, 4 / 128, -0.5]
    t = np.array([1 / 64, 0.0, 0.0])
    verts = rng.uniform(-0.05, 0.05, (1, 778, 3)) + [0, 0, -0.5]
    scores = ho3d_eval.evaluate(gt, verts, 2 * gt + t, verts + [0.004, 0, 0], num_workers=1)
    assert scores['xyz_scale_trans_al_mean3d'] == pytest.approx(0.0, abs=1e-12)
    assert scores['xyz_scale_trans_al_auc3d'] == 1.0
    assert scores['xyz_mean3d'] == pytest.approx(100 * np.linalg.norm(gt[0] + t, axis=1).mean())
    assert scores['xyz_procrustes_al_mean3d'] < 1e-6
    assert scores['mesh_mean3d'] == pytest.approx(0.4)
    assert scores['mesh_al_mean3d'] < 1e-6
    for key in ('f_score_5', 'f_score_15', 'f_al_score_5', 'f_al_score_15'):
        assert scores[key] == 1.0, key


def test_scale_translation_rounds_as_the_official_order_with_exact_and_zero_length_predictions():
    # Exact predictions (which must land on the ground truth to the bit for PCK's threshold 0)
    # and a zero-length bone (only the division is skipped), against the line-by-line
    # transcription of the official formula: equal bit for bit, and so are the scores (to the
    # last bit of the AUC's own sums).
    xyz_gt, verts_gt, xyz_pred, verts_pred = random_case(5, num=6)
    xyz_pred[:3], verts_pred[:3] = xyz_gt[:3], verts_gt[:3]  # exact
    xyz_pred[3] = 0.0  # every joint at the origin: |j4 - j0| = 0
    xyz_pred[4, 4] = xyz_pred[4, 0]  # a zero bone in an otherwise good prediction
    expected = np.stack([scale_translation(g, p) for g, p in zip(xyz_gt, xyz_pred)])
    aligned = ho3d_eval.align_scale_translation(xyz_gt, xyz_pred)
    np.testing.assert_array_equal(aligned, expected)
    assert np.isfinite(aligned).all()
    np.testing.assert_array_equal(aligned[3], np.broadcast_to(xyz_gt[3, :1], (21, 3)))
    scores = ho3d_eval.evaluate(xyz_gt, verts_gt, xyz_pred, verts_pred, num_workers=1)
    reference = official_scores(xyz_gt, verts_gt, xyz_pred, verts_pred)
    for key in ('xyz_scale_trans_al_mean3d', 'xyz_scale_trans_al_auc3d'):
        assert scores[key] == pytest.approx(reference[key], rel=1e-12), key
    # The exact predictions' errors at PCK's first threshold (0) are the official ones.
    errors = np.linalg.norm(aligned - xyz_gt, axis=-1)
    official_errors = np.linalg.norm(expected - xyz_gt, axis=-1)
    np.testing.assert_array_equal(errors[:3] == 0, official_errors[:3] == 0)


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def gt_root(tmp_path):
    xyz_gt, verts_gt, xyz_pred, verts_pred = random_case(3, num=3)
    root = tmp_path / 'HO3D'
    root.mkdir()
    (root / 'evaluation_xyz.json').write_text(json.dumps(xyz_gt.tolist()))
    (root / 'evaluation_verts.json').write_text(json.dumps(verts_gt.tolist()))
    (root / 'evaluation.txt').write_text(''.join(f'SEQ10/{i:04d}\n' for i in range(3)))
    return root, xyz_pred, verts_pred


def write_pred(path, xyz, verts):
    path.write_text(json.dumps([np.asarray(xyz).tolist(), np.asarray(verts).tolist()]))
    return str(path)


def test_the_command_line_writes_the_official_scores_and_the_plots(gt_root, tmp_path, caplog):
    # In this process (the command as a process: the refusal below).
    root, xyz, verts = gt_root
    pred = write_pred(tmp_path / 'pred.json', xyz, verts)
    out = tmp_path / 'eval'
    with caplog.at_level('WARNING', logger='dataset.ho3d.eval'):
        ho3d_eval.main(['--gt', str(root), '--pred', pred, '--out', str(out), '--cache', 'off'])
    lines = (out / 'scores.txt').read_text().splitlines()
    assert [line.split(':')[0] for line in lines] == KEYS
    reference = official_scores(*[np.asarray(json.loads((root / name).read_text())) for name in
                                  ('evaluation_xyz.json', 'evaluation_verts.json')], xyz, verts)
    for line in lines:
        key, value = line.split(': ')
        assert float(value) == pytest.approx(reference[key], abs=1e-6), key
    for plot in ('pck_xyz.png', 'pck_xyz_procrustes.png', 'pck_xyz_scale_trans.png', 'pck_mesh.png',
                 'pck_mesh_aligned.png'):
        assert (out / plot).read_bytes()[:4] == b'\x89PNG'
    assert '11524' in caplog.text and '20137' in caplog.text  # the full sets' sizes named


def test_a_prediction_in_the_opencv_frame_is_refused(gt_root, tmp_path):
    root, xyz, verts = gt_root
    pred = write_pred(tmp_path / 'pred.json', xyz * [1, -1, -1], verts * [1, -1, -1])
    out = tmp_path / 'eval'
    run = subprocess.run([sys.executable, '-m', 'dataset.ho3d.eval', '--gt', str(root), '--pred', pred,
                          '--out', str(out), '--cache', 'off'], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 1
    assert pred in run.stderr and 'every joint at z > 0' in run.stderr and '(1, -1, -1)' in run.stderr
    assert 'Nothing was written' in run.stderr and not out.exists()


def test_a_prediction_in_freihand_joint_order_is_refused(gt_root, tmp_path):
    root, xyz, verts = gt_root
    pred = write_pred(tmp_path / 'pred.json', xyz[:, TO_FREIHAND], verts)
    xyz_gt, _ = ho3d_eval.load_gt(str(root), cache='off')
    with pytest.raises(EvaluationInputError, match="FreiHAND's order") as err:
        ho3d_eval.load_pred(pred, xyz_gt)
    assert pred in str(err.value) and 'FREIHAND_TO_HO3D' in str(err.value)
    ho3d_eval.load_pred(write_pred(tmp_path / 'ok.json', xyz, verts), xyz_gt)  # HO3D order passes


def test_counts_that_disagree_are_named(gt_root, tmp_path):
    root, xyz, verts = gt_root
    xyz_gt, _ = ho3d_eval.load_gt(str(root), cache='off')
    pred = write_pred(tmp_path / 'pred.json', xyz[:2], verts[:2])
    with pytest.raises(EvaluationInputError, match='the lists have 2 samples, the ground truth has 3'):
        ho3d_eval.load_pred(pred, xyz_gt)
    (root / 'evaluation.txt').write_text('SEQ10/0000\nSEQ10/0001\n')
    with pytest.raises(EvaluationInputError, match='lists 2 frames but .*evaluation_xyz.json has 3 entries'):
        ho3d_eval.load_gt(str(root), cache='off')
    os.remove(root / 'evaluation_verts.json')
    with pytest.raises(EvaluationInputError, match='evaluation_verts.json'):
        ho3d_eval.load_gt(str(root), cache='off')


def test_meshes_of_another_vertex_count_are_refused():
    xyz_gt, verts_gt, xyz_pred, verts_pred = random_case(4, num=2)
    with pytest.raises(EvaluationInputError, match='778'):
        ho3d_eval.evaluate(xyz_gt, verts_gt, xyz_pred, verts_pred[:, :700])
