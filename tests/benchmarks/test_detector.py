"""benchmarks.detector's hit counting and timing, against the fake worker of
tests/wild/test_detector.py (no MediaPipe): its two hands give boxes centred at (110, 80), side
94.2 ('left') and (30, 30), side 62.8 ('right'), in every image."""
import json

import cv2
import numpy as np

from benchmarks.detector import hit_rate, main, worker_cpu_s
from tests.wild.test_detector import fake, image_bgr  # noqa: F401 (fake is a fixture)
from utils.transforms import HandBox
from wild.detector import MediaPipeHands


def test_hits_need_iou_one_half_and_right_counts_the_best_hit(fake, tmp_path):  # noqa: F811
    fake('hands')
    paths = []
    for k in range(5):
        paths.append(str(tmp_path / f'{k}.png'))
        cv2.imwrite(paths[-1], image_bgr())
    true_boxes = [
        HandBox(np.array([30.0, 30.0]), 62.8),  # the 'right' hand's box: a hit, labelled right
        HandBox(np.array([110.0, 80.0]), 94.2),  # the 'left' hand's: a hit, not right
        HandBox(np.array([200.0, 130.0]), 20.0),  # no hand there: a miss
        # The right hand's box moved by s along u: IoU = (62.8 - s) / (62.8 + s)
        HandBox(np.array([30.0 + 15, 30.0]), 62.8),  # 0.614: a hit, labelled right
        HandBox(np.array([30.0 + 25, 30.0]), 62.8),  # 0.431: a miss
    ]
    detect = MediaPipeHands(max_hands=2)
    hits, right, walls, cpus = hit_rate(paths, true_boxes, detect)
    assert (hits, right) == (3, 2)
    assert len(walls) == len(cpus) == 5 and min(walls) > 0 and min(cpus) >= 0
    assert worker_cpu_s(detect) > 0  # the fake imported numpy: some CPU time


def test_the_benchmark_runs_and_writes_its_report(detector_extra, tmp_path):
    """`python -m benchmarks.detector` end to end with the real detector on two rendered
    evaluation images and a small random network: the report holds the counts it printed."""
    report = tmp_path / 'detector.json'
    main(['--data', str(tmp_path / 'synth'), '--num_eval', '2', '--timed', '1',
          '--report', str(report), '--backbone', 'resnet18', '--input_img_shape', '64,64',
          '--num_stage', '1'])
    fields = json.loads(report.read_text())
    assert fields['images'] == 2
    assert 0 <= fields['hits_labelled_right'] <= fields['hits_iou_0.5'] <= 2
    assert fields['command'].startswith('python -m benchmarks.detector --data')
    timed = [v for k, v in fields.items() if k.startswith('detector + SAR (resnet18, 64 px, ')]
    assert len(timed) == 1 and timed[0]['wall'] > 0 and fields['load_average_end']
