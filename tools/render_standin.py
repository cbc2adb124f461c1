"""Picture of the procedural MANO stand-in in four poses (docs/standin_poses.png).

    python -m tools.render_standin [--out docs/standin_poses.png]

The stand-in is written to a temporary folder, read back through `load_mano` and posed with
`ManoLayer` (the mean pose: hands_mean; fist, point and spread from
`synthetic.standin.example_pose`), so the picture shows what every user of the file gets.
"""
import argparse
import tempfile

import numpy as np
import torch

from synthetic import standin
from manopth.manolayer import ManoLayer
from utils.mano import mano_meters

VIEW_DIR = np.array([0.35, -1.0, 0.45])  # from the palm side, slightly from the thumb
VIEW_UP = np.array([-1.0, 0.0, 0.0])  # fingers (-x in the template frame) point up
TILE_PX = 400
FOCAL_PX = 550.0
DISTANCE_M = 0.36


def camera_frame_verts(verts):
    """Template-frame vertices -> OpenCV camera frame looking at their centroid along VIEW_DIR."""
    centre = verts.mean(axis=0)
    forward = -VIEW_DIR / np.linalg.norm(VIEW_DIR)  # camera z: from the eye to the hand
    right = np.cross(forward, VIEW_UP)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])  # rows: camera x, y, z in template coordinates
    return (verts - centre) @ rotation.T + np.array([0.0, 0.0, DISTANCE_M])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='docs/standin_poses.png')
    args = parser.parse_args(argv)
    from utils.vis.render import render_mesh
    from utils.vis.drawing import make_grid
    from utils.files.images import save_image

    with tempfile.TemporaryDirectory() as folder:
        standin.main(['--out', folder])
        layer = ManoLayer(mano_root=folder, use_pca=False, flat_hand_mean=True)
    model = standin.build_standin()
    # The mean pose is hands_mean on the flat hand (what flat_hand_mean=False adds).
    poses = {'mean pose': model['hands_mean'], **{
        name: standin.example_pose(name, model['J']) for name in ('fist', 'point', 'spread')}}
    K = np.array([[FOCAL_PX, 0, (TILE_PX - 1) / 2], [0, FOCAL_PX, (TILE_PX - 1) / 2], [0, 0, 1]])
    tiles = []
    for pose in poses.values():
        coeffs = torch.as_tensor(np.concatenate([np.zeros(3), pose]), dtype=torch.float64)[None]
        verts = mano_meters(layer, coeffs)[0][0]
        tiles.append(render_mesh(camera_frame_verts(verts), layer.th_faces.numpy(), K,
                                 (TILE_PX, TILE_PX), color=(0.85, 0.68, 0.58))[0])
    save_image(args.out, make_grid(tiles, ncols=4, labels=list(poses)))
    print(f'wrote {args.out} (procedural stand-in, not the licensed MANO model)')


if __name__ == '__main__':
    main()
