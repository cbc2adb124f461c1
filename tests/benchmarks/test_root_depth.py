"""benchmarks.root_depth: the ground-truth predictor's self-check, a network's wrist depths
against the truth, and the --report JSON that docs/performance.md tabulates."""
import json

import numpy as np
import pytest

from benchmarks import root_depth
from tools import make_docs


def hands(mano_root, count=6, seed=0):
    """Joints (count x 21 x 3, m) of the stand-in template, jittered, in front of a camera, and K."""
    from utils.mano import MANO
    mano = MANO(mano_root)
    base = np.asarray(mano.joints_from_verts(mano.template), dtype=np.float64)
    rng = np.random.default_rng(seed)
    xyz = base[None] - base[0] + rng.normal(scale=0.002, size=(count, 21, 3))
    xyz[:, 0] = 0.0
    xyz += np.stack([rng.uniform(-0.05, 0.05, count), rng.uniform(-0.05, 0.05, count),
                     rng.uniform(0.4, 1.2, count)], axis=1)[:, None]
    K = np.tile(np.array([[500.0, 0, 112], [0, 500.0, 112], [0, 0, 1]]), (count, 1, 1))
    return xyz, K


def test_a_network_at_twice_the_depth_is_100_percent_off_and_reported(tmp_path, standin_mano):
    xyz, K = hands(standin_mano)
    (tmp_path / 'evaluation_xyz.json').write_text(json.dumps(xyz.tolist()))
    (tmp_path / 'evaluation_K.json').write_text(json.dumps(K.tolist()))
    pred = xyz.copy()
    pred[..., 2] *= 2.0  # every wrist twice as far: |2z - z| / z = 100 %
    (tmp_path / 'pred.json').write_text(json.dumps([pred.tolist(), []]))
    report = tmp_path / 'root_depth.json'
    rows = root_depth.main(['--data_root', str(tmp_path), '--mano_root', standin_mano,
                            '--pred', str(tmp_path / 'pred.json'), '--report', str(report)])
    by_label = {label: (median, p90, n) for label, median, p90, n in rows}
    self_check = by_label['ground truth, own skeleton length (self-check)']
    assert self_check[0] == pytest.approx(0.0, abs=1e-6) and self_check[2] == 6
    network = next(value for label, value in by_label.items() if label.startswith('network'))
    assert network[0] == pytest.approx(100.0) and network[1] == pytest.approx(100.0)

    written = json.loads(report.read_text())
    assert written['command'].startswith('python -m benchmarks.root_depth --data_root')
    for field in ('date', 'commit', 'cpu_model', 'cpu_flags', 'load_average_start',
                  'load_average_end', 'precision'):
        assert field in written, field
    assert set(written['wrist_depth_error_percent']['hands'].values()) == {6}
    medians = written['wrist_depth_error_percent']['median']
    assert medians[f"network ({tmp_path / 'pred.json'})"] == 100.0
    table = make_docs.measured_table('root_depth', folder=str(tmp_path))
    assert '| | wrist_depth_error_percent median | wrist_depth_error_percent p90 |' in table


def test_a_hand_the_solver_refuses_is_left_out_not_fatal(standin_mano):
    from utils.transforms import project
    xyz, K = hands(standin_mano, count=3)
    uvd = project(xyz, K)
    uv, rel = uvd[..., :2].copy(), uvd[..., 2] - uvd[..., :1, 2]
    uv[1] = uv[1, :1]  # hand 1 collapsed to one pixel: no 2D skeleton to measure
    truth = xyz[:, 0, 2]
    lengths = root_depth._skeleton_lengths(xyz, root_depth.SKELETON)
    depths = root_depth._solve_each(uv, rel, K, lengths)
    assert np.isnan(depths[1])
    np.testing.assert_allclose(depths[[0, 2]], truth[[0, 2]], rtol=1e-6)  # own lengths: exact
    assert root_depth._percent(depths, truth)[2] == 2
