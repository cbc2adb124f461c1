"""Numeric precision of a run: the mixed-precision choice (config field `amp`, per device:
bf16 on CUDA and on CPUs with native bf16, fp32 elsewhere) and the autocast context."""
import logging
from typing import NamedTuple, Optional

import torch

logger = logging.getLogger(__name__)


AMP_DTYPES = {'off': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


# /proc/cpuinfo flags of x86 CPUs that compute bf16 products natively: AVX-512 BF16
# (VDPBF16PS: two bf16 products per fp32 lane, about twice the fp32 FMA rate) and AMX
# (tile multiplies). Without them oneDNN emulates bf16 by converting to fp32: measured slower
# than fp32 (docs/performance.md).
NATIVE_BF16_FLAGS = ('avx512_bf16', 'amx_bf16')


CPUINFO = '/proc/cpuinfo'


class AmpChoice(NamedTuple):
    """The precision a run computes in, and why (logged once by the entry scripts)."""
    name: str  # 'off' (fp32), 'bf16' or 'fp16'
    dtype: Optional[torch.dtype]  # the autocast dtype; None: fp32, autocast off
    reason: str  # one sentence for the log
    warn: bool = False  # an explicit choice that is slower than the default here


def cpu_bf16_flags(cpuinfo=CPUINFO):
    """The NATIVE_BF16_FLAGS the CPU reports (a tuple, possibly empty).

    Args:
        cpuinfo: path of a /proc/cpuinfo-format file (its first `flags` line is read).
    Returns:
        the flags present, in NATIVE_BF16_FLAGS order; () where the file does not exist
        (not Linux) or has no flags line (not x86): bf16 is then not assumed native.
    """
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith('flags'):
                    present = set(line.split(':', 1)[1].split())
                    return tuple(flag for flag in NATIVE_BF16_FLAGS if flag in present)
    except OSError:
        pass
    return ()


def resolve_amp(amp, device, cpu_flags=None, exact=False):
    """The AmpChoice of config field `amp` on `device`.

    'auto' picks the fastest precision that keeps the results (docs/performance.md): bf16
    on a CUDA GPU with bf16, bf16 on a CPU with native bf16 (NATIVE_BF16_FLAGS), fp32
    elsewhere. 'off', 'bf16' and 'fp16' are honoured as given; bf16 on a CPU without native
    bf16 runs emulated, slower than fp32 (warn is set).

    Args:
        amp: 'auto', 'off', 'bf16' or 'fp16'.
        device: torch.device of the run.
        cpu_flags: the CPU's native-bf16 flags (default: `cpu_bf16_flags()`).
        exact: the run must compute as the published code does (config as_published): fp32
            on every device, whatever 'auto' would pick here.
    Raises:
        ValueError for an unknown value, for fp16 on the CPU and for bf16/fp16 with exact
        (config.validate refuses both first, naming the fix).
    """
    if amp not in ('auto', *AMP_DTYPES):
        raise ValueError(f"amp must be 'auto' or one of {tuple(AMP_DTYPES)}, got {amp!r}")
    if exact:
        if amp not in ('auto', 'off'):
            raise ValueError(f"amp={amp!r} contradicts as_published (fp32, as the published "
                             f"code); use --amp off or auto")
        auto = resolve_amp('auto', device, cpu_flags)
        return AmpChoice('off', None, f"as_published: fp32 as the published code computes "
                         f"(amp={amp!r}; 'auto' alone would pick {auto.name} on this device)")
    if device.type == 'cuda':
        if amp != 'auto':
            return AmpChoice(amp, AMP_DTYPES[amp], f"amp='{amp}' as configured, on CUDA")
        if torch.cuda.is_bf16_supported():
            return AmpChoice('bf16', torch.bfloat16, "amp='auto': bf16 autocast, the GPU "
                             "computes bf16 natively")
        return AmpChoice('off', None, "amp='auto': fp32, this GPU has no bf16 (--amp fp16 "
                         "trains with loss scaling)")
    if device.type != 'cpu':
        raise ValueError(f'amp: no precision rule for device {device}; use cuda or cpu')
    if amp == 'fp16':
        raise ValueError("amp='fp16' is CUDA only: CPU fp16 autocast is emulated on "
                         "most CPUs; use --amp auto (bf16 where native) or --amp off")
    flags = cpu_bf16_flags() if cpu_flags is None else tuple(cpu_flags)
    native = (f'the CPU has native bf16 ({", ".join(flags)})' if flags else
              f'the CPU has no native bf16 (none of {", ".join(NATIVE_BF16_FLAGS)} in '
              f'{CPUINFO})')
    if amp == 'auto':
        if flags:
            return AmpChoice('bf16', torch.bfloat16, f"amp='auto': bf16 autocast, {native}")
        return AmpChoice('off', None, f"amp='auto': fp32, {native}: emulated bf16 is slower "
                         f"than fp32")
    if amp == 'off':
        return AmpChoice('off', None, f"amp='off': fp32 as configured ({native})")
    return AmpChoice('bf16', torch.bfloat16, f"amp='bf16' as configured; {native}"
                     + ('' if flags else ': it runs emulated, slower than fp32 (--amp auto '
                                         'picks fp32 here)'), warn=not flags)


def log_amp(amp, device, log=None, exact=False):
    """Resolve `amp` on `device` (exact: as_published, fp32), log the choice and its reason
    once; returns the AmpChoice."""
    choice = resolve_amp(amp, device, exact=exact)
    (log or logger).log(logging.WARNING if choice.warn else logging.INFO,
                        'precision: %s', choice.reason)
    return choice


def autocast(device, amp_dtype):
    """torch.autocast on `device` in `amp_dtype`; a disabled context for None (fp32)."""
    return torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                          enabled=amp_dtype is not None)
