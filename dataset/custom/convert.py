"""Write labels.jsonl from other sources (docs/own_data.md "Converters"):

    python -m dataset.custom.convert freihand --root data/FreiHAND --part evaluation --out DIR
    python -m dataset.custom.convert freihand --root data/FreiHAND --part training --limit 1000 --out DIR
    python -m dataset.custom.convert ho3d --root data/HO3D --version v2 --mano_root M --out DIR
    python -m dataset.custom.convert demo --records output/demo --images photos --out DIR

FreiHAND and HO3D lines name the data sets' own images (paths relative to DIR) with their
boxes, intrinsics and annotations as the readers use them, so a converted set trains and
scores as the original does (FreiHAND's evaluation part keeps its RootNet root depths). demo
lines are the demo's predictions (its JSON records), flagged `"pseudo_label": true`, for
self-training on unlabelled photos. DIR/labels.jsonl is written atomically and never
overwritten unless --overwrite is given (--append adds lines, e.g. a second split).
"""
import argparse
import json
import os
import sys

import numpy as np

from dataset.base import Preprocessing
from dataset.custom.labels import LABELS_FILE, line_of, read_labels
from dataset.freihand import FreiHAND
from dataset.ho3d import HO3D
from dataset.freihand import eval as freihand_eval
from utils.errors import DataError
from utils.files.atomic import atomic_open
from utils.mano import DEFAULT_MANO_ROOT

NO_AUGMENTATION = Preprocessing(augment=False)


def reader_lines(reader, out_dir, split, limit=None, ground_truth=None):
    """Lines (dicts) of the first `limit` items of a HandCropDataset: image, K, box (the
    reader's square crop), joints and vertices; with `ground_truth` (evaluation readers:
    (joints M x 21 x 3, verts M x 778 x 3)) also root_depth, the reader's estimate."""
    count = len(reader) if limit is None else min(limit, len(reader))
    for idx in range(count):
        centre, side = reader.crop_box(idx)
        if ground_truth is None:
            verts, joints = reader.training_points(idx)
            root_depth = None
        else:
            joints, verts = ground_truth[0][idx], ground_truth[1][idx]
            root_depth = float(reader.evaluation_meta(idx)['root_depth'])
        yield {'image': os.path.relpath(reader.image_path(idx), out_dir),
               'K': np.asarray(reader.intrinsics(idx), dtype=np.float64),
               'joints_3d': np.asarray(joints, dtype=np.float64),
               'verts_3d': np.asarray(verts, dtype=np.float64),
               'box': [float(centre[0]) - side / 2, float(centre[1]) - side / 2, float(side),
                       float(side)],
               'root_depth': root_depth, 'split': split}


def freihand_lines(args):
    if args.part == 'evaluation':
        reader = FreiHAND('evaluation', args.root, NO_AUGMENTATION, cache_dir='off')
        truth = freihand_eval.load_gt(args.root, 'off')
        return reader_lines(reader, args.out, args.split or 'test', args.limit, truth)
    reader = FreiHAND('training', args.root, NO_AUGMENTATION, cache_dir='off')
    return reader_lines(reader, args.out, args.split or 'train', args.limit)


def ho3d_lines(args):
    reader = HO3D('training', args.root, version=args.version, mano_root=args.mano_root,
                  preprocessing=NO_AUGMENTATION, cache_dir='off')
    return reader_lines(reader, args.out, args.split or 'train', args.limit)


def demo_lines(args):
    """Pseudo-labels from the demo's JSON records (<name>.json: image, hands) in args.records."""
    names = sorted(n for n in os.listdir(args.records) if n.endswith('.json'))
    for name in names:
        path = os.path.join(args.records, name)
        with open(path, encoding='utf-8') as f:
            record = json.load(f)
        if not isinstance(record, dict) or 'hands' not in record or 'image' not in record:
            continue  # not a photo record of demo.py (e.g. a config.json beside them)
        image = os.path.join(args.images or args.records, record['image'])
        for k, hand in enumerate(record['hands']):
            score = hand.get('score')
            if score is not None and score < args.min_score:
                continue
            yield {'image': os.path.relpath(image, args.out), 'K': hand['K'],
                   'joints_3d': hand['joints_cam'], 'verts_3d': hand['verts_cam'],
                   'side': hand['hand'], 'box': hand['box'], 'root_depth': hand['root_depth_m'],
                   'split': args.split or 'train', 'pseudo_label': True,
                   'source': f'{path} hand {k}'}


SOURCES = {'freihand': freihand_lines, 'ho3d': ho3d_lines, 'demo': demo_lines}


def write_labels(out_dir, lines, overwrite=False, append=False):
    """Write the lines (dicts) to out_dir/labels.jsonl atomically (nothing is left behind when
    a source fails half-way), after its present lines with `append`; returns (path, number of
    lines written)."""
    path = os.path.join(out_dir, LABELS_FILE)
    kept = ''
    if os.path.exists(path) and append:
        with open(path, encoding='utf-8') as f:
            kept = f.read()
    elif os.path.exists(path) and not overwrite:
        raise DataError(f'{path} exists: pass --append to add lines to it, --overwrite to replace '
                        f'it, or choose another --out')
    os.makedirs(out_dir, exist_ok=True)
    count = 0
    with atomic_open(path, 'w') as f:
        f.write(kept if not kept or kept.endswith('\n') else kept + '\n')
        for line in lines:
            f.write(line_of(line) + '\n')
            count += 1
    return path, count


def parser():
    main_parser = argparse.ArgumentParser(prog='python -m dataset.custom.convert',
                                          description=f'write {LABELS_FILE} from other sources')
    sub = main_parser.add_subparsers(dest='source', required=True)
    for source in SOURCES:
        part = sub.add_parser(source)
        part.add_argument('--out', required=True, help=f'folder to write {LABELS_FILE} into')
        part.add_argument('--split', choices=('train', 'test'), help='split of every line')
        part.add_argument('--limit', type=int, help='convert the first N items only')
        part.add_argument('--overwrite', action='store_true', help=f'replace {LABELS_FILE}')
        part.add_argument('--append', action='store_true', help=f'add to {LABELS_FILE}')
        part.add_argument('--mano_root', default=DEFAULT_MANO_ROOT)
        if source in ('freihand', 'ho3d'):
            part.add_argument('--root', required=True, help='the data set folder')
    sub.choices['freihand'].add_argument('--part', choices=('training', 'evaluation'),
                                         default='evaluation')
    sub.choices['ho3d'].add_argument('--version', choices=('v2', 'v3'), default='v2')
    demo = sub.choices['demo']
    demo.add_argument('--records', required=True, help="demo.py's output folder (<name>.json)")
    demo.add_argument('--images', help='folder of the photos (default: --records)')
    demo.add_argument('--min_score', type=float, default=0.0,
                      help="skip hands whose detector score is below this")
    return main_parser


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        path, count = write_labels(args.out, SOURCES[args.source](args), args.overwrite,
                                   args.append)
        read_labels(args.out, args.mano_root)
    except DataError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    print(f'wrote {path}: {count} lines')
    return 0


if __name__ == '__main__':
    sys.exit(main())
