"""The precision choice of config field `amp` (inference/precision.py): CPU bf16 detection from
/proc/cpuinfo-format files and the rule per device."""
import dataclasses

import pytest
import torch

import config as config_module
from inference import precision
from inference.network import inference_amp
from inference.precision import NATIVE_BF16_FLAGS, cpu_bf16_flags, resolve_amp

CPU = torch.device('cpu')
# Shortened /proc/cpuinfo texts: one x86 processor with and without AVX-512 BF16 / AMX, and an
# arm64 one (its flags line is called Features).
X86_FLAGS = 'fpu vme de pse tsc msr sse sse2 avx avx2 fma avx512f avx512bw avx512vl'
ZEN4 = f'processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: {X86_FLAGS} avx512_bf16 vaes\n\n'
SAPPHIRE_RAPIDS = (f'processor\t: 0\nflags\t\t: {X86_FLAGS} amx_bf16 avx512_fp16 amx_tile '
                   f'amx_int8 avx512_bf16\n')
SKYLAKE = f'processor\t: 0\nmodel name\t: Intel Xeon\nflags\t\t: {X86_FLAGS} avx512dq\n'
ARM64 = 'processor\t: 0\nFeatures\t: fp asimd evtstrm aes sha1 bf16 i8mm\n'


@pytest.mark.parametrize('text, expected', [
    (ZEN4, ('avx512_bf16',)),
    (SAPPHIRE_RAPIDS, ('avx512_bf16', 'amx_bf16')),
    (SKYLAKE, ()),
    (ARM64, ()),  # no x86 flags line: bf16 is not assumed native
])
def test_cpu_bf16_flags_from_cpuinfo(tmp_path, text, expected):
    path = tmp_path / 'cpuinfo'
    path.write_text(text)
    assert cpu_bf16_flags(str(path)) == expected


def test_cpu_bf16_flags_need_the_whole_flag_name(tmp_path):
    # 'avx512_bf16x' or a flag in the model name must not count.
    path = tmp_path / 'cpuinfo'
    path.write_text('model name\t: avx512_bf16 edition\nflags\t\t: sse avx512_bf16x\n')
    assert cpu_bf16_flags(str(path)) == ()


def test_cpu_bf16_flags_without_cpuinfo(tmp_path):
    assert cpu_bf16_flags(str(tmp_path / 'missing')) == ()


def test_auto_on_cpus_with_and_without_native_bf16():
    native = resolve_amp('auto', CPU, cpu_flags=('avx512_bf16',))
    assert (native.name, native.dtype, native.warn) == ('bf16', torch.bfloat16, False)
    assert 'native bf16 (avx512_bf16)' in native.reason
    plain = resolve_amp('auto', CPU, cpu_flags=())
    assert (plain.name, plain.dtype, plain.warn) == ('off', None, False)
    assert 'no native bf16' in plain.reason and all(f in plain.reason for f in NATIVE_BF16_FLAGS)


def test_explicit_choices_are_honoured_on_the_cpu():
    assert resolve_amp('off', CPU, cpu_flags=('avx512_bf16',)).dtype is None
    native = resolve_amp('bf16', CPU, cpu_flags=('amx_bf16',))
    assert native.dtype is torch.bfloat16 and not native.warn
    emulated = resolve_amp('bf16', CPU, cpu_flags=())
    assert emulated.dtype is torch.bfloat16 and emulated.warn
    assert 'emulated' in emulated.reason and '--amp auto' in emulated.reason


def test_fp16_on_the_cpu_is_refused_with_the_fix():
    with pytest.raises(ValueError, match='--amp auto'):
        resolve_amp('fp16', CPU, cpu_flags=('avx512_bf16',))
    with pytest.raises(config_module.ConfigError, match="'amp' = 'fp16' needs device 'cuda'"):
        config_module.resolve(['--device', 'cpu', '--amp', 'fp16'])
    with pytest.raises(ValueError, match="got 'fp8'"):
        resolve_amp('fp8', CPU)


def test_as_published_is_fp32_where_auto_picks_bf16(monkeypatch):
    # A CPU with native bf16 and a (patched) CUDA GPU with bf16: 'auto' picks bf16 on both,
    # exact (config as_published) fp32 on both; an explicit bf16 contradicts it.
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda *a, **k: True)
    for device, flags in ((CPU, ('avx512_bf16',)), (torch.device('cuda'), None)):
        assert resolve_amp('auto', device, cpu_flags=flags).dtype is torch.bfloat16
        for amp in ('auto', 'off'):
            exact = resolve_amp(amp, device, cpu_flags=flags, exact=True)
            assert (exact.name, exact.dtype) == ('off', None)
            assert 'as_published' in exact.reason and 'bf16' in exact.reason
        with pytest.raises(ValueError, match='as_published'):
            resolve_amp('bf16', device, cpu_flags=flags, exact=True)


def test_as_published_resolves_to_fp32_through_the_config(monkeypatch):
    monkeypatch.setattr(precision, 'cpu_bf16_flags', lambda: ('avx512_bf16',))
    cfg = config_module.resolve(['--device', 'cpu', '--as_published', 'true'])
    assert cfg.amp == 'auto' and inference_amp(cfg, CPU) is None
    assert inference_amp(dataclasses.replace(cfg, as_published=False), CPU) is torch.bfloat16
    with pytest.raises(config_module.ConfigError, match="'amp'"):
        config_module.resolve(['--device', 'cpu', '--as_published', 'true', '--amp', 'bf16'])
