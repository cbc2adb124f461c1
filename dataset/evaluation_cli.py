"""The command line the data sets' local evaluators share (`python -m dataset.freihand.eval`,
`python -m dataset.ho3d.eval`): read the ground truth and the predictions, score, write the
report files. Each evaluator describes itself with an `Evaluator`; nothing is written when an
input is malformed."""
import argparse
import logging
import os
import sys
from dataclasses import dataclass
from typing import Callable

from utils.errors import EvaluationInputError


@dataclass(frozen=True)
class Evaluator:
    """One data set's evaluator, as its command line runs it.

    name: the evaluator's module ('dataset.freihand.eval'): `python -m NAME` runs it; the
        program name and the error prefix.
    description: the command's description (--help).
    gt_help, pred_help, cache_help, out_help: the help lines of --gt, --pred, --cache, --out.
    load_gt: (gt root, cache) -> (xyz_gt, verts_gt).
    load_pred: (pred.json path, xyz_gt) -> (xyz_pred, verts_pred).
    evaluate: (xyz_gt, verts_gt, xyz_pred, verts_pred) -> scores.
    format_report: scores -> the printed report.
    write_outputs: (scores, out folder) -> [paths written].
    """
    name: str
    description: str
    gt_help: str
    pred_help: str
    cache_help: str
    out_help: str
    load_gt: Callable
    load_pred: Callable
    evaluate: Callable
    format_report: Callable
    write_outputs: Callable


def parse_args(evaluator, argv=None):
    """The command line of `evaluator` (--gt, --pred, --cache, --out), parsed."""
    parser = argparse.ArgumentParser(prog=f'python -m {evaluator.name}',
                                     description=evaluator.description)
    parser.add_argument('--gt', required=True, help=evaluator.gt_help)
    parser.add_argument('--pred', required=True, help=evaluator.pred_help)
    parser.add_argument('--cache', default='auto', help=evaluator.cache_help)
    parser.add_argument('--out', required=True, help=evaluator.out_help)
    return parser.parse_args(argv)


def run(evaluator, argv=None):
    """Run `evaluator`'s command line; returns the scores (exits with a message naming the bad
    input, and writes nothing, when an input is malformed)."""
    args = parse_args(evaluator, argv)
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s: %(message)s', stream=sys.stderr)
    try:
        # Progress goes to stderr: reading the ground truth files can take longer than scoring.
        print(f'Reading the ground truth from {args.gt}', file=sys.stderr)
        xyz_gt, verts_gt = evaluator.load_gt(args.gt, args.cache)
        print(f'Reading the predictions from {args.pred}', file=sys.stderr)
        xyz_pred, verts_pred = evaluator.load_pred(args.pred, xyz_gt)
        print(f'Evaluating {len(xyz_gt)} samples', file=sys.stderr)
        scores = evaluator.evaluate(xyz_gt, verts_gt, xyz_pred, verts_pred)
    except EvaluationInputError as err:
        sys.exit(f'{evaluator.name}: error: {err}\nNothing was written.')
    try:
        written = evaluator.write_outputs(scores, args.out)
    except OSError as err:
        sys.exit(f'{evaluator.name}: error: cannot write the results to {args.out}: {err}')
    print(evaluator.format_report(scores))
    print(f'\nWrote {len(written)} files to {args.out}: '
          f'{", ".join(os.path.basename(path) for path in written)}')
    return scores
