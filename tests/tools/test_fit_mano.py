"""tools.fit_mano: pred.json in, fits.json out (the convention stated, one entry per mesh)."""
import json

import numpy as np
import pytest
import torch

from manopth.manolayer import ManoLayer
from synthetic.geometry import GeometrySampler, sample_generators
from tools import fit_mano
from utils.errors import DataError


def test_fits_json_rebuilds_every_mesh(standin_mano, tmp_path):
    geometry = GeometrySampler(standin_mano).sample([sample_generators(9, 1, i)[0] for i in range(3)])
    pred = tmp_path / 'pred.json'
    pred.write_text(json.dumps([geometry['xyz'].tolist(), geometry['verts'].tolist()]))
    fit_mano.main(['--pred', str(pred), '--mano-root', standin_mano, '--out', str(tmp_path / 'f.json'),
                   '--flat-hand-mean', 'false'])
    fits = json.loads((tmp_path / 'f.json').read_text())
    assert fits['flat_hand_mean'] is False and fits['side'] == 'right' and len(fits['hands']) == 3
    assert 'ManoLayer(use_pca=False' in fits['convention']
    layer = ManoLayer(mano_root=standin_mano, use_pca=False, flat_hand_mean=False).double()
    for hand, truth in zip(fits['hands'], geometry['verts']):
        assert set(hand) == {'global_orient', 'hand_pose', 'betas', 'transl', 'fit_mean_mm'}
        pose = torch.tensor([hand['global_orient'] + hand['hand_pose']], dtype=torch.float64)
        verts_mm, _ = layer(pose, torch.tensor([hand['betas']], dtype=torch.float64),
                            torch.tensor([hand['transl']], dtype=torch.float64))
        error_mm = np.linalg.norm(verts_mm[0].numpy() / 1000 - truth, axis=-1).mean() * 1000
        assert error_mm <= 1.0 and hand['fit_mean_mm'] <= 1.0


def test_a_mesh_of_another_topology_is_refused(tmp_path):
    pred = tmp_path / 'pred.json'
    pred.write_text(json.dumps([[[[0.0, 0.0, 0.5]] * 21], [[[0.0, 0.0, 0.5]] * 10]]))
    with pytest.raises(DataError, match='778 MANO vertices'):
        fit_mano.main(['--pred', str(pred), '--mano-root', str(tmp_path), '--out', str(tmp_path / 'f.json')])
