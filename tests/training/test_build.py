"""training/build.py: the optimizer's parameter groups."""
import pytest
import torch

from model import NetworkSpec, SAR
from training import build


def test_adj_lr_scale_puts_the_adjacencies_in_their_own_group(standin):
    # 1-stage ResNet-18 SAR at 64 px: 4 graph convolutions, so 4 adjacencies.
    model = SAR(standin['v_template'], standin['f'],
                NetworkSpec(backbone='resnet18', num_stage=1, feature_size=4, heatmap_size=8,
                            input_img_shape=(64, 64)))
    published = build.param_groups(model, 3e-4, 1.0)  # one group, as published
    trainable = [p for p in model.parameters() if p.requires_grad]  # not the index grids
    assert [id(p) for p in published] == [id(p) for p in trainable]
    groups = build.param_groups(model, 3e-4, 0.1)
    adj_ids = {id(m.adj) for m in model.modules() if hasattr(m, 'adj')}
    assert len(adj_ids) == 4
    assert {id(p) for p in groups[1]['params']} == adj_ids
    assert groups[1]['lr'] == pytest.approx(3e-5, rel=1e-12)
    assert len(groups[0]['params']) + 4 == len(trainable)
    optimizer = torch.optim.AdamW(groups, lr=3e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=2, eta_min=0)
    optimizer.step()  # no gradients, nothing moves: the order train.py steps in
    scheduler.step()
    # Both groups follow the cosine: half of their own base rate after 1 of 2 epochs.
    assert optimizer.param_groups[0]['lr'] == pytest.approx(1.5e-4, abs=1e-15)
    assert optimizer.param_groups[1]['lr'] == pytest.approx(1.5e-5, abs=1e-15)
