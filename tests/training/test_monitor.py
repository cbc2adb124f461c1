"""training.monitor: TensorBoard steps and purge on resume, the log-line suffix and its timing,
the history JSON and the curves picture."""
import json
import os
import re

import cv2
import numpy as np
import pytest

from dataset import freihand
from dataset.freihand.entry import MEAN_PANEL, RATIO_PANEL
from dataset.freihand.eval import SCORE_KEYS
from training import monitor as monitor_module
from training.monitor import Monitor, RunLength, format_duration, load_history, write_curves_png

event_accumulator = pytest.importorskip(
    'tensorboard.backend.event_processing.event_accumulator')

SUFFIX = re.compile(r'^\[(\d+\.\d) img/s\]\[data (\d+)%\]\[eta (\d+):(\d\d):(\d\d)\]$')
NAMES = ['coord_0', 'normal_0', 'edge_0']


def scalars(path):
    """{tag: [(step, value), ...]} of a TensorBoard folder or event file."""
    acc = event_accumulator.EventAccumulator(str(path), size_guidance={'scalars': 0, 'images': 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()['scalars']}


def make_monitor(tmp_path, start_epoch=0, tb=True, iterations=3, total_epoch=2):
    return Monitor(tb_dir=str(tmp_path / 'tb') if tb else None, log_dir=str(tmp_path / 'log'),
                   experiment='exp', length=RunLength(iterations, total_epoch, 4),
                   start=(start_epoch, 0), device='cpu', data=freihand.ENTRY)


def run_epoch(monitor, epoch, iterations=3, seed=0):
    """Feed `iterations` fake log steps (print_iter 1) through the monitor."""
    rng = np.random.default_rng(seed + epoch)
    for it, _ in enumerate(monitor.timed(range(iterations))):
        values = rng.uniform(0.01, 0.3, size=(1, len(NAMES)))
        monitor.log_step(epoch, it + 1, iterations, NAMES, values, lr=1e-3)
    monitor.end_epoch(epoch, dict(zip(NAMES, [0.1, 0.01, 0.02])))


def test_format_duration():
    assert format_duration(0) == '0:00:00'
    assert format_duration(59.6) == '0:01:00'
    assert format_duration(3 * 3600 + 25 * 60 + 7) == '3:25:07'
    assert format_duration(30 * 3600) == '30:00:00'  # hours are not wrapped into days
    assert format_duration(-5) == '0:00:00'


class FakeClock:
    """Stands in for the monitor's `time` module: perf_counter() reads a clock the test moves."""

    def __init__(self):
        self.now = 100.0

    def perf_counter(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


def test_wait_fraction_images_per_s_and_eta_from_host_clocks(tmp_path, monkeypatch):
    # Each batch takes 40 ms to arrive and each step 60 ms of work: 40 % of the time waits.
    # 4 images per step over 100 ms: 40 img/s. A fake clock keeps it exact on a busy machine.
    clock = FakeClock()
    monkeypatch.setattr(monitor_module, 'time', clock)

    class SlowLoader:
        def __iter__(self):
            for i in range(4):
                clock.advance(0.04)
                yield i

    monitor = make_monitor(tmp_path, tb=False, iterations=4, total_epoch=3)
    suffixes = []
    for it, _ in enumerate(monitor.timed(SlowLoader())):
        clock.advance(0.06)
        if it % 2 == 1:  # print_iter 2
            suffixes.append(monitor.log_step(0, it + 1, 4, NAMES, np.zeros((2, 3)), 1e-3))
    # After iteration 4 of 4 in epoch 0 of 3: 8 iterations left at 100 ms each = 0.8 s -> 0:00:01.
    assert suffixes == ['[40.0 img/s][data 40%][eta 0:00:01]'] * 2


def test_scalars_steps_and_total(tmp_path):
    monitor = make_monitor(tmp_path)
    rng = np.random.default_rng(0)
    window = rng.uniform(0.01, 0.3, size=(2, 3))  # two iterations since the last log step
    for it, _ in enumerate(monitor.timed(range(3))):
        if it == 1:
            suffix = monitor.log_step(1, 2, 3, NAMES, window, lr=2e-4)
    monitor.close()
    assert SUFFIX.match(suffix), suffix
    tags = scalars(tmp_path / 'tb')
    assert set(tags) == {'loss/coord_0', 'loss/normal_0', 'loss/edge_0', 'loss/total', 'lr',
                         'speed/images_per_s', 'speed/data_wait_fraction'}
    # Epoch 1, iteration 2 of 3: step 1 * 3 + 2.
    assert all(points[0][0] == 5 for points in tags.values())
    means = window.mean(axis=0)
    for name, mean in zip(NAMES, means):
        assert tags[f'loss/{name}'][0][1] == pytest.approx(mean, rel=1e-6)
    assert tags['loss/total'][0][1] == pytest.approx(means.sum(), rel=1e-6)
    assert tags['lr'][0][1] == pytest.approx(2e-4, rel=1e-6)


def test_resume_purges_events_after_the_checkpoint_and_keeps_the_history(tmp_path):
    first = make_monitor(tmp_path)
    run_epoch(first, 0)
    first.log_evaluation(0, {key: 1.0 for key in SCORE_KEYS})
    run_epoch(first, 1)  # written, then the run dies before checkpoint 1
    first.writer.flush()
    first_file = sorted(os.listdir(tmp_path / 'tb'))[0]
    assert [s for s, _ in scalars(tmp_path / 'tb' / first_file)['loss/total']] == [1, 2, 3, 4, 5, 6]

    second = make_monitor(tmp_path, start_epoch=1)  # resumed from checkpoint 0
    assert [e['epoch'] for e in second.history] == [0]
    assert second.history[0]['eval']['xyz_mean3d'] == 1.0
    run_epoch(second, 1, seed=100)
    second.close()
    tags = scalars(tmp_path / 'tb')
    steps = [s for s, _ in tags['loss/total']]
    assert steps == [1, 2, 3, 4, 5, 6]  # each step once: the first run's 4..6 purged
    # The steps of epoch 1 hold the resumed run's values.
    rng = np.random.default_rng(101)
    assert tags['loss/total'][3][1] == pytest.approx(rng.uniform(0.01, 0.3, 3).sum(), rel=1e-6)
    assert [s for s, _ in tags['eval/xyz_mean3d']] == [3]  # evaluation at the end of epoch 0
    history = json.loads((tmp_path / 'log' / 'exp_history.json').read_text())
    assert [e['epoch'] for e in history] == [0, 1]


def test_evaluation_skips_missing_scores(tmp_path):
    monitor = make_monitor(tmp_path)
    scores = {key: 0.5 for key in SCORE_KEYS}
    scores['mesh_mean3d'] = None
    monitor.log_evaluation(0, scores)
    monitor.close()
    tags = scalars(tmp_path / 'tb')
    assert set(tags) == {f'eval/{k}' for k in SCORE_KEYS if k != 'mesh_mean3d'}
    assert all(points == [(3, 0.5)] for points in tags.values())


def test_load_history_of_a_fresh_run_is_empty_and_a_bad_file_is_named(tmp_path):
    path = tmp_path / 'h.json'
    path.write_text(json.dumps([{'epoch': 0}, {'epoch': 1}, {'epoch': 2}]))
    assert load_history(str(path), 0) == []
    assert load_history(str(path), 2) == [{'epoch': 0}, {'epoch': 1}]
    assert load_history(str(tmp_path / 'missing.json'), 3) == []
    path.write_text('{"not": "a list"}')
    with pytest.raises(ValueError, match='h.json is not a training history'):
        load_history(str(path), 1)


def test_curves_png_size_and_atomic_write(tmp_path):
    history = [{'epoch': e, 'lr': 1e-3, 'loss': {'coord_0': 0.3 / (e + 1), 'normal_0': 0.01,
                                                  'edge_0': 0.02, 'coord_1': 0.2 / (e + 1)}}
               for e in range(4)]
    history[3]['eval'] = {'xyz_al_mean3d': 1.5, 'f_al_score_5': 0.3}
    path = tmp_path / 'curves.png'
    write_curves_png(str(path), history, title='exp', score_panels=(MEAN_PANEL, RATIO_PANEL))
    img = cv2.imread(str(path))
    width, height = (int(s * monitor_module.CURVES_DPI) for s in monitor_module.CURVES_SIZE_IN)
    assert img.shape == (height, width, 3)
    assert os.listdir(tmp_path) == ['curves.png']
    write_curves_png(str(path), [], title='empty')  # no epochs yet: still a picture
    assert cv2.imread(str(path)).shape == (height, width, 3)


def test_tensorboard_off_writes_no_events_but_history_and_curves(tmp_path):
    monitor = make_monitor(tmp_path, tb=False)
    run_epoch(monitor, 0)
    monitor.close()
    assert not (tmp_path / 'tb').exists()
    assert sorted(os.listdir(tmp_path / 'log')) == ['exp_curves.png', 'exp_history.json']


def test_evaluation_pictures_skip_predictions_that_cannot_be_drawn(tmp_path, caplog):
    # Two evaluation items; the second prediction lies behind the camera (an early network
    # can do that): its picture is skipped with a warning, training is not stopped.
    rng = np.random.default_rng(0)
    verts = np.stack([rng.uniform(-0.03, 0.03, (778, 3)) + [0.0, 0.0, 0.5]] * 2)
    verts[1, :, 2] -= 1.0
    xyz = verts[:, :21]
    faces = rng.integers(0, 778, size=(200, 3))
    K = np.array([[500.0, 0.0, 112.0], [0.0, 500.0, 112.0], [0.0, 0.0, 1.0]])
    img2bb = np.array([[64 / 130, 0.0, -47 * 64 / 130], [0.0, 64 / 130, -47 * 64 / 130]])
    item = ({'img': np.zeros((3, 64, 64), np.float32)}, {}, {'K': K, 'img2bb_trans': img2bb})
    monitor = Monitor(tb_dir=str(tmp_path / 'tb'), log_dir=str(tmp_path / 'log'),
                      experiment='exp', length=RunLength(3, 2, 4), device='cpu', faces=faces,
                      data=freihand.ENTRY)
    monitor.log_evaluation(0, {key: 1.0 for key in SCORE_KEYS}, [item, item], xyz, verts)
    monitor.close()
    acc = event_accumulator.EventAccumulator(str(tmp_path / 'tb'), size_guidance={'images': 0})
    acc.Reload()
    assert acc.Tags()['images'] == ['eval/sample_0']
    image = acc.Images('eval/sample_0')[0]
    # four views of the 64 px crop, enlarged 4 x to 256 px (utils.vis.panels.MIN_PANEL_SIDE)
    assert (image.step, image.width, image.height) == (3, 4 * 256, 256)
    assert 'evaluation picture 1 after epoch 0 skipped: verts_cam must lie in front' in caplog.text
