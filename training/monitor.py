"""Watching a training run (rank 0): TensorBoard scalars and pictures, the log-line suffix
with throughput and time left, the per-epoch history and a picture of the curves.

Steps: the TensorBoard step of iteration i (1-based, as `[Batch i/n]` in the log) of epoch e
(0-based, as `[Epoch e/E]`) is e * n + i, so epoch e ends at step (e + 1) * n, where the
epoch's evaluation is written too. A run resumed at epoch s writes its first event at step
s * n + 1 and purges (TensorBoard's purge_step) every event at or after that step, which an
interrupted run may have written after its last checkpoint: the curves continue as one. A
fresh run (s = 0) likewise supersedes the earlier events of the same experiment folder, as it
overwrites its checkpoints.

Timing without synchronisation: the loader is wrapped (`Monitor.timed`) to add up, with host
clocks only, the time spent waiting for each next batch. On CUDA the host runs ahead of the
device, so the duration of single steps is unknown; but every log step already copies the
losses to the host (a synchronisation), so the wall time between two log steps is the true
time of those iterations, and that is the only duration used (images/s, the waiting
fraction, the ETA). Waiting for the loader while the device still works through queued
kernels counts as waiting, though it costs no device time; the host gets at most the CUDA
launch queue ahead (of the order of a thousand kernels, roughly one training step of this
network: an estimate, not measured), so the fraction is at most about a step too high per
window, and near 0 or near 1 it reads the same: compute-bound or input-bound.

The per-epoch history (epoch means of the loss terms, lr, evaluation scores) is a small JSON
file beside the log rather than read back from the event files: it exists with
`tensorboard=False` too, needs no TensorBoard reader to draw the curves, is read in
microseconds at resume, and a resumed run simply drops the epochs it is about to redo.
"""
import collections
import json
import logging
import math
import os
import time
from typing import NamedTuple

import numpy as np
import torch

import dataset as datasets
from model.loss import LOSS_WEIGHTS
from utils.files.atomic import atomic_open, atomic_write_json

logger = logging.getLogger(__name__)

NUM_EVAL_IMAGES = 4  # evaluation results rendered into TensorBoard at each evaluation
RATE_WINDOWS = 10  # log windows (print_iter iterations each) averaged for the ETA
CURVES_SIZE_IN = (12.0, 8.0)  # figure size, inches; at CURVES_DPI: 1200 x 800 px
CURVES_DPI = 100
LOG_AXIS_RATIO = 3.0  # a loss panel gets a log y axis when its values span more than this


def history_path(log_dir, experiment):
    return os.path.join(log_dir, f'{experiment}_history.json')


def curves_path(log_dir, experiment):
    return os.path.join(log_dir, f'{experiment}_curves.png')


def format_duration(seconds):
    """Seconds -> 'H:MM:SS' (hours unbounded)."""
    seconds = int(round(max(seconds, 0.0)))
    return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


def load_history(path, start_epoch):
    """The per-epoch history of a run resumed at `start_epoch`: the entries of the earlier
    epochs from `path` (those of epochs >= start_epoch are redone, so dropped); [] for a
    fresh run (start_epoch 0) or when the file does not exist."""
    if start_epoch == 0 or not os.path.exists(path):
        return []
    with open(path) as f:
        entries = json.load(f)
    if not isinstance(entries, list) or not all(isinstance(e, dict) and 'epoch' in e
                                                for e in entries):
        raise ValueError(f'{path} is not a training history (a list of per-epoch dicts with '
                         f"'epoch'); delete it to start a new one")
    return [entry for entry in entries if entry['epoch'] < start_epoch]


class RunLength(NamedTuple):
    """How long a run is: optimizer steps per epoch (len(loader)), epochs of the whole run,
    images per step over all processes (config batch_size)."""
    iterations_per_epoch: int
    total_epoch: int
    images_per_step: int


class Monitor:
    """TensorBoard events, log-line suffix, history JSON and curves picture of one run.

    Create it on rank 0 only, after the resume point is known.

    Args:
        tb_dir: TensorBoard folder (e.g. output/tb/<experiment>), or None for no events.
        log_dir: folder of the history JSON and the curves PNG (the training log's folder).
        experiment: run name, used in the file names and the picture's title.
        length: RunLength (iterations per epoch, epochs of the whole run, images per step).
        start: (epoch, step): the first epoch this process trains (0, or the checkpoint's
            epoch + 1) and the optimizer steps of it already done (an iteration checkpoint's).
        device: training device; on CUDA the peak allocated memory is logged.
        faces: F x 3 MANO faces, to render evaluation results (None: no pictures).
        data: the data set's dataset.DatasetEntry: its `score_keys` are recorded at each
            evaluation, its `score_panels` drawn in the curves (None: no scores).
    """

    def __init__(self, *, tb_dir, log_dir, experiment, length, device, start=(0, 0), faces=None,
                 data=None):
        start_epoch, start_step = start
        self.experiment = experiment
        self.iterations_per_epoch = length.iterations_per_epoch
        self.total_epoch = length.total_epoch
        self.images_per_step = length.images_per_step
        self.device = torch.device(device)
        self.faces = faces
        self.num_eval_images = NUM_EVAL_IMAGES  # evaluation results rendered each time
        self.score_keys = data.score_keys if data else ()
        self.score_panels = data.score_panels if data else ((), ())
        self.history_path = history_path(log_dir, experiment)
        self.curves_path = curves_path(log_dir, experiment)
        self.history = load_history(self.history_path, start_epoch)
        self.writer = None
        if tb_dir:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise ImportError(f'TensorBoard logging needs the tensorboard package ({err}): '
                                  f'pip install -r requirements.txt, or train with '
                                  f'--tensorboard false') from err
            self.writer = SummaryWriter(
                tb_dir, purge_step=self.global_step(start_epoch, start_step + 1))
            logger.info('TensorBoard events in %s (tensorboard --logdir %s)', tb_dir,
                        os.path.dirname(os.path.normpath(tb_dir)))
        self._window_start = time.perf_counter()
        self._window_wait = 0.0
        self._recent = collections.deque(maxlen=RATE_WINDOWS)  # (seconds, iterations)
        self._last_lr = None
        self._render_failed = False

    def global_step(self, epoch, iteration):
        """TensorBoard step of 1-based `iteration` of 0-based `epoch`."""
        return epoch * self.iterations_per_epoch + iteration

    def timed(self, loader):
        """Iterate over `loader`, adding up the host time spent waiting for each batch
        (from the request of the next batch to its arrival; creating the iterator counts)."""
        requested = self._window_start = time.perf_counter()
        self._window_wait = 0.0
        iterator = iter(loader)
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            self._window_wait += time.perf_counter() - requested
            yield batch
            requested = time.perf_counter()

    def log_step(self, epoch, iteration, num_batches, names, values, lr):
        """Record a log step; returns the log-line suffix '[x img/s][data y%][eta H:MM:SS]'.

        Call it right after the losses of the window were copied to the host (that copy
        synchronises the device, so the wall time since the previous call is exact).

        Args:
            epoch: 0-based epoch; iteration: 1-based iteration of the epoch.
            num_batches: iterations of this epoch.
            names: loss term names; values: T x len(names) array, the terms of the T
                iterations since the previous log step.
            lr: learning rate of the first parameter group.
        """
        now = time.perf_counter()
        seconds = max(now - self._window_start, 1e-9)
        steps = len(values)
        wait_fraction = min(self._window_wait / seconds, 1.0)
        images_per_s = steps * self.images_per_step / seconds
        self._window_start, self._window_wait = now, 0.0
        self._recent.append((seconds, steps))
        self._last_lr = lr
        recent_s, recent_steps = map(sum, zip(*self._recent))
        remaining = (num_batches - iteration) + (self.total_epoch - epoch - 1) * num_batches
        eta_s = remaining * recent_s / recent_steps

        if self.writer is not None:
            step = self.global_step(epoch, iteration)
            means = np.asarray(values, dtype=np.float64).mean(axis=0)
            for name, value in zip(names, means):
                self.writer.add_scalar(f'loss/{name}', value, step)
            self.writer.add_scalar('loss/total', means.sum(), step)
            self.writer.add_scalar('lr', lr, step)
            self.writer.add_scalar('speed/images_per_s', images_per_s, step)
            self.writer.add_scalar('speed/data_wait_fraction', wait_fraction, step)
            if self.device.type == 'cuda':
                self.writer.add_scalar('memory/peak_allocated_gib',
                                       torch.cuda.max_memory_allocated(self.device) / 2 ** 30,
                                       step)
        return (f'[{images_per_s:.1f} img/s][data {100 * wait_fraction:.0f}%]'
                f'[eta {format_duration(eta_s)}]')

    def end_epoch(self, epoch, stats):
        """After epoch `epoch`: record its loss means ({name: float}, from train_one_epoch),
        write the history and the curves, flush the events."""
        self.history = [e for e in self.history if e['epoch'] != epoch]
        self.history.append({'epoch': epoch, 'lr': self._last_lr,
                             'loss': {k: float(v) for k, v in stats.items()}})
        self._write_files()
        if self.writer is not None:
            self.writer.flush()

    def log_evaluation(self, epoch, scores, dataset=None, xyz=None, verts=None):
        """Record the evaluation after epoch `epoch`.

        Args:
            scores: the data set's evaluation scores (those of `score_keys` are recorded;
                None values skipped).
            dataset, xyz, verts: the evaluation data set and the predictions (M x 21 x 3,
                M x 778 x 3, meters) to render the first results into TensorBoard.
        """
        values = {key: float(scores[key]) for key in self.score_keys
                  if scores.get(key) is not None}
        entry = next((e for e in self.history if e['epoch'] == epoch), None)
        if entry is None:
            entry = {'epoch': epoch, 'lr': self._last_lr, 'loss': {}}
            self.history.append(entry)
        entry['eval'] = values
        self._write_files()
        if self.writer is None:
            return
        step = self.global_step(epoch, self.iterations_per_epoch)
        for key, value in values.items():
            self.writer.add_scalar(f'eval/{key}', value, step)
        if dataset is not None and self.faces is not None and not self._render_failed:
            from utils.vis.panels import dataset_panel
            for idx in range(min(self.num_eval_images, len(dataset))):
                # A picture must never stop training: without an OpenGL context (utils.vis.render
                # names the packages) pictures stop for the run; a prediction that cannot be
                # drawn (an early network may put vertices behind the camera) is skipped.
                try:
                    panel = dataset_panel(dataset, idx, xyz, verts, self.faces)
                except RuntimeError as err:
                    logger.warning('evaluation pictures disabled for this run: %s', err)
                    self._render_failed = True
                    break
                except ValueError as err:
                    logger.warning('evaluation picture %d after epoch %d skipped: %s', idx,
                                   epoch, err)
                    continue
                self.writer.add_image(f'eval/sample_{idx}', panel, step, dataformats='HWC')
            from utils.vis.render import close_renderers
            close_renderers()  # no OpenGL context kept between evaluations
        self.writer.flush()

    def add_text(self, tag, text):
        """A text entry at step 0 of the events (e.g. the process layout); none without events."""
        if self.writer is not None:
            self.writer.add_text(tag, text, 0)

    def close(self):
        """Write the final curves and close the event file."""
        self._write_files()
        if self.writer is not None:
            self.writer.close()

    def _write_files(self):
        self.history.sort(key=lambda e: e['epoch'])
        atomic_write_json(self.history_path, self.history, indent=1)
        if self.history:
            write_curves_png(self.curves_path, self.history, title=self.experiment,
                             score_panels=self.score_panels)


_TERM_COLORS = {'coord': 'tab:blue', 'normal': 'tab:orange', 'edge': 'tab:green'}
_STAGE_STYLES = ('-', '--', ':')


def _plot_lines(ax, epochs, series, empty_text):
    """Plot {label: (values with NaN where missing, style dict)} against epochs, joining
    the epochs that have a value; returns True if anything was drawn."""
    epochs = np.asarray(epochs, dtype=np.float64)
    drawn = False
    for label, (values, style) in series.items():
        values = np.asarray(values, dtype=np.float64)
        present = np.isfinite(values)
        if present.any():
            ax.plot(epochs[present], values[present], marker='o', markersize=3, linewidth=1.5,
                    label=label, **style)
            drawn = True
    if drawn:
        ax.legend(fontsize=9)
        ax.grid(True, which='both', alpha=0.3)
    else:
        ax.text(0.5, 0.5, empty_text, ha='center', va='center', transform=ax.transAxes,
                color='0.4')
    return drawn


def _log_if_wide(ax, series):
    values = np.concatenate([np.asarray(v, np.float64) for v, _ in series.values()] or [[]])
    values = values[np.isfinite(values) & (values > 0)]
    if values.size and values.max() > LOG_AXIS_RATIO * values.min():
        from matplotlib import ticker
        ax.set_yscale('log')
        # Plain numbers (0.02, not 2 x 10^-2); minor labels at 2 and 5 of each decade only.
        ax.yaxis.set_major_formatter(ticker.FormatStrFormatter('%g'))
        ax.yaxis.set_minor_formatter(ticker.FuncFormatter(
            lambda v, _: f'{v:g}' if round(v / 10 ** math.floor(math.log10(v))) in (2, 5) else ''))


def write_curves_png(path, history, title='', score_panels=((), ())):
    """Draw the per-epoch history into a PNG (written atomically).

    Panels: coord loss terms; normal and edge terms; aligned keypoint / mesh mean errors (cm);
    aligned F-scores and AUCs. Loss panels get a log y axis when the values span more than
    LOG_AXIS_RATIO. Size CURVES_SIZE_IN at CURVES_DPI.

    Args:
        path: output PNG path.
        history: list of {'epoch': int, 'lr': float, 'loss': {term: mean}, 'eval': {score
            key: value}} (eval optional), as kept by Monitor.
        title: shown above the panels.
        score_panels: (mean errors, ratios) of the evaluation panels, each ((score key,
            legend label), ...): the data set's DatasetEntry.score_panels.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    history = sorted(history, key=lambda e: e['epoch'])
    epochs = [e['epoch'] for e in history]
    terms = sorted({name for e in history for name in e.get('loss', {})},
                   key=lambda n: (n.rsplit('_', 1)[-1], n))
    losses = {name: [e.get('loss', {}).get(name, np.nan) for e in history] for name in terms}

    def loss_series(names):
        """Term colour by kind, line style by stage (stage 0 solid, later ones dashed)."""
        series = {}
        for name in names:
            kind, stage = name.rsplit('_', 1)
            weight = LOSS_WEIGHTS.get(kind, 1.0)
            label = f'{kind}, stage {stage}' + (f' (x {weight:g} weight)' if weight != 1 else '')
            style = {'color': _TERM_COLORS.get(kind), 'linestyle': _STAGE_STYLES[int(stage) % 3]}
            series[label] = (losses[name], style)
        return series

    def eval_series(keys, unit):
        """Legend labels end with the latest value, for reading the picture at a glance."""
        series = {}
        for key, label in keys:
            values = [e.get('eval', {}).get(key, np.nan) for e in history]
            present = [v for v in values if np.isfinite(v)]
            latest = f': {present[-1]:.3f}{unit}' if present else ''
            series[label + latest] = (values, {})
        return series

    fig = Figure(figsize=CURVES_SIZE_IN, dpi=CURVES_DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2)
    panels = (
        (axes[0, 0], 'coordinate loss (L1, crop-normalised uvd)', 'loss (normalised units)',
         loss_series(n for n in terms if n.startswith('coord_')), True),
        (axes[0, 1], 'mesh losses: normal and edge', 'loss (normalised units)',
         loss_series(n for n in terms if not n.startswith('coord_')), True),
        (axes[1, 0], 'evaluation: mean error after Procrustes alignment', 'error (cm)',
         eval_series(score_panels[0], ' cm'), False),
        (axes[1, 1], 'evaluation: F-scores and AUCs', 'score (0-1, higher is better)',
         eval_series(score_panels[1], ''), False),
    )
    for ax, panel_title, ylabel, series, is_loss in panels:
        empty = 'no loss recorded yet' if is_loss else \
            'no evaluation yet\n(eval_interval 0, or no evaluation ground truth)'
        if _plot_lines(ax, epochs, series, empty) and is_loss:
            _log_if_wide(ax, series)
        ax.set_title(panel_title, fontsize=11)
        ax.set_xlabel('epoch (as in the log, from 0)')
        ax.set_ylabel(ylabel)
        if epochs:
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[1, 1].set_ylim(0.0, 1.0)
    last = history[-1] if history else {}
    lr = last.get('lr')
    fig.suptitle(f'{title}: {len(history)} epoch{"s" if len(history) != 1 else ""}'
                 + (f', last lr {lr:.2e}' if lr is not None else ''), fontsize=13)
    fig.tight_layout()
    with atomic_open(path, 'wb') as f:
        fig.savefig(f, format='png')


def build_monitor(cfg, steps_per_epoch, start, device, faces, layout):
    """The rank-0 Monitor of a training run resumed at `start` (a ResumePoint), with the
    process layout (launch_summary's lines) as TensorBoard text."""
    monitor = Monitor(tb_dir=cfg.tb_dir if cfg.tensorboard else None, log_dir=cfg.log_dir,
                      experiment=cfg.experiment_name,
                      length=RunLength(steps_per_epoch, cfg.total_epoch, cfg.batch_size),
                      device=device, start=(start.epoch, start.step), faces=faces,
                      data=datasets.entry(cfg.dataset))
    monitor.add_text('run/launch', '\n\n'.join(layout))
    return monitor
