"""The MediaPipe side of wild/detector.py: a worker process run by the detector's own
interpreter (`make detector`: .venv-detector), never imported by the project's code.

    .venv-detector/bin/python wild/detector_worker.py --max_hands 2 --min_score 0.5 --model_complexity 1

It imports only the standard library, numpy and mediapipe (the detector's environment has no
torch and none of the project's packages). The protocol, on stdin and stdout, every message a
FRAME: an 8-byte little-endian unsigned length, then that many bytes:
- first the worker sends a JSON frame: {"ready": mediapipe's version}, or
  {"unavailable": why} (mediapipe does not import) and exits;
- then, per request, the parent sends a frame holding one .npy array (uint8, H x W x 3, RGB;
  read without pickle) and the worker answers a JSON frame: {"hands": [{"landmarks_uv": 21 x 2
  pixels, "label": MediaPipe's handedness label 'Left'|'Right' (as seen in a mirrored image),
  "score": that label's score}, ...]} in MediaPipe's order, or {"error": why};
- end of stdin: the worker exits 0.
Anything else that writes to stdout (MediaPipe's C++ logging) is sent to stderr, so only
frames go down the protocol's pipe.
"""
import argparse
import io
import json
import os
import struct
import sys

import numpy as np

HEADER = struct.Struct('<Q')  # the length of the frame that follows


def read_frame(stream):
    """The next frame's bytes, or None at the end of the stream."""
    header = stream.read(HEADER.size)
    if not header:
        return None
    if len(header) < HEADER.size:
        raise EOFError(f'a frame header of {len(header)} bytes (expected {HEADER.size})')
    size, = HEADER.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        raise EOFError(f'a frame of {len(payload)} bytes (its header said {size})')
    return payload


def write_json(stream, answer):
    payload = json.dumps(answer).encode()
    stream.write(HEADER.pack(len(payload)) + payload)
    stream.flush()


def find_hands(hands, image_rgb):
    """MediaPipe's hands in one RGB image, as the protocol's "hands" list."""
    height, width = image_rgb.shape[:2]
    found = hands.process(image_rgb)
    answer = []
    for landmarks, handedness in zip(found.multi_hand_landmarks or (), found.multi_handedness or ()):
        label = handedness.classification[0]
        answer.append({'landmarks_uv': [[p.x * width, p.y * height] for p in landmarks.landmark],
                       'label': label.label, 'score': label.score})
    return answer


def serve(hands, requests, answers):
    """Answer every request frame until the end of `requests`."""
    while True:
        payload = read_frame(requests)
        if payload is None:
            return
        try:
            image = np.load(io.BytesIO(payload), allow_pickle=False)
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f'expected a uint8 H x W x 3 image, got {image.dtype} {image.shape}')
            answer = {'hands': find_hands(hands, np.ascontiguousarray(image))}
        except Exception as err:  # any failure of one image is that image's answer
            answer = {'error': f'{type(err).__name__}: {err}'}
        write_json(answers, answer)


def main(argv):
    parser = argparse.ArgumentParser(description='MediaPipe hands for wild/detector.py')
    parser.add_argument('--max_hands', type=int, required=True)
    parser.add_argument('--min_score', type=float, required=True)
    parser.add_argument('--model_complexity', type=int, required=True)
    args = parser.parse_args(argv)
    # The protocol keeps the real stdout; fd 1 (print, C++ logging) goes to stderr from here on.
    answers = os.fdopen(os.dup(1), 'wb')
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        import mediapipe
        mp_hands = mediapipe.solutions.hands
    except (ImportError, AttributeError) as err:
        write_json(answers, {'unavailable': f'{type(err).__name__}: {err} (in {sys.executable})'})
        return 1
    hands = mp_hands.Hands(static_image_mode=True, max_num_hands=args.max_hands,
                           model_complexity=args.model_complexity,
                           min_detection_confidence=args.min_score)
    write_json(answers, {'ready': mediapipe.__version__})
    with hands:
        serve(hands, sys.stdin.buffer, answers)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
