"""demo.py's memory over a long run: a folder of --photos synthetic photos and a --frames-frame
synthetic video, each run as `python demo.py --input ...`, the process's resident memory
(RSS, /proc) read when 10% of the items are done and when the last one is.

    python -m benchmarks.demo_memory --checkpoint CKPT --mano_root DIR [--photos 200]
        [--frames 300] [--report FILE] [DEMO_OPTIONS ...]

Options this script does not know go on to demo.py (e.g. --root_depth 0.7 for a random
network). The items come from synthetic.clip; --report: as docs/measured/demo_memory.json.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

from utils.runtime.machine import finish_report, load_average, report_header, resident_mb

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EARLY = 0.1  # fraction of the items after which the first RSS is read
PROGRESS = re.compile(rb'(\d+)/(\d+) \[')  # tqdm's "n/total [elapsed<left"


def parse_args(argv):
    parser = argparse.ArgumentParser(prog='python -m benchmarks.demo_memory',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('--checkpoint', required=True, help='the network demo.py runs')
    parser.add_argument('--mano_root', required=True, help='the MANO folder (and the clips\' hand)')
    parser.add_argument('--photos', type=int, default=200, help='photos in the folder')
    parser.add_argument('--frames', type=int, default=300, help='frames of the video')
    parser.add_argument('--report', help='write the figures (and the machine) to this JSON file')
    return parser.parse_known_args(argv)


def rss_while_running(cmd, log_path):
    """Run `cmd`, reading its progress bar; ({'after N of T': MiB, ...}, exit code)."""
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, 'PYOPENGL_PLATFORM':
                                 os.environ.get('PYOPENGL_PLATFORM', 'osmesa')})
    figures, tail = {}, b''
    with open(log_path, 'wb') as log:
        while True:
            chunk = proc.stderr.read1(4096)
            if not chunk:
                break
            log.write(chunk)
            tail = (tail + chunk)[-200:]
            found = PROGRESS.findall(tail)
            if not found:
                continue
            done, total = (int(v) for v in found[-1])
            if total and (done >= EARLY * total and len(figures) == 0 or done == total
                          and len(figures) == 1):
                figures[f'after {done} of {total}'] = round(resident_mb(proc.pid), 1)
    return figures, proc.wait()


def measure(name, cmd, folder):
    figures, code = rss_while_running(cmd, os.path.join(folder, f'{name}.log'))
    if code != 0 or len(figures) != 2:
        with open(os.path.join(folder, f'{name}.log'), errors='replace') as f:
            print(f.read()[-3000:])
        raise SystemExit(f'{name}: demo.py exited with {code}, RSS read {len(figures)} of 2 times')
    early, end = figures.values()
    print(f'{name}: RSS (MiB) ' + ', '.join(f'{k}: {v:.0f}' for k, v in figures.items())
          + f'; growth {end - early:+.0f} MiB', flush=True)
    return {**figures, 'growth': round(end - early, 1)}


def main(argv):
    args, demo_options = parse_args(argv)
    header = report_header('python -m benchmarks.demo_memory ' + ' '.join(argv), load_average(),
                           'as demo.py logs it (amp auto: bf16 where the CPU has it natively)')
    from synthetic.clip import ClipSpec, generate_clip
    demo = [sys.executable, 'demo.py', '--checkpoint', os.path.abspath(args.checkpoint),
            '--mano_root', os.path.abspath(args.mano_root), *demo_options]
    results = {}
    inputs = (('photos', f'folder of {args.photos} photos', args.photos, 'frames_dir'),
              ('video', f'video of {args.frames} frames', args.frames, 'video'))
    with tempfile.TemporaryDirectory(prefix='demo_memory_') as folder:
        for seed, (name, label, count, key) in enumerate(inputs, start=1):
            clip = generate_clip(os.path.join(folder, name), args.mano_root,
                                 ClipSpec(num_frames=count), seed=seed, progress=False)
            results[label] = measure(name, demo + ['--input', clip[key], '--out',
                                                   os.path.join(folder, f'out_{name}')], folder)
    finish_report(header, {'network': args.checkpoint, 'rss_mib': results}, args.report)


if __name__ == '__main__':
    main(sys.argv[1:])
