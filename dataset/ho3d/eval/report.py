"""The HO3D evaluator's outputs: the printed report, scores.txt (the official 14 keys, means in
cm), pck_data.json and one PCK plot per curve (rendered as the FreiHAND evaluator's)."""

from dataset.freihand.eval.report import render_pck_plot, write_report_files
from dataset.ho3d.eval.metrics import SCORE_KEYS

SCORES_FILE = 'scores.txt'
# Curve name (= score key prefix) -> (plot file, plot title).
PCK_PLOTS = {
    'xyz': ('pck_xyz.png', 'HO3D 3D joints, unaligned'),
    'xyz_procrustes_al': ('pck_xyz_procrustes.png', 'HO3D 3D joints, Procrustes aligned'),
    'xyz_scale_trans_al': ('pck_xyz_scale_trans.png', 'HO3D 3D joints, scale-translation aligned'),
    'mesh': ('pck_mesh.png', 'HO3D mesh vertices, unaligned'),
    'mesh_al': ('pck_mesh_aligned.png', 'HO3D mesh vertices, Procrustes aligned'),
}
_TITLES = {'xyz': 'joints', 'xyz_procrustes_al': 'joints, Procrustes aligned',
           'xyz_scale_trans_al': 'joints, scale-translation aligned', 'mesh': 'mesh',
           'mesh_al': 'mesh, Procrustes aligned'}


def format_report(scores):
    """The printed report of an `evaluate` result (no trailing newline)."""
    lines = [f'HO3D evaluation of {scores["num_samples"]} frames (means in cm, AUC over 0-5 cm):']
    for prefix, title in _TITLES.items():
        lines.append(f'  {title:<36} mean {scores[prefix + "_mean3d"]:7.3f} cm   '
                     f'auc {scores[prefix + "_auc3d"]:.3f}')
    lines.append(f'  F@5mm = {scores["f_score_5"]:.3f}   F_aligned@5mm = {scores["f_al_score_5"]:.3f}   '
                 f'F@15mm = {scores["f_score_15"]:.3f}   F_aligned@15mm = {scores["f_al_score_15"]:.3f}')
    return '\n'.join(lines)


def format_scores_txt(scores):
    """scores.txt: `key: value` lines in the official order (means in cm; nan stays nan)."""
    return ''.join(f'{key}: {scores[key]:f}\n' for key in SCORE_KEYS)


def write_outputs(scores, out_dir):
    """Write scores.txt, pck_data.json and the PCK plots into `out_dir` (each atomically, all
    rendered first). Returns the written paths."""
    contents = {SCORES_FILE: format_scores_txt(scores).encode()}
    for name, (file, title) in PCK_PLOTS.items():
        contents[file] = render_pck_plot(scores['pck_thresholds_m'], scores['pck_curves'][name],
                                         title, scores[f'{name}_auc3d'])
    pck_data = {
        'thresholds_m': [float(t) for t in scores['pck_thresholds_m']],
        'pck_definition': 'per joint (or vertex), the fraction of frames with error <= threshold; '
                          'the curves are the mean over joints (vertices)',
        'curves': {name: {'pck': [float(v) for v in curve], 'auc': scores[f'{name}_auc3d'],
                          'mean_error_cm': scores[f'{name}_mean3d']}
                   for name, curve in scores['pck_curves'].items()},
    }
    return write_report_files(out_dir, contents, pck_data)
