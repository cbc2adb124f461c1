"""app.py, the web demo: its input checks, then the app itself started as `python app.py` on a
free port, driven by gradio_client and by headless Chromium (Selenium).

The served network is a fixed one: an ONNX file (app.py --onnx) whose output is the encoded
ground truth of one stand-in hand photo for the photo's centred box, whatever the image. So
the records the page returns can be checked against the generator's truth.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

import app
import config
from utils.runtime.distributed import free_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 3  # the stand-in hand photo (synthetic.geometry.sample_generators)
START_TIMEOUT_S = 240  # app.py loads torch, the network and Gradio; slow on 2 loaded cores
ORT_MARKER = '.ses'
BROWSER_FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
                 '--disable-background-networking', '--disable-component-update',
                 '--disable-sync', '--no-first-run', '--window-size=1400,1250')


# ---- the input checks (no server) -----------------------------------------------------------

def test_a_file_that_is_not_an_image_is_named(tmp_path):
    path = tmp_path / 'notes.png'
    path.write_text('not a picture')
    with pytest.raises(app.PageError, match='notes.png: not an image'):
        app.read_photo(str(path))


def test_a_huge_image_is_refused_before_decoding(tmp_path):
    from PIL import Image
    path = tmp_path / 'huge.png'
    Image.new('L', (9000, 5000)).save(path)  # 45 megapixels > MAX_PIXELS
    with pytest.raises(app.PageError, match=r'huge.png: 9000 x 5000 px'):
        app.read_photo(str(path))


def test_a_truncated_jpeg_is_named(tmp_path):
    ok, data = cv2.imencode('.jpg', np.full((64, 64, 3), 128, np.uint8))
    path = tmp_path / 'cut.jpg'
    path.write_bytes(data.tobytes()[:len(data) // 2])
    with pytest.raises(app.PageError, match='cut.jpg'):
        app.read_photo(str(path))


def test_each_intrinsics_choice_and_its_checks():
    exif, focal, fov = app.INTRINSICS
    assert app.intrinsics_options(exif, 500, 60) == {}  # the EXIF, else the default
    assert app.intrinsics_options(focal, 500, 60) == {'focal': 500.0}
    assert app.intrinsics_options(fov, 500, 90) == {'fov_deg': 90.0}
    with pytest.raises(app.PageError, match='focal length -3'):
        app.intrinsics_options(focal, -3, 60)
    with pytest.raises(app.PageError, match='field of view 180'):
        app.intrinsics_options(fov, 500, 180)


def test_the_wrist_depth_choice():
    assert app.root_depth_option(0) == 'auto' and app.root_depth_option(None) == 'auto'
    assert app.root_depth_option(0.45) == 0.45
    with pytest.raises(app.PageError, match='wrist depth -1'):
        app.root_depth_option(-1)


def test_mano_root_is_accepted_with_a_hyphen():
    args, rest = app.parse_args(['--checkpoint', 'c.pth', '--mano-root', 'm', '--port', '9'])
    assert args.port == 9 and rest == ['--checkpoint', 'c.pth', '--mano_root', 'm',
                                       '--device', 'cpu']


def test_beyond_loopback_without_a_login_is_refused_naming_auth():
    for host in ('0.0.0.0', '192.168.1.20', 'myserver.example.org', '::'):
        args, _ = app.parse_args(['--host', host])
        with pytest.raises(config.ConfigError, match=r'--host .*--auth USER:PASSWORD'):
            app.access(args)
    for host in ('127.0.0.1', '127.0.0.5', 'localhost', '::1'):  # loopback needs no login
        assert app.access(app.parse_args(['--host', host])[0]) == (host, None)


def test_a_login_reaches_gradios_launch(tmp_path, caplog):
    args, rest = app.parse_args(['--host', '0.0.0.0', '--auth', 'ana:s3:cret', '--port', '9'])
    assert '--auth' not in rest and 'ana:s3:cret' not in rest  # not passed on (nor logged)
    with caplog.at_level('WARNING', logger='sar'):
        host, logins = app.access(args)
    assert logins == [('ana', 's3:cret')]  # the password may hold colons
    assert '0.0.0.0' in caplog.text and 'login' in caplog.text
    kwargs = app.launch_kwargs(host, args.port, ['/blocked'], logins)
    assert (kwargs['server_name'], kwargs['server_port'], kwargs['auth']) == ('0.0.0.0', 9, logins)
    assert app.launch_kwargs('127.0.0.1', 9, [])['auth'] is None
    # the keyword is one Gradio's launch takes
    import inspect
    import gradio
    assert set(kwargs) <= set(inspect.signature(gradio.Blocks.launch).parameters)
    logins_file = tmp_path / 'users.txt'
    logins_file.write_text('# who may log in\nana:one\n\nben : two\n')
    args, _ = app.parse_args(['--host', '0.0.0.0', '--auth_file', str(logins_file)])
    assert app.access(args)[1] == [('ana', 'one'), ('ben', ' two')]


def test_a_bad_login_names_the_option_or_the_line(tmp_path):
    with pytest.raises(config.ConfigError, match='--auth: expected USER:PASSWORD'):
        app.access(app.parse_args(['--host', '0.0.0.0', '--auth', 'ana'])[0])
    bad = tmp_path / 'users.txt'
    bad.write_text('ana:one\nben:\n')
    with pytest.raises(config.ConfigError, match='users.txt line 2: expected USER:PASSWORD'):
        app.access(app.parse_args(['--auth_file', str(bad)])[0])
    with pytest.raises(config.ConfigError, match='--auth_file .*missing.txt: cannot read'):
        app.access(app.parse_args(['--auth_file', str(tmp_path / 'missing.txt')])[0])


# ---- the app, served ------------------------------------------------------------------------

def fixed_network_onnx(path, coords, cfg_dict):
    """An ONNX file in app.py --onnx form whose output is `coords` (P x 3) for every image."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from inference.onnx import CONFIG_KEY, INPUT_NAME, OUTPUT_NAME
    height, width = cfg_dict['input_img_shape']
    nodes = [  # coords + 0 * mean(img): batch-sized, the image otherwise unused
        helper.make_node('ReduceMean', [INPUT_NAME], ['mean'], axes=[1, 2, 3], keepdims=1),
        helper.make_node('Reshape', ['mean', 'shape'], ['mean3']),
        helper.make_node('Mul', ['mean3', 'zero'], ['nothing']),
        helper.make_node('Add', ['nothing', 'truth'], [OUTPUT_NAME]),
    ]
    graph = helper.make_graph(
        nodes, 'fixed_hand',
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ['B', 3, height, width])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ['B', len(coords), 3])],
        initializer=[numpy_helper.from_array(np.array([-1, 1, 1], np.int64), 'shape'),
                     numpy_helper.from_array(np.zeros(1, np.float32), 'zero'),
                     numpy_helper.from_array(coords[None].astype(np.float32), 'truth')])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.metadata_props.add(key=CONFIG_KEY, value=json.dumps(cfg_dict))
    onnx.save(model, path)


@pytest.fixture(scope='module')
def scene(tmp_path_factory, standin_mano):
    """A 224 px photo of one stand-in hand (FreiHAND framing), its truth, and the fixed
    network that returns that truth for the photo's centred box."""
    from synthetic.appearance import compose_version, render_hand
    from synthetic.geometry import GeometrySampler, sample_generators
    from utils.constants import TRAINING_BOX_SIZE, TRAINING_IMAGE_SIZE
    from utils.mano import MANO
    from utils.transforms import encode_uvd, get_affine
    folder = tmp_path_factory.mktemp('app')
    truth = GeometrySampler(standin_mano, max_tilt=50.0).sample([sample_generators(SEED, 1, 0)[0]])
    truth = {k: v[0] for k, v in truth.items()}
    rng = sample_generators(SEED, 1, 0)[1]
    hand_rgb, alpha = render_hand(truth['verts'], MANO(standin_mano).faces, truth['K'], rng)
    photo = str(folder / 'hand.png')
    cv2.imwrite(photo, compose_version('sample', hand_rgb, alpha, rng)[:, :, ::-1])
    cfg = config.resolve(['--device', 'cpu', '--backbone', 'resnet18', '--input_img_shape',
                          '64,64', '--pretrained_backbone', 'false', '--mano_root', standin_mano])
    centre = (TRAINING_IMAGE_SIZE - 1) / 2  # the centred box demo.py and the app start from
    img2crop = get_affine((centre, centre), TRAINING_BOX_SIZE, cfg.input_img_shape)[0]
    coords = encode_uvd(truth['verts'], truth['xyz'], truth['K'], img2crop, cfg.input_img_shape,
                        cfg.depth_box)
    network = str(folder / 'fixed.onnx')
    fixed_network_onnx(network, coords, cfg.to_dict())
    return {'photo': photo, 'truth': truth, 'onnx': network, 'mano': standin_mano,
            'folder': folder}


def wait_for(url, proc, log, timeout):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            pytest.fail(f'app.py exited with {proc.returncode}:\n{open(log).read()[-3000:]}')
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(1)
    pytest.fail(f'app.py did not answer within {timeout} s:\n{open(log).read()[-3000:]}')


@pytest.fixture(scope='module')
def server(scene):
    """`python app.py --onnx FIXED --mano_root STANDIN --port N` with its own TMPDIR; stopped
    with SIGTERM at the end, when that TMPDIR must be empty again."""
    tmp = scene['folder'] / 'tmp'
    tmp.mkdir()
    port = free_port()
    log = str(scene['folder'] / 'app.log')
    env = {**os.environ, 'TMPDIR': str(tmp), 'PYOPENGL_PLATFORM': 'osmesa',
           'GRADIO_ANALYTICS_ENABLED': 'False', 'NO_PROXY': '127.0.0.1,localhost',
           'MPLCONFIGDIR': str(scene['folder'] / 'mpl')}
    with open(log, 'w') as out:
        proc = subprocess.Popen([sys.executable, 'app.py', '--onnx', scene['onnx'], '--mano-root',
                                 scene['mano'], '--port', str(port)], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f'http://127.0.0.1:{port}/'
    try:
        wait_for(url, proc, log, START_TIMEOUT_S)
        yield {'url': url, 'tmp': tmp, 'proc': proc, 'log': log}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, open(log).read()[-3000:]
    # onnxruntime (the fixed network runs under it) writes TMPDIR/.ses on import: its telemetry
    # SDK's marker, one fixed name overwritten by every onnxruntime process; not the app's.
    left = [str(p) for p in tmp.rglob('*') if p.name != ORT_MARKER]
    assert not left, f'app.py left temporary files behind: {left[:10]}'


def request_folders(tmp):
    return [p for p in tmp.rglob(f'{app.REQUEST_PREFIX}*') if p.is_dir()]


def client_for(server, downloads):
    from gradio_client import Client
    return Client(server['url'], download_files=str(downloads), verbose=False)


def reconstruct(client, photo, focal=300.0, side='right'):
    from gradio_client import handle_file
    exif, by_focal, _ = app.INTRINSICS
    # photo, intrinsics, focal, fov, detector, max hands, re-crop, side, wrist depth (0: auto),
    # fit MANO, axes
    return client.predict(handle_file(photo), by_focal, focal, 60, False, 2, False, side, 0,
                          False, next(iter(app.AXES)), api_name='/reconstruct')


@pytest.mark.slow
def test_a_photo_gives_the_overlay_the_glb_and_the_records(server, scene, tmp_path):
    import trimesh
    client = client_for(server, tmp_path)
    focal = float(scene['truth']['K'][0, 0])
    overlay, side_view, glb, downloads, records, status = reconstruct(client, scene['photo'], focal)
    assert status.startswith('1 hand(s): right'), status
    photo = cv2.imread(scene['photo'])
    shown = cv2.imread(overlay)
    assert shown.shape == photo.shape and np.abs(shown.astype(int) - photo).max() > 50
    assert cv2.imread(side_view) is not None
    mesh = trimesh.load(glb, force='scene')
    assert [len(g.vertices) for g in mesh.geometry.values()] == [778]
    assert sorted(os.path.splitext(d)[1] for d in downloads) == ['.glb', '.json', '.obj']
    # The fixed network returns the truth for the centred box: the hand's 2D joints are the
    # truth's pixels, projected with the generator's camera (decoding and projecting with the
    # app's K cancel, whatever its focal length and principal point).
    hand, = records
    K, xyz = scene['truth']['K'], scene['truth']['xyz']
    uv = xyz[:, :2] / xyz[:, 2:] * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]
    np.testing.assert_allclose(hand['joints_2d'], uv, atol=0.01)
    assert hand['hand'] == 'right' and hand['K'][0][0] == pytest.approx(focal) and hand['box_source'] == 'centre'


@pytest.mark.slow
def test_bad_uploads_give_a_message_not_a_traceback(server, tmp_path):
    client = client_for(server, tmp_path)
    text = tmp_path / 'notes.png'
    text.write_text('not a picture')
    ok, data = cv2.imencode('.jpg', np.full((300, 300, 3), 90, np.uint8))
    cut = tmp_path / 'cut.jpg'
    cut.write_bytes(data.tobytes()[:len(data) // 2])
    for path, named in ((text, 'notes.png'), (cut, 'cut.jpg')):
        *images, status = reconstruct(client, str(path))
        assert status.startswith('error: ') and named in status, status
        assert 'Traceback' not in status and images == [None] * 5


@pytest.mark.slow
def test_files_on_disk_are_not_served(server, scene):
    for path in (scene['onnx'], os.path.join(scene['mano'], 'MANO_RIGHT.pkl'), __file__):
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{server['url']}gradio_api/file={path}", timeout=10)


@pytest.mark.slow
def test_two_users_at_once_are_queued_not_mixed(server, scene, tmp_path):
    """Two clients submit at the same time with different focal lengths: each gets its own."""
    from gradio_client import handle_file
    exif, by_focal, _ = app.INTRINSICS
    jobs = []
    for k, focal in enumerate((250.0, 400.0)):
        client = client_for(server, tmp_path / str(k))
        jobs.append((focal, client.submit(handle_file(scene['photo']), by_focal, focal, 60, False,
                                          2, False, 'right', 0, False, next(iter(app.AXES)),
                                          api_name='/reconstruct')))
    for focal, job in jobs:
        records = job.result(timeout=300)[4]
        assert records[0]['K'][0][0] == focal


def browser_paths():
    """(chromium, chromedriver) executables, or None when either is absent."""
    chromium = shutil.which('chromium') or shutil.which('chromium-browser')
    driver = shutil.which('chromedriver')
    return (chromium, driver) if chromium and driver else None


@pytest.mark.slow
@pytest.mark.skipif(browser_paths() is None, reason='needs Debian\'s chromium and chromium-driver '
                                                     '(apt-get install chromium chromium-driver; '
                                                     '.ci/run installs them)')
def test_the_page_in_headless_chromium(server, scene, tmp_path):
    """Upload the photo in a real browser, press Run, wait for the result, save a screenshot
    (tmp_path/app.png; docs/app_screenshot.png is made by benchmarks/app_latency.py --screenshot
    instead, with a trained network)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    chromium, chromedriver = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*BROWSER_FLAGS, f'--user-data-dir={tmp_path / "profile"}'):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        driver.get(server['url'])
        wait = WebDriverWait(driver, 120)
        upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, '#photo input[type=file]'))
        upload.send_keys(scene['photo'])
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#photo img'))
        # the centred box, for which the fixed network returns the truth
        driver.find_element(By.CSS_SELECTOR, '#recrop input[type=checkbox]').click()
        start = time.monotonic()
        driver.find_element(By.CSS_SELECTOR, '#run').click()

        def status(d):
            return d.find_element(By.CSS_SELECTOR, '#status textarea').get_attribute('value')
        wait.until(lambda d: status(d))
        shown = status(driver)
        assert shown.startswith('1 hand(s): right'), shown
        overlay = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#overlay img'))[0]
        wait.until(lambda d: d.execute_script('return arguments[0].complete && '
                                              'arguments[0].naturalWidth', overlay))
        seconds = time.monotonic() - start
        assert overlay.get_attribute('naturalWidth') == '224'
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#view3d canvas'))
        # offline: everything the page loaded came from the app itself (no CDN, no fonts)
        loaded = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)")
        foreign = [u for u in loaded if not u.startswith((server['url'], 'data:', 'blob:'))]
        assert loaded and not foreign, foreign
        time.sleep(2)  # the 3D view draws its first frame
        driver.execute_script('window.scrollTo(0, 0)')
        driver.save_screenshot(str(tmp_path / 'app.png'))
        links = [a.get_attribute('href') for a in
                 driver.find_elements(By.CSS_SELECTOR, '#downloads a[href]')]
        assert sorted(os.path.splitext(link)[1] for link in links) == ['.glb', '.json', '.obj'], links
        print(f'browser: Run to overlay shown in {seconds:.1f} s; screenshot {tmp_path / "app.png"}')
    finally:
        driver.quit()
    assert cv2.imread(str(tmp_path / 'app.png')) is not None
    # the page's clean-up step ran: no request folder is left
    assert not request_folders(server['tmp'])


def run_with(monkeypatch, tmp_path, process_photo):
    """app.run_request on a small photo with wild.photo.process_photo replaced."""
    monkeypatch.setattr(app, 'process_photo', process_photo)
    photo = tmp_path / 'hand.png'
    cv2.imwrite(str(photo), np.full((64, 80, 3), 100, np.uint8))
    root = tmp_path / 'root'
    root.mkdir()
    choices = app.Choices(next(iter(app.INTRINSICS)), 500, 60, False, 2, True, 'right', 0, False,
                          next(iter(app.AXES)))
    predictor = type('Predictor', (), {'faces': np.zeros((0, 3), np.int64)})()
    return app.run_request(predictor, str(root), str(photo), choices), root


def test_no_hand_found_is_a_message_and_leaves_no_folder(monkeypatch, tmp_path):
    from wild.photo import PhotoResult
    outputs, root = run_with(monkeypatch, tmp_path,
                             lambda *args, **kwargs: PhotoResult([], [], np.eye(3), 'focal'))
    assert outputs[5].startswith('error: no hand found') and outputs[:5] == app.EMPTY
    assert outputs[6] is None and os.listdir(root) == []


def test_a_bug_is_named_in_the_page_and_logged_with_its_traceback(monkeypatch, tmp_path, caplog):
    def broken(*args, **kwargs):
        raise KeyError('oops')
    outputs, root = run_with(monkeypatch, tmp_path, broken)
    assert outputs[5] == ('error: the app failed (KeyError); the server log has the details')
    assert 'Traceback' not in outputs[5] and os.listdir(root) == []
    assert any(r.exc_info and r.exc_info[0] is KeyError for r in caplog.records)


@pytest.mark.slow
def test_uploads_are_size_limited(server, tmp_path):
    """Refused by the client (it reads the limit from the page) and by the server itself."""
    import httpx
    big = tmp_path / 'big.png'
    big.write_bytes(b'\0' * ((app.MAX_UPLOAD_MB + 1) * 1024 * 1024))
    with pytest.raises(ValueError, match='big.png exceeds the maximum file size'):
        reconstruct(client_for(server, tmp_path), str(big))
    answer = httpx.post(f"{server['url']}gradio_api/upload",
                        files={'files': ('big.png', big.read_bytes(), 'image/png')}, timeout=60)
    assert answer.status_code == 413, (answer.status_code, answer.text[:200])
    assert not list(server['tmp'].rglob('big.png'))  # not stored


@pytest.mark.slow
def test_the_upload_keeps_its_exif_focal_length(server, scene, tmp_path):
    """The page's EXIF choice reads the uploaded file itself (Gradio does not re-encode it)."""
    from gradio_client import handle_file
    from PIL import Image
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 26  # FocalLengthIn35mmFilm, mm
    photo = tmp_path / 'phone.jpg'
    Image.open(scene['photo']).save(photo, exif=exif, quality=95)
    by_exif = next(iter(app.INTRINSICS))
    outputs = client_for(server, tmp_path / 'downloads').predict(
        handle_file(str(photo)), by_exif, 1000, 60, False, 2, False, 'right', 0, False,
        next(iter(app.AXES)), api_name='/reconstruct')
    hand, = outputs[4]
    # 26 mm on the 36 mm film side, which the photo's 224 px side spans
    assert hand['K_source'] == 'exif' and hand['K'][0][0] == pytest.approx(26 / 36 * 224)
