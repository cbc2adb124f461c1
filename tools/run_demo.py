"""`make demo`: the whole pipeline end to end on this machine, in minutes, without licensed assets.

MANO (the licensed model if present, else the stand-in), a synthetic FreiHAND-format set, train.py
with the `cpu_demo` preset, test.py and a mean-hand baseline evaluated the same way, each step
printed as the command a user would type; a second run reuses what exists (docs/performance.md).

    python -m tools.run_demo [--amp off]      # make demo [DEMO_ARGS="--amp off"]
    python -m tools.run_demo --docs           # then copy the report and figures into docs/

output/demo_report.json (REPORT_FILE) holds the machine, the commit, each phase's wall and CPU
seconds, both scores and the depth spreads (docs tables are generated from it).
"""
import argparse
import contextlib
import datetime
import json
import os
import re
import resource
import shlex
import subprocess
import sys
import time
from typing import NamedTuple

import numpy as np

import config as config_module
from utils.runtime.machine import load_average, machine_info, report_header

REAL_MANO_ROOT = 'manopth/mano/models'
STANDIN_ROOT = 'data/mano_standin'
DATA_ROOT = 'data/FreiHAND_synth'
# 600 samples x 4 versions = 2,400 training items: 150 iterations of 16 per epoch, 450 in the
# preset's 3 epochs (each item seen 3 times); 200 evaluation samples as before.
DATA_PARAMS = dict(num_train=600, num_eval=200, seed=0, root_noise=0.0, max_tilt=50.0)
PARAMS_FILE = 'demo_params.json'  # written into DATA_ROOT after a complete generation
VIS_NUM = 4  # results rendered by test.py --vis
REPORT_FILE = 'demo_report.json'  # in the output root: the machine-readable report
MIN_RATIO = 2.0  # the demo's goal: aligned errors at most half the mean hand's


def run(cmd):
    print(f'\n$ {shlex.join(cmd)}', flush=True)
    subprocess.run(cmd, check=True)


def cpu_seconds():
    """User + system CPU seconds of this process and of its children that have finished."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class PhaseClock:
    """Wall and CPU seconds of each phase of the demo (CPU: user + sys, children included, so
    it compares configurations on a machine that other jobs load, where wall time does not)."""

    def __init__(self):
        self.phases = []

    @contextlib.contextmanager
    def phase(self, name):
        wall, cpu = time.perf_counter(), cpu_seconds()
        yield
        self.phases.append({'phase': name, 'wall_s': round(time.perf_counter() - wall, 1),
                            'cpu_s': round(cpu_seconds() - cpu, 1), 'load_end': load_average()})

    def table(self):
        lines = [f"{'phase':<34}{'wall s':>8}{'CPU s':>8}"]
        lines += [f"{p['phase']:<34}{p['wall_s']:>8.1f}{p['cpu_s']:>8.1f}" for p in self.phases]
        lines.append(f"{'total':<34}{sum(p['wall_s'] for p in self.phases):>8.1f}"
                     f"{sum(p['cpu_s'] for p in self.phases):>8.1f}")
        return '\n'.join(lines)


_LOG_TIME = re.compile(r'^(\d\d-\d\d \d\d:\d\d:\d\d) INFO (.*)$')


def training_timeline(log_lines):
    """[{'epoch': e, 'train_s': s, 'eval_s': s or None}] of the last run in a train.py log's
    lines (whole-second stamps: train_s from the last set-up, evaluation or checkpoint line to
    `epoch e done`, eval_s from `saved ...` to `evaluation:`)."""
    events = []
    for line in log_lines:
        match = _LOG_TIME.match(line)
        if match:
            when = datetime.datetime.strptime('2000-' + match.group(1), '%Y-%m-%d %H:%M:%S')
            events.append((when, match.group(2)))
    starts = [i for i, (_, msg) in enumerate(events) if msg.startswith('resolved config:')]
    events = events[starts[-1]:] if starts else events
    epochs, mark, saved = [], None, None
    for when, msg in events:
        done = re.match(r'epoch (\d+) done', msg)
        if not epochs and msg.startswith(('resume', 'TensorBoard events')):
            mark = when  # the last set-up line before the first step
        elif done and mark is not None:
            epochs.append({'epoch': int(done.group(1)),
                           'train_s': (when - mark).total_seconds(), 'eval_s': None})
            mark = saved = when
        elif msg.startswith('saved ') and epochs:
            saved = when
            mark = when
        elif msg.startswith('evaluation:') and epochs and saved is not None:
            epochs[-1]['eval_s'] = (when - saved).total_seconds()
            mark = when
    return epochs


def extent_mm(verts):
    """[x, y, z] medians over the samples of N x V x 3 meshes' extents (max - min), m -> mm."""
    extent = verts.max(axis=1) - verts.min(axis=1)  # (N, 3)
    return [round(float(v) * 1000, 1) for v in np.median(extent, axis=0)]


def mean_hand_baseline(data_root, out_dir):
    """Evaluate the training-set mean mesh (relative to the wrist) placed at each evaluation
    sample's root estimate from bbox_root_freihand_output.json."""
    from dataset.baseline import mean_hand
    from dataset.freihand import eval as freihand_eval
    from dataset.freihand.constants import ROOTNET_FILE

    def load(name):
        with open(os.path.join(data_root, name)) as f:
            return np.asarray(json.load(f), dtype=np.float64)

    with open(os.path.join(data_root, ROOTNET_FILE)) as f:
        roots = np.array([entry['root_cam'] for entry in json.load(f)], dtype=np.float64)
    xyz, verts = mean_hand(load('training_xyz.json'), load('training_verts.json'), roots)
    xyz_gt, verts_gt = freihand_eval.load_gt(data_root)
    scores = freihand_eval.evaluate(xyz_gt, verts_gt, xyz, verts)
    freihand_eval.write_outputs(scores, out_dir)
    return scores


def side_by_side(ours, baseline):
    rows = [('3D KP mean (cm)', 'xyz_mean3d'), ('3D KP AUC', 'xyz_auc3d'),
            ('3D KP ALIGNED mean (cm)', 'xyz_al_mean3d'), ('3D KP ALIGNED AUC', 'xyz_al_auc3d'),
            ('3D MESH mean (cm)', 'mesh_mean3d'), ('3D MESH AUC', 'mesh_auc3d'),
            ('3D MESH ALIGNED mean (cm)', 'mesh_al_mean3d'), ('3D MESH ALIGNED AUC', 'mesh_al_auc3d'),
            ('F@5mm', 'f_score_5'), ('F_aligned@5mm', 'f_al_score_5'),
            ('F@15mm', 'f_score_15'), ('F_aligned@15mm', 'f_al_score_15')]
    lines = [f"{'metric':<28}{'SAR cpu_demo':>14}{'mean hand':>12}"]
    lines += [f'{name:<28}{ours[key]:>14.3f}{baseline[key]:>12.3f}' for name, key in rows]
    return '\n'.join(lines)


class DemoRun(NamedTuple):
    """How a demo run went: its start (datetime), the load averages at its start and end, the
    precision asked for (--amp), whether the licensed MANO model was used and the command
    that ran it."""
    started_at: object
    load_start: list
    load_end: list
    amp: str
    real_mano: bool
    command: str = 'python -m tools.run_demo'


def precision_run(amp):
    """What `--amp` computes in on this CPU: 'bf16 autocast' or 'fp32' (inference.precision)."""
    import torch
    from inference.precision import resolve_amp
    return 'fp32' if resolve_amp(amp, torch.device('cpu')).dtype is None else 'bf16 autocast'


def demo_report(run, data_params, iterations, phases, epochs, scores, extents):
    """The machine-readable report (REPORT_FILE) in the shape tools/make_docs.py tabulates:
    scalar fields, then dicts of numbers (one table column each; a dict of dicts gives one
    column per entry). Times in s, scores (ours, the mean hand's) as dataset.freihand.eval
    (means in cm), extents in mm."""
    from dataset.freihand.eval import SCORE_KEYS
    ours, baseline = scores
    machine = machine_info()
    ratios = {key: round(float(baseline[key] / ours[key]), 3)
              for key in ('xyz_al_mean3d', 'mesh_al_mean3d')}
    return {
        **report_header(run.command, run.load_start, precision_run(run.amp)),
        'date': run.started_at.isoformat(timespec='seconds'),
        'onednn_max_cpu_isa': machine['onednn_max_cpu_isa'],
        'omp_num_threads': machine['omp_num_threads'],
        'load_average_end': ' '.join(map(str, run.load_end or [])), 'amp': run.amp,
        'mano': 'licensed' if run.real_mano else 'stand-in',
        'num_train': data_params['num_train'], 'num_eval': data_params['num_eval'],
        'iterations': iterations,
        'total_wall_s': round(sum(p['wall_s'] for p in phases), 1),
        'total_cpu_s': round(sum(p['cpu_s'] for p in phases), 1),
        'meets_goal': bool(all(r >= MIN_RATIO for r in ratios.values())),
        'time_s': {'wall': {p['phase']: p['wall_s'] for p in phases},
                   'cpu': {p['phase']: p['cpu_s'] for p in phases}},
        'epochs_s': {'train': {str(e['epoch']): e['train_s'] for e in epochs},
                     'evaluation': {str(e['epoch']): e['eval_s'] for e in epochs}},
        'scores': {'sar_cpu_demo': {k: float(ours[k]) for k in SCORE_KEYS},
                   'mean_hand': {k: float(baseline[k]) for k in SCORE_KEYS}},
        'ratio_to_mean_hand': ratios,
        'extent_mm': {'predicted': dict(zip('xyz', extents['pred'])),
                      'true': dict(zip('xyz', extents['gt']))},
    }


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog='python -m tools.run_demo', description='make demo: synthetic data, training, '
        'test.py, evaluation and a mean-hand baseline, timed per phase.')
    parser.add_argument('--amp', default='auto', choices=('auto', 'off', 'bf16'),
                        help="precision of train.py and test.py (config.py's amp); 'off' is fp32, "
                             "what amp=auto picks on a CPU without native bf16")
    parser.add_argument('--docs', action='store_true',
                        help='afterwards copy the report, the training curves, one rendered '
                             'result and the training log into docs/ (DOCS_FILES); then run '
                             'make docs')
    return parser.parse_args(argv)


# --docs: what the documentation shows of a demo run, {docs path: the run's output, relative to
# output_root}. The result picture is test.py --vis's sample DOCS_VIS_SAMPLE.
DOCS_VIS_SAMPLE = 3
DOCS_FILES = {
    'docs/measured/demo.json': REPORT_FILE,
    'docs/demo_curves.png': 'log/{experiment}_curves.png',
    'docs/vis_example.png': f'vis/{DOCS_VIS_SAMPLE:08d}.png',
    'docs/train_cpu_demo.log': 'log/train_{experiment}.log',
}


def last_run(log_lines):
    """The lines of the last run in a training log (from its last `resolved config:` line)."""
    starts = [i for i, line in enumerate(log_lines) if line.endswith(' INFO resolved config:')]
    return log_lines[starts[-1]:] if starts else log_lines


def copy_to_docs(output_root, experiment, docs_root='.'):
    """--docs: copy DOCS_FILES from a finished run into the documentation (atomically; the
    training log trimmed to its last run). Returns the docs paths written."""
    from utils.files.atomic import atomic_open
    written = []
    for dest, source in DOCS_FILES.items():
        source = os.path.join(output_root, source.format(experiment=experiment))
        dest = os.path.join(docs_root, dest)
        if dest.endswith('.log'):
            with open(source) as f:
                lines = last_run(f.read().splitlines())
            with atomic_open(dest) as f:
                f.write('\n'.join(lines) + '\n')
        else:
            with open(source, 'rb') as f:
                data = f.read()
            with atomic_open(dest, 'wb') as f:
                f.write(data)
        written.append(dest)
    return written


LIMITS = """what this demo shows and what it cannot:
  shows:  the whole pipeline runs here end to end (data in FreiHAND's layout, the real SAR
          network and losses, training with checkpoints, test.py's pred.json, the leaderboard
          evaluator, rendered results), and that a network trained for minutes from scratch
          on a CPU learns the hand's image-plane shape: clearly better than the mean hand.
  cannot: reproduce the published FreiHAND numbers. This is a small network (ResNet-18, 64 px,
          one stage, no ImageNet weights) trained for minutes on synthetic images of the MANO
          stand-in (or MANO) hands, evaluated on more of the same; the published model is
          ResNet-34 at 256 px, two stages, 50 epochs on FreiHAND. Depth is learned least (the
          side and top views are flatter than the truth: the depth spreads above), and the
          scores say nothing about real photos."""


def prepare_mano_and_data(py, clock):
    """Steps 1 and 2: the MANO model (the licensed one, else the stand-in, built once) and the
    synthetic set (regenerated when DATA_PARAMS changed). Returns (real MANO?, data params)."""
    real = os.path.isfile(os.path.join(REAL_MANO_ROOT, 'MANO_RIGHT.pkl'))
    mano_root = REAL_MANO_ROOT if real else STANDIN_ROOT
    print(f"MANO: {'the licensed model in ' + REAL_MANO_ROOT if real else 'the procedural STAND-IN in ' + STANDIN_ROOT + ' (no MANO_RIGHT.pkl in ' + REAL_MANO_ROOT + ')'}")
    with clock.phase('MANO stand-in'):
        if not real and not os.path.isfile(os.path.join(STANDIN_ROOT, 'MANO_RIGHT.pkl')):
            run([py, '-m', 'synthetic.standin', '--out', STANDIN_ROOT])

    params = {**DATA_PARAMS, 'mano_root': mano_root}
    params_path = os.path.join(DATA_ROOT, PARAMS_FILE)
    existing = None
    if os.path.isfile(params_path):
        with open(params_path) as f:
            existing = json.load(f)
    with clock.phase('synthetic data'):
        if existing == params:
            print(f'data: reusing {DATA_ROOT}')
        else:
            run([py, '-m', 'synthetic.freihand', '--root', DATA_ROOT, '--num-train',
                 str(params['num_train']), '--num-eval', str(params['num_eval']), '--mano-root',
                 mano_root, '--seed', str(params['seed']), '--root-noise', str(params['root_noise']),
                 '--max-tilt', str(params['max_tilt']), '--workers', '2', '--overwrite'])
            from utils.files.atomic import atomic_write_json
            atomic_write_json(params_path, params)
    return real, params


def print_scores(ours, baseline, verts, verts_gt):
    """The reports side by side, the goal's verdict and the mesh extents; returns the extents."""
    from dataset.freihand import eval as freihand_eval
    print('\n==== SAR (cpu_demo preset) on the synthetic evaluation set ====')
    print(freihand_eval.format_report(ours))
    print('\n==== mean-hand baseline ====')
    print(freihand_eval.format_report(baseline))
    print('\n==== side by side ====')
    print(side_by_side(ours, baseline))
    ratios = {key: baseline[key] / ours[key] for key in ('xyz_al_mean3d', 'mesh_al_mean3d')}
    better = all(r >= MIN_RATIO for r in ratios.values())
    print(f"\nSAR's aligned keypoint / mesh errors are {ours['xyz_al_mean3d']:.2f} / "
          f"{ours['mesh_al_mean3d']:.2f} cm against the mean hand's {baseline['xyz_al_mean3d']:.2f} / "
          f"{baseline['mesh_al_mean3d']:.2f} cm: {ratios['xyz_al_mean3d']:.1f}x / "
          f"{ratios['mesh_al_mean3d']:.1f}x better ({'meets' if better else 'does NOT meet'} the "
          f"demo's goal of {MIN_RATIO:.0f}x on both).")
    extents = {'pred': extent_mm(verts), 'gt': extent_mm(verts_gt)}
    print(f"mesh extent x / y / z (median over the samples, mm): predicted "
          f"{' / '.join(map(str, extents['pred']))}, true {' / '.join(map(str, extents['gt']))} "
          f"(z is the depth spread that the side and top views show)")
    return extents


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    start, started_at = time.time(), datetime.datetime.now(datetime.timezone.utc)
    load_start, clock, py = load_average(), PhaseClock(), sys.executable
    real, params = prepare_mano_and_data(py, clock)

    overrides = ['--preset', 'cpu_demo', '--mano_root', params['mano_root'], '--amp', args.amp]
    cfg = config_module.resolve(overrides)
    with clock.phase('train.py (with an evaluation per epoch)'):
        run([py, 'train.py', *overrides, '--resume', 'auto'])
    checkpoint = os.path.join(cfg.checkpoint_dir, f'snapshot_{cfg.total_epoch - 1}.pth.tar')
    with clock.phase(f'test.py (with {VIS_NUM} vis renders)'):
        run([py, 'test.py', *overrides, '--checkpoint', checkpoint, '--vis', '--vis_num', str(VIS_NUM)])

    from dataset.freihand import eval as freihand_eval
    with clock.phase('evaluation and mean-hand baseline'):
        xyz_gt, verts_gt = freihand_eval.load_gt(DATA_ROOT)
        xyz, verts = freihand_eval.load_pred(os.path.join(cfg.output_root, 'pred.json'), len(xyz_gt))
        ours = freihand_eval.evaluate(xyz_gt, verts_gt, xyz, verts)
        baseline = mean_hand_baseline(DATA_ROOT, os.path.join(cfg.output_root, 'eval_mean_hand'))
    extents = print_scores(ours, baseline, verts, verts_gt)

    log_path = f'{cfg.log_dir}/train_{cfg.experiment_name}.log'
    with open(log_path) as f:
        epochs = training_timeline(f.read().splitlines())
    print('\n==== time ====')
    print(clock.table())
    print('training epochs (wall s, from the log): ' + ', '.join(
        f"{e['epoch']}: {e['train_s']:.0f}" + (f" + evaluation {e['eval_s']:.0f}" if e['eval_s'] is not None else '')
        for e in epochs))
    load_end = load_average()
    print(f'load average {load_start} at the start, {load_end} at the end; a second run reuses '
          f'the data and the checkpoints (the phases then take seconds)')

    command = shlex.join(['python', '-m', 'tools.run_demo', *(sys.argv[1:] if argv is None else argv)])
    report = demo_report(DemoRun(started_at, load_start, load_end, args.amp, real, command), params,
                         cfg.total_epoch * (4 * params['num_train'] // cfg.batch_size),
                         clock.phases, epochs, (ours, baseline), extents)
    from utils.files.atomic import atomic_write_json
    report_path = os.path.join(cfg.output_root, REPORT_FILE)
    atomic_write_json(report_path, report, indent=1)
    print(f"""
{LIMITS}

outputs:
  MANO model            {params['mano_root']}
  synthetic data        {DATA_ROOT}
  training log          {log_path}
  training curves       {cfg.log_dir}/{cfg.experiment_name}_curves.png
  checkpoints           {cfg.checkpoint_dir}/
  predictions           {cfg.output_root}/pred.json
  evaluation            {cfg.output_root}/eval/ (scores.txt, scores.html, PCK plots)
  baseline evaluation   {cfg.output_root}/eval_mean_hand/
  rendered results      {cfg.vis_dir}/
  this report (JSON)    {report_path}
done in {time.time() - start:.0f} s""")
    if args.docs:
        for path in copy_to_docs(cfg.output_root, cfg.experiment_name):
            print(f'wrote {path}')
        print('now run make docs (the tables of docs/performance.md)')


if __name__ == '__main__':
    try:
        main()
    except subprocess.CalledProcessError as err:
        # The step printed its own error message above; say which step stopped the demo.
        sys.exit(f'\nmake demo stopped: `{shlex.join(err.cmd)}` failed with exit code '
                 f'{err.returncode} (its message is above)')
    except KeyboardInterrupt:
        sys.exit('\nmake demo: interrupted; a second run reuses what is finished')
