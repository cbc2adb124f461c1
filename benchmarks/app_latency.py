"""The web demo's time from upload to result, or its screenshot: app.py started on a free port
with a network, one photo sent --runs times with gradio_client, each request timed from the
upload to the downloaded results (upload, queue, SAR, overlay, side view, OBJ/GLB/JSON,
download); or, with --screenshot FILE, the photo uploaded once in headless Chromium and the page
saved to FILE (docs/app_screenshot.png).

    python -m benchmarks.app_latency [--checkpoint CKPT] [--mano_root DIR] [--image PHOTO]
        [--runs 5] [--no_recrop] [--fit_mano] [--report FILE]
    python -m benchmarks.app_latency --checkpoint CKPT --mano_root DIR --screenshot FILE [--seed 3]

Memory: the app's resident memory (RSS) after it starts and after every request; printed after
request 10 and after the last, with the growth between them (goal: at most GROWTH_GOAL_MB over
requests 10 to 100). --report writes the figures with the command, date, commit, CPU and load
as JSON (docs/measured/app_memory.json is one). Without --checkpoint: a randomly initialised
network of config.py's defaults, with the MANO of --mano_root (default: the stand-in). Without
--image: a 640 x 480 noise photo, or with --screenshot a rendered photo of one hand of that MANO
(--seed picks it). The page's defaults otherwise (--no_recrop: the centred box, 1 prediction).
"""
import argparse
import os
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

from utils.runtime.machine import finish_report, load_average, report_header, resident_mb
from utils.runtime.distributed import free_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_TIMEOUT_S = 300  # app.py loads torch, the network and Gradio
RESULT_TIMEOUT_S = 300  # s: the browser's wait for upload, SAR, renders, GLB
WINDOW = (1400, 1250)  # px: the browser window, the screenshot's size
BROWSER_FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
                 '--disable-background-networking', '--disable-component-update',
                 '--disable-sync', '--no-first-run', f'--window-size={WINDOW[0]},{WINDOW[1]}')
RSS_AFTER = 10  # requests: the app's memory is compared from here (warm caches, pools) to the end
GROWTH_GOAL_MB = 50  # MiB: most the app may grow from request RSS_AFTER to request 100


def parse_args(argv):
    parser = argparse.ArgumentParser(prog='python -m benchmarks.app_latency',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('--checkpoint', help='the network (default: a random one, see above)')
    parser.add_argument('--mano_root', help='MANO folder (default: the stand-in)')
    parser.add_argument('--image', help='the photo (default: 640 x 480 noise; with --screenshot '
                        'a rendered hand)')
    parser.add_argument('--screenshot', help='save the page with the result to this PNG instead '
                        'of timing (needs --checkpoint, --mano_root; Chromium)')
    parser.add_argument('--seed', type=int, default=3, help='the screenshot photo\'s hand')
    parser.add_argument('--runs', type=int, default=5, help='timed requests after the first')
    parser.add_argument('--no_recrop', action='store_true', help='the centred box (1 prediction)')
    parser.add_argument('--fit_mano', action='store_true', help='fit MANO as well')
    parser.add_argument('--report', help='write the figures (and the machine) to this JSON file')
    parser.add_argument('--root_depth', type=float, default=0.5,
                        help='wrist depth, m (0: from the hand\'s size, which fails on the random '
                             'network\'s collapsed joints; default %(default)s)')
    args = parser.parse_args(argv)
    if args.screenshot and not (args.checkpoint and args.mano_root):
        parser.error('--screenshot needs --checkpoint and --mano_root (a trained network)')
    return args


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


def synthetic_photo(path, mano_root, seed):
    """A 224 px photo of one hand (FreiHAND framing) of the generators' sample `seed`."""
    from synthetic.appearance import compose_version, render_hand
    from synthetic.geometry import GeometrySampler, sample_generators
    from utils.mano import MANO
    truth = GeometrySampler(mano_root, max_tilt=50.0).sample([sample_generators(seed, 1, 0)[0]])
    rng = sample_generators(seed, 1, 0)[1]
    hand_rgb, alpha = render_hand(truth['verts'][0], MANO(mano_root).faces, truth['K'][0], rng)
    cv2.imwrite(path, compose_version('sample', hand_rgb, alpha, rng)[:, :, ::-1])


def start_app(checkpoint, mano_root, port, log):
    proc = subprocess.Popen([sys.executable, 'app.py', '--checkpoint', checkpoint, '--mano_root',
                             mano_root, '--port', str(port)], cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT,
                            env={**os.environ, 'GRADIO_ANALYTICS_ENABLED': 'False',
                                 'NO_PROXY': '127.0.0.1,localhost',
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


def screenshot(url, photo, out, profile):
    """Upload `photo` at `url`, press Run, save the page to `out`; returns the status line."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    options = webdriver.ChromeOptions()
    options.binary_location = '/usr/bin/chromium'
    for flag in (*BROWSER_FLAGS, f'--user-data-dir={profile}'):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service('/usr/bin/chromedriver'), options=options)
    try:
        driver.get(url)
        wait = WebDriverWait(driver, RESULT_TIMEOUT_S)
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, '#photo input[type=file]')
                   ).send_keys(photo)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#photo img'))
        driver.find_element(By.CSS_SELECTOR, '#run').click()

        def status(d):
            return d.find_element(By.CSS_SELECTOR, '#status textarea').get_attribute('value')
        wait.until(status)
        if status(driver).startswith('error'):
            raise SystemExit(f'the app answered: {status(driver)}')
        overlay = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#overlay img'))[0]
        wait.until(lambda d: d.execute_script('return arguments[0].complete && '
                                              'arguments[0].naturalWidth', overlay))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#view3d canvas'))
        time.sleep(3)  # the 3D view draws its first frames
        driver.execute_script('window.scrollTo(0, 0)')
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        partial = f'{out}.partial.png'
        driver.save_screenshot(partial)
        os.replace(partial, out)
        return status(driver)
    finally:
        driver.quit()


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


def photo_for(args, folder):
    """The photo to upload: --image, a rendered hand (--screenshot) or 640 x 480 noise."""
    if args.image:
        return args.image
    image = os.path.join(folder, 'photo.png')
    if args.screenshot:
        synthetic_photo(image, args.mano_root, args.seed)
    else:
        cv2.imwrite(image, np.random.default_rng(0).integers(0, 255, size=(480, 640, 3),
                                                             dtype=np.uint8))
    return image


def serve_and_measure(args, folder, mano_root, checkpoint, image):
    """Start app.py, then time the requests or take the screenshot: {'startup': s, 'times':
    [s per request], 'status', 'rss_start': MiB, 'rss': [MiB after each request], 'log': lines}."""
    with open(os.path.join(folder, 'app.log'), 'w+') as log:
        proc, url, startup = start_app(checkpoint, mano_root, free_port(), log)
        rss_start = resident_mb(proc.pid)
        downloads = os.path.join(folder, 'downloads')
        os.makedirs(downloads)
        try:
            if args.screenshot:
                times, rss = [], []
                status = screenshot(url, image, args.screenshot, os.path.join(folder, 'profile'))
            else:
                times, status, rss = timed_requests(url, image, args.runs, not args.no_recrop,
                                                    args.root_depth, args.fit_mano, downloads,
                                                    proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        log.seek(0)
        return dict(startup=startup, times=times, status=status, rss_start=rss_start, rss=rss,
                    log=log.readlines())


def main(argv):
    args = parse_args(argv)
    header = report_header('python -m benchmarks.app_latency ' + ' '.join(argv), load_average(),
                           None)
    with tempfile.TemporaryDirectory(prefix='app_latency_') as folder:
        mano_root = args.mano_root and os.path.abspath(args.mano_root)
        if mano_root is None:
            from synthetic.standin import main as standin_main
            mano_root = os.path.join(folder, 'mano')
            standin_main(['--out', mano_root])
        checkpoint = (os.path.abspath(args.checkpoint) if args.checkpoint
                      else random_network(folder, mano_root))
        image = photo_for(args, folder)
        height, width = cv2.imread(image).shape[:2]
        measured = serve_and_measure(args, folder, mano_root, checkpoint, image)
    if measured['status'].startswith('error'):  # the app's own account, with any traceback
        print(''.join(measured['log'][-40:]))
    if args.screenshot:
        print(f"status: {measured['status']}\nwrote {args.screenshot}")
    else:
        print_and_report(args, header, (width, height), measured)


def print_and_report(args, header, size, measured):
    """Print the figures (and write --report)."""
    width, height = size
    startup, times, status, rss = (measured[k] for k in ('startup', 'times', 'status', 'rss'))
    precision = next((line.split('precision: ', 1)[1].strip() for line in measured['log']
                      if 'precision: ' in line), 'not logged')
    print(f'app.py {"--checkpoint " + args.checkpoint if args.checkpoint else "random default network"}'
          f', {width} x {height} photo, re-crop {"off" if args.no_recrop else "on"}, fit MANO '
          f'{"on" if args.fit_mano else "off"}; started in {startup:.1f} s')
    print(f'last status: {status}')
    print(f'upload to result: first request {times[0]:.2f} s; next {len(times) - 1}: median '
          f'{statistics.median(times[1:]):.2f} s (min {min(times[1:]):.2f}, max {max(times[1:]):.2f})')
    figures, growth = memory_summary(measured['rss_start'], rss)
    print('app RSS (MiB): ' + ', '.join(f'{k} {v:.0f}' for k, v in figures.items()) + (
        '' if growth is None else f'; growth from request {RSS_AFTER} to {len(rss)}: '
        f'{growth:+.0f} MiB ({growth / (len(rss) - RSS_AFTER):+.2f} per request; goal: at most '
        f'{GROWTH_GOAL_MB} over 90 requests)'))
    finish_report(header, {
        'network': args.checkpoint or 'random default network', 'precision': precision,
        'photo': f'{width} x {height}', 'requests': len(rss), 'rss_mib': figures,
        'growth_mib': None if growth is None else round(growth, 1),
        'seconds per request': {'first': round(times[0], 2),
                                'median of the rest': round(statistics.median(times[1:]), 2)}},
        args.report)


if __name__ == '__main__':
    main(sys.argv[1:])
