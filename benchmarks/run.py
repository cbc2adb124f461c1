"""How fast SAR runs on this machine, against what the machine can do (issues 7 and 20).

    python -m benchmarks.run [--quick] [--threads N] [--device cpu|cuda] [--amp off|bf16|fp16]
                             [--no-onnx] [--preset cpu_demo] [--batches 1 8]

What is timed and how to read it: docs/performance.md (the code: benchmarks/speed.py). Run it
idle; no weights or data sets are needed.
"""
import argparse
import os
import tempfile

import torch

import config as config_module
from benchmarks import speed
from inference.precision import AMP_DTYPES, resolve_amp
from run.network import build_model
from synthetic.standin import build_standin, save_standin
from utils.mano import MANO
from utils.runtime.machine import machine_info


def run(args):
    """Run the benchmark of the parsed command line, print the report, return the figures."""
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError('--device cuda: no CUDA device is visible; use --device cpu')
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    # The precisions compared: fp32 and bf16 on the CPU; on CUDA the one of --amp.
    precisions = (('fp32', 'bf16') if device.type == 'cpu'
                  else ('fp32' if args.amp == 'off' else args.amp,))
    cfg = config_module.resolve([], device=device.type, pretrained_backbone=False,
                                preset=args.preset)
    timer = speed.Timer(device, precisions, quick=args.quick)
    description = (f'cuda ({torch.cuda.get_device_name(device)})' if device.type == 'cuda' else
                   f"cpu ({machine_info()['cpu_model']}, {os.cpu_count()} logical cores)")
    print(f'SAR benchmark: device {description}, torch {torch.__version__}, '
          f'{torch.get_num_threads()} threads; precisions {", ".join(precisions)}; '
          f"amp='auto' here: {resolve_amp('auto', device).reason}")
    figures = {'device': description, 'threads': torch.get_num_threads(),
               'other_cpu_start': speed.describe_other_use('at the start')}
    speed.print_matmul_rates(timer, precisions, '', figures)
    with tempfile.TemporaryDirectory() as mano_root:
        save_standin(mano_root, build_standin(seed=0))
        torch.manual_seed(0)
        model = build_model(cfg, MANO(mano_root), device, pretrained_backbone=False)
        bench = speed.NetworkBench(model, cfg, timer)
        outputs = bench.inference(precisions, args.batches,
                                  use_onnx=not args.no_onnx and device.type == 'cpu')
        if device.type == 'cpu':
            bench.compare_default(outputs, args.batches)
        bench.training(precisions, batch=8)
    figures.update(bench.figures)
    speed.print_matmul_rates(timer, precisions, ' again at the end', figures)
    figures['other_cpu_end'] = speed.describe_other_use('at the end')
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m benchmarks.run',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='fewer repetitions')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch threads (default: torch\'s default, one per core)')
    parser.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
    parser.add_argument('--amp', default='bf16', choices=tuple(AMP_DTYPES),
                        help='CUDA: the autocast dtype timed (the CPU times fp32 and bf16)')
    parser.add_argument('--no-onnx', action='store_true',
                        help='CPU: skip ONNX Runtime (no export)')
    parser.add_argument('--preset', default='', choices=('', *config_module.PRESETS),
                        help='time the network of a config preset (e.g. cpu_demo) instead of '
                             'config.py\'s default')
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 8],
                        help='inference batch sizes (default: 1 8)')
    args = parser.parse_args(argv)
    if min(args.batches) < 1:
        parser.error(f'--batches must be at least 1, got {args.batches}')
    return run(args)


if __name__ == '__main__':
    main()
