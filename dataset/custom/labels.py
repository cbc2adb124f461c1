"""Reading and checking `labels.jsonl` (docs/own_data.md "The format"): one hand per line.

Every line is checked before anything is trained, tested or written; the first bad line raises
a LabelError naming labels.jsonl, the line number and the field. The checked lines are `Hand`
records in the image's own frame (a left hand as annotated); `Hand.as_right` mirrors a left
hand into the right-hand frame the network works in (u -> W - 1 - u).
"""
import json
import os
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
import torch

from manopth.constants import NUM_BETAS, NUM_JOINTS, NUM_POSE, NUM_VERTS
from manopth.manolayer import ManoLayer
from utils.errors import DataError
from utils.files.images import read_image
from utils.mano import DEFAULT_MANO_ROOT, mano_meters

LABELS_FILE = 'labels.jsonl'
SIDES = ('right', 'left')
SPLITS = ('train', 'test')
MANO_KEYS = {'pose': NUM_POSE, 'shape': NUM_BETAS, 'trans': 3}  # values per key
FIELDS = ('image', 'K', 'joints_3d', 'side', 'verts_3d', 'mano', 'box', 'root_depth', 'split',
          'pseudo_label', 'source')
FORMAT_HINT = 'the format is in docs/own_data.md; check a folder with python -m dataset.custom.check DIR'


class LabelError(DataError):
    """A line of labels.jsonl that cannot be used; the message names the file, line and field."""


@dataclass(frozen=True)
class Hand:
    """One checked line of labels.jsonl.

    image: path relative to the labels' folder; image_size: (height, width) px; K: 3 x 3 px;
    joints: 21 x 3 m (camera frame, FreiHAND order); verts: 778 x 3 m or None (joints only);
    side: 'right' | 'left'; box: [x, y, w, h] px or None (from the joints); root_depth: m or
    None (the ground truth's wrist depth); split: 'train' | 'test'; pseudo_label: the line came
    from a prediction (dataset.custom.convert demo); line: its 1-based line number.
    """
    image: str
    image_size: tuple
    K: np.ndarray
    joints: np.ndarray
    verts: Optional[np.ndarray]
    side: str
    box: Optional[np.ndarray]
    root_depth: Optional[float]
    split: str
    pseudo_label: bool
    line: int

    def as_right(self):
        """This hand in the right-hand frame of its horizontally mirrored image (itself for a
        right hand): u -> W - 1 - u, so cx -> W - 1 - cx, box [x, y, w, h] ->
        [W - 1 - x - w, y, w, h], and camera points (x, y, z) -> (-x, y, z)."""
        if self.side == 'right':
            return self
        last = self.image_size[1] - 1.0
        K = self.K.copy()
        K[0, 2] = last - K[0, 2]
        box = None
        if self.box is not None:
            box = self.box.copy()
            box[0] = last - box[0] - box[2]
        return replace(self, K=K, joints=mirror_points(self.joints),
                       verts=None if self.verts is None else mirror_points(self.verts), box=box)


def mirror_points(points):
    """Camera-frame points mirrored through the y-z plane: (x, y, z) -> (-x, y, z)."""
    points = np.array(points, dtype=np.float64)
    points[..., 0] = -points[..., 0]
    return points


class _Line:
    """The fields of one line, with errors that name the file, the line and the field."""

    def __init__(self, path, number, values):
        self.path, self.number, self.values = path, number, values

    def error(self, field, problem):
        return LabelError(f"{self.path} line {self.number}: field '{field}' {problem}; "
                          f"{FORMAT_HINT}.")

    def array(self, field, shape, required=True):
        """The field as a finite float64 array of `shape`, or None when absent and optional."""
        if field not in self.values or self.values[field] is None:
            if required:
                raise self.error(field, 'is missing (required)')
            return None
        try:
            value = np.array(self.values[field], dtype=np.float64)
        except (TypeError, ValueError):
            value = None
        if value is None or value.shape != shape:
            found = 'not a numeric array' if value is None else f'of shape {value.shape}'
            raise self.error(field, f'is {found}, expected {" x ".join(map(str, shape)) or "a number"}')
        if not np.isfinite(value).all():
            where = np.argwhere(~np.isfinite(value))[0].tolist() if value.ndim else []
            raise self.error(field, f'has a non-finite value{f" at {where}" if where else ""}')
        return value

    def choice(self, field, choices):
        value = self.values.get(field, choices[0])
        if value not in choices:
            raise self.error(field, f'is {value!r}, expected one of {list(choices)}')
        return value


def _check_K(line, K):
    if not (K[2] == (0.0, 0.0, 1.0)).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise line.error('K', f'is {K.tolist()}, expected [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] '
                              f'with fx, fy > 0 (pixels)')


def _check_in_front(line, field, points):
    behind = np.flatnonzero(points[:, 2] <= 0)
    if len(behind):
        raise line.error(field, f'puts point {int(behind[0])} at depth z = {points[behind[0], 2]:g} '
                                f'm, behind the camera of K (camera frame: x right, y down, '
                                f'z forward, meters)')


def _image(line, root):
    name = line.values.get('image')
    if not isinstance(name, str) or not name:
        raise line.error('image', 'is missing (required: a path relative to the folder of '
                                  f'{LABELS_FILE})')
    path = os.path.join(root, name)
    if not os.path.isfile(path):
        raise line.error('image', f'names {path}, which does not exist')
    img, _ = read_image(path)
    if img is None:
        raise line.error('image', f'names {path}, which is not a readable JPEG or PNG image')
    return name, img.shape[:2]


def _box(line, image_size):
    box = line.array('box', (4,), required=False)
    if box is None:
        return None
    if box[2] <= 0 or box[3] <= 0:
        raise line.error('box', f'is {box.tolist()}: width and height must be > 0 (pixels)')
    height, width = image_size
    centre_u, centre_v = box[0] + box[2] / 2, box[1] + box[3] / 2
    if not (0 <= centre_u <= width - 1 and 0 <= centre_v <= height - 1):
        raise line.error('box', f'is {box.tolist()}: its centre ({centre_u:g}, {centre_v:g}) is '
                                f'outside the {width} x {height} image')
    return box


def _mano_params(line):
    """{'pose', 'shape', 'trans', 'flat_hand_mean'} of the 'mano' field, or None."""
    value = line.values.get('mano')
    if value is None:
        return None
    if not isinstance(value, dict):
        raise line.error('mano', 'is not an object {"pose": 48, "shape": 10, "trans": 3}')
    unknown = sorted(set(value) - set(MANO_KEYS) - {'flat_hand_mean'})
    if unknown:
        raise line.error('mano', f'has unknown keys {unknown}')
    params = {}
    for key, count in MANO_KEYS.items():
        try:
            params[key] = np.array(value.get(key), dtype=np.float64)
        except (TypeError, ValueError):
            params[key] = None
        if params[key] is None or params[key].shape != (count,):
            raise line.error('mano', f"key '{key}' must be {count} numbers")
        if not np.isfinite(params[key]).all():
            raise line.error('mano', f"key '{key}' has a non-finite value")
    params['flat_hand_mean'] = value.get('flat_hand_mean', True)
    if not isinstance(params['flat_hand_mean'], bool):
        raise line.error('mano', "key 'flat_hand_mean' must be true or false")
    return params


def parse_line(path, number, text, root):
    """(Hand with verts None, mano parameters or None) of one line; LabelError naming the field."""
    line = _Line(path, number, None)
    try:
        values = json.loads(text)
    except ValueError as err:
        raise LabelError(f'{path} line {number}: not a JSON object ({err}); {FORMAT_HINT}.') from None
    if not isinstance(values, dict):
        raise LabelError(f'{path} line {number}: not a JSON object; {FORMAT_HINT}.')
    line.values = values
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise line.error(unknown[0], f'is not a field of the format (known: {", ".join(FIELDS)})')
    image, image_size = _image(line, root)
    K = line.array('K', (3, 3))
    _check_K(line, K)
    joints = line.array('joints_3d', (NUM_JOINTS, 3))
    _check_in_front(line, 'joints_3d', joints)
    verts = line.array('verts_3d', (NUM_VERTS, 3), required=False)
    mano = _mano_params(line)
    if verts is not None and mano is not None:
        raise line.error('mano', "is given beside 'verts_3d': give one of the two")
    if verts is not None:
        _check_in_front(line, 'verts_3d', verts)
    root_depth = line.array('root_depth', (), required=False)
    if root_depth is not None and root_depth <= 0:
        raise line.error('root_depth', f'is {float(root_depth):g}, expected a depth > 0 (meters)')
    pseudo = values.get('pseudo_label', False)
    if not isinstance(pseudo, bool):
        raise line.error('pseudo_label', 'must be true or false')
    hand = Hand(image=image, image_size=tuple(int(s) for s in image_size), K=K, joints=joints,
                verts=verts, side=line.choice('side', SIDES), box=_box(line, image_size),
                root_depth=None if root_depth is None else float(root_depth),
                split=line.choice('split', SPLITS), pseudo_label=pseudo, line=number)
    return hand, mano


def mano_vertices(params, side, mano_root):
    """778 x 3 camera-frame vertices (m) of one hand's `mano` field: the MANO model of `side`
    in mano_root (MANO_RIGHT.pkl / MANO_LEFT.pkl), full 45-value pose (no PCA), the pose
    relative to the flat hand (flat_hand_mean true, manopth's default) or to MANO's mean hand
    (false, FreiHAND's convention), `trans` (m) added after posing."""
    layer = ManoLayer(mano_root=mano_root, side=side, use_pca=False,
                      flat_hand_mean=params['flat_hand_mean'], center_idx=None).double()
    verts, _ = mano_meters(layer, torch.as_tensor(params['pose'])[None],
                           torch.as_tensor(params['shape'])[None])
    return verts[0] + params['trans']


def _with_mano_vertices(path, hand, params, mano_root):
    model_file = os.path.join(mano_root, f'MANO_{hand.side.upper()}.pkl')
    if not os.path.isfile(model_file):
        raise LabelError(f"{path} line {hand.line}: field 'mano' needs the {hand.side} MANO "
                         f'model {model_file}, which does not exist; set --mano_root to the '
                         f'folder holding it (docs/install.md)')
    verts = mano_vertices(params, hand.side, mano_root)
    _check_in_front(_Line(path, hand.line, {}), 'mano', verts)
    return replace(hand, verts=verts)


def read_labels(root, mano_root=None):
    """Every hand of `root`/labels.jsonl, checked, in the image's own frame (list of Hand).

    Lines holding only whitespace are skipped. LabelError names the file, the line and the
    field of the first bad line (DataError when the file is missing or empty).
    """
    path = os.path.join(os.fspath(root), LABELS_FILE)
    if not os.path.isfile(path):
        raise DataError(f'{path} does not exist: a custom data set is a folder with '
                        f'{LABELS_FILE} and the images it names ({FORMAT_HINT})')
    hands = []
    with open(path, encoding='utf-8') as f:
        for number, text in enumerate(f, start=1):
            if not text.strip():
                continue
            hand, params = parse_line(path, number, text, os.fspath(root))
            if params is not None:
                hand = _with_mano_vertices(path, hand, params, mano_root or DEFAULT_MANO_ROOT)
            hands.append(hand)
    if not hands:
        raise DataError(f'{path} holds no line: one JSON object per hand ({FORMAT_HINT})')
    return hands


def line_of(hand_record):
    """The labels.jsonl line (JSON text, no newline) of a record dict whose arrays may be
    numpy: floats written in full (round-trip exact)."""
    def plain(value):
        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, (np.floating, np.integer)):
            return value.item()
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value
    return json.dumps({k: plain(v) for k, v in hand_record.items() if v is not None})
