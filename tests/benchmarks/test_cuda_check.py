"""benchmarks.cuda_check: the CPU run end to end, and the pieces the CPU run skips (DDP over
gloo, rendering through the subprocess with OSMesa, the profiler attribution)."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from benchmarks import gpu_checks

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def fixture(standin_mano):
    return gpu_checks.make_fixture(torch.device('cpu'), dict(gpu_checks.REDUCED), standin_mano)


def test_falling_loss_verdict():
    falling = np.linspace(0.4, 0.2, 20)
    assert 'median of the first 5 steps' in gpu_checks.verdict_falling(falling)
    spiky = falling.copy()
    spiky[-2] = 5.0  # one dropout spike among the last steps does not decide
    gpu_checks.verdict_falling(spiky)
    with pytest.raises(gpu_checks.CheckFailed, match='not falling by 5%'):
        gpu_checks.verdict_falling(np.full(20, 0.3) + 0.001 * np.sin(np.arange(20)))
    broken = falling.copy()
    broken[7] = np.nan
    with pytest.raises(gpu_checks.CheckFailed, match=r'non-finite total loss at steps \[7\]'):
        gpu_checks.verdict_falling(broken)


def test_fixed_hand_targets_lie_in_the_crop(fixture):
    uvd = fixture.gt_uvd[0].numpy()
    assert uvd.shape == (799, 3)
    assert np.abs(uvd[:, :2]).max() < 1.0  # the whole hand is inside the crop
    assert (fixture.gt_uvd == fixture.gt_uvd[:1]).all()  # one hand for the whole batch


@pytest.mark.slow
def test_cpu_run_passes_or_skips_every_check():
    result = subprocess.run([sys.executable, '-m', 'benchmarks.cuda_check', '--device', 'cpu'],
                            cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={**os.environ, 'PYOPENGL_PLATFORM': 'osmesa'})
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    *checks, summary = lines
    assert all(re.match(r'(PASS|SKIP) [\w ]+: ', line) for line in checks), result.stdout
    names = [re.match(r'\w+ ([\w ]+):', line).group(1) for line in checks]
    assert names == ['environment', 'train bf16', 'train fp32', 'train fp16', 'train compile',
                     'inference bf16 vs fp32', 'training throughput', 'inference throughput',
                     'ddp', 'render egl']
    # The summary counts what the lines say; on the CPU the CUDA-only checks skip, and the
    # environment check and the fp32 training always run there.
    passed = [name for name, line in zip(names, checks) if line.startswith('PASS')]
    assert {'environment', 'train fp32'} <= set(passed), result.stdout
    assert re.match(rf'SUMMARY: {len(passed)} PASS, 0 FAIL, {len(checks) - len(passed)} SKIP '
                    r'in \d+ s on cpu$', summary), summary


@pytest.mark.slow
def test_ddp_over_gloo_keeps_the_ranks_identical(fixture):
    text = gpu_checks.check_ddp(fixture, backend='gloo')
    assert 'largest parameter difference between ranks 0 over' in text


@pytest.mark.slow
def test_render_probe_in_a_subprocess():
    text = gpu_checks.check_render('osmesa')
    assert re.search(r'IoU 0\.9\d\d', text), text
    with pytest.raises(gpu_checks.CheckFailed, match='exited with 1'):
        gpu_checks.check_render('no-such-platform')  # not a context problem: a failure


class FakeEvent:
    """A profiler event with a chosen self time (a fake clock): the fields attribute_time reads."""

    def __init__(self, name, parent=None, sequence_nr=-1, cpu_us=0.0, device_us=0.0,
                 device_type=None):
        from torch.autograd import DeviceType
        self.name, self.cpu_parent, self.sequence_nr = name, parent, sequence_nr
        self.self_cpu_time_total, self.self_device_time_total = cpu_us, device_us
        self.device_type = DeviceType.CPU if device_type is None else device_type


def test_attribution_of_forward_backward_and_optimizer_ops_by_hand():
    step = FakeEvent('ProfilerStep#1', cpu_us=1.0)  # unlabelled: other
    network = FakeEvent('sar::network', parent=step)
    backbone = FakeEvent('sar::backbone', parent=network)
    conv = FakeEvent('aten::convolution', parent=backbone, sequence_nr=7, cpu_us=40.0, device_us=4.0)
    head = FakeEvent('aten::mm', parent=network, sequence_nr=9, cpu_us=20.0, device_us=2.0)
    conv_backward = FakeEvent('autograd::engine::evaluate_function: ConvolutionBackward0',
                              sequence_nr=7)
    conv_grad = FakeEvent('aten::convolution_backward', parent=conv_backward, cpu_us=80.0)
    mm_backward = FakeEvent('autograd::engine::evaluate_function: MmBackward0', sequence_nr=9)
    mm_grad = FakeEvent('aten::mm', parent=mm_backward, cpu_us=30.0)
    unknown_backward = FakeEvent('autograd::engine::evaluate_function: AccumulateGrad',
                                 sequence_nr=11)  # no forward op of that number: other
    accumulate = FakeEvent('aten::add_', parent=unknown_backward, cpu_us=3.0)
    optimizer = FakeEvent('Optimizer.step#AdamW.step')
    adam = FakeEvent('aten::_fused_adamw_', parent=optimizer, cpu_us=5.0, device_us=0.5)
    events = [step, network, backbone, conv, head, conv_backward, conv_grad, mm_backward,
              mm_grad, unknown_backward, accumulate, optimizer, adam]
    assert gpu_checks.attribute_time(events, use_device=False) == pytest.approx(
        {'backbone': 120e-6, 'graph head + losses': 50e-6, 'optimizer': 5e-6, 'other': 4e-6})
    assert gpu_checks.attribute_time(events, use_device=True) == pytest.approx(
        {'backbone': 4e-6, 'graph head + losses': 2e-6, 'optimizer': 0.5e-6, 'other': 0.0})


class HeavyOpClock:
    """A real profiler event seen through a fake clock: 1 s of self time for the ops that carry
    the work (convolutions and matrix products, forward and backward), 0 for the others, so the
    attribution is checked on the recorded op tree whatever the machine's timings."""
    HEAVY = re.compile(r'conv|addmm|\bmm\b|bmm|matmul|linear|MmBackward', re.IGNORECASE)

    def __init__(self, event, seen):
        self._event, self._seen = event, seen
        self.self_cpu_time_total = 1e6 if self.HEAVY.search(event.name) else 0.0

    def __getattr__(self, name):
        return getattr(self._event, name)

    @property
    def cpu_parent(self):
        parent = self._event.cpu_parent
        return None if parent is None else self._seen.setdefault(id(parent), HeavyOpClock(parent, self._seen))


@pytest.mark.slow
def test_profile_attributes_time_to_every_region(fixture, capsys):
    profiled = gpu_checks.profile_training(fixture)
    text = gpu_checks.check_profile(fixture, profiled)  # raises when a region got no time
    shares = dict(re.findall(r'(backbone|graph head \+ losses|optimizer|other) (\d+)%', text))
    assert set(shares) == {'backbone', 'graph head + losses', 'optimizer', 'other'}
    assert 98 <= sum(map(int, shares.values())) <= 102  # rounded percentages
    assert 'aten::' in capsys.readouterr().out  # the top-ops table
    # Every convolution and matrix product, forward and backward, lands in a region.
    seen = {}
    events = [seen.setdefault(id(e), HeavyOpClock(e, seen)) for e in profiled[0].events()]
    totals = gpu_checks.attribute_time(events, use_device=False)
    assert totals['other'] == 0 and totals['backbone'] > 0 and totals['graph head + losses'] > 0
