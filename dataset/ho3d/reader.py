"""HO3D v2 / v3 training and evaluation sets for SAR (docs/ho3d.md).

Training: one item per frame of train.txt whose meta pickle has every hand field (frames with
None fields are skipped and counted). The mesh is MANO (flat_hand_mean=True) of the frame's
handPose, handBeta and handTrans; vertices and handJoints3D are taken from HO3D's OpenGL frame
to the network's camera frame (diag(1, -1, -1)) and the joints reordered to FreiHAND's order.
The crop box comes from the projected joints with FreiHAND's framing (utils.transforms'
`box_from_joints`: 1.57 x the joints' 2D extent), the augmentation and the targets are
FreiHAND's (docs/method.md §2-3).
Evaluation: one item per line of evaluation.txt, in that order, cropped with the frame's
`handBoundingBox` and decoded at the given ground-truth root depth; `root_cam` (the root in the
network's frame) lets the caller place the prediction at the given root (docs/ho3d.md §4).

Items are `(inputs, targets, meta_info)` with the keys of dataset.freihand's items (training
items of both sets collate together, see dataset.get_dataset('FreiHAND+HO3D')).

Meta pickles are read with a restricted unpickler (NumPy arrays and plain containers only):
anything else is refused before it can run. Annotation cache (utils.files.annotations): the meta
pickles of a split are read once into a float64 table `<cache_dir>/ho3d_<version>_<split>.table.npy`
and the training meshes into `ho3d_<version>_train.verts.npy` (float32, camera frame); both are
memory-mapped read-only by later runs, DataLoader workers and ranks. A cache is rebuilt when
the list file, the size or mtime of any meta pickle (or, for the meshes, the MANO file)
changed; delete the folder to drop it.
"""
import hashlib
import io
import logging
import math
import os
import pickle

import numpy as np
import torch

from dataset.base import HandCropDataset, Preprocessing
from dataset.ho3d.constants import (HO3D_IMG_SIZE, HO3D_SPLIT_SIZES, HO3D_TO_FREIHAND,
                                    HO3D_VERSIONS, OPENGL_TO_CAMERA)
from manopth.constants import NUM_BETAS, NUM_JOINTS, NUM_POSE, NUM_VERTS
from manopth.io import numpy_pickle_globals
from manopth.manolayer import ManoLayer
from utils.errors import DataError
from utils.files.annotations import cached_array, resolve_cache_dir, write_record
from utils.files.atomic import atomic_open
from utils.mano import DEFAULT_MANO_ROOT, mano_meters
from utils.transforms import box_from_joints, project

logger = logging.getLogger(__name__)

DEFAULT_ROOT = 'data/HO3D'
SPLITS = {'training': 'train', 'evaluation': 'evaluation'}  # mode -> folder and <name>.txt
IMAGE_EXTENSIONS = ('.jpg', '.png')  # v3 ships JPEGs, v2 PNGs: whichever exists is read
# Evaluation crop side = EVAL_BOX_ENLARGE x the longer side of handBoundingBox, centred on it.
# The training box is 1.57 x the projected joints' extent (FreiHAND's framing); on the
# synthetic set (synthetic/ho3d.py, whose handBoundingBox is the tight box of the projected
# mesh) that box is 1.34 x the mesh box's longer side (median of 1000 training frames; quartiles
# 1.28 and 1.39), so the evaluation crops frame the hand as the training crops do.
EVAL_BOX_ENLARGE = 1.34
MANO_CHUNK = 512  # frames per batched MANO evaluation when the mesh cache is built
CACHE_LAYOUT = 1  # version of the table columns below (part of every cache record)

# Fields of a meta pickle that SAR reads, with their shapes (docs/ho3d.md §2).
TRAIN_FIELDS = {'handPose': (NUM_POSE,), 'handBeta': (NUM_BETAS,), 'handTrans': (3,),
                'handJoints3D': (NUM_JOINTS, 3), 'camMat': (3, 3)}
EVAL_FIELDS = {'handBoundingBox': (4,), 'handJoints3D': (3,), 'camMat': (3, 3)}
_FLIP = np.asarray(OPENGL_TO_CAMERA)

DOWNLOAD_HINT = (
    'HO3D (v2 or v3) is downloaded from the HO3D page of TU Graz (with the evaluation ground '
    'truth evaluation_xyz.json / evaluation_verts.json released in Nov 2024); unpack it so that '
    'the root folder holds train.txt, evaluation.txt, train/<seq>/{rgb,meta}/ and '
    'evaluation/<seq>/{rgb,meta}/, or pass root=<folder> (--data_root). '
    '`python -m synthetic.ho3d` writes a synthetic set in that layout.')


def _columns(fields, start=1):
    """({field: slice}, width) of the values of `fields` flattened from column `start` on (the
    table's column 0 is the frame's line in the list file)."""
    out = {}
    for name, shape in fields.items():
        out[name] = slice(start, start + math.prod(shape))
        start += math.prod(shape)
    return out, start


TRAIN_COLUMNS, TRAIN_WIDTH = _columns(TRAIN_FIELDS)
EVAL_COLUMNS, EVAL_WIDTH = _columns(EVAL_FIELDS)


# ---------------------------------------------------------------------------------------------
# Meta pickles
# ---------------------------------------------------------------------------------------------

_ALLOWED_GLOBALS = numpy_pickle_globals()


class _MetaUnpickler(pickle.Unpickler):
    """Resolves only the globals of pickled NumPy arrays; anything else is refused when the
    pickle names it, before any call can run (`find_class` comes first)."""

    def __init__(self, file, path):
        super().__init__(file, encoding='latin1')  # the old (Python 2) files need latin1
        self.path = path

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(
                f"{self.path}: refusing to load global '{module}.{name}': an HO3D meta pickle "
                f"holds only NumPy arrays and plain containers (dict, list, str, numbers, None). "
                f"This file is not an HO3D annotation or was tampered with; nothing in it was "
                f"executed. Re-download its sequence.") from None


def read_meta(path):
    """The dict of one HO3D meta pickle, through the restricted unpickler (docs/ho3d.md §2).

    Raises DataError naming the file when it is missing, not a pickle, not a dict, or names
    any global other than NumPy's array reconstruction (nothing of such a file runs).
    """
    path = os.fspath(path)
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as err:
        raise DataError(f'cannot read the HO3D meta pickle {path} ({err}). {DOWNLOAD_HINT}') from None
    try:
        meta = _MetaUnpickler(io.BytesIO(data), path).load()
    except DataError:
        raise
    except Exception as err:  # any malformed byte stream: pickle raises many kinds
        raise DataError(f'{path} is not a readable pickle ({type(err).__name__}: {err}); '
                        f're-download its sequence.') from None
    if not isinstance(meta, dict):
        raise DataError(f'{path} holds a pickled {type(meta).__name__}, expected the dict of an '
                        f'HO3D meta file; re-download its sequence.')
    return meta


def meta_row(meta, fields, path):
    """The float64 values of `fields` ({name: shape}) of a meta dict, flattened in order, or
    None when one of them is None (a frame without a hand annotation).

    Raises DataError naming the file and field for a missing key, a wrong shape, a value that
    is not numeric or not finite, or a camera matrix / box / depth that cannot be right.
    """
    missing = [name for name in fields if name not in meta]
    if missing:
        raise DataError(f'{path}: the meta pickle has no {missing} (keys found: {sorted(meta)}); '
                        f'an HO3D meta file has {sorted(fields)}. Re-download its sequence.')
    if any(meta[name] is None for name in fields):
        return None
    values = []
    for name, shape in fields.items():
        try:
            value = np.asarray(meta[name], dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f'{path}: field {name!r} is {type(meta[name]).__name__} '
                            f'{meta[name]!r:.60}, expected numbers of shape {shape}.') from None
        if value.shape != shape:
            raise DataError(f'{path}: field {name!r} has shape {value.shape}, expected {shape} '
                            f'(docs/ho3d.md §2); re-download its sequence.')
        if not np.all(np.isfinite(value)):
            raise DataError(f'{path}: field {name!r} has non-finite values.')
        values.append(value.ravel())
    row = np.concatenate(values)
    _check_values(row, _columns(fields, start=0)[0], path)
    return row


def _check_values(row, columns, path):
    K = row[columns['camMat']].reshape(3, 3)
    if K[0, 0] <= 0 or K[1, 1] <= 0 or not np.allclose(K[2], [0, 0, 1]):
        raise DataError(f'{path}: camMat {K.tolist()} is not a pinhole matrix [[fx, 0, cx], '
                        f'[0, fy, cy], [0, 0, 1]] with fx, fy > 0.')
    depth = row[columns['handJoints3D']].reshape(-1, 3)[:, 2]
    if np.any(depth >= 0):
        raise DataError(f'{path}: handJoints3D has z >= 0 ({depth.max():.4f} m); HO3D points are '
                        f'in the OpenGL camera frame, in front of the camera at z < 0 '
                        f'(docs/ho3d.md §3).')
    if 'handBoundingBox' in columns:
        x_min, y_min, x_max, y_max = row[columns['handBoundingBox']]
        if not (x_max > x_min and y_max > y_min):
            raise DataError(f'{path}: handBoundingBox {[x_min, y_min, x_max, y_max]} is not '
                            f'[x_min, y_min, x_max, y_max] with x_max > x_min and y_max > y_min.')


# ---------------------------------------------------------------------------------------------
# Frame lists
# ---------------------------------------------------------------------------------------------

def read_frame_list(path):
    """The "<seq>/<id>" lines of train.txt / evaluation.txt, in file order."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as err:
        raise DataError(f'cannot read the HO3D frame list {path} ({err}). {DOWNLOAD_HINT}') from None
    names = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        parts = line.split('/')
        if len(parts) != 2 or not all(parts):
            raise DataError(f'{path} line {number} is {line!r}, expected "<sequence>/<frame id>" '
                            f'(e.g. "ABF10/0000").')
        names.append(line)
    if not names:
        raise DataError(f'{path} lists no frames. {DOWNLOAD_HINT}')
    return names


def _check_count(path, count, version, split):
    expected = HO3D_SPLIT_SIZES[version][split]
    if count != expected:
        logger.warning('%s lists %d frames, HO3D %s has %d %s frames: using the %d listed (a '
                       'subset? if the set is the other version, pass version / --ho3d_version).',
                       path, count, version, expected, split, count)


def _source(root, split, names, list_path, version):
    """The cache record fields of a split: the list file and every meta pickle's size and mtime."""
    digest = hashlib.sha1(usedforsecurity=False)
    for name in names:
        seq, frame = name.split('/')
        path = os.path.join(root, split, seq, 'meta', frame + '.pkl')
        try:
            stat = os.stat(path)
        except OSError as err:
            raise DataError(f'{list_path} lists {name}, but its meta pickle {path} cannot be read '
                            f'({err.strerror}). {DOWNLOAD_HINT}') from None
        digest.update(f'{name}:{stat.st_size}:{stat.st_mtime_ns};'.encode())
    stat = os.stat(list_path)
    return {'ho3d_version': version, 'table_layout': CACHE_LAYOUT, 'list_size': stat.st_size,
            'list_mtime_ns': stat.st_mtime_ns, 'meta_files': digest.hexdigest()}


# ---------------------------------------------------------------------------------------------
# Data set
# ---------------------------------------------------------------------------------------------

class HO3D(HandCropDataset):
    """HO3D frames with SAR preprocessing (docs/method.md §2) and targets (§3); docs/ho3d.md.

    Shares the crop, augmentation and target encoding of every data set (dataset.base);
    everything that reads the data is HO3D's own.

    Args:
        mode: 'training' (train.txt) or 'evaluation' (evaluation.txt).
        root: HO3D folder (layout in docs/ho3d.md §1).
        version: 'v2' or 'v3': the official split sizes the lists are compared with (a subset
            is used with a warning naming both counts).
        mano_root: folder holding MANO_RIGHT.pkl (training: the meshes of the MANO fits).
        preprocessing: dataset.base.Preprocessing (input size, depth box, augmentation seed
            and switch, fx_as_fy).
        cache_dir: 'auto' (default), None / 'off' or a folder (see the module docstring).
        eval_box_enlarge: evaluation crop side per pixel of handBoundingBox's longer side.

    Items: as FreiHAND's; meta_info 'sample_idx' is the frame's line in the list file and
    'version' is 0; evaluation adds 'root_cam' (3,) m, the given root in the network's frame.
    Attributes: `frame_names` ("<seq>/<id>" per item), `num_skipped` (training frames without
    a hand annotation).
    """

    NAME = 'HO3D'
    IMAGE_HINT = 'Re-download its sequence.'

    def __init__(self, mode, root=DEFAULT_ROOT, version='v2', mano_root=DEFAULT_MANO_ROOT,
                 preprocessing=Preprocessing(), cache_dir='auto', eval_box_enlarge=EVAL_BOX_ENLARGE):
        if version not in HO3D_VERSIONS:
            raise ValueError(f'HO3D version must be one of {HO3D_VERSIONS}, got {version!r}')
        super().__init__(mode, root, preprocessing)
        self.version, self.split = version, SPLITS.get(mode)
        self.mano_root = os.fspath(mano_root)
        self.eval_box_enlarge = float(eval_box_enlarge)

        if not os.path.isdir(self.root):
            raise DataError(f'HO3D root folder {os.path.abspath(self.root)} does not exist. {DOWNLOAD_HINT}')
        list_path = os.path.join(self.root, self.split + '.txt')
        names = read_frame_list(list_path)
        _check_count(list_path, len(names), version, self.split)
        self._check_sequences(names, list_path)
        self.cache_dir = resolve_cache_dir(self.root, cache_dir)
        fields = TRAIN_FIELDS if mode == 'training' else EVAL_FIELDS
        self.table = self._load_table(names, list_path, fields)
        lines = self.table[:, 0].astype(np.int64)
        self.frame_names = [names[i] for i in lines]
        self.num_samples = len(self.frame_names)
        self.num_skipped = len(names) - self.num_samples
        if self.num_skipped:
            skipped = sorted(set(names) - set(self.frame_names))
            logger.warning('HO3D %s: skipped %d of %d frames of %s whose meta pickles have None '
                           'hand fields (e.g. %s)', mode, self.num_skipped, len(names), list_path,
                           ', '.join(skipped[:3]))
        if not self.num_samples:
            raise DataError(f'{list_path}: none of its {len(names)} frames has a hand annotation '
                            f'(every meta pickle has None hand fields).')
        if mode == 'training':
            self.verts_cam = self._load_meshes(names, list_path)
        for idx in (0, len(self) - 1):
            self.image_path(idx)  # raises for a missing image
        logger.info('HO3D %s %s: %d items from %s', version, mode, len(self), os.path.abspath(self.root))

    # ---- loading ----

    def _check_sequences(self, names, list_path):
        first_line = {}
        for number, name in enumerate(names, 1):
            first_line.setdefault(name.split('/')[0], number)
        for seq, number in first_line.items():
            for folder in (os.path.join(self.root, self.split, seq),
                           os.path.join(self.root, self.split, seq, 'meta')):
                if not os.path.isdir(folder):
                    raise DataError(f'{list_path} (frame {number}) names sequence {seq!r}, but the '
                                    f'folder {folder} does not exist. {DOWNLOAD_HINT}')

    def _meta_path(self, name):
        seq, frame = name.split('/')
        return os.path.join(self.root, self.split, seq, 'meta', frame + '.pkl')

    def _read_table(self, names, fields):
        rows = []
        for line, name in enumerate(names):
            path = self._meta_path(name)
            row = meta_row(read_meta(path), fields, path)
            if row is not None:
                rows.append(np.concatenate([[line], row]))
        width = 1 + sum(math.prod(shape) for shape in fields.values())
        return np.asarray(rows, dtype=np.float64).reshape(-1, width)

    def _cache_path(self, kind):
        return os.path.join(self.cache_dir, f'ho3d_{self.version}_{self.split}.{kind}.npy')

    def _load_table(self, names, list_path, fields):
        """(frames with a hand) x (1 + values) float64: the list line, then `fields` flattened."""
        if self.cache_dir is None:
            return self._read_table(names, fields)
        width = 1 + sum(math.prod(shape) for shape in fields.values())
        self._source = _source(self.root, self.split, names, list_path, self.version)

        def build(npy_path):
            table = self._read_table(names, fields)
            with atomic_open(npy_path, 'wb') as f:
                np.save(f, table, allow_pickle=False)
            write_record(npy_path, self._source, os.path.abspath(list_path))

        return cached_array(self._cache_path('table'), self._source, (width,), build, np.float64,
                            f'the meta pickles of {list_path}')

    def _mano_source(self):
        path = os.path.join(self.mano_root, 'MANO_RIGHT.pkl')
        try:
            stat = os.stat(path)
        except OSError:
            raise DataError(f'HO3D training needs the MANO model for the meshes of its fits: {path} '
                            f'does not exist; set mano_root (--mano_root).') from None
        return {'mano_file': os.path.abspath(path), 'mano_size': stat.st_size,
                'mano_mtime_ns': stat.st_mtime_ns}

    def _compute_meshes(self, out=None):
        """Camera-frame vertices (N x 778 x 3, m) of the table's MANO fits, in chunks."""
        layer = ManoLayer(mano_root=self.mano_root, side='right', use_pca=False,
                          flat_hand_mean=True, center_idx=None)
        meshes = []
        for start in range(0, len(self.table), MANO_CHUNK):
            rows = np.array(self.table[start:start + MANO_CHUNK])  # a writable copy for torch
            verts, _ = mano_meters(layer, torch.as_tensor(rows[:, TRAIN_COLUMNS['handPose']], dtype=torch.float32),
                                   torch.as_tensor(rows[:, TRAIN_COLUMNS['handBeta']], dtype=torch.float32))
            verts_gl = verts + rows[:, None, TRAIN_COLUMNS['handTrans']]
            chunk = (verts_gl * _FLIP).astype('<f4')
            if out is None:
                meshes.append(chunk)
            else:
                out.write(chunk.data)
        return np.concatenate(meshes) if out is None else None

    def _load_meshes(self, names, list_path):
        mano_source = self._mano_source()
        if self.cache_dir is None:
            return self._compute_meshes()
        source = {**self._source, **mano_source}

        def build(npy_path):
            shape = (len(self.table), NUM_VERTS, 3)
            with atomic_open(npy_path, 'wb') as f:
                np.lib.format.write_array_header_1_0(f, {'descr': '<f4', 'fortran_order': False,
                                                         'shape': shape})
                self._compute_meshes(out=f)
            write_record(npy_path, source, os.path.abspath(list_path))

        return cached_array(self._cache_path('verts'), source, (NUM_VERTS, 3), build, np.float32,
                            f'the MANO fits of {list_path}')

    # ---- items ----

    def __len__(self):
        return self.num_samples

    def image_path(self, idx):
        """Path of the image of item `idx`: rgb/<id>.jpg (v3) or rgb/<id>.png (v2), whichever exists."""
        seq, frame = self.frame_names[idx].split('/')
        stem = os.path.join(self.root, self.split, seq, 'rgb', frame)
        for extension in IMAGE_EXTENSIONS:
            if os.path.isfile(stem + extension):
                return stem + extension
        raise DataError(f'HO3D {self.mode} image {stem}.jpg (or .png) does not exist. {DOWNLOAD_HINT}')

    def read_image(self, idx):
        height, width = HO3D_IMG_SIZE
        return self.read_image_checked(idx, f'a {width}x{height} RGB image')

    def hand_box(self, idx):
        """(centre (2,), side) of item idx's crop box, image pixels (docs/ho3d.md §4)."""
        row = self.table[idx]
        if self.mode == 'training':
            K = row[TRAIN_COLUMNS['camMat']].reshape(3, 3)
            uv = project(self.joints_cam(idx), K)[:, :2]
            return tuple(box_from_joints(uv))
        x_min, y_min, x_max, y_max = row[EVAL_COLUMNS['handBoundingBox']]
        side = self.eval_box_enlarge * max(x_max - x_min, y_max - y_min)
        return np.array([(x_min + x_max) / 2, (y_min + y_max) / 2]), side

    def joints_cam(self, idx):
        """Training item idx's 21 joints (FreiHAND order), network camera frame, m."""
        joints_gl = self.table[idx, TRAIN_COLUMNS['handJoints3D']].reshape(NUM_JOINTS, 3)
        return (joints_gl * _FLIP)[list(HO3D_TO_FREIHAND)]

    def crop_box(self, idx):
        return self.hand_box(idx)

    def intrinsics(self, idx):
        columns = TRAIN_COLUMNS if self.mode == 'training' else EVAL_COLUMNS
        return self.table[idx, columns['camMat']].reshape(3, 3)

    def item_ids(self, idx):
        return int(self.table[idx, 0]), 0

    def training_points(self, idx):
        return self.verts_cam[idx], self.joints_cam(idx)

    def evaluation_meta(self, idx):
        root_cam = self.table[idx, EVAL_COLUMNS['handJoints3D']] * _FLIP
        return {'root_depth': np.float32(root_cam[2]), 'root_cam': root_cam.astype(np.float32)}

    def root_cam(self):
        """Evaluation: the given roots, M x 3 float64, network camera frame (m), item order."""
        if self.mode != 'evaluation':
            raise ValueError('root_cam() is the evaluation split\'s given roots; this is the training split')
        return np.asarray(self.table[:, EVAL_COLUMNS['handJoints3D']]) * _FLIP
