"""Command line of the local HO3D evaluator:

    python -m dataset.ho3d.eval --gt data/HO3D --pred output/pred.json --out output/eval_ho3d

`--gt` is the HO3D root holding evaluation_xyz.json and evaluation_verts.json (the evaluation
ground truth released in Nov 2024) and evaluation.txt, `--pred` the submission file
(`[xyz_list, verts_list]`, meters, OpenGL frame, HO3D joint order, evaluation.txt order).
`--out` receives scores.txt (the official 14 keys, means in cm), pck_data.json and the PCK
plots. Nothing is written when an input is malformed.
"""
from dataset import evaluation_cli
from dataset.ho3d.eval.files import load_gt, load_pred
from dataset.ho3d.eval.metrics import evaluate
from dataset.ho3d.eval.report import format_report, write_outputs

HO3D_EVALUATOR = evaluation_cli.Evaluator(
    name='dataset.ho3d.eval',
    description="Score an HO3D pred.json against the released evaluation ground truth with the "
                "official definitions (docs/ho3d.md §6).",
    gt_help='HO3D root holding evaluation_xyz.json, evaluation_verts.json, evaluation.txt',
    pred_help='pred.json: [xyz_list, verts_list], meters, OpenGL frame, HO3D order',
    cache_help="annotation cache of the ground truth: 'auto' (default), 'off', or a folder",
    out_help='output folder for scores.txt, pck_data.json, plots',
    load_gt=load_gt, load_pred=load_pred,
    evaluate=evaluate, format_report=format_report, write_outputs=write_outputs)


def main(argv=None):
    """Run the command line; returns the scores."""
    return evaluation_cli.run(HO3D_EVALUATOR, argv)


if __name__ == '__main__':
    main()
