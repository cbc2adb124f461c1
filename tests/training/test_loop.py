"""training.loop and training.resume: gradient accumulation, the checkpoint dict and the snapshot order."""
import contextlib
import os

import torch

from training import loop, resume
from utils.runtime.checkpoint import latest_checkpoint, save_checkpoint


class Regressor(torch.nn.Module):
    """A linear map trained with two loss terms, as SAR returns them (a dict)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(3, 2)
        self.inside_no_sync = []
        self._no_sync = False

    @contextlib.contextmanager
    def no_sync(self):  # DistributedDataParallel's
        self._no_sync = True
        yield
        self._no_sync = False

    def forward(self, inputs, targets):
        self.inside_no_sync.append(self._no_sync)
        pred = self.fc(inputs['img'])
        return {'sq': ((pred - targets['y']) ** 2).mean(), 'abs': (pred - targets['y']).abs().mean()}


def test_accumulated_micro_batches_step_like_their_whole_batch():
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 3, generator=gen, dtype=torch.float64), torch.randn(8, 2, generator=gen, dtype=torch.float64)
    whole, parts = Regressor().double(), Regressor().double()
    for model in (whole, parts):
        model.optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses_whole = loop.train_step(whole, whole.optimizer, {'img': x}, {'y': y})
    micro = [({'img': x[i:i + 2]}, {'y': y[i:i + 2]}) for i in range(0, 8, 2)]
    losses_parts = loop.accumulation_step(parts, parts.optimizer, micro)
    # The mean of equal-sized micro-batch means is the batch mean: same loss, same gradient.
    for name in ('sq', 'abs'):
        torch.testing.assert_close(losses_parts[name], losses_whole[name].detach(), rtol=1e-12, atol=0)
    for a, b in zip(whole.parameters(), parts.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
    assert not torch.equal(whole.fc.weight, Regressor().double().fc.weight)  # it did step
    # Only the last micro-batch synchronises gradients (DDP's no_sync around the others).
    assert parts.inside_no_sync == [True, True, True, False]
    assert whole.inside_no_sync == [False]


def test_checkpoint_state_keeps_the_published_keys():
    model = Regressor()
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=4)
    state = resume.checkpoint_state(model, optimizer, scheduler, None, {'seed': 0}, 2)
    assert sorted(state) == ['config', 'last_epoch', 'net', 'optimizer', 'schedule']
    assert state['last_epoch'] == 2 and state['config'] == {'seed': 0}
    inside = resume.checkpoint_state(model, optimizer, scheduler, None, {}, 2, step=5)
    assert (inside['last_epoch'], inside['iteration']) == (1, 5)  # epoch 2 not finished


def test_newest_snapshot_counts_iterations_and_superseded_ones_go(tmp_path):
    folder = str(tmp_path)
    save_checkpoint({'net': {}}, folder, 0)
    save_checkpoint({'net': {}}, folder, 1, step=3)
    assert os.path.basename(latest_checkpoint(folder)) == 'snapshot_1_iter3.pth.tar'
    save_checkpoint({'net': {}}, folder, 1, step=10)  # 10 > 3 as numbers, not as text
    assert sorted(os.listdir(folder)) == ['snapshot_0.pth.tar', 'snapshot_1_iter10.pth.tar']
    save_checkpoint({'net': {}}, folder, 1)  # epoch 1 complete: its iteration snapshot goes
    assert sorted(os.listdir(folder)) == ['snapshot_0.pth.tar', 'snapshot_1.pth.tar']
    assert os.path.basename(latest_checkpoint(folder)) == 'snapshot_1.pth.tar'
