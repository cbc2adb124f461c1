"""ONNX Runtime against PyTorch for the fused SAR inference network on the CPU.

    python -m benchmarks.onnx_vs_torch [--quick] [--threads N]

The default network of config.py (ResNet-34, 2 stages, 256 px; random weights, no ImageNet
download; the procedural MANO stand-in's template) is fused (SAR.fuse_for_inference),
exported with inference.onnx to a temporary file, and run at batch 1 and 16 by both
runtimes with the SAME thread count (torch.set_num_threads and ONNX Runtime's
intra_op_num_threads, default: the cores this process may use). Per batch: warm-up calls,
then timed calls alternating between the two runtimes (so a change in the machine's load
hits both), reported as the median images/s of each (and the best call's, a hint of how
much the load varied), the ratio of the medians ONNX Runtime / PyTorch, and the max
|difference| of their outputs (crop-normalised coords) on the same input.
`--quick`: a small network (ResNet-18, 64 px, 2 feature maps) that runs in well under a
minute. Other processes change the numbers: their CPU use is printed before and after.
"""
import argparse
import os
import platform
import statistics
import tempfile
import time

import torch

import config as config_module
from benchmarks.machine import other_cpu_use
from inference.onnx import OnnxSAR, export_onnx
from synthetic.standin import build_standin
from model import NetworkSpec, SAR

BATCHES = (1, 16)
WARMUP = {1: 3, 16: 2}  # calls per runtime before timing
REPEATS = {1: 15, 16: 5}  # timed calls per runtime
QUICK_REPEATS = {1: 10, 16: 3}
# Random weights make depth outputs of about +-11 (a trained network's are about +-1,
# docs/method.md §3) and the two runtimes' rounding differences grow with them: 7.5e-5 was
# measured on the default network here, too close to export_onnx's 1e-4 to run reliably on
# other machines' kernels. The benchmark prints the difference it gets either way.
SELF_CHECK_TOLERANCE = 1e-3
QUICK_NETWORK = dict(backbone='resnet18', input_img_shape=(64, 64), num_stage=2, num_FMs=2)


def print_other_cpu_use(when):
    busy = other_cpu_use()
    text = 'unknown' if busy is None else f'{busy:.2f} of {os.cpu_count()} cores busy'
    print(f'other processes {when}: {text}')


def time_alternating(calls, warmup, repeats):
    """(median, best) seconds per call of each function in `calls` (dict name -> function),
    the functions called in turn within each repetition after `warmup` calls of each."""
    for _ in range(warmup):
        for function in calls.values():
            function()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, function in calls.items():
            begin = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - begin)
    return {name: (statistics.median(values), min(values)) for name, values in times.items()}


def build_fused(cfg):
    """The fused SAR of `cfg` with random weights and the stand-in MANO template."""
    mano = build_standin(seed=0)
    torch.manual_seed(0)
    model = SAR(mano['v_template'], mano['f'], NetworkSpec.from_config(cfg),
                pretrained_backbone=False)
    return model.eval().fuse_for_inference()


def run(quick=False, threads=None):
    """Print the comparison; return {batch: dict(torch_ips, onnx_ips, ratio, max_abs_diff)}."""
    import onnxruntime

    threads = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    overrides = dict(QUICK_NETWORK) if quick else {}
    cfg = config_module.resolve(pretrained_backbone=False, device='cpu', **overrides)
    repeats = QUICK_REPEATS if quick else REPEATS
    print(f'SAR {cfg.backbone}, {cfg.num_stage} stages, {cfg.input_img_shape[0]} px, '
          f'num_FMs {cfg.num_FMs} (fused, random weights, stand-in MANO template)')
    print(f'cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores; '
          f'{threads} threads for both runtimes; torch {torch.__version__}, onnxruntime '
          f'{onnxruntime.__version__}')
    print_other_cpu_use('at the start')
    fused = build_fused(cfg)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        begin = time.perf_counter()
        report = export_onnx(fused, cfg.to_dict(), os.path.join(folder, 'sar.onnx'),
                             tolerance=SELF_CHECK_TOLERANCE)
        print(f"export: {time.perf_counter() - begin:.1f} s, opset {report['opset']}, "
              f"{report['num_bytes'] / 2 ** 20:.1f} MiB, self-check max |diff| "
              f"{report['max_abs_diff']:.2e}")
        begin = time.perf_counter()
        runtime = OnnxSAR(report['path'], num_threads=threads)
        print(f'ONNX Runtime session: {time.perf_counter() - begin:.1f} s to load')
        height, width = cfg.input_img_shape
        generator = torch.Generator().manual_seed(1)
        for batch in BATCHES:
            img = torch.randn(batch, 3, height, width, generator=generator)
            inputs = {'img': img}
            with torch.inference_mode():
                diff = (runtime(inputs)['coords'] - fused(inputs)['coords']).abs().max().item()

                def run_torch():
                    fused(inputs)

                def run_onnx():
                    runtime(inputs)

                seconds = time_alternating({'torch': run_torch, 'onnx': run_onnx},
                                           WARMUP[batch], repeats[batch])
            (torch_s, torch_best), (onnx_s, onnx_best) = seconds['torch'], seconds['onnx']
            torch_ips, onnx_ips = batch / torch_s, batch / onnx_s
            results[batch] = dict(torch_ips=torch_ips, onnx_ips=onnx_ips,
                                  ratio=onnx_ips / torch_ips, max_abs_diff=diff)
            print(f'batch {batch:2d}: PyTorch {torch_ips:7.2f} images/s (best '
                  f'{batch / torch_best:.2f}), ONNX Runtime {onnx_ips:7.2f} images/s (best '
                  f'{batch / onnx_best:.2f}), ratio ORT/PyTorch {onnx_ips / torch_ips:.2f}, '
                  f'max |diff| {diff:.2e} (median of {repeats[batch]} calls each)')
    print_other_cpu_use('at the end')
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='a small network (seconds)')
    parser.add_argument('--threads', type=int, help='threads for both runtimes '
                                                    '(default: the usable cores)')
    args = parser.parse_args(argv)
    run(quick=args.quick, threads=args.threads)


if __name__ == '__main__':
    main()
