"""demo.py's memory over a long run: a folder of --photos synthetic photos and a --frames-frame
synthetic video, each run as `python demo.py --input ...`, the process's resident memory
(RSS, /proc) read when 10% of the items are done and when the last one is.

    python -m benchmarks.demo_memory --checkpoint CKPT --mano_root DIR [--photos 200]
        [--frames 300] [--report FILE] [DEMO_OPTIONS ...]

Options this script does not know go on to demo.py (e.g. --root_depth 0.7 for a randomly
initialised network, whose collapsed joints give no depth from the hand's size).

The photos and the video come from synthetic.clip (one stand-in or MANO hand moving across the
frames; the photo folder is a clip's frames, each one processed as a photo). Progress is read
from demo.py's progress bar (its `n/total` on stderr). With --report the figures go to a JSON
file with the command, date, commit, CPU and load (docs/measured/app_memory.json holds one
with the web app's).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

from utils.runtime.machine import load_average, report_header, resident_mb

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
    load_start = load_average()
    header = report_header('python -m benchmarks.demo_memory ' + ' '.join(argv), load_start,
                           'as demo.py logs it (amp auto: bf16 where the CPU has it natively)')
    from synthetic.clip import ClipSpec, generate_clip
    demo = [sys.executable, 'demo.py', '--checkpoint', os.path.abspath(args.checkpoint),
            '--mano_root', os.path.abspath(args.mano_root), *demo_options]
    results = {}
    with tempfile.TemporaryDirectory(prefix='demo_memory_') as folder:
        photos = generate_clip(os.path.join(folder, 'photos'), args.mano_root,
                               ClipSpec(num_frames=args.photos), seed=1, progress=False)
        results[f'folder of {args.photos} photos'] = measure(
            'photos', demo + ['--input', photos['frames_dir'], '--out',
                              os.path.join(folder, 'out_photos')], folder)
        video = generate_clip(os.path.join(folder, 'video'), args.mano_root,
                              ClipSpec(num_frames=args.frames), seed=2, progress=False)
        results[f'video of {args.frames} frames'] = measure(
            'video', demo + ['--input', video['video'], '--out', os.path.join(folder, 'out_video')],
            folder)
    load_end = ' '.join(map(str, load_average()))
    print(f"CPU: {header['cpu_model']} ({header['cpu_flags']}), {os.cpu_count()} threads; load "
          f"average {header['load_average_start']} at the start, {load_end} at the end")
    if args.report:
        from utils.files.atomic import atomic_write_json
        atomic_write_json(args.report, {**header, 'load_average_end': load_end,
                                        'network': args.checkpoint, 'rss_mib': results}, indent=1)
        print(f'wrote {args.report}')


if __name__ == '__main__':
    main(sys.argv[1:])
