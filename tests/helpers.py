"""Plain helpers the tests share (importable; fixtures stay in the conftest.py files).

- random_mano_data: a random (not hand-shaped) MANO model in the official format's arrays. The
  layer's identities (rigid root rotation, PCA equivalence, translation, batching, gradients)
  hold for any model, so testing them on random parameters keeps the layer's tests independent
  of the procedural stand-in.
- CLIP_FRAMES, CLIP_SIZE: the synthetic hand clip the `clip` fixture renders.
- save_random_checkpoint: a randomly initialised network of a configuration, saved as train.py
  saves it (for the scripts that load checkpoints).
- GroundTruthModel: a stand-in network that returns given crop-normalised uvd targets in
  evaluation order (test.py's decoding and pred.json checked against the ground truth).
"""
import os

import numpy as np
import scipy.sparse
import torch

from manopth import constants

CLIP_FRAMES = 16  # long enough for the hand to cross the frame, short enough for 2 cores
CLIP_SIZE = (240, 320)  # (height, width), px


def random_mano_data(seed=0):
    """Arrays of a random MANO model (official keys and shapes), reproducible per seed."""
    rng = np.random.default_rng(seed)
    nv = constants.NUM_VERTS
    template = rng.normal(scale=0.03, size=(nv, 3))
    regressor = rng.random((16, nv)) * (rng.random((16, nv)) < 0.02)
    regressor[:, 0] += 1e-3  # no empty row
    regressor /= regressor.sum(axis=1, keepdims=True)
    weights = rng.random((nv, 16)) ** 4
    weights /= weights.sum(axis=1, keepdims=True)
    components = np.linalg.qr(rng.normal(size=(45, 45)))[0].T
    kintree = np.array([[2 ** 32 - 1] + list(constants.MANO_PARENTS[1:]), list(range(16))],
                       dtype=np.uint32)
    return {
        'v_template': template,
        'f': rng.integers(0, nv, size=(constants.NUM_FACES, 3)).astype(np.uint32),
        'J_regressor': scipy.sparse.csc_matrix(regressor),
        'J': regressor @ template,
        'weights': weights,
        'kintree_table': kintree,
        'posedirs': rng.normal(scale=1e-3, size=(nv, 3, 135)),
        'shapedirs': rng.normal(scale=1e-3, size=(nv, 3, 10)),
        'hands_components': components,
        'hands_mean': rng.normal(scale=0.2, size=45),
        'hands_coeffs': rng.normal(size=(1554, 45)),
        'bs_style': 'lbs', 'bs_type': 'lrotmin',
        'pose': np.zeros(48), 'betas': np.zeros(10), 'trans': np.zeros(3),
    }


def save_random_checkpoint(cfg, path, config_in='file', **fields):
    """Save a randomly initialised network of `cfg` (torch seed 0, on the CPU) at `path`.

    Args:
        cfg: resolved config.Config (its mano_root holds MANO_RIGHT.pkl).
        path: the checkpoint file (its folder is created).
        config_in: 'file' writes the configuration to config.json beside the checkpoint,
            'checkpoint' stores it in the checkpoint ('config'), as train.py does.
        fields: more entries of the checkpoint dict (e.g. last_epoch=0).
    Returns:
        the network (evaluation mode), with the saved weights.
    """
    import config as config_module
    from run.network import build_model
    from utils.mano import MANO
    if config_in not in ('file', 'checkpoint'):
        raise ValueError(f"config_in must be 'file' or 'checkpoint', got {config_in!r}")
    torch.manual_seed(0)
    model = build_model(cfg, MANO(cfg.mano_root), torch.device('cpu'))
    folder = os.path.dirname(os.fspath(path))
    os.makedirs(folder, exist_ok=True)
    ckpt = {'net': model.state_dict(), **fields}
    if config_in == 'checkpoint':
        ckpt['config'] = cfg.to_dict()
    else:
        with open(os.path.join(folder, 'config.json'), 'w') as f:
            f.write(config_module.dumps(cfg))
    torch.save(ckpt, path)
    return model.eval()


class GroundTruthModel(torch.nn.Module):
    """Returns `targets` (N x V x 3, crop-normalised uvd) batch after batch, in order."""

    def __init__(self, targets):
        super().__init__()
        self.targets = targets
        self.next = 0

    def forward(self, inputs):
        batch = inputs['img'].shape[0]
        coords = torch.as_tensor(self.targets[self.next:self.next + batch], dtype=torch.float32)
        self.next += batch
        return {'coords': coords}

    def fuse_for_inference(self):  # test.py infers with SAR's fused copy
        return self
