"""FreiHAND training and evaluation sets for SAR (docs/method.md §1-3, 7).

Training: 4*N items, N read from the annotation files. Item k is sample k % N in image
version k // N of (gs, hom, sample, auto); its image is `training/rgb/%08d.jpg` % k, and all
four versions share the sample's annotations.
Evaluation: M items (version gs only), with the RootNet root depth that test-time decoding
(docs/method.md §7) adds back.

Items are `(inputs, targets, meta_info)` dicts of numpy arrays (float32) and ints; the
default DataLoader collate turns them into tensors.

Annotation cache (`cache_dir`, utils.files.annotations): training_verts.json is about 1 GB of JSON.
Each annotation file is parsed once in bulk into a float32 `.npy` beside a record of the JSON
file's size and mtime (a changed file is parsed again), by default in `<root>/.sar_cache`, or
under ~/.cache/sar/annotations when the root is read-only; later runs memory-map it read-only,
so all torchrun ranks and DataLoader workers of a node share one copy in the page cache.
Concurrent ranks build it once (file lock). `cache_dir=None` parses the JSON files every time;
delete the folder to drop the cache.
"""
import logging
import os

import numpy as np

from manopth.constants import NUM_JOINTS, NUM_VERTS
from dataset.base import HandCropDataset, Preprocessing
from dataset.freihand.annotations import load_annotation
from dataset.freihand.constants import FREIHAND_IMG_SIZE, FREIHAND_VERSIONS, ROOTNET_FILE
from utils.constants import TRAINING_BOX_CENTER, TRAINING_BOX_SIZE
from utils.files.annotations import resolve_cache_dir
from utils.errors import DataError
from dataset.freihand.json_values import read_json

logger = logging.getLogger(__name__)

DEFAULT_ROOT = 'data/FreiHAND'
ROOT_DEPTH_MM_THRESHOLD = 10.0  # root_cam z above this (m) can only be millimeters (docs/method.md §1)

DOWNLOAD_HINT = (
    'FreiHAND v2 (with the evaluation annotations) is downloaded from the FreiHAND page of the '
    'University of Freiburg (Computer Vision Group); unpack it so that the root folder holds '
    'training/rgb/%08d.jpg, training/mask/%08d.jpg, evaluation/rgb/%08d.jpg, training_K.json, '
    'training_xyz.json, training_verts.json, training_mano.json, training_scale.json, '
    'evaluation_K.json, evaluation_scale.json (evaluation_xyz.json, evaluation_verts.json), plus '
    f'{ROOTNET_FILE} (the RootNet output published with I2L-MeshNet), or pass root=<folder>.'
)


def _require_file(path, what):
    if not os.path.isfile(path):
        raise DataError(f'missing {what}: {path} does not exist. {DOWNLOAD_HINT}')


def _read_json(path, what):
    """Parsed JSON of `path` (and whether its values need a type scan), errors naming the file."""
    _require_file(path, what)
    return read_json(path, what, DataError)


def _check_intrinsics(K, path):
    """Raise a DataError for the first K (N x 3 x 3) that is not a valid pinhole matrix."""
    fx, fy, cx, cy = K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2]
    problems = [
        (~np.isfinite(K).all(axis=(1, 2)), 'has non-finite values'),
        (~np.all(K[:, 2] == np.array([0, 0, 1], dtype=K.dtype), axis=1), 'last row is not [0, 0, 1]'),
        ((fx <= 0) | (fy <= 0), 'is not invertible as a camera matrix (fx and fy must be > 0)'),
        ((np.abs(K[:, 0, 1]) > 1e-6 * np.abs(fx)) | (K[:, 1, 0] != 0),
         'has non-zero skew entries K[0][1] / K[1][0] (the projection u = fx*x/z + cx ignores them)'),
        ((cx < 0) | (cx > FREIHAND_IMG_SIZE) | (cy < 0) | (cy > FREIHAND_IMG_SIZE),
         f'has its principal point outside the {FREIHAND_IMG_SIZE}x{FREIHAND_IMG_SIZE} image '
         '(FreiHAND uses (112, 112))'),
    ]
    for bad, reason in problems:
        if bad.any():
            index = int(np.argmax(bad))
            raise DataError(f'{path}: intrinsics entry {index} {reason}: {K[index].tolist()}; expected '
                            '[[fx, 0, cx], [0, fy, cy], [0, 0, 1]].')


def _check_points_in_front(points, path):
    """Raise a DataError for the first sample (N x P x 3, meters) that is non-finite or has z <= 0."""
    bad = ~np.isfinite(points).all(axis=(1, 2)) | (points[..., 2] <= 0).any(axis=1)
    if bad.any():
        index = int(np.argmax(bad))
        raise DataError(f'{path}: entry {index} has non-finite values or points with depth z <= 0 '
                        f'(expected camera-frame meters in front of the camera); re-extract the file.')


def _root_depths_in_meters(depth, path):
    """The RootNet depths (M,) of `path` in meters, the unit decided once for the whole file.

    Every depth above ROOT_DEPTH_MM_THRESHOLD (10 m, no hand is that far): the file is in
    millimeters, converted with one log line; none above: meters, as published. A mix cannot
    be one unit (a corrupt or stitched file): DataError naming an entry of each kind.
    """
    in_mm = depth > ROOT_DEPTH_MM_THRESHOLD
    if not in_mm.any():
        return depth
    if not in_mm.all():
        big, small = int(np.argmax(in_mm)), int(np.argmin(in_mm))
        raise DataError(f'{path}: root depths mix units: entry {big} has root_cam[2] = '
                        f'{depth[big]:g} (above {ROOT_DEPTH_MM_THRESHOLD:g}, so millimeters) but entry '
                        f'{small} has {depth[small]:g} (meters); {int(in_mm.sum())} of {len(depth)} '
                        f'entries are above {ROOT_DEPTH_MM_THRESHOLD:g}. A file holds one unit: '
                        f're-create it, or use the {ROOTNET_FILE} published with I2L-MeshNet.')
    depth = depth / 1000.0
    logger.warning('%s: every root depth exceeds %g, so the file is in millimeters: converted all %d '
                   'to meters (median %.3f m).', path, ROOT_DEPTH_MM_THRESHOLD, len(depth),
                   float(np.median(depth)))
    return depth


class FreiHAND(HandCropDataset):
    """FreiHAND images with SAR preprocessing (docs/method.md §2) and targets (docs/method.md §3).

    Args:
        mode: 'training' or 'evaluation'.
        root: FreiHAND folder (layout in docs/method.md §1 and DOWNLOAD_HINT).
        preprocessing: dataset.base.Preprocessing (input size, depth box, augmentation seed
            and switch, fx_as_fy).
        rootnet_file: evaluation root depths (default `root`/bbox_root_freihand_output.json).
        cache_dir: folder of the float32 .npy annotation cache (see the module docstring):
            'auto' (default) is utils.files.annotations.resolve_cache_dir(root, 'auto'); None or 'off'
            disables the cache.

    Items: dataset.base.HandCropDataset's; the RootNet estimate is evaluation's 'root_depth',
    and evaluation adds 'scale' (m, the reference bone length of evaluation_scale.json).
    """

    NAME = 'FreiHAND'
    IMAGE_HINT = 'Re-extract the FreiHAND image folder.'

    def __init__(self, mode, root=DEFAULT_ROOT, preprocessing=Preprocessing(), rootnet_file=None,
                 cache_dir='auto'):
        super().__init__(mode, root, preprocessing)
        if not os.path.isdir(self.root):
            raise DataError(f'FreiHAND root folder {os.path.abspath(self.root)} does not exist. {DOWNLOAD_HINT}')
        self.cache_dir = resolve_cache_dir(self.root, cache_dir)
        if mode == 'training':
            self._load_training()
        else:
            self._load_evaluation(rootnet_file)
        for idx in (0, len(self) - 1):
            _require_file(self.image_path(idx), f'{mode} image {idx}')
        logger.info('FreiHAND %s: %d items from %s', mode, len(self), os.path.abspath(self.root))

    def _annotation(self, name, entry_shape):
        """float32 N x entry_shape array of the JSON file `name` in root (read-only when cached)."""
        path = os.path.join(self.root, name)
        _require_file(path, 'annotation file')
        return load_annotation(path, entry_shape, self.cache_dir, what='annotation file')

    def _check_same_length(self, counts):
        if len(set(counts.values())) != 1:
            listing = ', '.join(f'{os.path.join(self.root, name)}: {count}' for name, count in counts.items())
            raise DataError(f'FreiHAND annotation files disagree on the number of samples ({listing}); '
                            'they must come from the same download: re-extract them.')

    def _load_training(self):
        self.K = self._annotation('training_K.json', (3, 3))
        self.joints_cam = self._annotation('training_xyz.json', (NUM_JOINTS, 3))
        self.verts_cam = self._annotation('training_verts.json', (NUM_VERTS, 3))
        self._check_same_length({'training_K.json': len(self.K), 'training_xyz.json': len(self.joints_cam),
                                 'training_verts.json': len(self.verts_cam)})
        _check_intrinsics(self.K, os.path.join(self.root, 'training_K.json'))
        _check_points_in_front(self.joints_cam, os.path.join(self.root, 'training_xyz.json'))
        _check_points_in_front(self.verts_cam, os.path.join(self.root, 'training_verts.json'))
        self.num_samples = len(self.K)

    def _load_evaluation(self, rootnet_file):
        self.K = self._annotation('evaluation_K.json', (3, 3))
        self.scale = self._annotation('evaluation_scale.json', ())
        self._check_same_length({'evaluation_K.json': len(self.K), 'evaluation_scale.json': len(self.scale)})
        bad_scale = ~(np.isfinite(self.scale) & (self.scale > 0))
        if bad_scale.any():
            index = int(np.argmax(bad_scale))
            raise DataError(f'{os.path.join(self.root, "evaluation_scale.json")}: entry {index} is '
                            f'{self.scale[index]}, expected a positive bone length in meters.')
        _check_intrinsics(self.K, os.path.join(self.root, 'evaluation_K.json'))
        self.num_samples = len(self.K)
        rootnet_path = os.path.join(self.root, ROOTNET_FILE) if rootnet_file is None else os.fspath(rootnet_file)
        self.root_depth = self._read_root_depths(rootnet_path)

    def _read_root_depths(self, path):
        """RootNet wrist depths (M,) float32 meters from `path` (docs/method.md §1), checked against the images."""
        entries, _ = _read_json(path, 'RootNet root file')
        count = self.num_samples
        k_path = os.path.join(self.root, 'evaluation_K.json')
        if not isinstance(entries, list) or len(entries) != count:
            found = f'{len(entries)} entries' if isinstance(entries, list) else f'a JSON {type(entries).__name__}'
            raise DataError(f'{path} holds {found} but {k_path} lists {count} evaluation images; the RootNet file '
                            'must hold one entry per evaluation image, in evaluation order (docs/method.md §1). Use the '
                            f'{ROOTNET_FILE} published for FreiHAND with I2L-MeshNet.')
        depth = np.empty(count, dtype=np.float64)
        prev_index, prev_id = None, None
        for index, entry in enumerate(entries):
            root_cam = entry.get('root_cam') if isinstance(entry, dict) else None
            try:
                root_cam = np.asarray(root_cam, dtype=np.float64)
            except (ValueError, TypeError):
                root_cam = None
            if root_cam is None or root_cam.shape != (3,):
                raise DataError(f'{path}: entry {index} has no numeric "root_cam": [x, y, z]; expected entries '
                                '{"image_id", "bbox", "root_cam"} (docs/method.md §1).')
            if not np.isfinite(root_cam[2]) or root_cam[2] <= 0:
                raise DataError(f'{path}: entry {index} has root depth root_cam[2] = {root_cam[2]}, expected a '
                                'positive distance in front of the camera.')
            depth[index] = root_cam[2]
            image_id = entry.get('image_id')
            if image_id is not None:
                if not isinstance(image_id, int) or isinstance(image_id, bool):
                    raise DataError(f'{path}: entry {index} has image_id {image_id!r}, expected an integer.')
                if prev_id is not None and image_id != prev_id + (index - prev_index):
                    raise DataError(f'{path}: entry {index} has image_id {image_id} but entry {prev_index} has '
                                    f'image_id {prev_id}; image_ids must increase one by one in evaluation '
                                    'order, since entries are matched to images by list position (docs/method.md §1).')
                prev_index, prev_id = index, image_id
        return _root_depths_in_meters(depth, path).astype(np.float32)

    def __len__(self):
        if self.mode == 'training':
            return len(FREIHAND_VERSIONS) * self.num_samples
        return self.num_samples

    def image_path(self, idx):
        """Path of the image file of item `idx` (the file index equals the item index)."""
        return os.path.join(self.root, self.mode, 'rgb', '%08d.jpg' % idx)

    def read_image(self, idx):
        return self.read_image_checked(
            idx, f'a {FREIHAND_IMG_SIZE}x{FREIHAND_IMG_SIZE} RGB JPEG')

    def item_ids(self, idx):
        return idx % self.num_samples, idx // self.num_samples

    def crop_box(self, idx):
        return TRAINING_BOX_CENTER, TRAINING_BOX_SIZE

    def intrinsics(self, idx):
        return self.K[idx % self.num_samples]

    def training_points(self, idx):
        sample = idx % self.num_samples
        return self.verts_cam[sample], self.joints_cam[sample]

    def evaluation_meta(self, idx):
        return {'root_depth': self.root_depth[idx], 'scale': self.scale[idx]}
