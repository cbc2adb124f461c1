"""HO3D in the entry layer (docs/ho3d.md §4-5): the data set keywords of a configuration and
the outputs of `test.py --dataset HO3D` (pred.json in the submission format, how to submit it,
the local scores when the evaluation ground truth is present)."""
import os

import numpy as np

from dataset import MIXED
from inference.predict import write_pred
from utils import ho3d_eval
from utils.constants import FREIHAND_TO_HO3D, OPENGL_TO_CAMERA, ROOT_JOINT_IDX

CODALAB_HINT = ('HO3D {version} competition on CodaLab (v2 and v3 are separate competitions; '
                'the HO3D page links both)')


def dataset_kwargs(cfg):
    """The keyword arguments dataset.get_dataset needs for cfg.dataset beyond the common ones."""
    if cfg.dataset == 'HO3D':
        return {'version': cfg.ho3d_version, 'mano_root': cfg.mano_root}
    if cfg.dataset == MIXED:
        return {'version': cfg.ho3d_version, 'mano_root': cfg.mano_root, 'ho3d_root': cfg.ho3d_root}
    return {}


def submission_arrays(xyz_cam, verts_cam, root_cam):
    """HO3D's submission arrays from the network's decoded predictions.

    The prediction is translated so that its wrist sits on the given ground-truth root (the
    common practice), taken to the OpenGL frame (diag(1, -1, -1)) and its joints to HO3D's order.

    xyz_cam: M x 21 x 3 (FreiHAND order), verts_cam: M x 778 x 3, root_cam: M x 3, meters,
    the network's camera frame. Returns (xyz M x 21 x 3, verts M x 778 x 3) float64, meters.
    """
    offset = (np.asarray(root_cam, dtype=np.float64) - xyz_cam[:, ROOT_JOINT_IDX])[:, None]
    flip = np.asarray(OPENGL_TO_CAMERA)
    xyz = (xyz_cam + offset) * flip
    verts = (verts_cam + offset) * flip
    return xyz[:, list(FREIHAND_TO_HO3D)], verts


def write_outputs(cfg, dataset, xyz, verts, logger, faces=None):
    """test.py's outputs on an HO3D evaluation set (rank 0).

    Writes <output_root>/pred.json in the submission format (meters, OpenGL frame, HO3D joint
    order, evaluation.txt order), logs how to zip and submit it, scores it with utils.ho3d_eval
    into <output_root>/eval_ho3d when the root holds the released ground truth, and renders
    cfg.vis_num results with cfg.vis (`faces`: MANO faces). Returns the scores or None.
    """
    xyz_gl, verts_gl = submission_arrays(xyz, verts, dataset.root_cam())
    path = write_pred(os.path.join(cfg.output_root, 'pred.json'), xyz_gl, verts_gl)
    logger.info('wrote %s (%d frames, HO3D %s submission format). To submit: cd %s && zip -j '
                'pred.zip pred.json, then upload pred.zip to the %s.', path, len(xyz_gl),
                cfg.ho3d_version, cfg.output_root, CODALAB_HINT.format(version=cfg.ho3d_version))
    scores = None
    if ho3d_eval.has_gt(cfg.data_root):
        xyz_gt, verts_gt = ho3d_eval.load_gt(cfg.data_root, cfg.annotation_cache)
        # The values pred.json holds (rounded to 1e-6 m), so the scores equal the command line's.
        scores = ho3d_eval.evaluate(xyz_gt, verts_gt, np.round(xyz_gl, 6), np.round(verts_gl, 6))
        out_dir = os.path.join(cfg.output_root, 'eval_ho3d')
        ho3d_eval.write_outputs(scores, out_dir)
        logger.info('local HO3D evaluation (the official definitions), written to %s:\n%s', out_dir,
                    ho3d_eval.format_report(scores))
    else:
        logger.info('no evaluation ground truth (evaluation_xyz.json, evaluation_verts.json) in %s: '
                    'skipping the local evaluation', cfg.data_root)
    if cfg.vis:
        from utils.vis.panels import render_results
        paths = render_results(dataset, xyz, verts, faces, cfg.vis_dir, cfg.vis_num)
        logger.info('rendered %d results to %s', len(paths), cfg.vis_dir)
    return scores
