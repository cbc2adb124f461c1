"""tools.run_demo's bookkeeping: the per-epoch times read from a training log, the mesh extents
(the depth spread of the side views) and the phase timer (the demo itself runs in `make demo`)."""
import json
import subprocess
import sys

import numpy as np
import pytest

import config
from tools import run_demo
from utils.runtime.machine import report_header


def test_training_timeline_from_log_time_stamps():
    # An interrupted run, then the run that counts (it starts at its `resolved config:` line).
    lines = """12-05 09:00:00 INFO resolved config:
12-05 09:00:05 INFO TensorBoard events in output/tb/cpu_demo
12-05 09:01:00 INFO [Epoch 0/3][Batch 20/150][lr 1.00e-03][loss_coord_0: 0.2518]
12-05 10:00:00 INFO resolved config:
{
  "amp": "off"
}
12-05 10:00:03 INFO resume=auto: no checkpoint in output/checkpoint/cpu_demo, starting fresh
12-05 10:00:04 INFO TensorBoard events in output/tb/cpu_demo (tensorboard --logdir output/tb)
12-05 10:01:44 INFO epoch 0 done: coord_0 0.2397 normal_0 0.0311 edge_0 0.0220
12-05 10:01:46 INFO saved output/checkpoint/cpu_demo/snapshot_0.pth.tar
12-05 10:01:52 INFO evaluation:
Evaluation 3D KP results:
12-05 10:03:22 INFO epoch 1 done: coord_0 0.1451 normal_0 0.0283 edge_0 0.0284
12-05 10:03:23 INFO saved output/checkpoint/cpu_demo/snapshot_1.pth.tar
12-05 10:04:59 INFO epoch 2 done: coord_0 0.1 normal_0 0.02 edge_0 0.02
12-05 10:05:00 INFO saved output/checkpoint/cpu_demo/snapshot_2.pth.tar
12-05 10:05:07 INFO evaluation:""".splitlines()
    # epoch 0: 10:00:04 -> 10:01:44 = 100 s, evaluation 10:01:46 -> 10:01:52 = 6 s; epoch 1
    # from the evaluation's end: 10:01:52 -> 10:03:22 = 90 s, no evaluation; epoch 2 from the
    # checkpoint: 10:03:23 -> 10:04:59 = 96 s, evaluation 10:05:00 -> 10:05:07 = 7 s.
    assert run_demo.training_timeline(lines) == [
        {'epoch': 0, 'train_s': 100.0, 'eval_s': 6.0},
        {'epoch': 1, 'train_s': 90.0, 'eval_s': None},
        {'epoch': 2, 'train_s': 96.0, 'eval_s': 7.0}]


def test_extent_is_the_median_over_samples_of_max_minus_min_per_axis():
    # Sample 0 spans 10 / 20 / 30 mm, sample 1 30 / 40 / 2 mm, sample 2 20 / 60 / 4 mm:
    # medians 20 / 40 / 4 mm.
    spans = np.array([[0.010, 0.020, 0.030], [0.030, 0.040, 0.002], [0.020, 0.060, 0.004]])
    verts = np.zeros((3, 5, 3))
    verts[:, 1] = spans
    verts += np.array([0.1, -0.2, 0.7])  # a placement changes no extent
    assert run_demo.extent_mm(verts) == pytest.approx([20.0, 40.0, 4.0])


def test_timed_counts_wall_and_the_cpu_of_finished_children():
    phases = []
    with run_demo.timed(phases, 'spin'):
        # A child that spins for about 0.5 s of CPU: its seconds count once it has finished.
        subprocess.run([sys.executable, '-c', 'import time\nt = time.process_time()\n'
                        'while time.process_time() - t < 0.5: pass'], check=True)
    (entry,) = phases
    assert entry['phase'] == 'spin' and entry['cpu_s'] >= 0.5
    assert entry['wall_s'] >= 0.5


def test_the_demo_preset_gives_the_documented_iterations():
    # 600 samples x 4 versions / batch 16 = 150 iterations per epoch, 3 epochs = 450.
    cfg = config.resolve(['--preset', 'cpu_demo'])
    items = 4 * run_demo.DATA_PARAMS['num_train']
    assert items % cfg.batch_size == 0
    assert cfg.total_epoch * items // cfg.batch_size == 450


def test_the_report_is_what_make_docs_tabulates(tmp_path, capsys):
    from tools import make_docs
    from dataset.freihand.eval import SCORE_KEYS
    ours = {key: 1.0 for key in SCORE_KEYS}
    baseline = {key: 4.0 for key in SCORE_KEYS}
    ours['mesh_al_mean3d'] = 2.5  # 4 / 2.5 = 1.6x: short of the 2x goal
    phases = [{'phase': 'train.py', 'wall_s': 300.0, 'cpu_s': 550.0, 'load_end': [1.0, 1.0, 1.0]}]
    header = report_header('python -m tools.run_demo', [2.0, 1.5, 1.0], 'fp32')
    report = run_demo.demo_report(
        header, phases, [{'epoch': 0, 'train_s': 100.0, 'eval_s': 6.0}], (ours, baseline),
        {'pred': [30.0, 31.0, 10.0], 'gt': [35.0, 36.0, 25.0]}, amp='off', mano='stand-in',
        num_train=600, num_eval=200, iterations=450)
    assert report['ratio_to_mean_hand'] == {'xyz_al_mean3d': 4.0, 'mesh_al_mean3d': 1.6}
    assert report['meets_goal'] is False and report['total_cpu_s'] == 550.0
    assert report['load_average_start'] == '2.0 1.5 1.0'
    assert report['date'] == header['date']  # the start's, from the header
    assert report['num_train'] == 600 and report['mano'] == 'stand-in'
    assert list(report)[:len(header)] == list(header)  # the header first, as every report
    with open('docs/measured/demo.json') as f:  # the committed run's report: the same fields
        committed = json.load(f)
    assert sorted(report) == sorted(committed)
    assert sorted(report['scores']['mean_hand']) == sorted(committed['scores']['mean_hand'])
    run_demo.print_report(report)
    printed = capsys.readouterr().out
    assert '4.0x / 1.6x better (does NOT meet' in printed
    assert 'f_al_score_15' in printed and 'predicted 30.0 / 31.0 / 10.0' in printed
    (tmp_path / 'demo.json').write_text(json.dumps(report))
    table = make_docs.measured_table('demo', folder=str(tmp_path))
    assert '| xyz_al_mean3d | 1 | 4 |' in table  # the scores side by side
    assert '| train.py | 300 | 550 |' in table  # wall and CPU per phase
    assert '| z | 10 | 25 |' in table  # the depth spread, predicted and true
    assert 'amp: `off`;' in table


def test_docs_copies_the_run_and_keeps_the_logs_last_run(tmp_path):
    out, docs = tmp_path / 'output', tmp_path / 'repo'
    (out / 'log').mkdir(parents=True)
    (out / 'vis').mkdir()
    (docs / 'docs' / 'measured').mkdir(parents=True)
    (out / 'demo_report.json').write_text('{"date": "2026-12-07"}')
    (out / 'log' / 'cpu_demo_curves.png').write_bytes(b'\x89PNG curves')
    (out / 'vis' / f'{run_demo.DOCS_VIS_SAMPLE:08d}.png').write_bytes(b'\x89PNG result')
    (out / 'vis' / '00000000.png').write_bytes(b'another sample')
    (out / 'log' / 'train_cpu_demo.log').write_text(
        '12-05 09:00:00 INFO resolved config:\n12-05 09:01:00 INFO old run\n'
        '12-07 10:00:00 INFO resolved config:\n{\n}\n12-07 10:05:00 INFO epoch 0 done\n')
    written = run_demo.copy_to_docs(str(out), 'cpu_demo', docs_root=str(docs))
    assert sorted(written) == sorted(str(docs / path) for path in run_demo.DOCS_FILES)
    assert (docs / 'docs/measured/demo.json').read_text() == '{"date": "2026-12-07"}'
    assert (docs / 'docs/demo_curves.png').read_bytes() == b'\x89PNG curves'
    assert (docs / 'docs/vis_example.png').read_bytes() == b'\x89PNG result'
    assert (docs / 'docs/train_cpu_demo.log').read_text() == (
        '12-07 10:00:00 INFO resolved config:\n{\n}\n12-07 10:05:00 INFO epoch 0 done\n')


def test_the_report_names_its_command_and_precision():
    from dataset.freihand.eval import SCORE_KEYS
    scores = ({key: 1.0 for key in SCORE_KEYS}, {key: 4.0 for key in SCORE_KEYS})
    header = report_header('python -m tools.run_demo --amp off', [1.0, 1.0, 1.0],
                           run_demo.precision_run('off'))
    report = run_demo.demo_report(header, [], [], scores, {'pred': [1.0] * 3, 'gt': [1.0] * 3},
                                  amp='off')
    assert report['command'] == 'python -m tools.run_demo --amp off'
    assert report['precision'] == 'fp32'  # --amp off is fp32 on any CPU
