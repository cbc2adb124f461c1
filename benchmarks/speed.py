"""The speed measurements of `python -m benchmarks.run` and of cuda_check's throughput checks:
images/s against the matmul rate of the same moments, FLOPs, the CPU use of other processes.
Timings are medians after warm-up; paths compared side by side are timed in turn."""
import functools
import os
import statistics
import tempfile
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from inference.precision import autocast, resolve_amp
from training.build import build_optimizer
from training.loop import train_step

MATMUL_SIDE = {'cpu': 2048, 'cuda': 8192}  # square matmul giving the reference rate
TRAINING_FLOP_FACTOR = 3  # forward + backward (input and weight gradients) ~ 3 x forward
BUSY_CORES = 0.1  # cores used by other processes above which the timings are flagged
# Export self-check with random weights: their depth outputs of about +-11 (a trained
# network's are about +-1) make the two runtimes' rounding differences reach 7.5e-5, too close
# to export_onnx's default 1e-4 to run reliably on other machines' kernels.
ONNX_TOLERANCE = 1e-3
GOAL_SPEEDUP = 2.0  # the goal: the default CPU path >= 2x fp32 eager where bf16 is native
GOAL_MAX_DIFF = 5e-3  # ... with outputs within this of fp32 (crop-normalised units)
PRECISION_DTYPES = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def other_cpu_use(seconds=1.0):
    """Cores kept busy by other processes, measured from /proc/stat while this process
    sleeps for `seconds` (Linux); None where /proc/stat does not exist."""
    def busy_and_total():
        with open('/proc/stat') as stat:
            ticks = [float(value) for value in stat.readline().split()[1:9]]
        return sum(ticks) - ticks[3] - ticks[4], sum(ticks)  # busy: all but idle and iowait

    try:
        busy_start, total_start = busy_and_total()
        time.sleep(seconds)
        busy_end, total_end = busy_and_total()
    except (OSError, ValueError, IndexError):
        return None
    return os.cpu_count() * (busy_end - busy_start) / max(total_end - total_start, 1.0)


def describe_other_use(when):
    """Print and return the cores other processes keep busy."""
    busy = other_cpu_use()
    if busy is None:  # no /proc/stat: the 1-minute load average instead
        load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')
        print(f'load average (1 min) {when}: {load:.2f}')
        return load
    warning = ('  WARNING: timings below are low, run the benchmark on an idle machine'
               if busy > BUSY_CORES else '')
    print(f'other processes {when}: {busy:.2f} of {os.cpu_count()} cores busy{warning}')
    return busy


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def inference_call(network, amp_dtype):
    """network's coordinates of `inputs` in evaluation, under autocast in amp_dtype."""
    def call(inputs):
        with torch.inference_mode(), autocast(inputs['img'].device, amp_dtype):
            return network(inputs)['coords']
    return call


class Timer:
    """Median wall time of repeated calls (the device synchronised around each), with the rate
    of square matrix products in each precision ('fp32', 'bf16', 'fp16') timed between them."""
    # Load or clock changes that slow one slow the other, so the fractions stay meaningful.

    def __init__(self, device, precisions=('fp32',), quick=False):
        self.device, self.quick = device, quick  # quick: fewer repetitions
        self.side = MATMUL_SIDE[device.type]
        generator = torch.Generator(device=device).manual_seed(0)
        a, b = torch.randn(2, self.side, self.side, device=device, generator=generator)
        dtypes = {name: PRECISION_DTYPES[name] or torch.float32 for name in precisions}
        self._pairs = {name: (a.to(dtype), b.to(dtype), torch.empty_like(a, dtype=dtype))
                       for name, dtype in dtypes.items()}

    def _seconds(self, function):
        sync(self.device)
        begin = time.perf_counter()
        function()
        sync(self.device)
        return time.perf_counter() - begin

    def _matmul_seconds(self, count, precision):
        a, b, out = self._pairs[precision]
        return [self._seconds(lambda: torch.mm(a, b, out=out)) for _ in range(count)]

    def _rate(self, seconds):
        return 2 * self.side ** 3 / statistics.median(seconds) / 1e9

    def matmul_rate(self, repeats, precision='fp32', min_warmup_s=1.0):
        """GFLOP/s of the square product in `precision` (median), after `min_warmup_s` of them."""
        start = time.perf_counter()
        while time.perf_counter() - start < min_warmup_s:  # CPU clocks and thread pools ramp up
            self._matmul_seconds(1, precision)
        return self._rate(self._matmul_seconds(repeats, precision))

    def alternating(self, calls, repeats, warmup=1):
        """{name: (median seconds, paired matmul GFLOP/s)} of `calls` {name: (function,
        matmul precision)}, the functions called in turn within each repetition."""
        for _ in range(warmup):
            for function, _ in calls.values():
                function()
        times = {name: [] for name in calls}
        matmul = {name: [] for name in calls}
        for _ in range(repeats):
            for name, (function, precision) in calls.items():
                matmul[name] += self._matmul_seconds(3, precision)
                times[name].append(self._seconds(function))
        return {name: (statistics.median(times[name]), self._rate(matmul[name]))
                for name in calls}


def forward_flops(model, img, amp_dtype):
    """FLOPs of one evaluation forward pass of `img` (B x 3 x H x W)."""
    with torch.inference_mode(), autocast(img.device, amp_dtype):
        model({'img': img})  # warm-up: the tensors the model remembers between calls not counted
        with FlopCounterMode(display=False) as counter:
            model({'img': img})
    return counter.get_total_flops()


def random_batch(batch, cfg, device, seed=0):
    """(images B x 3 x H x W, targets B x 799 x 3 in [-1, 1]) on `device`, random; the images
    channels_last on CUDA where cfg asks for it (as train.py)."""
    generator = torch.Generator().manual_seed(seed)
    height, width = cfg.input_img_shape
    img = torch.randn(batch, 3, height, width, generator=generator).to(device)
    if cfg.channels_last and device.type == 'cuda':
        img = img.contiguous(memory_format=torch.channels_last)
    gt_uvd = (torch.rand(batch, cfg.num_vert + cfg.num_joint, 3, generator=generator) * 2
              - 1).to(device)
    return img, gt_uvd


def onnx_runtime(fused, cfg, folder, wanted=True):
    """OnnxSAR of the fused network exported into `folder`, or None (printing why)."""
    if not wanted:
        print('  ONNX Runtime not asked for')
        return None
    try:
        from inference.onnx import OnnxSAR, export_onnx
        begin = time.perf_counter()
        report = export_onnx(fused, cfg.to_dict(), os.path.join(folder, 'sar.onnx'),
                             tolerance=ONNX_TOLERANCE)
    except ImportError as err:
        print(f'  ONNX Runtime skipped: {err}')
        return None
    print(f"  ONNX export {time.perf_counter() - begin:.1f} s, "
          f"{report['num_bytes'] / 2 ** 20:.0f} MiB, self-check max |diff| "
          f"{report['max_abs_diff']:.1e}")
    return OnnxSAR(report['path'], num_threads=torch.get_num_threads())


class NetworkBench:
    """Times `model` on the timer's device: counts its FLOPs (printed), then prints images/s
    and their fractions of the matmul rate paired with each timing; keeps the figures."""

    def __init__(self, model, cfg, timer):
        self.model, self.cfg, self.timer = model, cfg, timer
        self.flops = forward_flops(model.eval(), random_batch(1, cfg, timer.device)[0], None)
        # Counted training FLOPs (forward + backward, batch 2) to show what the 3x convention
        # stands for; the optimiser step is memory traffic, not FLOPs.
        model.train()
        img2, gt2 = random_batch(2, cfg, timer.device, seed=1)
        with FlopCounterMode(display=False) as counter:
            sum(model({'img': img2}, {'mesh_pose_uvd': gt2}).values()).backward()
        model.zero_grad(set_to_none=True)
        train_flops = counter.get_total_flops() / 2
        print(f'network: {cfg.backbone}, {cfg.num_stage} stages, {cfg.input_img_shape[0]} px: '
              f'{self.flops / 1e9:.2f} GFLOP per image forward; a training step counts '
              f'{train_flops / 1e9:.1f} GFLOP per image forward + backward '
              f'({train_flops / self.flops:.2f} x forward; fractions below use '
              f'{TRAINING_FLOP_FACTOR} x)')
        self.figures = {'forward_gflop_per_image': self.flops / 1e9,
                        'train_gflop_per_image_counted': train_flops / 1e9}

    def add(self, label, key, batch, seconds, paired_rate, factor=1):
        """Print and keep one timing of `batch` images (`factor` x forward FLOPs each)."""
        images_per_s = batch / seconds
        achieved = factor * self.flops * images_per_s / 1e9
        fraction = achieved / paired_rate
        self.figures.update({f'{key}_images_per_s': images_per_s, f'{key}_fraction': fraction,
                             f'{key}_paired_matmul_gflops': paired_rate})
        unit = f'{seconds * 1e3:8.1f} ms' if seconds < 1 else f'{seconds:8.2f} s '
        print(f'  {label}: {images_per_s:7.2f} images/s ({unit} per batch), {fraction:.2f} of '
              f'the matmul rate ({paired_rate:.0f} GFLOP/s between the timed calls; '
              f'{achieved:.0f} GFLOP/s achieved)')

    def inference(self, precisions, batches, use_onnx):
        """Inference images/s of every path at each of `batches`; returns {(path, batch): B x
        799 x 3 coords}."""
        model, timer = self.model.eval(), self.timer
        fused = model.fuse_for_inference()
        print('inference (evaluation mode under torch.inference_mode; "fused": the copy of '
              'SAR.fuse_for_inference that test.py and demo.py run; "onnx": ONNX Runtime, fp32):')
        paths = {}  # {name: (callable on inputs, matmul precision of its rate)}
        for name in precisions:
            if name == 'fp32':
                paths['fp32 eval'] = (inference_call(model, None), 'fp32')
            paths[f'{name} fused'] = (inference_call(fused, PRECISION_DTYPES[name]), name)
        outputs = {}
        with tempfile.TemporaryDirectory() as folder:
            runtime = onnx_runtime(fused, self.cfg, folder, use_onnx)
            if runtime is not None:
                paths['onnx fused'] = (lambda inputs: runtime(inputs)['coords'], 'fp32')
            for batch in batches:
                inputs = {'img': random_batch(batch, self.cfg, timer.device, seed=2)[0]}
                calls = {name: ((lambda f=f: f(inputs)), precision)
                         for name, (f, precision) in paths.items()}
                repeats = (3 if timer.quick else 7) if batch == 1 else (2 if timer.quick else 3)
                for name, (seconds, rate) in timer.alternating(calls, repeats, 2).items():
                    self.add(f'batch {batch:2d} {name:10s}',
                             f"inference_{name.replace(' ', '_')}_b{batch}", batch, seconds, rate)
                    outputs[name, batch] = paths[name][0](inputs).float().cpu()
        return outputs

    def training(self, precisions, batch):
        """Training images/s at `batch` for every precision (timed in turn)."""
        model, timer = self.model.train(), self.timer
        img, gt_uvd = random_batch(batch, self.cfg, timer.device, seed=3)
        inputs, targets = {'img': img}, {'mesh_pose_uvd': gt_uvd}
        calls = {}
        for name in precisions:
            optimizer, _ = build_optimizer(self.cfg, model, timer.device)  # as train.py builds it
            scaler = torch.amp.GradScaler('cuda') if name == 'fp16' else None
            calls[name] = (functools.partial(train_step, model, optimizer, inputs, targets,
                                             amp_dtype=PRECISION_DTYPES[name], scaler=scaler), name)
        print(f'training (forward + losses + backward + AdamW step as in train.py; '
              f'{TRAINING_FLOP_FACTOR} x forward FLOPs per image; one network, so the paths '
              f'share its weights):')
        for name, (seconds, rate) in timer.alternating(calls, 2 if timer.quick else 4).items():
            self.add(f'batch {batch:2d} {name:10s}', f'train_{name}', batch, seconds, rate,
                     TRAINING_FLOP_FACTOR)

    def compare_default(self, outputs, batches):
        """The CPU's default path (amp='auto') against fp32 eager: speed and output difference."""
        choice = resolve_amp('auto', self.timer.device)  # fp32 or bf16 on a CPU: both timed
        default = f"{'fp32' if choice.dtype is None else choice.name} fused"
        print(f'default path ({choice.reason}): "{default}"')
        for batch in batches:
            speedup = (self.figures[f"inference_{default.replace(' ', '_')}_b{batch}_images_per_s"]
                       / self.figures[f'inference_fp32_eval_b{batch}_images_per_s'])
            diff = (outputs[default, batch] - outputs['fp32 eval', batch]).abs()  # (B, 799, 3)
            uv_diff, d_diff = diff[..., :2].max().item(), diff[..., 2].max().item()
            depth_span = outputs['fp32 eval', batch][..., 2].abs().max().item()
            self.figures.update({f'default_speedup_b{batch}': speedup,
                                 f'default_max_diff_b{batch}': max(uv_diff, d_diff)})
            # Random weights give depths of about +-10 (a trained network's: about +-1), and
            # bf16 rounds relative to the value: read the depth difference against its span.
            print(f'  batch {batch:2d}: {speedup:.2f} x fp32 eager (goal >= {GOAL_SPEEDUP:g} x '
                  f'where bf16 is native), max |diff| u, v {uv_diff:.1e}, d {d_diff:.1e} of '
                  f'depths up to {depth_span:.2g} (goal <= {GOAL_MAX_DIFF:g} on a trained '
                  f'network: benchmarks.precision)')
            if ('onnx fused', batch) in outputs:
                onnx = (outputs['onnx fused', batch] - outputs['fp32 fused', batch]).abs().max()
                print(f'            ONNX Runtime vs fp32 fused: max |diff| {onnx.item():.1e}')


def print_matmul_rates(timer, precisions, when, figures):
    """Measure, print and record the matmul rate of every precision."""
    for name in precisions:
        rate = timer.matmul_rate(8 if timer.quick else 20, name)
        figures[f'matmul_{name}_gflops{"_end" if when else ""}'] = rate
        print(f'{name} matmul {timer.side} x {timer.side}{when}: {rate:.1f} GFLOP/s (median)')
