"""The mean-hand baseline on an HO3D-layout set: the training set's mean mesh and joints
(relative to the wrist, in the camera frame) placed at every evaluation frame's given root,
written as a submission and scored like test.py's (docs/ho3d.md).

    python -m tools.ho3d_baseline --root data/HO3D_synth --mano_root data/mano_standin \\
        --out output/eval_ho3d_mean_hand [--version v3]
"""
import argparse
import os
import sys

import numpy as np

from dataset import get_dataset
from dataset.baseline import mean_hand
from dataset.freihand.eval import write_pred
from dataset.ho3d import eval as ho3d_eval
from dataset.ho3d import submission_arrays
from utils.runtime.launch import run_main


def mean_hand_scores(root, mano_root, out_dir, version='v2'):
    """Write <out_dir>/pred.json (the mean hand at the given roots) and its scores; returns them."""
    train = get_dataset('HO3D', 'training', root=root, version=version, mano_root=mano_root)
    joints = np.stack([train.joints_cam(i) for i in range(len(train))])  # (N, 21, 3), FreiHAND order
    roots = get_dataset('HO3D', 'evaluation', root=root, version=version).root_cam()
    xyz, verts = submission_arrays(*mean_hand(joints, np.asarray(train.verts_cam, dtype=np.float64),
                                              roots), roots)
    write_pred(os.path.join(out_dir, 'pred.json'), xyz, verts)
    xyz_gt, verts_gt = ho3d_eval.load_gt(root)
    scores = ho3d_eval.evaluate(xyz_gt, verts_gt, np.round(xyz, 6), np.round(verts, 6))
    ho3d_eval.write_outputs(scores, out_dir)
    return scores


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m tools.ho3d_baseline', description=__doc__.split('\n')[0])
    parser.add_argument('--root', required=True, help='HO3D-layout folder with the evaluation ground truth')
    parser.add_argument('--mano_root', '--mano-root', required=True,
                        help='folder with MANO_RIGHT.pkl')
    parser.add_argument('--out', required=True, help='output folder (pred.json, scores.txt, plots)')
    parser.add_argument('--version', default='v2', choices=('v2', 'v3'))
    args = parser.parse_args(argv)
    scores = mean_hand_scores(args.root, args.mano_root, args.out, args.version)
    print(ho3d_eval.format_report(scores))
    print(f'wrote {args.out}/pred.json and its scores')


if __name__ == '__main__':
    sys.exit(run_main(main, sys.argv[1:], 'python -m tools.ho3d_baseline'))
