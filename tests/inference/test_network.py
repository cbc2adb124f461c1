"""inference.network: the network a spec and head build, and a checkpoint trained with one head
run under the other."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import config
from inference.network import build_network, load_for_inference
from model import NetworkSpec
from model.heads import HEADS

CPU = torch.device('cpu')


def random_mano(seed=0):
    """Template (778 x 3, m) and faces as a utils.mano.MANO would give them."""
    rng = np.random.default_rng(seed)
    return SimpleNamespace(template=rng.normal(scale=0.05, size=(778, 3)).astype(np.float32),
                           faces=rng.integers(0, 778, size=(1538, 3)).astype(np.int64))


@pytest.mark.parametrize('trained_head, run_head', [('fused', 'reference'), ('reference', 'fused')])
def test_the_configured_head_runs_a_checkpoint_of_the_other(tmp_path, trained_head, run_head):
    mano = random_mano()
    torch.manual_seed(0)
    spec = NetworkSpec.from_config(config.resolve(preset='cpu_demo'))
    trained = build_network(spec, mano, CPU, head=trained_head, pretrained_backbone=False)
    assert type(trained.gbbmr[0]) is HEADS[trained_head].regressor
    path = tmp_path / 'snapshot_0.pth.tar'
    torch.save({'net': trained.state_dict(), 'last_epoch': 0}, path)
    cfg = config.resolve(preset='cpu_demo', head=run_head, checkpoint=str(path))
    model, _ = load_for_inference(cfg, mano, CPU)  # a strict load
    assert type(model.gbbmr[0]) is HEADS[run_head].regressor
    assert type(model.saigb[0]) is HEADS[run_head].builder
    img = torch.randn(2, 3, *cfg.input_img_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = trained.eval()({'img': img})['coords']
        torch.testing.assert_close(model({'img': img})['coords'], expected, rtol=0, atol=1e-4)
