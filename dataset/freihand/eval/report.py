"""The evaluator's outputs: the printed report, scores.txt (the leaderboard's keys),
pck_data.json, one PCK plot per curve and scores.html (docs/method.md §8)."""
import html
import io
import os

import numpy as np

from manopth.constants import NUM_VERTS
from utils.constants import JOINT_NAMES
from utils.files.atomic import atomic_open, atomic_write_json
from dataset.freihand.eval.metrics import M_TO_CM, SCORE_KEYS

# Curve name (= score key prefix) -> (plot file, plot title).
PCK_PLOTS = {
    'xyz': ('pck_xyz.png', '3D keypoints, unaligned'),
    'xyz_al': ('pck_xyz_aligned.png', '3D keypoints, Procrustes aligned'),
    'mesh': ('pck_mesh.png', '3D mesh vertices, unaligned'),
    'mesh_al': ('pck_mesh_aligned.png', '3D mesh vertices, Procrustes aligned'),
}
SCORES_FILE = 'scores.txt'
PCK_DATA_FILE = 'pck_data.json'
HTML_FILE = 'scores.html'
NO_GT_VERTS = 'no ground-truth vertices (joints-only annotations)'


def format_report(scores):
    """The seed's printed report (docs/method.md §8) of an `evaluate` result, without a trailing newline."""
    def block(title, prefix):
        mean_cm, auc = scores[f'{prefix}_mean3d'], scores[f'{prefix}_auc3d']
        if mean_cm is None and scores['f_score_5'] is None:
            return [title, f'unavailable: {NO_GT_VERTS}']
        if mean_cm is None:
            return [title, f'unavailable: the prediction has {scores["num_pred_verts"]} vertices per '
                           f'sample, per-vertex errors need {NUM_VERTS}']
        return [title, f'auc={auc:.3f}, mean_kp3d_avg={mean_cm:.2f} cm']

    lines = (block('Evaluation 3D KP results:', 'xyz')
             + block('Evaluation 3D KP ALIGNED results:', 'xyz_al')
             + [''] + block('Evaluation 3D MESH results:', 'mesh')
             + block('Evaluation 3D MESH ALIGNED results:', 'mesh_al')
             + ['', 'F-scores'])
    if scores['f_score_5'] is None:
        lines.append(f'unavailable: {NO_GT_VERTS}')
        return '\n'.join(lines)
    for mm, key, key_al in ((5.0, 'f_score_5', 'f_al_score_5'), (15.0, 'f_score_15', 'f_al_score_15')):
        # The seed's layout: a space and a tab before F_aligned.
        lines.append(f'F@{mm:.1f}mm = {scores[key]:.3f} \tF_aligned@{mm:.1f}mm = {scores[key_al]:.3f}')
    return '\n'.join(lines)


def format_scores_txt(scores):
    """scores.txt content: `key: value` lines in the leaderboard's order (means in cm); the
    mesh lines are omitted when the mesh scores are unavailable."""
    return ''.join(f'{key}: {scores[key]:f}\n' for key in SCORE_KEYS if scores[key] is not None)


def _pck_data(scores):
    """The JSON-serialisable PCK content of an `evaluate` result."""
    curves = {}
    for name, curve in scores['pck_curves'].items():
        curves[name] = {'pck_mean_over_points': [float(v) for v in curve],
                        'auc': scores[f'{name}_auc3d'], 'mean_error_cm': scores[f'{name}_mean3d']}
    return {
        'thresholds_m': [float(t) for t in scores['pck_thresholds_m']],
        'pck_definition': 'per point, the fraction of samples with error <= threshold; '
                          'curves here are the mean over points',
        'curves': curves,
        'per_keypoint': {
            'joint_names': list(JOINT_NAMES),
            **{name: [[float(v) for v in row] for row in rows]
               for name, rows in scores['pck_per_keypoint'].items()},
        },
    }


def render_pck_plot(thresholds_m, curve, title, auc):
    """PNG bytes of one PCK curve (thresholds in m, shown in cm)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 4), dpi=100)
    FigureCanvasAgg(figure)  # Agg canvas attached to this figure only: no pyplot global state
    axes = figure.add_subplot()
    axes.plot(np.asarray(thresholds_m) * M_TO_CM, curve, linewidth=2, label=f'AUC = {auc:.3f}')
    axes.set_xlim(thresholds_m[0] * M_TO_CM, thresholds_m[-1] * M_TO_CM)
    axes.set_ylim(0.0, 1.0)
    axes.set_xlabel('error threshold (cm)')
    axes.set_ylabel('PCK (fraction within threshold)')
    axes.set_title(title)
    axes.grid(True, alpha=0.4)
    axes.legend(loc='lower right')
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format='png')
    return buffer.getvalue()


def _html_page(scores, report, plot_files):
    """A self-describing HTML page with the report, the scores table and the PCK plots."""
    rows = ''
    for key in SCORE_KEYS:
        value = 'unavailable' if scores[key] is None else f'{scores[key]:.4f}'
        unit = 'cm' if key.endswith('mean3d') else ''
        rows += f'<tr><td>{key}</td><td>{value}</td><td>{unit}</td></tr>'
    images = ''.join(f'<figure><img src="{html.escape(file)}" alt="{html.escape(title)}">'
                     f'<figcaption>{html.escape(title)}</figcaption></figure>'
                     for file, title in plot_files)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>FreiHAND evaluation</title>'
        '<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}'
        'td{border:1px solid #999;padding:2px 8px}'
        'figure{display:inline-block;margin:0 1em 1em 0}</style>'
        '</head><body>\n<h1>FreiHAND evaluation</h1>\n'
        f'<p>{scores["num_samples"]} samples, {scores["num_pred_verts"]} predicted vertices per sample; '
        'means in cm; PCK thresholds 0 to 5 cm.</p>\n'
        f'<pre>{html.escape(report)}</pre>\n'
        f'<table><tr><th>key</th><th>value</th><th>unit</th></tr>{rows}</table>\n'
        f'<div>{images}</div>\n</body></html>\n'
    )


def write_outputs(scores, out_dir):
    """Write scores.txt, pck_data.json, the PCK plots and scores.html into `out_dir`.

    Everything is rendered in memory first, then each file is written atomically, so a failure
    while preparing leaves `out_dir` untouched. Returns the list of written paths.
    """
    report = format_report(scores)
    contents = {SCORES_FILE: format_scores_txt(scores).encode()}
    plot_files = []
    for name, curve in scores['pck_curves'].items():
        file, title = PCK_PLOTS[name]
        contents[file] = render_pck_plot(scores['pck_thresholds_m'], curve, title,
                                         scores[f'{name}_auc3d'])
        plot_files.append((file, title))
    contents[HTML_FILE] = _html_page(scores, report, plot_files).encode()
    return write_report_files(out_dir, contents, _pck_data(scores))


def write_report_files(out_dir, contents, pck_data):
    """Write {file name: bytes} and the PCK data JSON into `out_dir`, each atomically.

    Returns the written paths, PCK_DATA_FILE last. NaN values are written as NaN (JSON's
    extension, as json.dump does).
    """
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for file, data in contents.items():
        path = os.path.join(out_dir, file)
        with atomic_open(path, 'wb') as f:
            f.write(data)
        written.append(path)
    path = os.path.join(out_dir, PCK_DATA_FILE)
    atomic_write_json(path, pck_data)
    return written + [path]
