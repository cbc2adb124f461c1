"""The web demo's time from upload to result: app.py started on a free port with a network, one
photo sent --runs times with gradio_client, each request timed from the upload to the
downloaded results (upload, queue, SAR, overlay, side view, OBJ/GLB/JSON, download).

    python -m benchmarks.app_latency [--checkpoint CKPT] [--mano_root DIR] [--image PHOTO]
        [--runs 5] [--no_recrop] [--fit_mano]

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
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import cv2
import numpy as np

from utils.runtime.distributed import free_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_TIMEOUT_S = 300  # app.py loads torch, the network and Gradio


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--checkpoint', help='the network (default: a random one, see above)')
    parser.add_argument('--mano_root', help='MANO folder (default: the stand-in)')
    parser.add_argument('--image', help='the photo (default: 640 x 480 noise)')
    parser.add_argument('--runs', type=int, default=5, help='timed requests after the first')
    parser.add_argument('--no_recrop', action='store_true', help='the centred box (1 prediction)')
    parser.add_argument('--fit_mano', action='store_true', help='fit MANO as well')
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


def timed_requests(url, image, runs, recrop, root_depth_m, fit_mano, downloads):
    """[seconds per request] (the first one included) and the last status line."""
    from gradio_client import Client, handle_file
    client = Client(url, download_files=downloads, verbose=False)
    times, status = [], None
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
    return times, status


def main(argv):
    args = parse_args(argv)
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
            try:
                times, status = timed_requests(url, image, args.runs, not args.no_recrop,
                                               args.root_depth, args.fit_mano, os.path.join(folder, 'downloads'))
            finally:
                proc.terminate()
                proc.wait(timeout=60)
            if status.startswith('error'):  # the app's own account, with any traceback
                log.seek(0)
                print(''.join(log.readlines()[-40:]))
    print(f'app.py {"--checkpoint " + args.checkpoint if args.checkpoint else "random default network"}'
          f', {width} x {height} photo, re-crop {"off" if args.no_recrop else "on"}, fit MANO '
          f'{"on" if args.fit_mano else "off"}; started in {startup:.1f} s')
    print(f'last status: {status}')
    print(f'upload to result: first request {times[0]:.2f} s; next {len(times) - 1}: median '
          f'{statistics.median(times[1:]):.2f} s (min {min(times[1:]):.2f}, max {max(times[1:]):.2f})')
    with open('/proc/loadavg') as f:
        print(f'load average: {f.read().split()[:3]}; CPU threads: {os.cpu_count()}')


if __name__ == '__main__':
    main(sys.argv[1:])
