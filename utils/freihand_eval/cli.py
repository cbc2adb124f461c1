"""Command line of the local FreiHAND evaluator:

    python -m utils.freihand_eval --gt data/FreiHAND --pred output/pred.json --out output/eval

`--gt` is the FreiHAND root holding `evaluation_xyz.json` and `evaluation_verts.json` (the
evaluation ground truth published with FreiHAND v2), `--pred` the `[xyz_list, verts_list]` file
of docs/method.md §7 (meters). The report is printed in the seed's format; `--out` receives
`scores.txt` (the leaderboard's keys, means in cm), `pck_data.json`, one PCK plot per curve and
`scores.html` showing them with the numbers. Nothing is written when an input is malformed.
"""
import argparse
import os
import sys

from utils.errors import EvaluationInputError
from utils.freihand_eval.files import load_gt, load_pred
from utils.freihand_eval.metrics import evaluate
from utils.freihand_eval.report import format_report, write_outputs


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m utils.freihand_eval',
        description='Evaluate a FreiHAND pred.json against the evaluation ground truth with the '
                    "leaderboard's definitions (docs/method.md §8).")
    parser.add_argument('--gt', required=True,
                        help='FreiHAND root holding evaluation_xyz.json and evaluation_verts.json')
    parser.add_argument('--pred', required=True, help='pred.json: [xyz_list, verts_list], meters')
    parser.add_argument('--cache', default='auto',
                        help="annotation cache of the ground truth: 'auto' (default: "
                             "<gt>/.sar_cache, or ~/.cache/sar/annotations for a read-only "
                             "folder), 'off', or a folder")
    parser.add_argument('--out', required=True,
                        help='output folder for scores.txt, pck_data.json, the plots and scores.html')
    args = parser.parse_args(argv)
    try:
        # Progress goes to stderr: reading the two ~200 MB JSON files takes longer than scoring.
        print(f'Reading the ground truth from {args.gt}', file=sys.stderr)
        xyz_gt, verts_gt = load_gt(args.gt, args.cache)
        print(f'Reading the predictions from {args.pred}', file=sys.stderr)
        xyz_pred, verts_pred = load_pred(args.pred, num_samples=len(xyz_gt))
        print(f'Evaluating {len(xyz_gt)} samples', file=sys.stderr)
        scores = evaluate(xyz_gt, verts_gt, xyz_pred, verts_pred)
    except EvaluationInputError as err:
        sys.exit(f'freihand_eval: error: {err}\nNothing was written.')
    try:
        written = write_outputs(scores, args.out)
    except OSError as err:
        sys.exit(f'freihand_eval: error: cannot write the results to {args.out}: {err}')
    print(format_report(scores))
    names = ', '.join(os.path.basename(p) for p in written)
    print(f'\nWrote {len(written)} files to {args.out}: {names}')
    return scores


if __name__ == '__main__':
    main()
