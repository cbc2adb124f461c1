"""The machine, the load and the commit a measurement ran with: the header of the reports that
docs/measured/*.json hold (report_header at the start, finish_report at the end)."""
import contextlib
import datetime
import os
import platform
import subprocess

from utils.files.atomic import atomic_write_json

CPU_FLAGS = ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16')  # reported when /proc/cpuinfo has them


def load_average():
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, 'getloadavg') else None


def machine_info():
    """CPU model, the CPU_FLAGS present, logical cores, the oneDNN ISA cap and the OpenMP thread
    count set in the environment, for the report."""
    model, flags = platform.processor() or platform.machine(), set()
    with contextlib.suppress(OSError):
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name') and model in ('', platform.machine()):
                    model = line.split(':', 1)[1].strip()
                elif line.startswith('flags') and not flags:
                    flags = set(line.split(':', 1)[1].split())
    return {'cpu_model': model, 'cpu_flags': [f for f in CPU_FLAGS if f in flags],
            'logical_cores': os.cpu_count(),
            'onednn_max_cpu_isa': os.environ.get('ONEDNN_MAX_CPU_ISA'),
            'omp_num_threads': os.environ.get('OMP_NUM_THREADS')}  # None: torch's one per core


def git_commit():
    """(commit, dirty) of the working tree, or (None, None) outside git."""
    try:
        commit = subprocess.run(['git', 'rev-parse', 'HEAD'], capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = bool(subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'],
                                    capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return None, None
    return commit, dirty


def report_header(command, load_start, precision):
    """The fields every measured report starts with: the command, the date (now, UTC), the
    commit, the CPU and its flags, the load averages (`load_start` as taken before the
    measurement, the end's now) and the precision computed in (a phrase)."""
    commit, dirty = git_commit()
    machine = machine_info()
    return {
        'command': command,
        'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'commit': commit, 'dirty': dirty,
        'cpu_model': machine['cpu_model'], 'cpu_flags': ' '.join(machine['cpu_flags']),
        'logical_cores': machine['logical_cores'],
        'load_average_start': ' '.join(map(str, load_start or [])),
        'load_average_end': ' '.join(map(str, load_average() or [])),
        'precision': precision,
    }


def finish_report(header, fields, path=None):
    """End a measurement: print the CPU and the load averages at its start and now; with
    `path`, write the report (`header`, the load average now, `fields`) there as JSON,
    atomically. Returns the report."""
    report = {**header, 'load_average_end': ' '.join(map(str, load_average() or [])), **fields}
    print(f"CPU: {report['cpu_model']} ({report['cpu_flags']}), {report['logical_cores']} "
          f"logical cores; load average {report['load_average_start']} at the start, "
          f"{report['load_average_end']} at the end")
    if path:
        atomic_write_json(path, report, indent=1)
        print(f'wrote {path}')
    return report


def resident_mb(pid='self'):
    """Resident memory (MiB) of process `pid`, from /proc/<pid>/status (Linux)."""
    with open(f'/proc/{pid}/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith('VmRSS:')) / 1024
