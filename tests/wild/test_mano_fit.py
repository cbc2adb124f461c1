"""MANO fitting: meshes made by the stand-in MANO are recovered to <= 1 mm, and the project's
ManoLayer (manopth's API) rebuilds them from the saved parameters, right and left hands."""
import json
import shutil

import numpy as np
import pytest
import torch

from wild.mano_fit import ManoFitter, fit_record, mirror_params
from manopth.manolayer import ManoLayer
from synthetic.geometry import GeometrySampler, sample_generators


@pytest.fixture(scope='module')
def meshes(standin_mano):
    """6 stand-in hands (random shape, articulation, rotation, placement), camera frame, m."""
    sampler = GeometrySampler(standin_mano)
    return sampler.sample([sample_generators(5, 1, i)[0] for i in range(6)])['verts']


def rebuild(record, mano_root, side):
    """Vertices (m) from a JSON-round-tripped `mano` record, with manopth's layer."""
    record = json.loads(json.dumps(record))
    layer = ManoLayer(mano_root=mano_root, side=side, use_pca=False,
                      flat_hand_mean=record['flat_hand_mean']).double()
    pose = torch.tensor([record['global_orient'] + record['hand_pose']], dtype=torch.float64)
    verts_mm, _ = layer(pose, torch.tensor([record['betas']], dtype=torch.float64),
                        torch.tensor([record['transl']], dtype=torch.float64))
    return verts_mm[0].numpy() / 1000


def mean_mm(a, b):
    return float(np.linalg.norm(a - b, axis=-1).mean() * 1000)


@pytest.mark.parametrize('flat_hand_mean', [True, False])
def test_right_hands_recovered_and_rebuilt(meshes, standin_mano, flat_hand_mean):
    fit = ManoFitter(standin_mano, flat_hand_mean=flat_hand_mean).fit(meshes)
    assert fit['global_orient'].shape == (6, 3) and fit['hand_pose'].shape == (6, 45)
    assert fit['betas'].shape == (6, 10) and fit['transl'].shape == (6, 3)
    for i in range(len(meshes)):
        record = fit_record(fit, i)
        assert record['flat_hand_mean'] is flat_hand_mean and record['side'] == 'right'
        rebuilt = rebuild(record, standin_mano, 'right')
        assert mean_mm(rebuilt, meshes[i]) <= 1.0
        assert record['fit_mean_mm'] == pytest.approx(mean_mm(fit['verts'][i], meshes[i]), abs=1e-3)
        # the saved parameters (rounded to 1e-6) give the fitted mesh
        assert mean_mm(rebuilt, fit['verts'][i]) < 0.01


def test_left_hands_with_the_left_model_and_mirrored(meshes, standin_mano, tmp_path):
    """A left hand is the mirror image x -> -x; with MANO_LEFT.pkl it is fitted directly, without
    it the right fit is mirrored, which the stand-in's (mirror-built) left model rebuilds."""
    left_meshes = meshes[:3] * np.array([-1.0, 1.0, 1.0])
    right_only = tmp_path / 'right_only'
    right_only.mkdir()
    shutil.copy(f'{standin_mano}/MANO_RIGHT.pkl', right_only / 'MANO_RIGHT.pkl')
    direct = ManoFitter(standin_mano, side='left').fit(left_meshes)
    mirrored = ManoFitter(str(right_only), side='left').fit(left_meshes)
    assert 'mirrored' in mirrored['model'] and direct['model'] == 'MANO_LEFT.pkl'
    for fit in (direct, mirrored):
        for i in range(3):
            assert mean_mm(rebuild(fit_record(fit, i), standin_mano, 'left'), left_meshes[i]) <= 1.0


def test_mirroring_twice_is_the_identity():
    rng = np.random.default_rng(0)
    params = {'global_orient': rng.normal(size=(2, 3)), 'hand_pose': rng.normal(size=(2, 45)),
              'betas': rng.normal(size=(2, 10)), 'transl': rng.normal(size=(2, 3))}
    twice = mirror_params(mirror_params(params))
    for key, value in params.items():
        np.testing.assert_array_equal(twice[key], value)
    assert np.all(mirror_params(params)['hand_pose'][:, 1::3] == -params['hand_pose'][:, 1::3])
