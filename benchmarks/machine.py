"""What else the machine is doing while a benchmark runs (shared by the benchmark scripts)."""
import os
import time


def other_cpu_use(seconds=1.0):
    """Cores kept busy by other processes, measured from /proc/stat while this process
    sleeps for `seconds` (Linux); None where /proc/stat does not exist."""
    def busy_and_total():
        with open('/proc/stat') as stat:
            ticks = [float(value) for value in stat.readline().split()[1:9]]
        idle = ticks[3] + ticks[4]  # idle + iowait
        return sum(ticks) - idle, sum(ticks)

    try:
        busy_start, total_start = busy_and_total()
        time.sleep(seconds)
        busy_end, total_end = busy_and_total()
    except (OSError, ValueError, IndexError):
        return None
    return os.cpu_count() * (busy_end - busy_start) / max(total_end - total_start, 1.0)


CPU_FLAGS = ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16')  # reported when /proc/cpuinfo has them


def resident_mb(pid):
    """Resident memory (MiB) of process `pid`, from /proc/<pid>/status (Linux)."""
    with open(f'/proc/{pid}/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith('VmRSS:')) / 1024


def load_average():
    with open('/proc/loadavg') as f:
        return ' '.join(f.read().split()[:3])


def machine_header(command):
    """The fields every measured report starts with: the command, the date, the commit (and
    whether the tree had changes), the CPU model, its flags among CPU_FLAGS, the cores and the
    load average now."""
    import datetime
    import subprocess
    model, flags = '', set()
    with open('/proc/cpuinfo') as f:
        for line in f:
            if line.startswith('model name') and not model:
                model = line.split(':', 1)[1].strip()
            elif line.startswith('flags') and not flags:
                flags = set(line.split(':', 1)[1].split())

    def git(*args):
        return subprocess.run(['git', *args], capture_output=True, text=True, check=True,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))).stdout.strip()
    return {'command': command,
            'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
            'commit': git('rev-parse', 'HEAD'),
            'dirty': bool(git('status', '--porcelain', '--untracked-files=no')),
            'cpu_model': model, 'cpu_flags': ' '.join(f for f in CPU_FLAGS if f in flags),
            'logical_cores': os.cpu_count(), 'load_average_start': load_average()}
