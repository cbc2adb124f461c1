"""Fit MANO parameters to every mesh of a pred.json (test.py's output).

    python -m tools.fit_mano --pred output/pred.json --mano_root manopth/mano/models --out fits.json
        [--side right|left] [--flat-hand-mean true|false] [--iterations 30]

The fitting is wild/mano_fit.py; fits.json's fields: docs/own_images.md.
"""
import argparse
import sys
import time

from wild.mano_fit import ManoFitter, fit_record
from utils.errors import DataError
from utils.files.atomic import atomic_write_json
from utils.runtime.launch import run_main
from dataset.freihand.eval.files import load_pred

CONVENTION = ('manopth ManoLayer(use_pca=False, flat_hand_mean=<flat_hand_mean>, side=<side>): '
              'verts_mm, joints_mm = layer(cat([global_orient, hand_pose], 1), betas, transl); '
              'axis-angle in radians, transl in meters, the layer returns millimeters; frame of '
              'the input meshes (pred.json: camera frame, x right, y down, z forward, meters)')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--pred', required=True, help='pred.json: [xyz_list, verts_list], meters')
    parser.add_argument('--mano_root', '--mano-root', required=True,
                        help='folder with MANO_RIGHT.pkl (MANO_LEFT.pkl)')
    parser.add_argument('--out', required=True, help='fits.json to write')
    parser.add_argument('--side', choices=('right', 'left'), default='right',
                        help='the hands the meshes show (default right)')
    parser.add_argument('--flat-hand-mean', choices=('true', 'false'), default='true',
                        help='hand_pose convention: true (manopth default: 0 = flat hand) or '
                             'false (hands_mean added, FreiHAND)')
    parser.add_argument('--iterations', type=int, default=None,
                        help='Levenberg-Marquardt steps at most (default wild.mano_fit)')
    args = parser.parse_args(argv)
    flat_hand_mean = args.flat_hand_mean == 'true'
    _, verts = load_pred(args.pred)
    if verts.shape[1] != 778:
        raise DataError(f'{args.pred}: meshes of {verts.shape[1]} vertices; MANO fitting needs '
                        f'the 778 MANO vertices')
    kwargs = {} if args.iterations is None else {'iterations': args.iterations}
    fitter = ManoFitter(args.mano_root, side=args.side, flat_hand_mean=flat_hand_mean, **kwargs)
    start, cpu = time.perf_counter(), time.process_time()
    fit = fitter.fit(verts)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    hands = []
    for i in range(len(verts)):
        record = fit_record(fit, i)
        hands.append({k: record[k] for k in ('global_orient', 'hand_pose', 'betas', 'transl',
                                             'fit_mean_mm')})
    atomic_write_json(args.out, {'convention': CONVENTION, 'flat_hand_mean': flat_hand_mean,
                                 'side': args.side, 'model': fitter.model, 'hands': hands})
    errors = fit['fit_mean_mm']
    print(f'fitted {len(verts)} meshes in {seconds:.1f} s ({cpu_seconds:.1f} s CPU): fit_mean_mm '
          f'median {float(sorted(errors)[len(errors) // 2]):.3f}, max {errors.max():.3f}; '
          f'wrote {args.out}')
    return fit


if __name__ == '__main__':
    sys.exit(run_main(main, sys.argv[1:], 'python -m tools.fit_mano'))
