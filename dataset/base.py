"""What every hand data set shares: the argument checks, the augmentation draws, the crop,
normalisation and target encoding of an item (docs/method.md §2-3), and the entry a data set
registers (dataset/__init__.py).

A data set subclasses `HandCropDataset` and says where its images and annotations are:
`image_path(idx)`, `crop_box(idx)` (centre and side of the hand box in image pixels),
`intrinsics(idx)`, `training_points(idx)` (camera-frame vertices and joints, m) and
`evaluation_meta(idx)` (at least the wrist depth the decoding adds back); the base class does
the rest, so every data set's items have the same format and collate together.
"""
import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np
from torch.utils.data import Dataset

from manopth.constants import NUM_VERTS
from utils.constants import DEPTH_BOX_M, ROOT_JOINT_IDX
from utils.errors import DataError
from utils.network_spec import NetworkFields
from utils.files.images import read_image
from utils.preprocessing import NO_AUGMENTATION, augment_params, crop_and_augment, normalize
from utils.transforms import encode_uvd

logger = logging.getLogger(__name__)

AUGMENTATION_STREAM = 1  # tags the augmentation seeds apart from other streams of the same seed
_REPORTED_DAMAGE = set()  # damaged image paths already named in this process


def augmentation_entropy(seed, epoch, idx):
    """The numpy SeedSequence entropy of item `idx`'s augmentation draws in `epoch`."""
    return [int(seed), AUGMENTATION_STREAM, int(epoch), int(idx)]


@dataclass(frozen=True)
class Preprocessing:
    """How items are cut and encoded (the config fields of the same names; `augment` is no
    config field: the mode decides it).

    Attributes:
        input_img_shape: (height, width) of the network input crop, pixels.
        depth_box: meters of depth per normalised target unit.
        seed: non-negative int seeding the augmentation draws (`HandCropDataset`).
        augment: random augmentation per item (docs/method.md §2 step 4); None: on for
            training, off for evaluation.
        fx_as_fy: project the targets with fx for both axes, as the published code does
            (docs/method.md §11); False uses fy for v.
    """
    input_img_shape: tuple = NetworkFields.input_img_shape
    depth_box: float = DEPTH_BOX_M
    seed: int = 0
    augment: Optional[bool] = dataclasses.field(default=None, metadata={'config': False})
    fx_as_fy: bool = False

    @classmethod
    def names(cls):
        """The field names, in order."""
        return tuple(field.name for field in dataclasses.fields(cls))

    @classmethod
    def from_config(cls, cfg):
        """The Preprocessing of a resolved configuration: its fields of the same names
        (augmentation left to the mode: on in training, off in evaluation)."""
        return cls(**{field.name: getattr(cfg, field.name) for field in dataclasses.fields(cls)
                      if field.metadata.get('config', True)})

    def checked(self):
        """This preprocessing with plain types; ValueError for a bad seed or depth_box."""
        if not (isinstance(self.seed, (int, np.integer)) and self.seed >= 0):
            raise ValueError(f'seed must be a non-negative int, got {self.seed!r}')
        if not self.depth_box > 0:
            raise ValueError(f'depth_box must be > 0 meters, got {self.depth_box!r}')
        return Preprocessing(tuple(int(s) for s in self.input_img_shape), float(self.depth_box),
                             int(self.seed), self.augment, bool(self.fx_as_fy))


class HandCropDataset(Dataset):
    """Items `(inputs, targets, meta_info)` of hand crops (docs/method.md §2-3).

    inputs['img']: 3 x H x W float32, normalised RGB. Training targets['mesh_pose_uvd']:
    (V + J) x 3 float32 (docs/method.md §3) and targets['verts_valid'] (float32 1, or 0 for a
    joints-only item whose vertex rows are placeholders at the wrist); evaluation targets: {}
    (the evaluator reads the ground truth itself). meta_info: 'idx', 'sample_idx', 'version' (ints), 'img2bb_trans' /
    'bb2img_trans' (2 x 3 float32, image <-> crop), 'K' (3 x 3), 'root_depth' (m: the true
    wrist depth in training, the data set's estimate or given root in evaluation), 'aug_scale',
    'aug_rot', 'aug_transl' (2,), 'aug_color_gain' (3, B G R), plus `evaluation_meta`'s keys.

    Augmentation: the draws of item `idx` in epoch `epoch` come from
    np.random.default_rng(augmentation_entropy(seed, epoch, idx)) and nothing else: the same
    in the main process and in any DataLoader worker, on any rank, before and after a resume.
    Index the set with `(epoch, idx)` (what training.sampler.EpochBatchSampler yields, so
    persistent workers follow the epoch), or with a plain `idx` for the epoch of `set_epoch`.
    """

    MODES = ('training', 'evaluation')
    NAME = 'hand'  # what messages call the data set
    IMAGE_HINT = ''  # how to repair a missing or unreadable image

    def __init__(self, mode, root, preprocessing=Preprocessing()):
        if mode not in self.MODES:
            raise ValueError(f'mode must be one of {self.MODES}, got {mode!r}')
        prep = preprocessing.checked()
        self.mode = mode
        self.root = os.fspath(root)
        self.input_img_shape, self.depth_box = prep.input_img_shape, prep.depth_box
        self.seed, self.fx_as_fy = prep.seed, prep.fx_as_fy
        self.augment = (mode == 'training') if prep.augment is None else bool(prep.augment)
        self.epoch = 0

    # ---- what a data set says ----

    def image_path(self, idx):
        """Path of the image file of item idx."""
        raise NotImplementedError(f'{type(self).__name__} must define image_path')

    def crop_box(self, idx):
        """(centre (2,), side) of item idx's hand box, image pixels."""
        raise NotImplementedError(f'{type(self).__name__} must define crop_box')

    def intrinsics(self, idx):
        """3 x 3 intrinsics of item idx."""
        raise NotImplementedError(f'{type(self).__name__} must define intrinsics')

    def training_points(self, idx):
        """(vertices V x 3, joints J x 3) of training item idx, camera frame, meters; vertices
        None for an item annotated with joints only (trained on its joints, docs/method.md §12)."""
        raise NotImplementedError(f'{type(self).__name__} must define training_points')

    def evaluation_meta(self, idx):
        """meta_info entries of evaluation item idx: at least 'root_depth' (m)."""
        raise NotImplementedError(f'{type(self).__name__} must define evaluation_meta')

    def item_ids(self, idx):
        """('sample_idx', 'version') of item idx."""
        return idx, 0

    # ---- shared ----

    def read_image_checked(self, idx, expected):
        """The BGR image of item idx; DataError naming the file when it is missing or
        unreadable (`expected` says what it should be); damage is logged once per file."""
        path = self.image_path(idx)
        img, damage = read_image(path)
        if damage and path not in _REPORTED_DAMAGE:
            # Once per file and process (DataLoader workers log through the inherited handlers).
            _REPORTED_DAMAGE.add(path)
            logger.warning('%s image %s %s; going on with it. %s', self.mode, path, damage,
                           self.IMAGE_HINT)
        if img is None:
            reason = 'is missing' if not os.path.isfile(path) else 'is not a readable image'
            raise DataError(f'{self.NAME} {self.mode} image {path} {reason}; expected '
                            f'{expected}. {self.IMAGE_HINT}')
        return img

    def set_epoch(self, epoch):
        """The epoch whose augmentation draws a plain integer index gets."""
        self.epoch = int(epoch)

    def augmentation(self, epoch, idx):
        """The augmentation parameters of item `idx` in `epoch` (NO_AUGMENTATION when
        augmentation is off): a pure function of (seed, epoch, idx)."""
        if not self.augment:
            return NO_AUGMENTATION
        return augment_params(np.random.default_rng(augmentation_entropy(self.seed, epoch, idx)))

    def __getitem__(self, key):
        """Item `key` = idx (in the epoch of `set_epoch`) or (epoch, idx)."""
        epoch, idx = key if isinstance(key, tuple) else (self.epoch, key)
        return self.get_item_with_aug(idx, **self.augmentation(int(epoch), int(idx)))

    def get_item_with_aug(self, idx, scale=1.0, rot=0.0, transl=(0.0, 0.0),
                          color_gain=(1.0, 1.0, 1.0)):
        """Item `idx` with explicit augmentation parameters (utils.preprocessing.crop_and_augment).

        Args:
            idx: item index in [0, len).
            scale: source box side multiplier; rot: degrees; transl: (dx, dy) pixels;
            color_gain: (3,) gains in B, G, R order.
        """
        idx = int(idx)
        if not 0 <= idx < len(self):
            raise IndexError(f'{self.NAME} {self.mode} index {idx} out of range [0, {len(self)})')
        K = self.intrinsics(idx)
        center, side = self.crop_box(idx)
        crop_bgr, img2crop, crop2img = crop_and_augment(
            self.read_image(idx), center, side, self.input_img_shape,
            scale=scale, rot=rot, transl=transl, color_gain=color_gain)
        sample, version = self.item_ids(idx)
        meta_info = {
            'idx': idx,
            'sample_idx': sample,
            'version': version,
            'img2bb_trans': img2crop.astype(np.float32),
            'bb2img_trans': crop2img.astype(np.float32),
            'K': np.array(K, dtype=np.float32),  # a copy: cached arrays are read-only memmaps
            'aug_scale': np.float32(scale),
            'aug_rot': np.float32(rot),
            'aug_transl': np.asarray(transl, dtype=np.float32),
            'aug_color_gain': np.asarray(color_gain, dtype=np.float32),
        }
        if self.mode == 'training':
            verts_cam, joints_cam = self.training_points(idx)
            verts_valid = verts_cam is not None
            if not verts_valid:  # finite placeholders the masked losses ignore
                verts_cam = np.repeat(joints_cam[ROOT_JOINT_IDX:ROOT_JOINT_IDX + 1], NUM_VERTS, 0)
            targets = {'mesh_pose_uvd': encode_uvd(
                verts_cam, joints_cam, K, img2crop, crop_size=self.input_img_shape,
                depth_box=self.depth_box, fx_as_fy=self.fx_as_fy).astype(np.float32),
                'verts_valid': np.float32(verts_valid)}
            meta_info['root_depth'] = np.float32(joints_cam[ROOT_JOINT_IDX, 2])
        else:
            targets = {}
            meta_info.update(self.evaluation_meta(idx))
        return {'img': normalize(crop_bgr)}, targets, meta_info


@dataclass(frozen=True)
class DatasetEntry:
    """A registered data set: how the entry scripts build it and what they do with its
    predictions (dataset/__init__.py DATASETS holds one per name). The generic code (train.py,
    test.py, training/, benchmarks/) knows a data set only through these fields.

    Attributes:
        reader: the HandCropDataset subclass (None for a combination of data sets), which
            dataset.get_dataset constructs for code without a configuration.
        build: (mode, cfg) -> the data set of a resolved configuration in mode 'training' or
            'evaluation'.
        write_outputs: (cfg, dataset, xyz, verts, logger) -> test.py's outputs: the
            submission file (pred.json) and, with the ground truth, the local scores (returned).
        check: cfg -> None; ValueError naming the field for a configuration this data set
            cannot run (checked before anything touches the disk).
        check_data: cfg -> None; DataError naming the file for data that cannot be used, read
            by train.py and test.py before they write anything (the custom set checks every
            line of its labels.jsonl here).
        has_ground_truth: cfg -> whether the evaluation ground truth is there (local scores).
        evaluate: (cfg, dataset, xyz, verts) -> the scores dict of the training-time
            evaluation (xyz M x 21 x 3, verts M x 778 x 3, meters, the network's camera frame),
            or None when this data set has none (training then skips evaluation).
        report: scores -> the printed report of `evaluate`'s scores (logged after each
            evaluation).
        score_keys: the keys of `evaluate`'s scores the training monitor records (TensorBoard
            scalars eval/<key>, the history JSON); a None score is skipped.
        score_panels: (mean errors, ratios): the two evaluation panels of the training
            curves, each ((score key, legend label), ...); means in cm, ratios in [0, 1].
        fields: None, or a frozen dataclass of the configuration fields this data set adds
            (defaults and `# comments` as in config.py): config.Config inherits every entry's
            (dataset.DatasetFields). Its class attributes CHOICES and RANGES (optional, in the
            form of config.py's _CHOICES and _RANGES) give the valid values, which config.py
            checks whatever the data set and docs/config.md lists.
    """
    reader: Optional[type]
    build: Callable
    write_outputs: Callable
    check: Callable = lambda cfg: None
    check_data: Callable = lambda cfg: None
    has_ground_truth: Callable = lambda cfg: False
    evaluate: Optional[Callable] = None
    report: Callable = str
    score_keys: Tuple[str, ...] = ()
    score_panels: Tuple[tuple, tuple] = ((), ())
    fields: Optional[type] = None
