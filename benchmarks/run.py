"""How fast SAR runs on this machine, against what the machine can do (issues 7 and 20).

    python -m benchmarks.run [--quick] [--skip-eval] [--threads N] [--data-root DIR]
                             [--device cpu|cuda] [--amp off|bf16|fp16] [--no-onnx]
                             [--preset cpu_demo]

Prints, in one run, with the device, thread count and the CPU use of other processes:
- the network's FLOPs per image (torch.utils.flop_counter; config.py's default network, or
  that of --preset) and
  the machine's matrix-multiply rates: on the CPU fp32 and bf16 2048 x 2048 products (same
  thread count), on CUDA 8192 x 8192 in the compute dtype (--amp);
- on the CPU, side by side: fp32 (PyTorch eager, the published code's precision), bf16
  autocast and ONNX Runtime (the fp32 graph of inference.onnx) for inference at batch 1
  and 8 (the copy made by SAR.fuse_for_inference, as test.py and demo.py run it; fp32 also
  unfused), fp32 and bf16 for training at batch 8 (forward + loss + backward + AdamW step);
  each as images/s and as a fraction of the matmul rate of its own precision (FLOPs x
  images/s / rate, a training image counting 3x the forward FLOPs); then the default path
  (`amp='auto'`, inference.precision.resolve_amp) against fp32, with the largest difference of its
  outputs in crop-normalised units;
- the data pipeline's CPU time and items/s per worker (decode, crop, augment, normalise,
  targets) on FreiHAND-layout images, and whether config.num_worker workers sustain the
  measured training rate;
- the time of the full 3,960-sample local evaluation (benchmarks/evaluation.py) and the MANO
  layer's hands per second at batch 1024 (procedural stand-in model).

Every timing is a median over repetitions after warm-up; the paths compared side by side are
timed in turn within each repetition, so a change in the machine's load hits all of them.
Other processes change the numbers: their CPU use is printed at the start and the end; run
it idle. No model weights or data sets are needed: images, targets and MANO are synthetic.
"""
import argparse
import contextlib
import os
import platform
import statistics
import tempfile
import time
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

import config as config_module
from inference.precision import AMP_DTYPES, autocast, resolve_amp
from inference.network import build_model
from training.build import build_optimizer
from benchmarks.machine import other_cpu_use
from training.loop import train_step
from utils.mano import MANO

MATMUL_SIDE = {'cpu': 2048, 'cuda': 8192}  # square matmul giving the reference rate
PUBLISHED_TRAIN_IMAGES_PER_S = 173  # the published 50-epoch run on one GPU (docs/method.md §6)
INFERENCE_BATCHES = (1, 8)
TRAIN_BATCH = 8
MANO_BATCH = 1024
EVAL_SAMPLES = 3960  # FreiHAND evaluation set size
TRAINING_FLOP_FACTOR = 3  # forward + backward (input and weight gradients) ~ 3 x forward
SYNTH_SAMPLES = 8  # FreiHAND-layout samples written for the data benchmark (x4 versions)
BUSY_CORES = 0.1  # cores used by other processes above which the timings are flagged
ONNX_TOLERANCE = 1e-3  # export self-check with random weights (see benchmarks/onnx_vs_torch.py)
GOAL_SPEEDUP = 2.0  # the goal: the default CPU path >= 2x fp32 eager where bf16 is native
GOAL_MAX_DIFF = 5e-3  # ... with outputs within this of fp32 (crop-normalised units)
PRECISION_DTYPES = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


class Timer:
    """Median wall time of repeated calls, synchronising the device around each call.

    Between the timed calls it also times a few square matrix products in each compute
    dtype (fp32, bf16, ...), so every measurement comes with the matmul rate of the same
    moments: other processes or clock changes that slow one down slow the other too, and
    the fractions stay meaningful.
    """

    def __init__(self, device, dtypes=(torch.float32,)):
        self.device = device
        self.side = MATMUL_SIDE[device.type]
        generator = torch.Generator(device=device).manual_seed(0)
        a = torch.randn(self.side, self.side, device=device, generator=generator)
        b = torch.randn(self.side, self.side, device=device, generator=generator)
        self._pairs = {dtype: (a.to(dtype), b.to(dtype), torch.empty_like(a, dtype=dtype))
                       for dtype in dtypes}

    def sync(self):
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)

    def _matmul_seconds(self, count, dtype):
        a, b, out = self._pairs[dtype]
        times = []
        for _ in range(count):
            self.sync()
            begin = time.perf_counter()
            torch.mm(a, b, out=out)
            self.sync()
            times.append(time.perf_counter() - begin)
        return times

    def _rate(self, seconds):
        return 2 * self.side ** 3 / statistics.median(seconds) / 1e9

    def matmul_rate(self, repeats, dtype=torch.float32, min_warmup_s=1.0):
        """GFLOP/s of the square product in `dtype` (median), after `min_warmup_s` of them
        (CPU clocks and thread pools ramp up)."""
        start = time.perf_counter()
        while time.perf_counter() - start < min_warmup_s:
            self._matmul_seconds(1, dtype)
        return self._rate(self._matmul_seconds(repeats, dtype))

    def median(self, function, repeats, warmup=1, dtype=torch.float32):
        """(median seconds per call of `function()` after `warmup` calls, median matmul
        GFLOP/s in `dtype` measured between the timed calls)."""
        return self.alternating({'f': (function, dtype)}, repeats, warmup)['f']

    def alternating(self, calls, repeats, warmup=1):
        """{name: (median seconds, paired matmul GFLOP/s)} of `calls` {name: (function,
        matmul dtype)}, the functions called in turn within each repetition."""
        for _ in range(warmup):
            for function, _ in calls.values():
                function()
        times = {name: [] for name in calls}
        matmul = {name: [] for name in calls}
        for _ in range(repeats):
            for name, (function, dtype) in calls.items():
                matmul[name] += self._matmul_seconds(3, dtype)
                self.sync()
                begin = time.perf_counter()
                function()
                self.sync()
                times[name].append(time.perf_counter() - begin)
        return {name: (statistics.median(times[name]), self._rate(matmul[name]))
                for name in calls}


def device_description(device):
    """Human-readable device name."""
    if device.type == 'cuda':
        return f'cuda ({torch.cuda.get_device_name(device)})'
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open('/proc/cpuinfo') as cpuinfo:
            for line in cpuinfo:
                if line.startswith('model name'):
                    name = line.split(':', 1)[1].strip()
                    break
    return f'cpu ({name}, {os.cpu_count()} logical cores)'


def forward_flops(model, img, amp_dtype):
    """FLOPs of one evaluation forward pass (after a warm-up pass, so the derived tensors
    the model remembers between calls are not counted)."""
    with torch.inference_mode(), autocast(img.device, amp_dtype):
        model({'img': img})
        with FlopCounterMode(display=False) as counter:
            model({'img': img})
    return counter.get_total_flops()


def training_step(model, optimizer, img, gt_uvd, amp_dtype, scaler):
    """One train.py step (training.loop.train_step): forward, loss sum, backward, AdamW step."""
    train_step(model, optimizer, {'img': img}, {'mesh_pose_uvd': gt_uvd}, amp_dtype=amp_dtype,
               scaler=scaler)


def random_batch(batch, cfg, device, channels_last, generator):
    height, width = cfg.input_img_shape
    img = torch.randn(batch, 3, height, width, generator=generator).to(device)
    if channels_last:
        img = img.contiguous(memory_format=torch.channels_last)
    gt_uvd = (torch.rand(batch, cfg.num_vert + cfg.num_joint, 3, generator=generator) * 2
              - 1).to(device)
    return img, gt_uvd


def network_flops(model, cfg, device, channels_last, generator):
    """(forward FLOPs per image, counted forward + backward FLOPs per image); printed."""
    img1, _ = random_batch(1, cfg, device, channels_last, generator)
    flops = forward_flops(model.eval(), img1, None)
    # Counted training FLOPs (forward + backward, batch 2) to show what the 3x convention
    # stands for; the optimiser step is memory traffic, not FLOPs.
    model.train()
    img2, gt2 = random_batch(2, cfg, device, channels_last, generator)
    with FlopCounterMode(display=False) as counter:
        sum(model({'img': img2}, {'mesh_pose_uvd': gt2}).values()).backward()
    model.zero_grad(set_to_none=True)
    train_flops = counter.get_total_flops() / 2
    print(f'network: {cfg.backbone}, {cfg.num_stage} stages, {cfg.input_img_shape[0]} px: '
          f'{flops / 1e9:.2f} GFLOP per image forward; a training step counts '
          f'{train_flops / 1e9:.1f} GFLOP per image forward + backward '
          f'({train_flops / flops:.2f} x forward; fractions below use '
          f'{TRAINING_FLOP_FACTOR} x)')
    return flops, train_flops


class Report:
    """Prints timings as images/s and fractions of the paired matmul rate; keeps figures."""

    def __init__(self, flops):
        self.flops = flops
        self.figures = {'forward_gflop_per_image': flops / 1e9}

    def add(self, label, key, batch, seconds, paired_rate, factor=1):
        images_per_s = batch / seconds
        achieved = factor * self.flops * images_per_s / 1e9
        fraction = achieved / paired_rate
        self.figures.update({f'{key}_images_per_s': images_per_s, f'{key}_fraction': fraction,
                             f'{key}_paired_matmul_gflops': paired_rate})
        unit = f'{seconds * 1e3:8.1f} ms' if seconds < 1 else f'{seconds:8.2f} s '
        print(f'  {label}: {images_per_s:7.2f} images/s ({unit} per batch), {fraction:.2f} of '
              f'the matmul rate ({paired_rate:.0f} GFLOP/s between the timed calls; '
              f'{achieved:.0f} GFLOP/s achieved)')
        return images_per_s


def onnx_runtime(fused, cfg, folder):
    """(OnnxSAR of the fused network exported into `folder`, export report), or (None, why)."""
    try:
        from inference.onnx import OnnxSAR, export_onnx
        begin = time.perf_counter()
        report = export_onnx(fused, cfg.to_dict(), os.path.join(folder, 'sar.onnx'),
                             tolerance=ONNX_TOLERANCE)
    except ImportError as err:
        return None, f'ONNX Runtime skipped: {err}'
    print(f"  ONNX export {time.perf_counter() - begin:.1f} s, "
          f"{report['num_bytes'] / 2 ** 20:.0f} MiB, self-check max |diff| "
          f"{report['max_abs_diff']:.1e}")
    return OnnxSAR(report['path'], num_threads=torch.get_num_threads()), report


def inference_paths(model, fused, runtime, precisions):
    """{name: (callable on inputs, matmul dtype of its rate)} of the inference paths."""
    def under(network, amp_dtype):
        def call(inputs):
            with torch.inference_mode(), autocast(inputs['img'].device, amp_dtype):
                return network(inputs)['coords']
        return call

    paths = {}
    for name in precisions:
        dtype = PRECISION_DTYPES[name]
        if name == 'fp32':
            paths['fp32 eval'] = (under(model, None), torch.float32)
        paths[f'{name} fused'] = (under(fused, dtype), dtype or torch.float32)
    if runtime is not None:
        paths['onnx fused'] = (lambda inputs: runtime(inputs)['coords'], torch.float32)
    return paths


class Bench(NamedTuple):
    """What every measurement of a run shares: the device, the timer, quick mode (fewer
    repeats) and the generator of the random inputs."""
    device: torch.device
    timer: object
    quick: bool
    generator: torch.Generator


def bench_inference(report, model, cfg, bench, precisions, use_onnx):
    """Inference images/s of every path at INFERENCE_BATCHES; returns {(path, batch): coords}."""
    device, timer, quick, generator = bench
    model.eval()
    fused = model.fuse_for_inference()
    print('inference (evaluation mode under torch.inference_mode; "fused": the copy of '
          'SAR.fuse_for_inference that test.py and demo.py run; "onnx": ONNX Runtime, fp32):')
    outputs = {}
    with tempfile.TemporaryDirectory() as folder:
        runtime, why = (onnx_runtime(fused, cfg, folder) if use_onnx
                        else (None, 'ONNX Runtime not asked for'))
        if runtime is None:
            print(f'  {why}')
        paths = inference_paths(model, fused, runtime, precisions)
        for batch in INFERENCE_BATCHES:
            img, _ = random_batch(batch, cfg, device, cfg.channels_last and device.type == 'cuda',
                                  generator)
            inputs = {'img': img}
            calls = {name: ((lambda f=f: f(inputs)), dtype) for name, (f, dtype) in paths.items()}
            repeats = (3 if quick else 7) if batch == 1 else (2 if quick else 3)
            timed = timer.alternating(calls, repeats, warmup=2)
            for name, (seconds, rate) in timed.items():
                report.add(f'batch {batch:2d} {name:10s}', f"inference_{name.replace(' ', '_')}"
                           f'_b{batch}', batch, seconds, rate)
                outputs[name, batch] = paths[name][0](inputs).float().cpu()
    return outputs


def bench_training(report, model, cfg, bench, precisions):
    """Training images/s at TRAIN_BATCH for every precision (timed in turn)."""
    device, timer, quick, generator = bench
    model.train()
    img, gt_uvd = random_batch(TRAIN_BATCH, cfg, device, cfg.channels_last and device.type == 'cuda',
                               generator)
    calls = {}
    for name in precisions:
        dtype = PRECISION_DTYPES[name]
        optimizer, _ = build_optimizer(cfg, model, device)  # AdamW as train.py builds it
        scaler = torch.amp.GradScaler('cuda') if dtype == torch.float16 else None
        calls[name] = ((lambda o=optimizer, d=dtype, s=scaler:
                        training_step(model, o, img, gt_uvd, d, s)), dtype or torch.float32)
    print(f'training (forward + losses + backward + AdamW step as in train.py; '
          f'{TRAINING_FLOP_FACTOR} x forward FLOPs per image; one network, so the paths '
          f'share its weights):')
    for name, (seconds, rate) in timer.alternating(calls, 2 if quick else 4, warmup=1).items():
        report.add(f'batch {TRAIN_BATCH:2d} {name:10s}', f'train_{name}', TRAIN_BATCH, seconds,
                   rate, TRAINING_FLOP_FACTOR)


def compare_default(report, outputs, device):
    """The default path (amp='auto') against fp32 eager: speed and output difference."""
    choice = resolve_amp('auto', device)
    default = f"{'fp32' if choice.dtype is None else choice.name} fused"
    print(f'default path ({choice.reason}): "{default}"')
    for batch in INFERENCE_BATCHES:
        if (default, batch) not in outputs or ('fp32 eval', batch) not in outputs:
            continue
        speedup = (report.figures[f"inference_{default.replace(' ', '_')}_b{batch}_images_per_s"]
                   / report.figures[f'inference_fp32_eval_b{batch}_images_per_s'])
        diff = (outputs[default, batch] - outputs['fp32 eval', batch]).abs()  # (B, 799, 3)
        uv_diff, d_diff = diff[..., :2].max().item(), diff[..., 2].max().item()
        depth_span = outputs['fp32 eval', batch][..., 2].abs().max().item()
        report.figures.update({f'default_speedup_b{batch}': speedup,
                               f'default_max_diff_b{batch}': max(uv_diff, d_diff)})
        # Random weights give depths of about +-10 (a trained network's: about +-1), and
        # bf16 rounds relative to the value: read the depth difference against its span.
        print(f'  batch {batch:2d}: {speedup:.2f} x fp32 eager (goal >= {GOAL_SPEEDUP:g} x where '
              f'bf16 is native), max |diff| u, v {uv_diff:.1e}, d {d_diff:.1e} of depths up to '
              f'{depth_span:.2g} (goal <= {GOAL_MAX_DIFF:g} on a trained network: '
              f'benchmarks.precision)')
        if 'onnx fused' in (name for name, b in outputs if b == batch):
            onnx_diff = (outputs['onnx fused', batch] - outputs['fp32 fused', batch]).abs().max()
            print(f'            ONNX Runtime vs fp32 fused: max |diff| {onnx_diff.item():.1e}')


def bench_network(cfg, mano, device, timer, precisions, quick, use_onnx=True):
    """Inference and training throughput of the default network in each precision; prints
    and returns figures."""
    channels_last = cfg.channels_last and device.type == 'cuda'  # as train.py
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = build_model(cfg, mano, device, pretrained_backbone=False)  # random weights
    flops, train_flops = network_flops(model, cfg, device, channels_last, generator)
    report = Report(flops)
    report.figures['train_gflop_per_image_counted'] = train_flops / 1e9
    bench = Bench(device, timer, quick, generator)
    outputs = bench_inference(report, model, cfg, bench, precisions,
                              use_onnx and device.type == 'cpu')
    if device.type == 'cpu':
        compare_default(report, outputs, device)
    bench_training(report, model, cfg, bench, precisions)
    return report.figures


def textured_jpegs(root, seed=0):
    """Overwrite the RGB images of a FreiHAND-layout folder with photo-like 224 x 224 JPEGs.

    Flat synthetic images decode much faster than photos; smooth multi-scale noise with
    edges compresses to about the size of FreiHAND's JPEGs, so decoding costs about as much.
    """
    import cv2

    rng = np.random.default_rng(seed)
    sizes = []
    for split in ('training', 'evaluation'):
        folder = os.path.join(root, split, 'rgb')
        for name in sorted(os.listdir(folder)):
            img = np.zeros((224, 224, 3), np.float32)
            for cells, amplitude in ((4, 80.0), (14, 40.0), (56, 20.0), (224, 8.0)):
                noise = rng.normal(size=(cells, cells, 3)).astype(np.float32)
                img += amplitude * cv2.resize(noise, (224, 224), interpolation=cv2.INTER_CUBIC)
            img = np.clip(img + 128.0, 0, 255).astype(np.uint8)
            path = os.path.join(folder, name)
            cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 90])
            sizes.append(os.path.getsize(path))
    return float(np.mean(sizes))


def synthetic_data_root(stack):
    """(root, description) of photo-like JPEGs in a temporary FreiHAND layout (removed when
    the ExitStack `stack` closes)."""
    from synthetic.fixture import make_freihand

    root = stack.enter_context(tempfile.TemporaryDirectory())
    make_freihand(root, num_samples=SYNTH_SAMPLES, num_eval=1)
    mean_bytes = textured_jpegs(root)
    return root, (f'{4 * SYNTH_SAMPLES} synthetic photo-like JPEGs in a temporary FreiHAND '
                  f'layout, {mean_bytes / 1e3:.1f} kB each')


def time_items(dataset, num_items, cv2_threads):
    """(wall, CPU) seconds per training item with `cv2_threads` OpenCV threads."""
    import cv2

    cv2.setNumThreads(cv2_threads)
    for idx in range(min(10, num_items)):
        dataset[idx]
    wall, cpu = time.perf_counter(), time.process_time()
    for idx in range(num_items):
        dataset[idx % len(dataset)]
    return (time.perf_counter() - wall) / num_items, (time.process_time() - cpu) / num_items


def stage_cpu_seconds(dataset, cfg, num_items):
    """{stage: CPU seconds per item} of decode, crop + augment, normalise and targets."""
    import cv2

    from utils.constants import HAND_BOX_CENTER, HAND_BOX_SIZE
    from utils.preprocessing import augment_params, crop_and_augment, normalize
    from utils.transforms import encode_uvd

    rng = np.random.default_rng(0)
    stage_s = dict.fromkeys(('decode', 'crop + augment', 'normalise', 'targets'), 0.0)
    for idx in range(num_items):
        sample = idx % dataset.num_samples
        params = augment_params(rng)
        clock = [time.process_time()]
        img = cv2.imread(dataset.image_path(idx % len(dataset)), cv2.IMREAD_COLOR)
        clock.append(time.process_time())
        crop, img2crop, _ = crop_and_augment(img, HAND_BOX_CENTER, HAND_BOX_SIZE,
                                             cfg.input_img_shape, **params)
        clock.append(time.process_time())
        normalize(crop)
        clock.append(time.process_time())
        encode_uvd(dataset.verts_cam[sample], dataset.joints_cam[sample], dataset.K[sample],
                   img2crop, crop_size=cfg.input_img_shape, depth_box=cfg.depth_box)
        clock.append(time.process_time())
        for name, begin, end in zip(stage_s, clock, clock[1:]):
            stage_s[name] += end - begin
    return {name: seconds / num_items for name, seconds in stage_s.items()}


def measure_data(cfg, data_root, num_items):
    """({OpenCV threads: (wall, CPU) s per item}, stage CPU s per item, source, default
    OpenCV thread count), one process = one worker (torch single-threaded)."""
    import cv2

    from dataset import FreiHAND, Preprocessing

    with contextlib.ExitStack() as stack:
        source = data_root
        if data_root is None:
            data_root, source = synthetic_data_root(stack)
        dataset = FreiHAND('training', root=data_root, preprocessing=Preprocessing(
            input_img_shape=cfg.input_img_shape, depth_box=cfg.depth_box, seed=0))
        # A DataLoader worker runs torch single-threaded. OpenCV keeps its own thread pool
        # (the CPU time includes it); timed with OpenCV's default and with one thread.
        torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
        torch.set_num_threads(1)
        try:
            timings = {threads: time_items(dataset, num_items, threads)
                       for threads in (cv2_threads, 1)}
            stages = stage_cpu_seconds(dataset, cfg, num_items)  # with one OpenCV thread
        finally:
            torch.set_num_threads(torch_threads)
            cv2.setNumThreads(cv2_threads)
    return timings, stages, source, cv2_threads


def bench_data(cfg, data_root, quick, train_images_per_s):
    """Per-item CPU cost of the training data pipeline, in this process (= one worker)."""
    num_items = 60 if quick else 400  # items cycle through the folder (page-cached files)
    timings, stages, source, cv2_threads = measure_data(cfg, data_root, num_items)
    print(f'data pipeline (FreiHAND training items with augmentation, {num_items} items of '
          f'{source}), one process = one worker:')
    figures = {}
    for threads, label in ((cv2_threads, f'OpenCV default ({cv2_threads} threads)'),
                           (1, 'OpenCV 1 thread')):
        wall, cpu = timings[threads]
        key = 'default' if threads == cv2_threads else 'cv2_1_thread'
        figures.update({f'data_{key}_cpu_ms_per_item': cpu * 1e3,
                        f'data_{key}_wall_ms_per_item': wall * 1e3,
                        f'data_{key}_items_per_s_per_worker': 1.0 / wall})
        print(f'  {label:28s}: {cpu * 1e3:.2f} ms CPU per item ({wall * 1e3:.2f} ms wall), '
              f'{1.0 / wall:.0f} items/s per worker')
    print('  CPU ms per stage (1 thread): ' + ', '.join(
        f'{name} {seconds * 1e3:.2f}' for name, seconds in stages.items()))
    wall, cpu = timings[cv2_threads]
    supply = cfg.num_worker / wall
    verdict = 'sustains' if supply >= train_images_per_s else 'does NOT sustain'
    print(f'  {cfg.num_worker} workers (config.num_worker, per GPU) supply {supply:.0f} '
          f'items/s: {verdict} the measured training rate of {train_images_per_s:.2f} '
          f'images/s; at the published GPU rate of {PUBLISHED_TRAIN_IMAGES_PER_S} images/s '
          f'they need {PUBLISHED_TRAIN_IMAGES_PER_S * cpu:.2f} CPU cores')
    figures.update({'data_workers': cfg.num_worker, 'data_supply_items_per_s': supply,
                    **{f'data_cpu_ms_{name}': seconds * 1e3 for name, seconds in stages.items()}})
    return figures


def bench_mano(mano_root, device, timer, quick):
    """Forward passes of the MANO layer (axis-angle pose, betas) at batch MANO_BATCH."""
    from manopth.manolayer import ManoLayer

    layer = ManoLayer(mano_root=mano_root, use_pca=False, flat_hand_mean=False).to(device)
    generator = torch.Generator().manual_seed(0)
    pose = (0.3 * torch.randn(MANO_BATCH, 48, generator=generator)).to(device)
    betas = torch.randn(MANO_BATCH, 10, generator=generator).to(device)
    with torch.inference_mode():
        seconds, _ = timer.median(lambda: layer(pose, betas), 5 if quick else 20, warmup=3)
    hands_per_s = MANO_BATCH / seconds
    print(f'MANO layer (stand-in model, batch {MANO_BATCH}, axis-angle pose + betas): '
          f'{hands_per_s:,.0f} hands/s ({seconds * 1e3:.1f} ms per batch)')
    return {'mano_hands_per_s': hands_per_s}


def bench_evaluation():
    from benchmarks import evaluation

    print(f'evaluation ({EVAL_SAMPLES} samples, benchmarks/evaluation.py):')
    start = time.perf_counter()
    figures = evaluation.run(EVAL_SAMPLES)
    print(f'  evaluation benchmark total {time.perf_counter() - start:.1f} s')
    return {f'eval_{key}': value for key, value in figures.items()}


def describe_other_use(when):
    busy = other_cpu_use()
    if busy is None:
        load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')
        print(f'load average (1 min) {when}: {load:.2f}')
        return load
    warning = ('  WARNING: timings below are low, run the benchmark on an idle machine'
               if busy > BUSY_CORES else '')
    print(f'other processes {when}: {busy:.2f} of {os.cpu_count()} cores busy{warning}')
    return busy


def precisions_for(device, amp):
    """The precisions compared: fp32 and bf16 on the CPU; on CUDA the one of --amp."""
    if device.type == 'cpu':
        return ('fp32', 'bf16')
    return ('fp32' if amp == 'off' else amp,)


def print_matmul_rates(timer, precisions, quick, when, figures):
    """Measure, print and record the matmul rate of every precision."""
    for name in precisions:
        dtype = PRECISION_DTYPES[name] or torch.float32
        rate = timer.matmul_rate(8 if quick else 20, dtype)
        figures[f'matmul_{name}_gflops{"_end" if when else ""}'] = rate
        print(f'{name} matmul {timer.side} x {timer.side}{when}: {rate:.1f} GFLOP/s (median)')


def run(quick=False, skip_eval=False, threads=None, data_root=None, device='cpu', amp='bf16',
        use_onnx=True, preset=''):
    """Run every benchmark, print the report, return the figures as a dict."""
    device = torch.device(device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError('--device cuda: no CUDA device is visible; use --device cpu')
    if threads is not None:
        torch.set_num_threads(threads)
    precisions = precisions_for(device, amp)
    cfg = config_module.resolve([], device=device.type, pretrained_backbone=False, preset=preset)
    timer = Timer(device, tuple(PRECISION_DTYPES[name] or torch.float32 for name in precisions))
    print(f'SAR benchmark: device {device_description(device)}, torch {torch.__version__}, '
          f'{torch.get_num_threads()} threads; precisions {", ".join(precisions)}; '
          f"amp='auto' here: {resolve_amp('auto', device).reason}")
    figures = {'device': device_description(device), 'threads': torch.get_num_threads(),
               'other_cpu_start': describe_other_use('at the start')}
    print_matmul_rates(timer, precisions, quick, '', figures)
    figures['matmul_gflops'] = figures[f'matmul_{precisions[0]}_gflops']
    with tempfile.TemporaryDirectory() as mano_root:
        from synthetic import standin
        with contextlib.redirect_stdout(None):
            standin.main(['--out', mano_root])
        mano = MANO(mano_root)
        figures.update(bench_network(cfg, mano, device, timer, precisions, quick, use_onnx))
        train_rate = max(figures[f'train_{name}_images_per_s'] for name in precisions)
        figures.update(bench_data(cfg, data_root, quick, train_rate))
        figures.update(bench_mano(mano_root, device, timer, quick))
    if not skip_eval:
        figures.update(bench_evaluation())
    print_matmul_rates(timer, precisions, quick, ' again at the end', figures)
    figures['other_cpu_end'] = describe_other_use('at the end')
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m benchmarks.run',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='fewer repetitions')
    parser.add_argument('--skip-eval', action='store_true',
                        help='skip the 3,960-sample evaluation benchmark')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch threads (default: torch\'s default, one per core)')
    parser.add_argument('--data-root', default=None,
                        help='FreiHAND root to time the data pipeline on (default: synthetic '
                             'photo-like images in a temporary folder)')
    parser.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
    parser.add_argument('--amp', default='bf16', choices=tuple(AMP_DTYPES),
                        help='CUDA: the autocast dtype timed (the CPU times fp32 and bf16)')
    parser.add_argument('--no-onnx', action='store_true',
                        help='CPU: skip ONNX Runtime (no export)')
    parser.add_argument('--preset', default='', choices=('', *config_module.PRESETS),
                        help='time the network of a config preset (e.g. cpu_demo) instead of '
                             'config.py\'s default')
    args = parser.parse_args(argv)
    run(quick=args.quick, skip_eval=args.skip_eval, threads=args.threads,
        data_root=args.data_root, device=args.device, amp=args.amp, use_onnx=not args.no_onnx,
        preset=args.preset)


if __name__ == '__main__':
    main()
