"""wild/detector.py's side of the worker protocol, without MediaPipe: $SAR_DETECTOR_PYTHON
points at a fake worker (a small script written here) that answers canned hands, dies, or
answers garbage; and the real worker run by the main environment's Python, which has no
mediapipe, says so."""
import gc
import importlib.util
import os
import sys

import numpy as np
import pytest

from wild.detector import (PYTHON_ENV, DetectorUnavailableError, DetectorWorkerError,
                           MediaPipeHands, detector_available)

# A stand-in for wild/detector_worker.py, written from the protocol in its docstring: frames of
# an 8-byte little-endian length, a ready frame, then one JSON answer per .npy image.
FAKE_WORKER = r'''
import io, json, os, struct, sys
import numpy as np

def send(answer):
    payload = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
    sys.stdout.buffer.write(struct.pack('<Q', len(payload)) + payload)
    sys.stdout.buffer.flush()

def hand(label, score, u0, v0, du, dv):
    # 21 landmarks on a grid spanning [u0, u0 + du] x [v0, v0 + dv]
    uv = [[u0 + du * (k % 5) / 4, v0 + dv * (k // 5) / 3] for k in range(20)] + [[u0, v0]]
    return {'landmarks_uv': uv, 'label': label, 'score': score}

mode = os.environ['FAKE_MODE']
if mode == 'unavailable':
    send({'unavailable': 'ImportError: no module named mediapipe (fake)'})
    sys.exit(1)
send({'ready': 'fake'})
while True:
    header = sys.stdin.buffer.read(8)
    if not header:
        break
    image = np.load(io.BytesIO(sys.stdin.buffer.read(struct.unpack('<Q', header)[0])))
    with open(os.environ['FAKE_LOG'], 'a') as log:
        log.write(f'{os.getpid()} {image.shape} {image.dtype} {sys.argv[1:]}\n')
    if mode == 'die':
        sys.stderr.write('boom: the fake worker fell over\n')
        sys.exit(3)
    if mode == 'garbage':
        send(b'<html>not json</html>')
        continue
    # RGB: the red of pixel (0, 0) becomes the left hand's score
    send({'hands': [hand('Left', 0.6, 10, 20, 40, 20), hand('Right', image[0, 0, 0] / 255, 100, 50, 20, 60),
                    hand('Left', 0.3, 200, 100, 10, 10)]})
'''


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """set(mode): the next workers are the fake in `mode`; returns the log of its requests."""
    script = tmp_path / 'fake_worker.py'
    script.write_text(FAKE_WORKER)
    python = tmp_path / 'python'  # what $SAR_DETECTOR_PYTHON names: an executable
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    python.chmod(0o755)
    log = tmp_path / 'requests.log'
    monkeypatch.setenv(PYTHON_ENV, str(python))
    monkeypatch.setenv('FAKE_LOG', str(log))

    def set_mode(mode):
        monkeypatch.setenv('FAKE_MODE', mode)
        return log
    return set_mode


def image_bgr():
    image = np.zeros((160, 240, 3), np.uint8)
    image[0, 0] = (10, 20, 204)  # B, G, R: the fake answers 204 / 255 = 0.8
    return image


def test_hands_are_framed_swapped_sorted_and_capped(fake):
    log = fake('hands')
    detector = MediaPipeHands(max_hands=2)
    for _ in range(3):
        found = detector(image_bgr())
        # Best score first, two of three: the fake's 'Right' (0.8) then its first 'Left' (0.6);
        # MediaPipe's labels are mirrored: 'Right' is a left hand.
        assert [(d.side, round(d.score, 6)) for d in found] == [('left', 0.8), ('right', 0.6)]
        # FreiHAND framing: centre of the landmarks' extent, side 1.57 x the longer extent.
        np.testing.assert_allclose(found[0].box_xywh, (110 - 47.1, 80 - 47.1, 94.2, 94.2))
        np.testing.assert_allclose(found[1].box_xywh, (30 - 31.4, 30 - 31.4, 62.8, 62.8))
        assert found[1].landmarks_uv.shape == (21, 2) and found[1].landmarks_uv[4].tolist() == [50, 20]
    requests = log.read_text().splitlines()
    # One worker for every image, each sent whole as uint8 RGB, with the options asked for.
    assert len(requests) == 3 and len({line.split()[0] for line in requests}) == 1, requests
    assert '(160, 240, 3) uint8' in requests[0] and "'--max_hands', '2'" in requests[0]
    assert len(MediaPipeHands(max_hands=3)(image_bgr())) == 3


def test_the_worker_stops_when_its_detector_goes(fake):
    fake('hands')
    detector = MediaPipeHands(max_hands=1)
    proc = detector._worker.proc
    assert proc.poll() is None
    del detector
    gc.collect()
    assert proc.wait(timeout=10) == 0  # the end of its input: it exits on its own


def test_a_dying_worker_is_named_with_its_stderr_and_replaced(fake):
    log = fake('die')
    detector = MediaPipeHands(max_hands=2)
    with pytest.raises(DetectorWorkerError, match='detector worker') as err:
        detector(image_bgr())
    message = str(err.value)
    assert str(os.environ[PYTHON_ENV]) in message and 'exit code: 3' in message
    assert 'boom: the fake worker fell over' in message
    fake('hands')  # the next image starts a new worker
    assert len(detector(image_bgr())) == 2
    assert len({line.split()[0] for line in log.read_text().splitlines()}) == 2


def test_garbage_from_the_worker_is_an_error_naming_it(fake):
    fake('garbage')
    with pytest.raises(DetectorWorkerError, match=r'detector worker.*answer is not JSON.*<html>'):
        MediaPipeHands()(image_bgr())


def test_a_worker_without_mediapipe_names_the_install_command(fake):
    fake('unavailable')
    with pytest.raises(DetectorUnavailableError, match='make detector') as err:
        MediaPipeHands()
    assert 'no module named mediapipe (fake)' in str(err.value)


def test_the_real_worker_in_the_main_environment_names_the_install_command(monkeypatch):
    # The main environment never holds mediapipe (its protobuf pin breaks tensorboard and onnx).
    assert importlib.util.find_spec('mediapipe') is None, 'mediapipe is in the main environment'
    monkeypatch.setenv(PYTHON_ENV, sys.executable)
    assert not detector_available()
    with pytest.raises(DetectorUnavailableError, match='make detector') as err:
        MediaPipeHands()
    assert 'mediapipe' in str(err.value) and sys.executable in str(err.value)


def test_a_missing_interpreter_names_the_variable_and_the_install_command(tmp_path, monkeypatch):
    missing = tmp_path / 'nowhere' / 'python'
    monkeypatch.setenv(PYTHON_ENV, str(missing))
    assert not detector_available()
    with pytest.raises(DetectorUnavailableError, match='make detector') as err:
        MediaPipeHands()
    assert str(missing) in str(err.value) and PYTHON_ENV in str(err.value)
