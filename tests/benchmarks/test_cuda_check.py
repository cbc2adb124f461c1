"""benchmarks.cuda_check: the CPU run end to end, and the pieces the CPU run skips (DDP over
gloo, rendering through the subprocess with OSMesa) or runs only with --profile."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from benchmarks import cuda_check as gpu_checks

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def fixture(standin_mano):
    return gpu_checks.Fixture(torch.device('cpu'), dict(gpu_checks.REDUCED), standin_mano)


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


@pytest.mark.slow
def test_profile_prints_the_top_ops_and_the_time_per_step(fixture, capsys):
    text = gpu_checks.check_profile(fixture)
    per_step = float(re.search(r'2 bf16 training steps, ([\d.]+) ms of CPU self time', text)[1])
    assert per_step > 0
    table = capsys.readouterr().out
    # The top-ops table: which ops lead depends on the CPU (oneDNN's kernels, bf16 native or
    # emulated), so count op rows; its total equals the per-step figure times the 2 steps.
    assert sum(line.strip().startswith('aten::') for line in table.splitlines()) >= 5, table
    value, unit = re.search(r'Self CPU time total: ([\d.]+)(ms|s|us)', table).groups()
    total_s = float(value) * {'s': 1.0, 'ms': 1e-3, 'us': 1e-6}[unit]
    assert total_s == pytest.approx(2 * per_step / 1e3, rel=0.01, abs=2e-4)
