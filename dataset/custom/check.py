"""Check a custom data set folder without training or testing (docs/own_data.md):

    python -m dataset.custom.check DIR [--mano_root manopth/mano/models]

Reads and checks every line of DIR/labels.jsonl as train.py and test.py do (each image is
decoded once) and prints a summary; exit status 1 with the first bad line's file, line number
and field. Writes nothing.
"""
import argparse
import sys

from dataset.custom.labels import LABELS_FILE, read_labels
from utils.errors import DataError
from utils.mano import DEFAULT_MANO_ROOT


def summary(hands):
    """One line per split: hands, left hands, hands without vertices, pseudo-labels."""
    lines = []
    for split in ('train', 'test'):
        part = [hand for hand in hands if hand.split == split]
        lines.append(f'{split}: {len(part)} hands ({sum(h.side == "left" for h in part)} left, '
                     f'{sum(h.verts is None for h in part)} joints only, '
                     f'{sum(h.pseudo_label for h in part)} pseudo-labels)')
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m dataset.custom.check',
                                     description=f'check DIR/{LABELS_FILE} and its images')
    parser.add_argument('root', metavar='DIR', help=f'folder holding {LABELS_FILE}')
    parser.add_argument('--mano_root', default=DEFAULT_MANO_ROOT,
                        help="MANO folder for lines with 'mano' parameters")
    args = parser.parse_args(argv)
    try:
        hands = read_labels(args.root, args.mano_root)
    except DataError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    print(f'{args.root}/{LABELS_FILE}: {len(hands)} hands, all lines valid')
    print('\n'.join(summary(hands)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
