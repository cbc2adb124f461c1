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
import shlex
import subprocess
import sys

import numpy as np

import config as config_module
from utils.mano import DEFAULT_MANO_ROOT
from utils.runtime.machine import load_average, machine_info, report_header

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


@contextlib.contextmanager
def timed(phases, name):
    """Append {'phase': name, 'wall_s', 'cpu_s'} of the block to the list `phases` (CPU: user +
    sys, finished children included, so it compares configurations on a machine that other
    jobs load, where wall time does not)."""
    start = os.times()
    yield
    end = os.times()
    phases.append({'phase': name, 'wall_s': round(end.elapsed - start.elapsed, 1),
                   'cpu_s': round(sum(end[:4]) - sum(start[:4]), 1)})


_LOG_TIME = re.compile(r'^(\d\d-\d\d \d\d:\d\d:\d\d) INFO (.*)$')


def last_run(log_lines):
    """The lines of the last run in a training log (from its last `resolved config:` line)."""
    starts = [i for i, line in enumerate(log_lines) if line.endswith(' INFO resolved config:')]
    return log_lines[starts[-1]:] if starts else log_lines


def training_timeline(log_lines):
    """[{'epoch': e, 'train_s': s, 'eval_s': s or None}] of the last run in a train.py log's
    lines (whole-second stamps: train_s from the last set-up, evaluation or checkpoint line to
    `epoch e done`, eval_s from `saved ...` to `evaluation:`)."""
    events = []
    for line in last_run(log_lines):
        match = _LOG_TIME.match(line)
        if match:
            when = datetime.datetime.strptime('2000-' + match.group(1), '%Y-%m-%d %H:%M:%S')
            events.append((when, match.group(2)))
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


def precision_run(amp):
    """What `--amp` computes in on this CPU: 'bf16 autocast' or 'fp32' (inference.precision)."""
    import torch
    from inference.precision import resolve_amp
    return 'fp32' if resolve_amp(amp, torch.device('cpu')).dtype is None else 'bf16 autocast'


def demo_report(header, phases, epochs, scores, extents, **fields):
    """The machine-readable report (REPORT_FILE) in the shape tools/make_docs.py tabulates:
    scalar fields, then dicts of numbers (one table column each; a dict of dicts gives one
    column per entry).

    header: utils.runtime.machine.report_header taken at the run's start (its date and
    load_average_start; the end's load average is taken now); phases: `timed`'s list; epochs:
    training_timeline's; scores: (ours, the mean hand's) as dataset.freihand.eval (means in
    cm); extents: {'pred', 'gt'} of extent_mm; fields: the run's scalar fields by name (amp,
    mano, num_train, num_eval, iterations).
    """
    from dataset.freihand.eval import SCORE_KEYS
    ours, baseline = scores
    machine = machine_info()
    ratios = {key: round(float(baseline[key] / ours[key]), 3)
              for key in ('xyz_al_mean3d', 'mesh_al_mean3d')}
    return {
        **header, 'load_average_end': ' '.join(map(str, load_average() or [])),
        'onednn_max_cpu_isa': machine['onednn_max_cpu_isa'],
        'omp_num_threads': machine['omp_num_threads'], **fields,
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


def copy_to_docs(output_root, experiment, docs_root='.'):
    """--docs: copy DOCS_FILES from a finished run into the documentation (atomically; the
    training log trimmed to its last run). Returns the docs paths written."""
    from utils.files.atomic import atomic_open
    written = []
    for dest, source in DOCS_FILES.items():
        source = os.path.join(output_root, source.format(experiment=experiment))
        dest = os.path.join(docs_root, dest)
        with open(source, 'rb') as f:
            data = f.read()
        if dest.endswith('.log'):
            data = ('\n'.join(last_run(data.decode().splitlines())) + '\n').encode()
        with atomic_open(dest, 'wb') as f:
            f.write(data)
        written.append(dest)
    return written


LIMITS = """what this demo shows: the whole pipeline end to end on this machine (data in FreiHAND's
layout, the real network and losses, checkpoints, pred.json, the leaderboard evaluator, renders)
and a network trained for minutes on a CPU learning the hand's image-plane shape, clearly better
than the mean hand. What it cannot: reproduce the published FreiHAND numbers (a small network
trained for minutes on synthetic stand-in hands; depth is learned least, the depth spreads above;
the scores say nothing about real photos). More in docs/performance.md#make-demo."""


def prepare_mano_and_data(py, phases):
    """Steps 1 and 2: the MANO model (the licensed one, else the stand-in, built once) and the
    synthetic set (regenerated when DATA_PARAMS changed), timed into `phases`. Returns (real
    MANO?, data params)."""
    real = os.path.isfile(os.path.join(DEFAULT_MANO_ROOT, 'MANO_RIGHT.pkl'))
    mano_root = DEFAULT_MANO_ROOT if real else STANDIN_ROOT
    print(f'MANO: the licensed model in {DEFAULT_MANO_ROOT}' if real else f'MANO: the procedural '
          f'STAND-IN in {STANDIN_ROOT} (no MANO_RIGHT.pkl in {DEFAULT_MANO_ROOT})')
    with timed(phases, 'MANO stand-in'):
        if not real and not os.path.isfile(os.path.join(STANDIN_ROOT, 'MANO_RIGHT.pkl')):
            run([py, '-m', 'synthetic.standin', '--out', STANDIN_ROOT])

    params = {**DATA_PARAMS, 'mano_root': mano_root}
    params_path = os.path.join(DATA_ROOT, PARAMS_FILE)
    existing = None
    if os.path.isfile(params_path):
        with open(params_path) as f:
            existing = json.load(f)
    with timed(phases, 'synthetic data'):
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


def print_report(report):
    """The report's scores side by side (test.py printed ours in full, the baseline's are in
    eval_mean_hand/), the goal's verdict, the mesh extents and the times."""
    ours, base = report['scores']['sar_cpu_demo'], report['scores']['mean_hand']
    print(f"\n{'score (means in cm)':<20}{'SAR cpu_demo':>14}{'mean hand':>12}")
    for key in ours:
        print(f'{key:<20}{ours[key]:>14.3f}{base[key]:>12.3f}')
    ratios = report['ratio_to_mean_hand']
    print(f"\nSAR's aligned keypoint / mesh errors are {ours['xyz_al_mean3d']:.2f} / "
          f"{ours['mesh_al_mean3d']:.2f} cm against the mean hand's {base['xyz_al_mean3d']:.2f} / "
          f"{base['mesh_al_mean3d']:.2f} cm: {ratios['xyz_al_mean3d']:.1f}x / "
          f"{ratios['mesh_al_mean3d']:.1f}x better "
          f"({'meets' if report['meets_goal'] else 'does NOT meet'} the demo's goal of "
          f"{MIN_RATIO:.0f}x on both).")
    pred, true = (' / '.join(map(str, v.values())) for v in report['extent_mm'].values())
    print(f'mesh extent x / y / z (median over the samples, mm): predicted {pred}, true {true} '
          f'(z is the depth spread that the side and top views show)')
    wall, cpu = report['time_s']['wall'], report['time_s']['cpu']
    print(f"\n{'phase':<40}{'wall s':>8}{'CPU s':>8}")
    for phase in wall:
        print(f'{phase:<40}{wall[phase]:>8.1f}{cpu[phase]:>8.1f}')
    print(f"{'total':<40}{report['total_wall_s']:>8.1f}{report['total_cpu_s']:>8.1f}")
    train, evaluation = report['epochs_s']['train'], report['epochs_s']['evaluation']
    print('training epochs (wall s, from the log): ' + ', '.join(
        f'{epoch}: {seconds:.0f}' + ('' if evaluation[epoch] is None
                                     else f' + evaluation {evaluation[epoch]:.0f}')
        for epoch, seconds in train.items()))
    print(f"load average {report['load_average_start']} at the start, "
          f"{report['load_average_end']} at the end; a second run reuses the data and the "
          'checkpoints (the phases then take seconds)')


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    # The report's header records the start: the date, the commit, the load before the run.
    header = report_header(shlex.join(['python', '-m', 'tools.run_demo', *argv]), load_average(),
                           precision_run(args.amp))
    phases, py = [], sys.executable
    real, params = prepare_mano_and_data(py, phases)

    overrides = ['--preset', 'cpu_demo', '--mano_root', params['mano_root'], '--amp', args.amp]
    cfg = config_module.resolve(overrides)
    with timed(phases, 'train.py (with an evaluation per epoch)'):
        run([py, 'train.py', *overrides, '--resume', 'auto'])
    checkpoint = os.path.join(cfg.checkpoint_dir, f'snapshot_{cfg.total_epoch - 1}.pth.tar')
    with timed(phases, f'test.py (with {VIS_NUM} vis renders)'):
        run([py, 'test.py', *overrides, '--checkpoint', checkpoint, '--vis', '--vis_num',
             str(VIS_NUM)])

    from dataset.freihand import eval as freihand_eval
    with timed(phases, 'evaluation and mean-hand baseline'):
        xyz_gt, verts_gt = freihand_eval.load_gt(DATA_ROOT)
        xyz, verts = freihand_eval.load_pred(os.path.join(cfg.output_root, 'pred.json'),
                                             len(xyz_gt))
        ours = freihand_eval.evaluate(xyz_gt, verts_gt, xyz, verts)
        baseline = mean_hand_baseline(DATA_ROOT, os.path.join(cfg.output_root, 'eval_mean_hand'))
    with open(f'{cfg.log_dir}/train_{cfg.experiment_name}.log') as f:
        epochs = training_timeline(f.read().splitlines())

    report = demo_report(
        header, phases, epochs, (ours, baseline),
        {'pred': extent_mm(verts), 'gt': extent_mm(verts_gt)}, amp=args.amp,
        mano='licensed' if real else 'stand-in', num_train=params['num_train'],
        num_eval=params['num_eval'],
        iterations=cfg.total_epoch * (4 * params['num_train'] // cfg.batch_size))
    from utils.files.atomic import atomic_write_json
    report_path = os.path.join(cfg.output_root, REPORT_FILE)
    atomic_write_json(report_path, report, indent=1)
    print_report(report)
    outputs = {'MANO model': params['mano_root'], 'synthetic data': DATA_ROOT,
               'training log, curves': f'{cfg.log_dir}/', 'checkpoints': f'{cfg.checkpoint_dir}/',
               'predictions': f'{cfg.output_root}/pred.json',
               'evaluation': f'{cfg.output_root}/eval/ (scores.txt, scores.html, PCK plots)',
               'baseline evaluation': f'{cfg.output_root}/eval_mean_hand/',
               'rendered results': f'{cfg.vis_dir}/', 'this report (JSON)': report_path}
    print(f'\n{LIMITS}\n\noutputs:\n' + '\n'.join(f'  {name:<22}{path}'
                                                for name, path in outputs.items()))
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
