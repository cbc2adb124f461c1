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
