"""The reader of a custom data set: the checked hands of labels.jsonl as SAR items.

Left hands are read mirrored (image flipped, labels by `Hand.as_right`): the network is a
right-hand network. `to_image_frame` takes predictions back to each image's own frame.
"""
import logging
import os

import cv2
import numpy as np

from dataset.base import HandCropDataset, Preprocessing
from dataset.custom.labels import LABELS_FILE, mirror_points, read_labels
from utils.constants import ROOT_JOINT_IDX, SCALE_BONE
from utils.errors import DataError
from utils.mano import DEFAULT_MANO_ROOT
from utils.transforms import box_from_joints, project

logger = logging.getLogger(__name__)

SPLIT_OF_MODE = {'training': 'train', 'evaluation': 'test'}


def crop_of(hand):
    """(centre (2,), side) px of a hand's square crop: its box (centre, longer side) or, without
    one, the demo's box around the projected joints (utils.transforms.box_from_joints)."""
    if hand.box is None:
        box = box_from_joints(project(hand.joints, hand.K)[:, :2], hand.image_size)
        return np.asarray(box.center, dtype=np.float64), float(box.side)
    x, y, w, h = hand.box
    return np.array([x + w / 2, y + h / 2]), float(max(w, h))


class Custom(HandCropDataset):
    """A folder with labels.jsonl (docs/own_data.md) as SAR training or evaluation items.

    Args:
        mode: 'training' (the lines of split 'train') or 'evaluation' (split 'test').
        root: the folder holding labels.jsonl and the images.
        preprocessing: dataset.base.Preprocessing.
        mano_root: MANO folder for lines given as 'mano' parameters.
        repeat: training items per line and epoch (item k is line k % M; each repeat gets its
            own augmentation draws), to raise the share of a small set trained beside FreiHAND.
        hands: the already checked lines (dataset.custom.labels.read_labels), or None to read
            them.

    Items: dataset.base.HandCropDataset's; a line without vertices trains on its joints
    (targets['verts_valid'] 0); evaluation's 'root_depth' is the line's root_depth or the
    ground truth's, 'scale' the length (m) of bone 9-10.
    """

    NAME = 'custom'
    IMAGE_HINT = f'Fix or remove its line in {LABELS_FILE} (python -m dataset.custom.check DIR).'

    def __init__(self, mode, root, preprocessing=Preprocessing(), mano_root=DEFAULT_MANO_ROOT,
                 repeat=1, hands=None):
        super().__init__(mode, root, preprocessing)
        hands = read_labels(self.root, mano_root) if hands is None else hands
        split = SPLIT_OF_MODE[mode]
        self.hands = [hand for hand in hands if hand.split == split]  # the image's own frame
        if not self.hands:
            raise DataError(f"{os.path.join(self.root, LABELS_FILE)} has no line of split "
                            f"'{split}', which {mode} reads: give some lines \"split\": "
                            f"\"{split}\" (docs/own_data.md)")
        self.right = [hand.as_right() for hand in self.hands]  # what the network sees
        self.crops = [crop_of(hand) for hand in self.right]
        self.repeat = int(repeat) if mode == 'training' else 1
        if self.repeat < 1:
            raise ValueError(f'repeat must be >= 1, got {repeat!r}')
        logger.info('custom %s: %d hands (%d left, %d joints only) x %d from %s', mode,
                    len(self.hands), sum(h.side == 'left' for h in self.hands),
                    sum(h.verts is None for h in self.hands), self.repeat, self.root)

    def __len__(self):
        return self.repeat * len(self.hands)

    def _hand(self, idx):
        return self.right[idx % len(self.hands)]

    def item_ids(self, idx):
        return idx % len(self.hands), idx // len(self.hands)

    def image_path(self, idx):
        return os.path.join(self.root, self._hand(idx).image)

    def read_image(self, idx):
        img = self.read_image_checked(idx, f'the JPEG or PNG image its line of {LABELS_FILE} names')
        return cv2.flip(img, 1) if self.hands[idx % len(self.hands)].side == 'left' else img

    def crop_box(self, idx):
        return self.crops[idx % len(self.hands)]

    def intrinsics(self, idx):
        return self._hand(idx).K

    def training_points(self, idx):
        hand = self._hand(idx)
        return hand.verts, hand.joints

    def evaluation_meta(self, idx):
        hand = self._hand(idx)
        depth = hand.joints[ROOT_JOINT_IDX, 2] if hand.root_depth is None else hand.root_depth
        bone = np.linalg.norm(hand.joints[SCALE_BONE[0]] - hand.joints[SCALE_BONE[1]])
        return {'root_depth': np.float32(depth), 'scale': np.float32(bone)}

    # ---- evaluation ----

    def ground_truth(self):
        """(joints M x 21 x 3, vertices M x 778 x 3 or None unless every line has them), m,
        each image's own frame, float64."""
        joints = np.stack([hand.joints for hand in self.hands])
        if any(hand.verts is None for hand in self.hands):
            return joints, None
        return joints, np.stack([hand.verts for hand in self.hands])

    def to_image_frame(self, *points):
        """Predictions (each M x P x 3, m, the network's right-hand frame) in each image's own
        frame: left hands mirrored back."""
        left = np.array([hand.side == 'left' for hand in self.hands])
        return tuple(np.where(left[:, None, None], mirror_points(p), p) for p in points)
