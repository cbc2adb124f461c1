"""HO3D's registry entry (dataset/__init__.py DATASETS): the data sets of a configuration and
test.py's outputs (the submission file in HO3D's format, the local evaluation). HO3D has no
training-time evaluation (train.py skips `eval_interval` for it): score a checkpoint with
test.py --dataset HO3D (docs/ho3d.md)."""
import dataclasses
import os

import numpy as np

from dataset.base import DatasetEntry, Preprocessing
from dataset.freihand.eval import write_pred
from dataset.ho3d import eval as ho3d_eval
from dataset.ho3d.constants import FREIHAND_TO_HO3D, HO3D_VERSIONS, OPENGL_TO_CAMERA
from dataset.ho3d.reader import HO3D
from utils.constants import ROOT_JOINT_IDX


@dataclasses.dataclass(frozen=True)
class HO3DFields:
    """HO3D's configuration fields (its ENTRY's `fields`: config.Config inherits them, and
    checks CHOICES whatever the data set)."""
    # ---- data: HO3D (--dataset HO3D, FreiHAND+HO3D) ----------------------------------------
    ho3d_version: str = 'v2'  # the official split sizes the lists are checked against (docs/ho3d.md)
    ho3d_root: str = ''  # --dataset FreiHAND+HO3D: the HO3D folder trained on beside FreiHAND's data_root

    CHOICES = {'ho3d_version': HO3D_VERSIONS}  # not a field: config.py's valid values


def _build(mode, cfg):
    return HO3D(mode, cfg.data_root, version=cfg.ho3d_version, mano_root=cfg.mano_root,
                preprocessing=Preprocessing.from_config(cfg), cache_dir=cfg.annotation_cache)


CODALAB_HINT = ('HO3D {version} competition on CodaLab (v2 and v3 are separate competitions; '
                'the HO3D page links both)')


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


def write_outputs(cfg, dataset, xyz, verts, logger):
    """test.py's outputs on an HO3D evaluation set (rank 0).

    Writes <output_root>/pred.json in the submission format (meters, OpenGL frame, HO3D joint
    order, evaluation.txt order), logs how to zip and submit it, scores it with dataset.ho3d.eval
    into <output_root>/eval_ho3d when the root holds the released ground truth. Returns the
    scores or None.
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
    return scores


ENTRY = DatasetEntry(reader=HO3D, build=_build, write_outputs=write_outputs,
                     fields=HO3DFields,
                     has_ground_truth=lambda cfg: ho3d_eval.has_gt(cfg.data_root))
