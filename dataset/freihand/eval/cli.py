"""Command line of the local FreiHAND evaluator:

    python -m dataset.freihand.eval --gt data/FreiHAND --pred output/pred.json --out output/eval

`--gt` is the FreiHAND root holding `evaluation_xyz.json` and `evaluation_verts.json` (the
evaluation ground truth published with FreiHAND v2), `--pred` the `[xyz_list, verts_list]` file
of docs/method.md §7 (meters). The report is printed in the seed's format; `--out` receives
`scores.txt` (the leaderboard's keys, means in cm), `pck_data.json`, one PCK plot per curve and
`scores.html` showing them with the numbers. Nothing is written when an input is malformed.
"""
from dataset import evaluation_cli
from dataset.freihand.eval.files import load_gt, load_pred
from dataset.freihand.eval.metrics import evaluate
from dataset.freihand.eval.report import format_report, write_outputs

FREIHAND_EVALUATOR = evaluation_cli.Evaluator(
    name='dataset.freihand.eval',
    description='Evaluate a FreiHAND pred.json against the evaluation ground truth with the '
                "leaderboard's definitions (docs/method.md §8).",
    gt_help='FreiHAND root holding evaluation_xyz.json and evaluation_verts.json',
    pred_help='pred.json: [xyz_list, verts_list], meters',
    cache_help="annotation cache of the ground truth: 'auto' (default: <gt>/.sar_cache, or "
               "~/.cache/sar/annotations for a read-only folder), 'off', or a folder",
    out_help='output folder for scores.txt, pck_data.json, the plots and scores.html',
    load_gt=load_gt,
    load_pred=lambda path, xyz_gt: load_pred(path, num_samples=len(xyz_gt)),
    evaluate=evaluate, format_report=format_report, write_outputs=write_outputs)


def main(argv=None):
    """Run the command line; returns the scores."""
    return evaluation_cli.run(FREIHAND_EVALUATOR, argv)


if __name__ == '__main__':
    main()
