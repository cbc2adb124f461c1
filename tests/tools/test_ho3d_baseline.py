"""tools/ho3d_baseline.py: the mean hand placed at the given roots, checked against the mean of
the training pickles' handJoints3D (OpenGL frame, HO3D order) computed here."""
import json
import os
import pickle

import numpy as np

from synthetic.ho3d import generate

from synthetic.workers import Run
from tools.ho3d_baseline import mean_hand_scores


def test_the_mean_hand_sits_at_every_given_root(tmp_path, standin_mano):
    root = str(tmp_path / 'HO3D')
    generate(root, 3, 2, standin_mano, seed=6, run=Run(progress=False, render=False))
    metas = {}
    for split in ('train', 'evaluation'):
        with open(os.path.join(root, f'{split}.txt')) as f:
            names = f.read().split()
        metas[split] = []
        for name in names:
            seq, frame = name.split('/')
            with open(os.path.join(root, split, seq, 'meta', frame + '.pkl'), 'rb') as f:
                metas[split].append(pickle.load(f))
    joints = np.stack([m['handJoints3D'] for m in metas['train']]).astype(np.float64)
    mean_shape = (joints - joints[:, :1]).mean(axis=0)
    scores = mean_hand_scores(root, standin_mano, str(tmp_path / 'out'))
    xyz, verts = (np.array(a) for a in json.loads((tmp_path / 'out' / 'pred.json').read_text()))
    for i, meta in enumerate(metas['evaluation']):
        np.testing.assert_allclose(xyz[i], mean_shape + meta['handJoints3D'], atol=2e-6)
    assert verts.shape == (2, 778, 3) and np.all(verts[..., 2] < 0)
    assert scores['num_samples'] == 2 and (tmp_path / 'out' / 'scores.txt').is_file()
