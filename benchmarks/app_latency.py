"""The web demo's time from upload to result: app.py started on a free port with a network, one
photo sent --runs times with gradio_client, each request timed from the upload to the
downloaded results (upload, queue, SAR, overlay, side view, OBJ/GLB/JSON, download).

    python -m benchmarks.app_latency [--checkpoint CKPT] [--mano_root DIR] [--image PHOTO]
        [--runs 5] [--no_recrop] [--fit_mano] [--report FILE]
    python -m benchmarks.app_latency --checkpoint CKPT --runs 100 --report app_memory.json

Memory: the app's resident memory (RSS, /proc) is read after it starts and after every
request; printed after request 10 and after the last, with the growth between them (a web app
that runs for days must not grow per request; the goal is at most GROWTH_GOAL_MB over requests
10 to 100). --report writes these figures with the command, date, commit, CPU and load as JSON
(docs/measured/app_memory.json is one).

Without --checkpoint: a randomly initialised network of config.py's defaults (resnet34 at
256 x 256; the weights do not change the time), saved to a temporary folder, with the MANO of
--mano_root (default: the procedural stand-in, written to that folder). Without --image: a
640 x 480 noise photo. The page's defaults otherwise: no detector, the box re-cropped around
the hand (up to 4 predictions and the final one; --no_recrop: the centred box, 1 prediction).
The first request (Gradio and PyTorch warming up) is reported apart. Prints the load average
beside the figures.
"""
import argparse
import os
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import cv2
import numpy as np

from utils.runtime.machine import load_average, report_header, resident_mb
from utils.runtime.distributed import free_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_TIMEOUT_S = 300  # app.py loads torch, the network and Gradio
RSS_AFTER = 10  # requests: the app's memory is compared from here (warm caches, pools) to the end
GROWTH_GOAL_MB = 50  # MiB: most the app may grow from request RSS_AFTER to request 100


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--checkpoint', help='the network (default: a random one, see above)')
    parser.add_argument('--mano_root', help='MANO folder (default: the stand-in)')
    parser.add_argument('--image', help='the photo (default: 640 x 480 noise)')
    parser.add_argument('--runs', type=int, default=5, help='timed requests after the first')
    parser.add_argument('--no_recrop', action='store_true', help='the centred box (1 prediction)')
    parser.add_argument('--fit_mano', action='store_true', help='fit MANO as well')
    parser.add_argument('--report', help='write the figures (and the machine) to this JSON file')
    parser.add_argument('--root_depth', type=float, default=0.5,
                        help='wrist depth, m (0: from the hand\'s size, which fails on the random '
                             'network\'s collapsed joints; default %(default)s)')
    return parser.parse_args(argv)


def random_network(folder, mano_root):
    """A randomly initialised network of config.py's defaults with its config, on the CPU."""
    import torch
    import config as config_module
    from run.network import build_model
    from utils.mano import MANO
    cfg = config_module.resolve(['--device', 'cpu', '--pretrained_backbone', 'false',
                                 '--mano_root', mano_root])
    torch.manual_seed(0)
    model = build_model(cfg, MANO(mano_root), torch.device('cpu'))
    path = os.path.join(folder, 'random.pth.tar')
    torch.save({'net': model.state_dict(), 'config': cfg.to_dict()}, path)
    return path


def start_app(checkpoint, mano_root, port, log):
    proc = subprocess.Popen([sys.executable, 'app.py', '--checkpoint', checkpoint, '--mano_root',
                             mano_root, '--port', str(port)], cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT,
                            env={**os.environ, 'GRADIO_ANALYTICS_ENABLED': 'False',
                                 'PYOPENGL_PLATFORM': os.environ.get('PYOPENGL_PLATFORM', 'osmesa')})
    url = f'http://127.0.0.1:{port}/'
    start = time.monotonic()
    while time.monotonic() - start < START_TIMEOUT_S:
        if proc.poll() is not None:
            raise RuntimeError(f'app.py exited with {proc.returncode}; see {log.name}')
        try:
            with urllib.request.urlopen(url, timeout=5):
                return proc, url, time.monotonic() - start
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(1)
    proc.terminate()
    raise RuntimeError(f'app.py did not answer within {START_TIMEOUT_S} s; see {log.name}')


def timed_requests(url, image, runs, recrop, root_depth_m, fit_mano, downloads, pid):
    """([seconds per request] (the first one included), the last status line, [the app's RSS
    in MiB after each request])."""
    from gradio_client import Client, handle_file
    client = Client(url, download_files=downloads, verbose=False)
    times, status, rss = [], None, []
    for _ in range(runs + 1):
        start = time.perf_counter()
        # photo, intrinsics (the app's first choice: EXIF, else 60 degrees), focal, field of
        # view, detector, max hands, re-crop, side, wrist depth, fit MANO, axes (the first)
        outputs = client.predict(handle_file(image), 'EXIF focal length (else 60° field of view)',
                                 1000, 60, False, 2, recrop, 'right', root_depth_m, fit_mano,
                                 'OpenGL / Blender / glTF (y up, camera looks down -z)',
                                 api_name='/reconstruct')
        times.append(time.perf_counter() - start)
        status = outputs[5]
        rss.append(resident_mb(pid))
        for name in os.listdir(downloads):  # the client keeps every download: not the app's
            shutil.rmtree(os.path.join(downloads, name), ignore_errors=True)
    return times, status, rss


def memory_summary(rss_start, rss):
    """{'after start': MiB, 'after request N': MiB, ...} and the growth from request RSS_AFTER
    to the last (None with fewer requests)."""
    figures = {'after start': round(rss_start, 1)}
    if len(rss) >= RSS_AFTER:
        figures[f'after request {RSS_AFTER}'] = round(rss[RSS_AFTER - 1], 1)
    figures[f'after request {len(rss)}'] = round(rss[-1], 1)
    growth = rss[-1] - rss[RSS_AFTER - 1] if len(rss) > RSS_AFTER else None
    return figures, growth


def main(argv):
    args = parse_args(argv)
    load_start = load_average()
    header = report_header('python -m benchmarks.app_latency ' + ' '.join(argv), load_start,
                           None)
    with tempfile.TemporaryDirectory(prefix='app_latency_') as folder:
        mano_root = args.mano_root
        if mano_root is None:
            from synthetic.standin import main as standin_main
            mano_root = os.path.join(folder, 'mano')
            standin_main(['--out', mano_root])
        checkpoint = args.checkpoint or random_network(folder, mano_root)
        image = args.image
        if image is None:
            image = os.path.join(folder, 'photo.png')
            rng = np.random.default_rng(0)
            cv2.imwrite(image, rng.integers(0, 255, size=(480, 640, 3), dtype=np.uint8))
        height, width = cv2.imread(image).shape[:2]
        with open(os.path.join(folder, 'app.log'), 'w+') as log:
            proc, url, startup = start_app(checkpoint, mano_root, free_port(), log)
            rss_start = resident_mb(proc.pid)
            downloads = os.path.join(folder, 'downloads')
            os.makedirs(downloads)
            try:
                times, status, rss = timed_requests(url, image, args.runs, not args.no_recrop,
                                                    args.root_depth, args.fit_mano, downloads,
                                                    proc.pid)
            finally:
                proc.terminate()
                proc.wait(timeout=60)
            log.seek(0)
            app_log = log.readlines()
            if status.startswith('error'):  # the app's own account, with any traceback
                print(''.join(app_log[-40:]))
            precision = next((line.split('precision: ', 1)[1].strip() for line in app_log
                              if 'precision: ' in line), 'not logged')
    print(f'app.py {"--checkpoint " + args.checkpoint if args.checkpoint else "random default network"}'
          f', {width} x {height} photo, re-crop {"off" if args.no_recrop else "on"}, fit MANO '
          f'{"on" if args.fit_mano else "off"}; started in {startup:.1f} s')
    print(f'last status: {status}')
    print(f'upload to result: first request {times[0]:.2f} s; next {len(times) - 1}: median '
          f'{statistics.median(times[1:]):.2f} s (min {min(times[1:]):.2f}, max {max(times[1:]):.2f})')
    figures, growth = memory_summary(rss_start, rss)
    print('app RSS (MiB): ' + ', '.join(f'{k} {v:.0f}' for k, v in figures.items()) + (
        '' if growth is None else f'; growth from request {RSS_AFTER} to {len(rss)}: '
        f'{growth:+.0f} MiB ({growth / (len(rss) - RSS_AFTER):+.2f} per request; goal: at most '
        f'{GROWTH_GOAL_MB} over 90 requests)'))
    load_end = ' '.join(map(str, load_average()))
    print(f"CPU: {header['cpu_model']} ({header['cpu_flags']}), {os.cpu_count()} threads; load "
          f"average {header['load_average_start']} at the start, {load_end} at the end")
    if args.report:
        from utils.files.atomic import atomic_write_json
        report = {**header, 'load_average_end': load_end,
                  'network': args.checkpoint or 'random default network',
                  'precision': precision,
                  'photo': f'{width} x {height}', 'requests': len(rss),
                  'rss_mib': figures,
                  'growth_mib': None if growth is None else round(growth, 1),
                  'seconds per request': {'first': round(times[0], 2),
                                          'median of the rest': round(statistics.median(times[1:]), 2)}}
        atomic_write_json(args.report, report, indent=1)
        print(f'wrote {args.report}')


if __name__ == '__main__':
    main(sys.argv[1:])
