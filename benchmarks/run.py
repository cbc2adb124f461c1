"""How fast SAR runs on this machine, against what the machine can do (issue 7).

    python -m benchmarks.run [--quick] [--skip-eval] [--threads N] [--data-root DIR]
                             [--device cpu|cuda] [--amp off|bf16|fp16]

Prints, in one run, with the device, thread count and the CPU use of other processes:
- the network's FLOPs per image (torch.utils.flop_counter, default config of config.py) and
  the machine's matrix-multiply rate (fp32 2048 x 2048 products on the CPU, same thread
  count; on CUDA 8192 x 8192 in the compute dtype);
- inference images/s at batch 1 and 16 (evaluation mode, and the copy made by
  SAR.fuse_for_inference) and training images/s at batch 8 (forward + loss + backward +
  AdamW step), each also as a fraction of the matmul rate: FLOPs x images/s / rate, where a
  training image counts 3x the forward FLOPs;
- the data pipeline's CPU time and items/s per worker (decode, crop, augment, normalise,
  targets) on FreiHAND-layout images, and whether config.num_worker workers sustain the
  measured training rate;
- the time of the full 3,960-sample local evaluation (benchmarks/evaluation.py) and the MANO
  layer's hands per second at batch 1024 (procedural stand-in model).

Every timing is a median over repetitions after warm-up. Other processes on the machine
change the numbers: their CPU use is printed at the start and the end; run it idle.
No model weights or data sets are needed: images, targets and the MANO model are synthetic.
"""
import argparse
import contextlib
import os
import platform
import statistics
import tempfile
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

import config as config_module
from engine.build import AMP_DTYPES, amp_dtype as amp_dtype_for, build_model, build_optimizer
from benchmarks.machine import other_cpu_use
from engine.training import train_step
from utils.mano import MANO

MATMUL_SIDE = {'cpu': 2048, 'cuda': 8192}  # square matmul giving the reference rate
PUBLISHED_TRAIN_IMAGES_PER_S = 173  # the published 50-epoch run on one GPU (docs/method.md §6)
INFERENCE_BATCHES = (1, 16)
TRAIN_BATCH = 8
MANO_BATCH = 1024
EVAL_SAMPLES = 3960  # FreiHAND evaluation set size
TRAINING_FLOP_FACTOR = 3  # forward + backward (input and weight gradients) ~ 3 x forward
SYNTH_SAMPLES = 8  # FreiHAND-layout samples written for the data benchmark (x4 versions)
BUSY_CORES = 0.1  # cores used by other processes above which the timings are flagged


class Timer:
    """Median wall time of repeated calls, synchronising the device around each call.

    Between the timed calls it also times a few square matrix products (the network's
    compute dtype: fp32, or the autocast dtype on CUDA), so every
    measurement comes with the matmul rate of the same moments: other processes or clock
    changes that slow one down slow the other too, and the fractions stay meaningful.
    """

    def __init__(self, device, dtype=torch.float32):
        self.device = device
        self.side = MATMUL_SIDE[device.type]
        generator = torch.Generator(device=device).manual_seed(0)
        self._a = torch.randn(self.side, self.side, device=device, generator=generator).to(dtype)
        self._b = torch.randn(self.side, self.side, device=device, generator=generator).to(dtype)
        self._out = torch.empty_like(self._a)

    def sync(self):
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)

    def _matmul_seconds(self, count):
        times = []
        for _ in range(count):
            self.sync()
            begin = time.perf_counter()
            torch.mm(self._a, self._b, out=self._out)
            self.sync()
            times.append(time.perf_counter() - begin)
        return times

    def matmul_rate(self, repeats, min_warmup_s=1.0):
        """GFLOP/s of the square product (median), after `min_warmup_s` of them (CPU clocks
        and thread pools ramp up)."""
        start = time.perf_counter()
        while time.perf_counter() - start < min_warmup_s:
            self._matmul_seconds(1)
        return 2 * self.side ** 3 / statistics.median(self._matmul_seconds(repeats)) / 1e9

    def median(self, function, repeats, warmup=1):
        """(median seconds per call of `function()` after `warmup` calls, median matmul
        GFLOP/s measured between the timed calls)."""
        for _ in range(warmup):
            function()
        times, matmul_times = [], []
        for _ in range(repeats):
            matmul_times += self._matmul_seconds(3)
            self.sync()
            begin = time.perf_counter()
            function()
            self.sync()
            times.append(time.perf_counter() - begin)
        rate = 2 * self.side ** 3 / statistics.median(matmul_times) / 1e9
        return statistics.median(times), rate


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


def autocast(device, amp_dtype):
    return torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                          enabled=amp_dtype is not None)


def forward_flops(model, img, amp_dtype):
    """FLOPs of one evaluation forward pass (after a warm-up pass, so the derived tensors
    the model remembers between calls are not counted)."""
    with torch.inference_mode(), autocast(img.device, amp_dtype):
        model({'img': img})
        with FlopCounterMode(display=False) as counter:
            model({'img': img})
    return counter.get_total_flops()


def training_step(model, optimizer, img, gt_uvd, amp_dtype, scaler):
    """One train.py step (engine.training.train_step): forward, loss sum, backward, AdamW step."""
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


def bench_network(cfg, mano, device, timer, amp_dtype, quick):
    """Inference and training throughput of the default network; prints and returns figures."""
    channels_last = cfg.channels_last and device.type == 'cuda'  # as train.py
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = build_model(cfg, mano, device, pretrained_backbone=False).eval()  # random weights
    img1, _ = random_batch(1, cfg, device, channels_last, generator)
    flops = forward_flops(model, img1, amp_dtype)
    figures = {'forward_gflop_per_image': flops / 1e9}

    # Counted training FLOPs (forward + backward, batch 2) to show what the 3x convention
    # stands for; the optimiser step is memory traffic, not FLOPs.
    model.train()
    img2, gt2 = random_batch(2, cfg, device, channels_last, generator)
    with FlopCounterMode(display=False) as counter, autocast(device, amp_dtype):
        sum(model({'img': img2}, {'mesh_pose_uvd': gt2}).values()).backward()
    model.zero_grad(set_to_none=True)
    train_flops_counted = counter.get_total_flops() / 2
    figures['train_gflop_per_image_counted'] = train_flops_counted / 1e9
    print(f'network: {cfg.backbone}, {cfg.num_stage} stages, {cfg.input_img_shape[0]} px: '
          f'{flops / 1e9:.2f} GFLOP per image forward; a training step counts '
          f'{train_flops_counted / 1e9:.1f} GFLOP per image forward + backward '
          f'({train_flops_counted / flops:.2f} x forward; fractions below use '
          f'{TRAINING_FLOP_FACTOR} x)')

    def report(label, key, batch, seconds, paired_rate, factor=1):
        images_per_s = batch / seconds
        fraction = factor * flops * images_per_s / (paired_rate * 1e9)
        figures.update({f'{key}_images_per_s': images_per_s, f'{key}_fraction': fraction,
                        f'{key}_paired_matmul_gflops': paired_rate})
        unit = f'{seconds * 1e3:8.1f} ms' if seconds < 1 else f'{seconds:8.2f} s '
        print(f'  {label}: {images_per_s:7.2f} images/s ({unit} per batch), {fraction:.2f} of '
              f'the matmul rate ({paired_rate:.0f} GFLOP/s between the timed calls; '
              f'{factor * flops * images_per_s / 1e9:.0f} GFLOP/s achieved)')

    model.eval()
    fused = model.fuse_for_inference()
    print('inference (evaluation mode under torch.inference_mode; "fused": the copy of '
          'SAR.fuse_for_inference):')
    for batch in INFERENCE_BATCHES:
        img, _ = random_batch(batch, cfg, device, channels_last, generator)
        repeats = (3 if quick else 9) if batch == 1 else (2 if quick else 3)
        for name, network in (('eval', model), ('fused', fused)):
            with torch.inference_mode(), autocast(device, amp_dtype):
                seconds, paired_rate = timer.median(lambda: network({'img': img}), repeats,
                                                    warmup=2)
            report(f'batch {batch:2d} {name:5s}', f'inference_{name}_b{batch}', batch, seconds,
                   paired_rate)
    del fused

    model.train()
    optimizer, _ = build_optimizer(cfg, model, device)  # AdamW as train.py builds it
    scaler = torch.amp.GradScaler('cuda') if amp_dtype == torch.float16 else None
    img, gt_uvd = random_batch(TRAIN_BATCH, cfg, device, channels_last, generator)
    print(f'training (forward + losses + backward + AdamW step as in train.py; '
          f'{TRAINING_FLOP_FACTOR} x forward FLOPs per image):')
    seconds, paired_rate = timer.median(
        lambda: training_step(model, optimizer, img, gt_uvd, amp_dtype, scaler),
        2 if quick else 5, warmup=1)
    report(f'batch {TRAIN_BATCH:2d}      ', 'train', TRAIN_BATCH, seconds, paired_rate,
           TRAINING_FLOP_FACTOR)
    return figures


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


def bench_data(cfg, data_root, quick, train_images_per_s):
    """Per-item CPU cost of the training data pipeline, in this process (= one worker)."""
    import cv2

    from dataset.freihand import FreiHAND
    from utils.constants import HAND_BOX_CENTER, HAND_BOX_SIZE
    from utils.preprocessing import augment_params, crop_and_augment, normalize
    from utils.transforms import encode_uvd

    with contextlib.ExitStack() as stack:
        if data_root is None:
            from synthetic.fixture import make_freihand

            data_root = stack.enter_context(tempfile.TemporaryDirectory())
            make_freihand(data_root, num_samples=SYNTH_SAMPLES, num_eval=1)
            mean_bytes = textured_jpegs(data_root)
            source = (f'{4 * SYNTH_SAMPLES} synthetic photo-like JPEGs in a temporary '
                      f'FreiHAND layout, {mean_bytes / 1e3:.1f} kB each')
        else:
            source = data_root
        dataset = FreiHAND('training', root=data_root, input_img_shape=cfg.input_img_shape,
                           depth_box=cfg.depth_box, seed=0)
        num_items = 60 if quick else 400  # items cycle through the folder (page-cached files)
        # A DataLoader worker runs torch single-threaded. OpenCV keeps its own thread pool
        # (the CPU time includes it); timed with OpenCV's default and with one thread.
        torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
        torch.set_num_threads(1)
        timings = {}
        try:
            for threads in (cv2_threads, 1):
                cv2.setNumThreads(threads)
                for idx in range(min(10, num_items)):
                    dataset[idx]
                wall, cpu = time.perf_counter(), time.process_time()
                for idx in range(num_items):
                    dataset[idx % len(dataset)]
                timings[threads] = ((time.perf_counter() - wall) / num_items,
                                    (time.process_time() - cpu) / num_items)

            rng = np.random.default_rng(0)  # breakdown with one OpenCV thread
            stage_s = {'decode': 0.0, 'crop + augment': 0.0, 'normalise': 0.0, 'targets': 0.0}
            for idx in range(num_items):
                sample = idx % dataset.num_samples
                params = augment_params(rng)
                start = time.process_time()
                img = cv2.imread(dataset.image_path(idx % len(dataset)), cv2.IMREAD_COLOR)
                after_decode = time.process_time()
                crop, img2crop, _ = crop_and_augment(img, HAND_BOX_CENTER, HAND_BOX_SIZE,
                                                     cfg.input_img_shape, **params)
                after_crop = time.process_time()
                normalize(crop)
                after_normalise = time.process_time()
                encode_uvd(dataset.verts_cam[sample], dataset.joints_cam[sample],
                           dataset.K[sample], img2crop, crop_size=cfg.input_img_shape,
                           depth_box=cfg.depth_box)
                done = time.process_time()
                stage_s['decode'] += after_decode - start
                stage_s['crop + augment'] += after_crop - after_decode
                stage_s['normalise'] += after_normalise - after_crop
                stage_s['targets'] += done - after_normalise
        finally:
            torch.set_num_threads(torch_threads)
            cv2.setNumThreads(cv2_threads)
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
    breakdown = ', '.join(f'{name} {seconds / num_items * 1e3:.2f}'
                          for name, seconds in stage_s.items())
    print(f'  CPU ms per stage (1 thread): {breakdown}')
    wall, cpu = timings[cv2_threads]
    workers = cfg.num_worker
    supply = workers / wall
    verdict = 'sustains' if supply >= train_images_per_s else 'does NOT sustain'
    print(f'  {workers} workers (config.num_worker, per GPU) supply {supply:.0f} items/s: '
          f'{verdict} the measured training rate of {train_images_per_s:.2f} images/s; '
          f'at the published GPU rate of {PUBLISHED_TRAIN_IMAGES_PER_S} images/s they need '
          f'{PUBLISHED_TRAIN_IMAGES_PER_S * cpu:.2f} CPU cores')
    figures.update({'data_workers': workers, 'data_supply_items_per_s': supply,
                    **{f'data_cpu_ms_{name}': s / num_items * 1e3
                       for name, s in stage_s.items()}})
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


def run(quick=False, skip_eval=False, threads=None, data_root=None, device='cpu', amp='off'):
    """Run every benchmark, print the report, return the figures as a dict."""
    device = torch.device(device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError('--device cuda: no CUDA device is visible; use --device cpu')
    if threads is not None:
        torch.set_num_threads(threads)
    amp_dtype = amp_dtype_for(amp, device)
    cfg = config_module.resolve([], device=device.type, pretrained_backbone=False)
    timer = Timer(device, amp_dtype or torch.float32)
    matmul_name = f'{"fp32" if amp_dtype is None else amp} matmul {timer.side} x {timer.side}'
    print(f'SAR benchmark: device {device_description(device)}, torch {torch.__version__}, '
          f'{torch.get_num_threads()} threads, '
          f'{"fp32" if amp_dtype is None else amp + " autocast"}')
    figures = {'device': device_description(device), 'threads': torch.get_num_threads(),
               'other_cpu_start': describe_other_use('at the start')}
    rate = timer.matmul_rate(8 if quick else 20)
    figures['matmul_gflops'] = rate
    print(f'{matmul_name}: {rate:.1f} GFLOP/s (median; each '
          f'measurement below is also paired with the rate of its own moments)')

    with tempfile.TemporaryDirectory() as mano_root:
        from synthetic import standin
        with contextlib.redirect_stdout(None):
            standin.main(['--out', mano_root])
        mano = MANO(mano_root)
        figures.update(bench_network(cfg, mano, device, timer, amp_dtype, quick))
        figures.update(bench_data(cfg, data_root, quick, figures['train_images_per_s']))
        figures.update(bench_mano(mano_root, device, timer, quick))
    if not skip_eval:
        figures.update(bench_evaluation())
    end_rate = timer.matmul_rate(8 if quick else 20)
    figures['matmul_gflops_end'] = end_rate
    print(f'{matmul_name} again at the end: {end_rate:.1f} GFLOP/s')
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
    parser.add_argument('--amp', default='off', choices=tuple(AMP_DTYPES),
                        help='CUDA autocast dtype (ignored on the CPU)')
    args = parser.parse_args(argv)
    run(quick=args.quick, skip_eval=args.skip_eval, threads=args.threads,
        data_root=args.data_root, device=args.device, amp=args.amp)


if __name__ == '__main__':
    main()
