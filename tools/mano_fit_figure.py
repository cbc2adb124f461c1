"""Picture of MANO fits beside the meshes they were fitted to, on evaluation images.

    python -m tools.mano_fit_figure --data_root data/FreiHAND_synth --pred output/pred.json \\
        --mano_root data/mano_standin --index 3,7 --out docs/mano_fit.png [--label TEXT]

One row per index: the evaluation image, the pred.json mesh drawn over it, the MANO fit of that
mesh (wild/mano_fit.py) drawn over it, and both from the side; each row says its fit_mean_mm.
"""
import argparse
import json
import os

import cv2
import numpy as np

from wild.mano_fit import ManoFitter
from utils.files.images import save_image
from dataset.freihand.eval.files import load_pred
from utils.mano import MANO
from utils.vis.drawing import put_label
from utils.vis.render import render_mesh

SCALE = 2  # px per image px in the picture
PRED_RGB = (0.45, 0.65, 1.0)  # light blue
FIT_RGB = (1.0, 0.6, 0.3)  # orange


def _side_view(verts, faces, K, size, color):
    """The mesh turned 90 degrees about the vertical axis through its centre."""
    center = verts.mean(0)
    turn = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    return render_mesh((verts - center) @ turn.T + center, faces, K, size, color=color,
                       background=np.full((*size, 3), 255, np.uint8))[0]


def _row(img_rgb, pred, fitted, faces, K, label):
    size = img_rgb.shape[:2]
    panels = [img_rgb,
              render_mesh(pred, faces, K, size, color=PRED_RGB, background=img_rgb)[0],
              render_mesh(fitted, faces, K, size, color=FIT_RGB, background=img_rgb)[0],
              _side_view(pred, faces, K, size, PRED_RGB), _side_view(fitted, faces, K, size, FIT_RGB)]
    row = cv2.resize(np.concatenate(panels, 1), None, fx=SCALE, fy=SCALE,
                     interpolation=cv2.INTER_NEAREST)
    put_label(row, label)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data_root', required=True)
    parser.add_argument('--pred', required=True)
    parser.add_argument('--mano_root', '--mano-root', required=True)
    parser.add_argument('--index', default='0', help='comma-separated evaluation indices')
    parser.add_argument('--label', default='pred.json mesh', help='what the meshes are')
    parser.add_argument('--out', required=True)
    args = parser.parse_args(argv)
    indices = [int(i) for i in args.index.split(',')]
    _, verts = load_pred(args.pred)
    with open(os.path.join(args.data_root, 'evaluation_K.json')) as f:
        Ks = json.load(f)
    fit = ManoFitter(args.mano_root).fit(verts[indices])
    faces = MANO(args.mano_root).faces
    rows = []
    for k, index in enumerate(indices):
        img = cv2.imread(os.path.join(args.data_root, 'evaluation', 'rgb', '%08d.jpg' % index))
        label = (f'#{index}: {args.label} (blue) | MANO fit (orange), fit_mean_mm '
                 f'{fit["fit_mean_mm"][k]:.2f}')
        rows.append(_row(np.ascontiguousarray(img[:, :, ::-1]), verts[index], fit['verts'][k],
                         faces, np.asarray(Ks[index]), label))
    save_image(args.out, np.concatenate(rows, 0))
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
