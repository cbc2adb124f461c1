"""Reading and checking the HO3D evaluator's inputs (docs/ho3d.md §5): pred.json (the
submission format) and the released evaluation ground truth of an HO3D root."""
import logging
import os

import numpy as np

from dataset.ho3d.constants import FREIHAND_TO_HO3D, HO3D_SPLIT_SIZES
from utils.errors import EvaluationInputError
from dataset.freihand.eval import files as freihand_files
from dataset.freihand.eval.metrics import align_similarity, point_errors

logger = logging.getLogger(__name__)

GT_XYZ_FILE = freihand_files.GT_XYZ_FILE  # evaluation_xyz.json: M x 21 x 3, m, OpenGL, HO3D order
GT_VERTS_FILE = freihand_files.GT_VERTS_FILE  # evaluation_verts.json: M x 778 x 3
EVALUATION_LIST = 'evaluation.txt'
# A prediction whose joints, read as FreiHAND-ordered, fit the ground truth this much better
# (median Procrustes-aligned error) is refused as being in the wrong joint order.
ORDER_RATIO = 0.5
_GT_HINT = ('the HO3D evaluation ground truth (evaluation_xyz.json and evaluation_verts.json, '
            'released in Nov 2024) goes in the HO3D root beside evaluation.txt')
_FRAME_FIX = ('HO3D submissions are in the OpenGL camera frame, where the hand is at negative '
              'z: multiply every point by (1, -1, -1) (test.py --dataset HO3D writes that frame)')


def has_gt(root):
    """True when the HO3D root holds both evaluation ground-truth files."""
    return freihand_files.has_gt(root)


def load_gt(root, cache='auto'):
    """(xyz_gt M x 21 x 3, verts_gt M x 778 x 3) float64, m, of an HO3D root, checked against
    evaluation.txt (when present: one line per entry, the lists are in its order).

    Read through the annotation cache exactly as json.load reads them (as the FreiHAND
    evaluator does, dataset.freihand.eval.files.load_gt). A count that is neither version's
    official size is scored with a warning naming the counts (a subset).
    """
    root = os.fspath(root)
    for name in (GT_XYZ_FILE, GT_VERTS_FILE):
        if not os.path.isfile(os.path.join(root, name)):
            raise EvaluationInputError(f'ground-truth file not found: {os.path.join(root, name)}; {_GT_HINT}')
    xyz_gt, verts_gt = freihand_files.load_gt(root, cache)
    list_path = os.path.join(root, EVALUATION_LIST)
    if os.path.isfile(list_path):
        with open(list_path) as f:
            count = sum(1 for line in f if line.strip())
        if count != len(xyz_gt):
            raise EvaluationInputError(
                f'{list_path} lists {count} frames but {os.path.join(root, GT_XYZ_FILE)} has '
                f'{len(xyz_gt)} entries; the ground truth is in evaluation.txt order, so both must '
                f'come from the same HO3D version (v2 or v3).')
    sizes = {version: sizes['evaluation'] for version, sizes in HO3D_SPLIT_SIZES.items()}
    if len(xyz_gt) not in sizes.values():
        logger.warning('%s: %d evaluation frames, not the full set of HO3D v2 (%d) or v3 (%d): '
                       'the scores are those of this subset.', root, len(xyz_gt), sizes['v2'], sizes['v3'])
    return xyz_gt, verts_gt


def check_frame(path, xyz_pred):
    """EvaluationInputError when a sample's joints all have z > 0 (the OpenCV frame)."""
    in_front = np.all(xyz_pred[..., 2] > 0, axis=1)
    if in_front.any():
        first = int(np.argmax(in_front))
        raise EvaluationInputError(
            f'{path}: {int(in_front.sum())} of {len(xyz_pred)} samples (the first: sample {first}) '
            f'have every joint at z > 0, the camera frame of OpenCV; {_FRAME_FIX}.')


def check_order(path, xyz_gt, xyz_pred):
    """EvaluationInputError when the joints are in FreiHAND's order instead of HO3D's.

    Read as FreiHAND-ordered (reordered to HO3D's), a FreiHAND-ordered prediction fits the
    ground truth far better; a prediction in HO3D's order fits worse once reordered.
    """
    as_is = np.median(point_errors(xyz_gt, align_similarity(xyz_gt, xyz_pred)).mean(axis=1))
    reordered = xyz_pred[:, list(FREIHAND_TO_HO3D)]
    swapped = np.median(point_errors(xyz_gt, align_similarity(xyz_gt, reordered)).mean(axis=1))
    if swapped < ORDER_RATIO * as_is:
        raise EvaluationInputError(
            f"{path}: the joints look like FreiHAND's order (wrist, thumb 1-4, index 1-4, ...): read "
            f"that way they fit the ground truth with a median aligned error of {100 * swapped:.2f} cm, "
            f"against {100 * as_is:.2f} cm as given. HO3D's order is MANO's (0 wrist, 1-3 index, "
            f"4-6 middle, 7-9 pinky, 10-12 ring, 13-15 thumb, 16-20 tips of thumb, index, middle, "
            f"ring, pinky): reorder with dataset.ho3d.constants.FREIHAND_TO_HO3D.")


def load_pred(path, xyz_gt=None):
    """Read and check an HO3D pred.json: `[xyz_list, verts_list]`, M x 21 x 3 and M x 778 x 3,
    meters, OpenGL frame, HO3D joint order, evaluation.txt order.

    With `xyz_gt` (M x 21 x 3) the count must equal M and the joint order is checked.
    Returns (xyz_pred, verts_pred) float64. Raises EvaluationInputError naming the file.
    """
    path = os.fspath(path)
    xyz_pred, verts_pred = freihand_files.load_pred(path, None if xyz_gt is None else len(xyz_gt))
    check_frame(path, xyz_pred)
    if xyz_gt is not None:
        check_order(path, xyz_gt, xyz_pred)
    return xyz_pred, verts_pred
