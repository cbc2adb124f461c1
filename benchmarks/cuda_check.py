"""GPU self-check: does SAR train, infer and render correctly on this machine, and how fast.

    python -m benchmarks.cuda_check [--device cuda|cpu] [--steps N] [--profile]

What each check verifies and its tolerance: benchmarks/gpu_checks.py and docs/clusters.md.
--device cpu runs a reduced version in about a minute (fp16, compile, NCCL and EGL: SKIP).
"""
import argparse
import collections
import contextlib
import sys
import tempfile
import time
import traceback

import torch

from benchmarks.gpu_checks import (FULL, MIN_STEPS, REDUCED, CheckFailed, SkipCheck, check_ddp,
                                   check_environment, check_inference_bf16,
                                   check_inference_throughput, check_profile, check_render,
                                   check_train, check_train_throughput, make_fixture, window)


# ---- driver ------------------------------------------------------------------------------

class Report:
    """Prints one line per check and counts the verdicts."""

    def __init__(self):
        self.counts = collections.Counter()

    def line(self, status, name, text):
        self.counts[status] += 1
        print(f'{status} {name}: {text}', flush=True)

    def run(self, name, function, *args, **kwargs):
        try:
            text = function(*args, **kwargs)
        except SkipCheck as skip:
            self.line('SKIP', name, str(skip))
        except CheckFailed as failure:
            self.line('FAIL', name, str(failure))
        except Exception as err:  # any error of a check is its failure; the others still run
            traceback.print_exc(file=sys.stderr)
            message = str(err).strip().splitlines()[0] if str(err).strip() else ''
            self.line('FAIL', name, f'{type(err).__name__}: {message}')
        else:
            self.line('PASS', name, text)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def skip(self, name, reason):
        self.line('SKIP', name, reason)


def run(device='cuda', steps=None, profile=False):
    """Run the checks; returns the number of failures."""
    device = torch.device(device)
    report = Report()
    start = time.perf_counter()
    settings = dict(FULL if device.type == 'cuda' else REDUCED)
    if steps is not None:
        settings['steps'] = steps
    report.run('environment', check_environment, device)
    names = ['train bf16', 'train fp16', 'train compile', 'inference bf16 vs fp32',
             'training throughput', 'inference throughput', 'ddp', 'render egl']
    if device.type == 'cuda' and not torch.cuda.is_available():
        for name in names:
            report.skip(name, 'no CUDA device (see environment)')
    else:
        if device.type == 'cuda':
            torch.backends.cudnn.benchmark = True  # as train.py: fixed input size
            if device.index is None:
                device = torch.device('cuda', torch.cuda.current_device())
        with tempfile.TemporaryDirectory() as mano_root:
            from synthetic import standin
            with contextlib.redirect_stdout(None):
                standin.main(['--out', mano_root])
            fx = make_fixture(device, settings, mano_root)
            net = (f'{settings["backbone"]}, {settings["num_stage"]} stage(s), '
                   f'{settings["input_img_shape"][0]} px, batch {settings["batch"]}, '
                   f'{settings["steps"]} steps')
            cpu = device.type == 'cpu'
            report.run('train bf16', lambda: f'{net}, channels_last {fx.cfg.channels_last}, '
                       f'AdamW fused on CUDA: ' + check_train(fx, torch.bfloat16, key='train_bf16'))
            if cpu:
                report.run('train fp32', lambda: f'{net}: ' + check_train(fx, None,
                                                                          key='train_fp32'))
                for name in ('train fp16', 'train compile'):
                    report.skip(name, 'CPU run (a CUDA check)')
            else:
                report.run('train fp16', lambda: f'{net}, GradScaler: ' +
                           check_train(fx, torch.float16, use_scaler=True))
                report.run('train compile', lambda: f'{net}, torch.compile, bf16: ' +
                           check_train(fx, torch.bfloat16, use_compile=True))
            report.run('inference bf16 vs fp32', check_inference_bf16, fx)
            report.run('training throughput', check_train_throughput, fx)
            report.run('inference throughput', check_inference_throughput, fx)
            if cpu:
                for name in ('ddp', 'render egl'):
                    report.skip(name, 'CPU run (a GPU check: NCCL, EGL)')
            else:
                report.run('ddp', check_ddp, fx)
                report.run('render egl', check_render, 'egl')
            if profile:
                report.run('profile', check_profile, fx)
    counts = report.counts
    print(f'SUMMARY: {counts["PASS"]} PASS, {counts["FAIL"]} FAIL, {counts["SKIP"]} SKIP in '
          f'{time.perf_counter() - start:.0f} s on {device.type}'
          + ('' if counts['FAIL'] == 0 else ' -- FAILED'), flush=True)
    return counts['FAIL']


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m benchmarks.cuda_check',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cuda', choices=('cuda', 'cpu'))
    parser.add_argument('--steps', type=int, default=None,
                        help=f'training steps per check (default {FULL["steps"]} on CUDA, '
                             f'{REDUCED["steps"]} on the CPU; at least {MIN_STEPS})')
    parser.add_argument('--profile', action='store_true',
                        help='also profile a few training steps (the top ops)')
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < MIN_STEPS:
        parser.error(f'--steps must be at least {MIN_STEPS} (the first and last '
                     f'{window(MIN_STEPS)} are compared), got {args.steps}')
    return 1 if run(args.device, args.steps, args.profile) else 0


if __name__ == '__main__':
    sys.exit(main())
