"""`make demo`: the whole pipeline end to end on this machine, in minutes, without licensed assets.

1. MANO: the real MANO_RIGHT.pkl if it is in manopth/mano/models/, else the procedural
   stand-in (built once into data/mano_standin/).
2. Data: a synthetic FreiHAND-format set rendered from that MANO (data/FreiHAND_synth/).
3. train.py with the `cpu_demo` preset (the real network, sized for a CPU).
4. test.py: output/pred.json, the local evaluation and rendered results.
5. A mean-hand baseline (the training-set mean mesh placed at the root) evaluated the same way,
   and both reports side by side.

Each step is the command a user would type (printed before it runs); a second run reuses the
MANO, the data and the checkpoints that exist.
"""
import json
import os
import shlex
import subprocess
import sys
import time

import numpy as np

import config as config_module

REAL_MANO_ROOT = 'manopth/mano/models'
STANDIN_ROOT = 'data/mano_standin'
DATA_ROOT = 'data/FreiHAND_synth'
DATA_PARAMS = dict(num_train=1000, num_eval=200, seed=0, root_noise=0.0, max_tilt=50.0)
PARAMS_FILE = 'demo_params.json'  # written into DATA_ROOT after a complete generation
VIS_NUM = 6


def run(cmd):
    print(f'\n$ {shlex.join(cmd)}', flush=True)
    subprocess.run(cmd, check=True)


def mean_hand_baseline(data_root, out_dir):
    """Evaluate the training-set mean mesh (relative to the wrist) placed at each evaluation
    sample's root estimate from bbox_root_freihand_output.json."""
    from utils import freihand_eval
    from utils.constants import ROOTNET_FILE

    def load(name):
        with open(os.path.join(data_root, name)) as f:
            return np.asarray(json.load(f), dtype=np.float64)

    train_xyz, train_verts = load('training_xyz.json'), load('training_verts.json')
    wrist = train_xyz[:, :1]
    mean_xyz, mean_verts = (train_xyz - wrist).mean(0), (train_verts - wrist).mean(0)
    with open(os.path.join(data_root, ROOTNET_FILE)) as f:
        roots = np.array([entry['root_cam'] for entry in json.load(f)], dtype=np.float64)
    xyz_gt, verts_gt = freihand_eval.load_gt(data_root)
    scores = freihand_eval.evaluate(xyz_gt, verts_gt, mean_xyz + roots[:, None],
                                    mean_verts + roots[:, None])
    freihand_eval.write_outputs(scores, out_dir)
    return scores


def side_by_side(ours, baseline):
    rows = [('3D KP mean (cm)', 'xyz_mean3d'), ('3D KP AUC', 'xyz_auc3d'),
            ('3D KP ALIGNED mean (cm)', 'xyz_al_mean3d'), ('3D KP ALIGNED AUC', 'xyz_al_auc3d'),
            ('3D MESH mean (cm)', 'mesh_mean3d'), ('3D MESH AUC', 'mesh_auc3d'),
            ('3D MESH ALIGNED mean (cm)', 'mesh_al_mean3d'), ('3D MESH ALIGNED AUC', 'mesh_al_auc3d'),
            ('F@5mm', 'f_score_5'), ('F_aligned@5mm', 'f_al_score_5'),
            ('F@15mm', 'f_score_15'), ('F_aligned@15mm', 'f_al_score_15')]
    lines = [f"{'metric':<28}{'SAR cpu_demo':>14}{'mean hand':>12}"]
    lines += [f'{name:<28}{ours[key]:>14.3f}{baseline[key]:>12.3f}' for name, key in rows]
    return '\n'.join(lines)


def main():
    start = time.time()
    py = sys.executable
    real = os.path.isfile(os.path.join(REAL_MANO_ROOT, 'MANO_RIGHT.pkl'))
    mano_root = REAL_MANO_ROOT if real else STANDIN_ROOT
    print(f"MANO: {'the licensed model in ' + REAL_MANO_ROOT if real else 'the procedural STAND-IN in ' + STANDIN_ROOT + ' (no MANO_RIGHT.pkl in ' + REAL_MANO_ROOT + ')'}")
    if not real and not os.path.isfile(os.path.join(STANDIN_ROOT, 'MANO_RIGHT.pkl')):
        run([py, '-m', 'synthetic.standin', '--out', STANDIN_ROOT])

    params = {**DATA_PARAMS, 'mano_root': mano_root}
    params_path = os.path.join(DATA_ROOT, PARAMS_FILE)
    existing = None
    if os.path.isfile(params_path):
        with open(params_path) as f:
            existing = json.load(f)
    if existing == params:
        print(f'data: reusing {DATA_ROOT}')
    else:
        run([py, '-m', 'synthetic.freihand', '--root', DATA_ROOT, '--num-train',
             str(params['num_train']), '--num-eval', str(params['num_eval']), '--mano-root',
             mano_root, '--seed', str(params['seed']), '--root-noise', str(params['root_noise']),
             '--max-tilt', str(params['max_tilt']), '--workers', '2', '--overwrite'])
        from utils.files.atomic import atomic_write_json
        atomic_write_json(params_path, params)

    cfg = config_module.resolve(['--preset', 'cpu_demo', '--mano_root', mano_root])
    overrides = ['--preset', 'cpu_demo', '--mano_root', mano_root]
    run([py, 'train.py', *overrides, '--resume', 'auto'])
    checkpoint = os.path.join(cfg.checkpoint_dir, f'snapshot_{cfg.total_epoch - 1}.pth.tar')
    run([py, 'test.py', *overrides, '--checkpoint', checkpoint, '--vis', '--vis_num', str(VIS_NUM)])

    from utils import freihand_eval
    xyz_gt, verts_gt = freihand_eval.load_gt(DATA_ROOT)
    xyz, verts = freihand_eval.load_pred(os.path.join(cfg.output_root, 'pred.json'), len(xyz_gt))
    ours = freihand_eval.evaluate(xyz_gt, verts_gt, xyz, verts)
    baseline = mean_hand_baseline(DATA_ROOT, os.path.join(cfg.output_root, 'eval_mean_hand'))
    print('\n==== SAR (cpu_demo preset) on the synthetic evaluation set ====')
    print(freihand_eval.format_report(ours))
    print('\n==== mean-hand baseline ====')
    print(freihand_eval.format_report(baseline))
    print('\n==== side by side ====')
    print(side_by_side(ours, baseline))
    better = ours['xyz_al_mean3d'] < baseline['xyz_al_mean3d'] and ours['mesh_al_mean3d'] < baseline['mesh_al_mean3d']
    print(f"\nSAR {'beats' if better else 'does NOT beat'} the mean-hand baseline on the aligned "
          f"keypoint and mesh errors ({ours['xyz_al_mean3d']:.2f} / {ours['mesh_al_mean3d']:.2f} cm vs "
          f"{baseline['xyz_al_mean3d']:.2f} / {baseline['mesh_al_mean3d']:.2f} cm).")
    print(f"""
outputs:
  MANO model            {mano_root}
  synthetic data        {DATA_ROOT}
  training log          {cfg.log_dir}/train_{cfg.experiment_name}.log
  checkpoints           {cfg.checkpoint_dir}/
  predictions           {cfg.output_root}/pred.json
  evaluation            {cfg.output_root}/eval/ (scores.txt, scores.html, PCK plots)
  baseline evaluation   {cfg.output_root}/eval_mean_hand/
  rendered results      {cfg.vis_dir}/
done in {time.time() - start:.0f} s""")


if __name__ == '__main__':
    try:
        main()
    except subprocess.CalledProcessError as err:
        # The step printed its own error message above; say which step stopped the demo.
        sys.exit(f'\nmake demo stopped: `{shlex.join(err.cmd)}` failed with exit code '
                 f'{err.returncode} (its message is above)')
    except KeyboardInterrupt:
        sys.exit('\nmake demo: interrupted; a second run reuses what is finished')
