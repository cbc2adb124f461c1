"""One hand of a photo or a video frame as predicted (`Hand`), and its JSON record, the one
builder that photos (`<name>.json`) and video lines (`<name>.jsonl`) share.

Camera frame everywhere: x right, y down, z forward (the optical axis), meters; pixels u right,
v down. The records stay in this (OpenCV) frame whatever `--axes` the mesh files use.
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np

SIDES = ('right', 'left')
DECIMALS_M = 6  # record coordinates rounded to 1e-6 m (as pred.json)
DECIMALS_PX = 2  # record pixels rounded to 0.01 px


@dataclass(kw_only=True)
class Hand:
    """One predicted hand (fields given by name).

    box_xywh: [x, y, w, h] px of the crop it was predicted in; side: 'right' or 'left';
    score: the detector's (or --boxes file's) confidence in [0, 1], None when the box was given
    or tracked; box_source: 'bbox', 'centre', 'auto', 'boxes', 'detector' or 'tracked';
    K: 3 x 3 px and K_source (wild.camera.image_intrinsics); root_depth: wrist depth, m, and
    root_depth_source ('auto', 'given'; videos also 'previous_frame', 'fallback');
    joints_cam: 21 x 3 m; verts_cam: V x 3 m; joints_uv: 21 x 2 px (projected as decoded);
    hand_scale_m: the size prior of root_depth 'auto'; mano: the wild.mano_fit.fit_record of
    the hand with --fit_mano, mano_verts_cam: the fitted mesh (V x 3 m), else None.
    """

    box_xywh: list
    side: str
    score: Optional[float]
    box_source: str
    K: np.ndarray
    K_source: str
    root_depth: float
    root_depth_source: str
    joints_cam: np.ndarray
    verts_cam: np.ndarray
    joints_uv: np.ndarray
    hand_scale_m: Optional[float] = None
    mano: Optional[dict] = None
    mano_verts_cam: Optional[np.ndarray] = None


def hand_record(hand):
    """The JSON object of one hand (docs/own_images.md "The JSON record"): plain JSON types,
    meters rounded to 1e-6 m, pixels to 0.01 px."""
    record = {
        'hand': hand.side,
        'score': None if hand.score is None else round(float(hand.score), 4),
        'box': [round(float(v), DECIMALS_PX) for v in hand.box_xywh],
        'box_source': hand.box_source,
        'K': np.round(np.asarray(hand.K, dtype=np.float64), 6).tolist(),
        'K_source': hand.K_source,
        'root_depth_m': round(float(hand.root_depth), DECIMALS_M),
        'root_depth_source': hand.root_depth_source,
    }
    if hand.hand_scale_m is not None:
        record['hand_scale_m'] = hand.hand_scale_m
    record['joints_cam'] = np.round(np.asarray(hand.joints_cam, dtype=np.float64), DECIMALS_M).tolist()
    record['joints_2d'] = np.round(np.asarray(hand.joints_uv, dtype=np.float64), DECIMALS_PX).tolist()
    record['verts_cam'] = np.round(np.asarray(hand.verts_cam, dtype=np.float64), DECIMALS_M).tolist()
    if hand.mano is not None:
        record['mano'] = hand.mano
    return record


def image_record(name, image_size, hands):
    """The JSON object of one photo: its file name, size [width, height] px and its hands."""
    height, width = image_size
    return {'image': name, 'image_size': [int(width), int(height)],
            'hands': [hand_record(hand) for hand in hands]}


def frame_record(index, fps, hand, box_reset=False, reset_reason=None):
    """The JSON-lines object of one video frame: frame (index), time (s, index / fps; None
    without a frame rate), box_reset and reset_reason (the tracker's), then the hand record."""
    return {'frame': int(index), 'time': round(index / fps, 6) if fps else None,
            'box_reset': bool(box_reset), 'reset_reason': reset_reason, **hand_record(hand)}
