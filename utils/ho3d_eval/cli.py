"""Command line of the local HO3D evaluator:

    python -m utils.ho3d_eval --gt data/HO3D --pred output/pred.json --out output/eval_ho3d

`--gt` is the HO3D root holding evaluation_xyz.json and evaluation_verts.json (the evaluation
ground truth released in Nov 2024) and evaluation.txt, `--pred` the submission file
(`[xyz_list, verts_list]`, meters, OpenGL frame, HO3D joint order, evaluation.txt order).
`--out` receives scores.txt (the official 14 keys, means in cm), pck_data.json and the PCK
plots. Nothing is written when an input is malformed.
"""
import argparse
import logging
import os
import sys

from utils.errors import EvaluationInputError
from utils.ho3d_eval.files import load_gt, load_pred
from utils.ho3d_eval.metrics import evaluate
from utils.ho3d_eval.report import format_report, write_outputs


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m utils.ho3d_eval',
        description="Score an HO3D pred.json against the released evaluation ground truth with "
                    "the official definitions (docs/ho3d.md §6).")
    parser.add_argument('--gt', required=True,
                        help='HO3D root holding evaluation_xyz.json, evaluation_verts.json, evaluation.txt')
    parser.add_argument('--pred', required=True,
                        help='pred.json: [xyz_list, verts_list], meters, OpenGL frame, HO3D order')
    parser.add_argument('--cache', default='auto',
                        help="annotation cache of the ground truth: 'auto' (default), 'off', or a folder")
    parser.add_argument('--out', required=True, help='output folder for scores.txt, pck_data.json, plots')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s: %(message)s', stream=sys.stderr)
    try:
        print(f'Reading the ground truth from {args.gt}', file=sys.stderr)
        xyz_gt, verts_gt = load_gt(args.gt, args.cache)
        print(f'Reading the predictions from {args.pred}', file=sys.stderr)
        xyz_pred, verts_pred = load_pred(args.pred, xyz_gt)
        scores = evaluate(xyz_gt, verts_gt, xyz_pred, verts_pred)
    except EvaluationInputError as err:
        sys.exit(f'ho3d_eval: error: {err}\nNothing was written.')
    try:
        written = write_outputs(scores, args.out)
    except OSError as err:
        sys.exit(f'ho3d_eval: error: cannot write the results to {args.out}: {err}')
    print(format_report(scores))
    print(f'\nWrote {len(written)} files to {args.out}: {", ".join(os.path.basename(p) for p in written)}')
    return scores


if __name__ == '__main__':
    main()
