"""GPU self-check: does SAR train, infer and render correctly on this machine, and how fast.

    python -m benchmarks.cuda_check [--device cuda|cpu] [--steps N] [--profile]

Overfitting in bf16, fp16 and compiled; bf16 inference; images/s (goal 1,800 training images/s
on an H100/H200); DDP over NCCL; EGL rendering (docs/performance.md, "On a GPU (estimates)").
--device cpu: a reduced run (fp16, compile, NCCL and EGL skipped); tolerances below.
"""
import argparse
import collections
import functools
import json
import math
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback

import numpy as np
import torch

import config as config_module
from benchmarks import speed
# The network, its optimiser and the train step, from where they live today (the one place to
# repoint when they move).
from inference.decoding import Decoding
from run.network import build_model
from synthetic.standin import build_standin, save_standin
from training.build import build_optimizer
from training.loop import train_step
from utils.constants import TRAINING_BOX_CENTER, TRAINING_BOX_SIZE
from utils.mano import MANO
from utils.runtime.distributed import free_port
from utils.network_spec import NetworkSpec
from utils.transforms import encode_uvd, get_affine

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# FreiHAND's intrinsics: principal point (112, 112) on the 224 px image (docs/method.md §1),
# focal length 500 px, the demo's value for FreiHAND's framing.
FREIHAND_K = np.array([[500.0, 0.0, 112.0], [0.0, 500.0, 112.0], [0.0, 0.0, 1.0]])
ROOT_DEPTH_M = 0.7  # wrist depth for decoding (docs/method.md §7; demo.py's default)
HAND_DEPTH_M = 0.8  # the fixed training hand's centroid depth: it fills most of the crop
FREIHAND_TRAIN_ITEMS = 4 * 32560  # 4 versions x N (docs/method.md §1)
GOAL_EPOCHS, GOAL_HOURS = 50, 1.0
TRAIN_GOAL_IMAGES_PER_S = 1800  # ~ 50 x 130,240 / 3,600 s = 1,809: a 50-epoch run in 1 h
# A forward pass is about a third of a training step's FLOPs (speed.TRAINING_FLOP_FACTOR): at
# the same efficiency inference runs 3x the training rate.
INFERENCE_GOAL_IMAGES_PER_S = speed.TRAINING_FLOP_FACTOR * TRAIN_GOAL_IMAGES_PER_S

# Network fields under their config names (utils/network_spec.NetworkFields), batch and steps.
FULL = dict(batch=64, steps=100)  # the published network: config.py's defaults
REDUCED = dict(backbone='resnet18', input_img_shape=(64, 64), num_stage=1, batch=4, steps=12)
MIN_STEPS = 8
MIN_DROP = 0.05  # the loss must fall by at least 5 % (medians of the first and last steps)
MAX_SKIPPED_FRACTION = 0.25  # fp16: at most this fraction of steps skipped by the GradScaler
DDP_STEPS = 3
INFERENCE_REPEATS = 10
PROFILE_WARMUP, PROFILE_STEPS = 3, 5
RENDER_SIZE = (224, 224)  # px, the FreiHAND image
# OpenGL mask against the software rasteriser (utils.vis.render.rasterize_mask). A hand's outline
# is long for its area, so OpenGL implementations' sub-pixel rules cost a few per cent of IoU
# (measured on the fixed hand: OSMesa 0.981, Mesa's EGL 0.963); a render shifted by a pixel
# or more, partial or empty, falls below 0.9.
RENDER_MIN_IOU = 0.9

# bf16 against fp32 after decoding, cm. bf16 keeps 8 significant bits: a stored value is off
# by up to 2^-9 (0.2 %) of its magnitude. The heatmap logits l reach the soft-argmax rounded
# to bf16 (plus the partly random sum of earlier roundings; matmuls accumulate in fp32), so
# their error dl scales with |l|, including any offset common to a map that the softmax
# itself ignores: for |l| ~ 20, dl ~ 0.05. The soft-argmax is the mean of the pixel grid
# under softmax(l); dl moves it by Cov_p(dl, x) <= |dl| * std_p(x), where std_p(x) is
# small for a peaked map and up to side / sqrt(12), 0.58 in normalised units, for a flat one.
# So a point whose map is peaked moves by ~1e-3 normalised (0.1 mm: one normalised unit is
# 65 image px, 9 cm at 0.7 m and f = 500 px), and a point whose map is still flat (an
# untrained network) by up to ~0.04 (4 mm); depth (d * 0.3 m) stays below that. Judged:
# the mean, and the 99th percentile so that a few flat maps do not decide; the maximum is
# printed. Measured on the CPU reduced check after 8-12 steps (nearly flat maps): mean
# 0.004 cm, 99th percentile 0.02 cm, max 0.15-0.4 cm. Limits 0.1 and 0.5 cm, about 1/6 and
# 3/4 of the published aligned keypoint error (0.65 cm): beyond them is a bf16 bug (an op
# overflowing, a softmax in bf16), not rounding.
BF16_MEAN_TOL_CM = 0.1
BF16_P99_TOL_CM = 0.5


class CheckFailed(Exception):
    """A check's own verdict (the message says why); other exceptions are failures too."""


class SkipCheck(Exception):
    """The check does not apply here (the message says why: no GPU, one GPU, no EGL)."""


def palm_to_camera(template):
    """The template (778 x 3) palm towards the camera, HAND_DEPTH_M ahead (m, camera frame)."""
    # Template frame: fingers along -x, back of the hand +y. (x, y, z) -> (x, -z, y) turns the
    # back of the hand to +z, away from the camera: the palm faces it.
    rotation = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    return (template - template.mean(axis=0)) @ rotation.T + [0.0, 0.0, HAND_DEPTH_M]


class Fixture:
    """Everything the checks share: settings, configuration, MANO, one fixed batch, and the
    results passed between checks (`state`)."""

    def __init__(self, device, settings, mano_root):
        self.device, self.settings, self.mano_root = device, settings, mano_root
        network = {name: settings[name] for name in NetworkSpec.names() if name in settings}
        self.cfg = config_module.resolve(
            [], device=device.type, **network, batch_size=settings['batch'],
            pretrained_backbone=False, channels_last=device.type == 'cuda')
        self.mano = MANO(mano_root)
        img2crop, self.crop2img = get_affine(TRAINING_BOX_CENTER, TRAINING_BOX_SIZE,
                                             self.cfg.input_img_shape)  # 2 x 3
        verts = palm_to_camera(self.mano.template)
        uvd = encode_uvd(verts, self.mano.joints_from_verts(verts), FREIHAND_K, img2crop,
                         crop_size=self.cfg.input_img_shape, depth_box=self.cfg.depth_box)
        # (B, 3, H, W) random, channels_last on CUDA; (B, 799, 3) the same hand for every item
        self.img = speed.random_batch(settings['batch'], self.cfg, device)[0]
        self.gt_uvd = torch.as_tensor(uvd, dtype=torch.float32, device=device).expand(
            settings['batch'], -1, -1).contiguous()
        self.state = {}

    def new_model(self, seed=0):
        """A fresh SAR (seeded) and its AdamW (fused on CUDA), as train.py builds them."""
        torch.manual_seed(seed)
        model = build_model(self.cfg, self.mano, self.device)
        return model.train(), build_optimizer(self.cfg, model, self.device)[0]

    def step(self, model, optimizer, amp_dtype=None, scaler=None, img=None):
        """One train step (train.py's) on the fixed batch, or on `img` with the fixed hand."""
        return train_step(model, optimizer, {'img': self.img if img is None else img},
                          {'mesh_pose_uvd': self.gt_uvd}, amp_dtype=amp_dtype, scaler=scaler)


def window(steps):
    """Steps compared at each end of a run (10 of 100), and the warm-up left out of timing."""
    return max(2, min(10, steps // 4))


def verdict_falling(totals):
    """Raise CheckFailed unless every total is finite and the run ends MIN_DROP lower than
    it began; return the figures as text."""
    bad = np.flatnonzero(~np.isfinite(totals))
    if bad.size:
        raise CheckFailed(f'non-finite total loss at steps {bad[:5].tolist()} '
                          f'(values {totals[bad[:5]].tolist()})')
    # Medians of `window` steps at each end: dropout makes single steps jump (a CPU run showed
    # one step at twice its neighbours).
    k = window(len(totals))
    first, last = float(np.median(totals[:k])), float(np.median(totals[-k:]))
    text = (f'total loss, median of the first {k} steps {first:.4f} -> last {k} {last:.4f} '
            f'({last / first - 1:+.1%}; means {totals[:k].mean():.4f} -> '
            f'{totals[-k:].mean():.4f})')
    if not last <= (1 - MIN_DROP) * first:
        raise CheckFailed(f'loss not falling by {MIN_DROP:.0%} over {len(totals)} steps on one '
                          f'fixed batch: {text}')
    return text


# ---- checks: each returns its detail text, raises CheckFailed / SkipCheck ----------------

def check_environment(device):
    cuda = torch.version.cuda
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    text = f'torch {torch.__version__}, CUDA build {cuda}, cuDNN {cudnn}'
    if device.type == 'cpu':
        return (f'{text}; CPU run, {torch.get_num_threads()} threads, '
                f'{torch.cuda.device_count() if cuda else 0} GPU(s) visible')
    if cuda is None:
        raise CheckFailed(f'{text}: a CPU-only build of torch; install a CUDA build '
                          f'(https://pytorch.org/get-started/locally/)')
    if not torch.cuda.is_available():
        raise CheckFailed(f'{text}: no CUDA device visible (driver missing or too old, or '
                          f'CUDA_VISIBLE_DEVICES empty); run with --device cpu for the '
                          f'reduced check')
    if cudnn is None:
        raise CheckFailed(f'{text}: cuDNN is not available to torch')
    props = torch.cuda.get_device_properties(device)
    text += (f'; {torch.cuda.device_count()} GPU(s), using {props.name}, '
             f'{props.total_memory / 2 ** 30:.1f} GiB, compute capability '
             f'{props.major}.{props.minor}')
    if not torch.cuda.is_bf16_supported():
        raise CheckFailed(f"{text}: no bf16 on this GPU; train with --amp fp16")
    return text


def check_train(fx, precision, use_compile=False):
    """Overfit the fixed batch in `precision` (fp16 with a GradScaler, as train.py); store the
    model and its images/s after the warm-up under fx.state[the check's name]."""
    model, optimizer = fx.new_model()
    scaler = torch.amp.GradScaler(fx.device.type) if precision == 'fp16' else None
    train_model = torch.compile(model) if use_compile else model
    steps, warmup = fx.settings['steps'], window(fx.settings['steps'])
    totals = []  # total loss per step, kept on the device: no synchronisation in the timed loop
    speed.sync(fx.device)
    begin = time.perf_counter()
    for step in range(steps):
        if step == 1:
            speed.sync(fx.device)
            first_s = time.perf_counter() - begin
        if step == warmup:
            speed.sync(fx.device)
            begin = time.perf_counter()
        losses = fx.step(train_model, optimizer, speed.PRECISION_DTYPES[precision], scaler)
        totals.append(torch.stack([v.detach().float() for v in losses.values()]).sum())
    speed.sync(fx.device)
    rate = (steps - warmup) * fx.settings['batch'] / (time.perf_counter() - begin)
    totals = torch.stack(totals).cpu().numpy()
    cfg = fx.cfg
    text = (f'{cfg.backbone}, {cfg.num_stage} stage(s), {cfg.input_img_shape[0]} px, batch '
            f'{cfg.batch_size}, {steps} steps, channels_last {cfg.channels_last}, {precision}'
            f'{", GradScaler" if scaler else ""}{", torch.compile" if use_compile else ""}: '
            f'{verdict_falling(totals)}')
    if scaler is not None:
        # init_scale 2^16, halved at every skipped step, doubled only after 2000 good ones.
        skipped = round(math.log2(2.0 ** 16 / scaler.get_scale()))
        text += f'; GradScaler skipped {skipped} of {len(totals)} steps'
        if skipped > MAX_SKIPPED_FRACTION * len(totals):
            raise CheckFailed(f'fp16 overflowed too often: {text}')
    text += f'; {rate:.1f} img/s after {window(len(totals))} warm-up steps'
    if use_compile:
        eager = fx.state.get('train bf16', {}).get('rate')
        text += (f' (compile + first step {first_s:.0f} s' +
                 (f'; eager bf16 {eager:.1f} img/s)' if eager else ')'))
    # Only the eager bf16 weights go on (to the inference check): the others are freed.
    key = f'train {"compile" if use_compile else precision}'
    fx.state[key] = {'rate': rate, 'model': model if key == 'train bf16' else None}
    return text


def decode(fx, coords):
    """(B, 799, 3) crop-normalised -> camera frame, meters (docs/method.md §7)."""
    batch = coords.shape[0]
    decoding = Decoding.from_config(fx.cfg, torch.device('cpu'))
    return decoding.to_camera(coords.float().cpu().numpy(), np.full(batch, ROOT_DEPTH_M),
                              np.broadcast_to(fx.crop2img, (batch, 2, 3)),
                              np.broadcast_to(FREIHAND_K, (batch, 3, 3)))


def check_inference_bf16(fx):
    trained = fx.state.get('train bf16')
    model = trained['model'] if trained else fx.new_model()[0]
    weights = 'the bf16-trained weights' if trained else 'fresh weights (bf16 training failed)'
    fused = model.eval().fuse_for_inference()
    inputs = {'img': fx.img}
    # TF32 off (cuDNN uses it by default from Ampere on): the reference is true fp32.
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        reference = decode(fx, speed.inference_call(model, None)(inputs))
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    results = {name: decode(fx, speed.inference_call(network, torch.bfloat16)(inputs))
               for name, network in (('eval', model), ('fused', fused))}
    texts, failed = [], False
    for name, xyz in results.items():
        if not np.isfinite(xyz).all():
            raise CheckFailed(f'non-finite bf16 output ({name} model)')
        dist_cm = 100 * np.linalg.norm(xyz - reference, axis=-1)  # (B, 799)
        mean, p99 = dist_cm.mean(), np.percentile(dist_cm, 99)
        texts.append(f'{name} model: mean {mean:.4f} cm, 99th percentile {p99:.4f} cm, '
                     f'max {dist_cm.max():.3f} cm')
        failed |= mean > BF16_MEAN_TOL_CM or p99 > BF16_P99_TOL_CM
    fx.state['fused'] = fused
    text = (f'bf16 against fp32 (no TF32) on {weights}, decoded with root depth '
            f'{ROOT_DEPTH_M} m: ' + '; '.join(texts) +
            f' (limits: mean {BF16_MEAN_TOL_CM} cm, 99th percentile {BF16_P99_TOL_CM} cm)')
    if failed:
        raise CheckFailed(text)
    return text


def speed_words(rate, goal, device):
    if device.type != 'cuda':
        return 'CPU: no goal'
    word = 'meets the goal' if rate >= goal else 'BELOW GOAL'
    return f'{rate / goal:.2f} x the goal of {goal:,} img/s: {word}'


def check_train_throughput(fx):
    """The rate of the main training check: bf16 on CUDA, fp32 on the CPU."""
    # fp32: the reduced CPU check's; train.py's amp='auto' would train in bf16 on a CPU with
    # native bf16.
    precision = 'bf16' if fx.device.type == 'cuda' else 'fp32'
    if f'train {precision}' not in fx.state:
        raise CheckFailed(f'the {precision} training check did not complete, nothing was timed')
    rate = fx.state[f'train {precision}']['rate']
    images = GOAL_EPOCHS * FREIHAND_TRAIN_ITEMS
    return (f'{rate:.1f} img/s (batch {fx.settings["batch"]}, {precision}, AdamW as train.py '
            f'builds it, one batch on the device: no data loading), '
            f'{speed_words(rate, TRAIN_GOAL_IMAGES_PER_S, fx.device)}; {GOAL_EPOCHS} FreiHAND '
            f'epochs ({images / 1e6:.1f} M images) would take {images / rate / 3600:.2f} h at '
            f'this rate (goal on an H100/H200: {GOAL_HOURS:.0f} h)')


def check_inference_throughput(fx):
    """Images/s of the fused copy as test.py runs it (bf16 autocast on CUDA, fp32 on the CPU)."""
    # Timed as benchmarks.run times it: with the fraction of the matmul rate measured between
    # the timed calls.
    fused = fx.state.get('fused') or fx.new_model()[0].fuse_for_inference()
    cuda = fx.device.type == 'cuda'
    precision, repeats = ('bf16', INFERENCE_REPEATS) if cuda else ('fp32', 3)
    dtype = speed.PRECISION_DTYPES[precision]
    infer = functools.partial(speed.inference_call(fused, dtype), {'img': fx.img})
    if not torch.isfinite(infer()).all():
        raise CheckFailed('non-finite inference output')
    timer = speed.Timer(fx.device, (precision,))
    seconds, matmul = timer.alternating({'fused': (infer, precision)}, repeats, 2)['fused']
    rate = fx.settings['batch'] / seconds
    fraction = speed.forward_flops(fused, fx.img, dtype) * rate / 1e9 / matmul
    goal = (' (3 x the training goal: a forward pass is a third of a training step)'
            if cuda else '')
    return (f'{rate:.1f} img/s (fused copy as test.py runs it, {precision}, batch '
            f'{fx.settings["batch"]}, median of {repeats}; {fraction:.2f} of the matmul rate, '
            f'{matmul:.0f} GFLOP/s), '
            f'{speed_words(rate, INFERENCE_GOAL_IMAGES_PER_S, fx.device)}{goal}')


def _ddp_worker(rank, world_size, port, backend, settings, mano_root, folder):
    """One DDP process: different initial weights per rank, DDP_STEPS steps on rank-specific
    data; saves [parameters after DDP's broadcast, parameters at the end] as folder/RANK.pt."""
    import torch.distributed as dist

    device = torch.device(f'cuda:{rank}' if backend == 'nccl' else 'cpu')
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method=f'tcp://127.0.0.1:{port}', rank=rank,
                            world_size=world_size)
    try:
        fx = Fixture(device, settings, mano_root)
        model, optimizer = fx.new_model(seed=rank)  # DDP must broadcast rank 0's weights
        ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[rank] if device.type == 'cuda' else None)
        initial = torch.cat([p.detach().float().flatten() for p in model.parameters()])
        amp_dtype = torch.bfloat16 if device.type == 'cuda' else None
        for step in range(DDP_STEPS):
            seed = 100 * (step + 1) + rank  # different images on each rank at each step
            fx.step(ddp, optimizer, amp_dtype, img=speed.random_batch(
                len(fx.img), fx.cfg, device, seed=seed)[0])
        final = torch.cat([p.detach().float().flatten() for p in model.parameters()])
        torch.save([initial.cpu(), final.cpu()], os.path.join(folder, f'{rank}.pt'))
    finally:
        dist.destroy_process_group()


def check_ddp(fx, backend='nccl', world_size=2):
    import torch.multiprocessing as mp

    if backend == 'nccl' and torch.cuda.device_count() < world_size:
        raise SkipCheck(f'{torch.cuda.device_count()} GPU visible, DDP needs {world_size}')
    with tempfile.TemporaryDirectory() as folder:
        small = dict(fx.settings, batch=max(2, fx.settings['batch'] // 4))
        mp.spawn(_ddp_worker, nprocs=world_size, join=True,
                 args=(world_size, free_port(), backend, small, fx.mano_root, folder))
        (initial, final), *others = [torch.load(os.path.join(folder, f'{rank}.pt'))
                                     for rank in range(world_size)]
    max_diff = max(float((other - final).abs().max()) for _, other in others)
    moved = float((final - initial).abs().max())
    text = (f'{world_size} processes over {backend}, {DDP_STEPS} steps from different '
            f'initial weights on different data: largest parameter difference between ranks '
            f'{max_diff:.3g} over {final.numel():,} values (parameters moved up to {moved:.3g})')
    if max_diff != 0.0 or moved == 0.0:
        raise CheckFailed(text)
    return text


def render_probe():
    """The render check's child process: renders the fixed hand, prints one JSON line."""
    # PyOpenGL fixes its platform on first import: the check runs this in a fresh interpreter.
    from utils.vis import render

    mano = build_standin(seed=0)
    verts, faces = palm_to_camera(mano['v_template']), mano['f'].astype(np.int64)
    try:
        mask = render.render_mesh(verts, faces, FREIHAND_K, RENDER_SIZE)[2]
    except RuntimeError as err:
        if 'could not create an offscreen OpenGL context' not in str(err):
            raise
        print(json.dumps({'no_context': str(err)}))
        return
    expected = render.rasterize_mask(verts, faces, FREIHAND_K, RENDER_SIZE)
    iou = float((mask & expected).sum() / max((mask | expected).sum(), 1))
    print(json.dumps({'mask_pixels': int(mask.sum()), 'expected_pixels': int(expected.sum()),
                      'iou': iou}))


def check_render(platform='egl'):
    code = 'from benchmarks.cuda_check import render_probe; render_probe()'
    env = {**os.environ, 'PYOPENGL_PLATFORM': platform}
    result = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise CheckFailed(f'the render subprocess exited with {result.returncode}: '
                          f'{result.stderr.strip().splitlines()[-1:] or "no message"}')
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    if 'no_context' in probe:
        raise SkipCheck(f'no {platform} context: {probe["no_context"][:200]}')
    text = (f'PYOPENGL_PLATFORM={platform}: {probe["mask_pixels"]} mesh pixels of '
            f'{RENDER_SIZE[0]} x {RENDER_SIZE[1]}, IoU {probe["iou"]:.3f} with the projected '
            f'triangles ({probe["expected_pixels"]} px)')
    if probe['mask_pixels'] == 0 or probe['iou'] < RENDER_MIN_IOU:
        raise CheckFailed(f'{text}: the context was created but the mesh was not rendered where '
                          f'it projects (need IoU >= {RENDER_MIN_IOU})')
    return text


def check_profile(fx):
    """bf16 training steps under torch.profiler, after warm-up steps: prints the top ops by
    self time (CUDA kernels on a GPU, CPU on the CPU); returns the time per step."""
    from torch.profiler import ProfilerActivity, profile

    model, optimizer = fx.new_model()
    use_device = fx.device.type == 'cuda'
    warmup, steps, unit = (PROFILE_WARMUP, PROFILE_STEPS, 'CUDA') if use_device else (1, 2, 'CPU')
    for _ in range(warmup):
        fx.step(model, optimizer, torch.bfloat16)
    speed.sync(fx.device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if use_device else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            fx.step(model, optimizer, torch.bfloat16)
        speed.sync(fx.device)
    sort_key = 'self_device_time_total' if use_device else 'self_cpu_time_total'
    events = prof.key_averages()
    print(textwrap.indent(events.table(sort_by=sort_key, row_limit=15), '    '), flush=True)
    overall = sum(getattr(event, sort_key) for event in events) / 1e6
    if overall <= 0:
        raise CheckFailed(f'the profiler recorded no {unit} time (CUPTI missing?)')
    return (f'{steps} bf16 training steps, {overall / steps * 1e3:.1f} ms of {unit} self time '
            f'per step over {len(events)} op kinds (the top ops above)')


# ---- driver ------------------------------------------------------------------------------

# The checks after the environment's, in order (later ones read what earlier ones left in
# fx.state): (name, check of the fixture, where it runs: 'any', 'cpu' or 'cuda'). The CPU run
# is the reduced one: fp32 training instead of fp16 and compiled, no NCCL, no EGL.
CHECKS = (
    ('train bf16', lambda fx: check_train(fx, 'bf16'), 'any'),
    ('train fp32', lambda fx: check_train(fx, 'fp32'), 'cpu'),
    ('train fp16', lambda fx: check_train(fx, 'fp16'), 'cuda'),
    ('train compile', lambda fx: check_train(fx, 'bf16', use_compile=True), 'cuda'),
    ('inference bf16 vs fp32', check_inference_bf16, 'any'),
    ('training throughput', check_train_throughput, 'any'),
    ('inference throughput', check_inference_throughput, 'any'),
    ('ddp', check_ddp, 'cuda'),
    ('render egl', lambda fx: check_render('egl'), 'cuda'),
)
PROFILE = (('profile', check_profile, 'any'),)  # --profile


def run_check(counts, name, check, arg, skip=None):
    """Run check(arg), or skip it for the reason `skip`; print and count its verdict line."""
    try:
        if skip:
            raise SkipCheck(skip)
        status, text = 'PASS', check(arg)
    except SkipCheck as skipped:
        status, text = 'SKIP', str(skipped)
    except CheckFailed as failure:
        status, text = 'FAIL', str(failure)
    except Exception as err:  # any error of a check is its failure; the others still run
        traceback.print_exc(file=sys.stderr)
        message = str(err).strip().splitlines()[0] if str(err).strip() else ''
        status, text = 'FAIL', f'{type(err).__name__}: {message}'
    counts[status] += 1
    print(f'{status} {name}: {text}', flush=True)
    torch.cuda.empty_cache()  # a no-op where CUDA was not used


def run(device='cuda', steps=None, profile=False):
    """Run the checks; returns the number of failures."""
    device = torch.device(device)
    counts = collections.Counter()
    start = time.perf_counter()
    run_check(counts, 'environment', check_environment, device)
    cpu, cuda = device.type == 'cpu', device.type == 'cuda' and torch.cuda.is_available()
    if cuda:
        torch.backends.cudnn.benchmark = True  # as train.py: fixed input size
        if device.index is None:
            device = torch.device('cuda', torch.cuda.current_device())
    settings = dict(REDUCED if cpu else FULL)
    if steps is not None:
        settings['steps'] = steps
    with tempfile.TemporaryDirectory() as mano_root:
        save_standin(mano_root, build_standin(seed=0))
        fx = Fixture(device, settings, mano_root) if cpu or cuda else None
        for name, check, where in CHECKS + (PROFILE if profile else ()):
            if where == 'cpu' and not cpu:
                continue  # the reduced run's fp32 training
            skip = ('no CUDA device (see environment)' if fx is None else
                    'CPU run (a GPU check)' if where == 'cuda' and cpu else None)
            run_check(counts, name, check, fx, skip)
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
