"""docs/app_screenshot.png: the web demo with what a trained network predicts, shown in
headless Chromium.

    python -m tools.app_screenshot --checkpoint CKPT --mano_root DIR [--out docs/app_screenshot.png]

Serves `app.py --checkpoint CKPT` on a free port, renders a synthetic photo of one hand of the
MANO at --mano_root (synthetic.geometry and synthetic.appearance, as the generated data sets;
--seed picks it), uploads it in Chromium (Selenium with Debian's chromium and chromedriver),
presses Run with the page's defaults and saves the page once the overlay and the 3D view are
shown. Prints the app's status line (hands, wrist depth, seconds), for the caption.
"""
import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import cv2

from utils.runtime.distributed import free_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_TIMEOUT_S = 300  # s: app.py loads torch, the network and Gradio (slow on loaded cores)
RESULT_TIMEOUT_S = 300  # s: upload, SAR, renders, GLB
WINDOW = (1400, 1250)  # px: the browser window, the screenshot's size
BROWSER_FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
                 '--disable-background-networking', '--disable-component-update',
                 '--disable-sync', '--no-first-run', f'--window-size={WINDOW[0]},{WINDOW[1]}')


def parse_args(argv):
    parser = argparse.ArgumentParser(prog='python -m tools.app_screenshot',
                                     description=__doc__.split('\n')[0])
    parser.add_argument('--checkpoint', required=True, help='the network app.py serves')
    parser.add_argument('--mano_root', required=True, help='the MANO folder (the photo\'s hand '
                        'and the app\'s)')
    parser.add_argument('--out', default='docs/app_screenshot.png', help='the PNG written')
    parser.add_argument('--seed', type=int, default=3, help='the synthetic photo\'s seed')
    return parser.parse_args(argv)


def synthetic_photo(path, mano_root, seed):
    """A 224 px photo of one hand (FreiHAND framing) of the generators' sample `seed`."""
    from synthetic.appearance import compose_version, render_hand
    from synthetic.geometry import GeometrySampler, sample_generators
    from utils.mano import MANO
    truth = GeometrySampler(mano_root, max_tilt=50.0).sample([sample_generators(seed, 1, 0)[0]])
    rng = sample_generators(seed, 1, 0)[1]
    hand_rgb, alpha = render_hand(truth['verts'][0], MANO(mano_root).faces, truth['K'][0], rng)
    cv2.imwrite(path, compose_version('sample', hand_rgb, alpha, rng)[:, :, ::-1])


def start_app(checkpoint, mano_root, log):
    """(process, url) of app.py serving `checkpoint`, once it answers."""
    port = free_port()
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
                return proc, url
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


def main(argv):
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix='app_screenshot_') as folder:
        photo = os.path.join(folder, 'hand.png')
        synthetic_photo(photo, args.mano_root, args.seed)
        with open(os.path.join(folder, 'app.log'), 'w+') as log:
            proc, url = start_app(os.path.abspath(args.checkpoint),
                                  os.path.abspath(args.mano_root), log)
            try:
                status = screenshot(url, photo, args.out, os.path.join(folder, 'profile'))
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
    print(f'status: {status}\nwrote {args.out}')


if __name__ == '__main__':
    main(sys.argv[1:])
