"""SAR in the browser: a Gradio page on this machine where you upload a photo (or take one with
the webcam) and get every hand's mesh: the overlay with boxes and L/R labels, a side view, an
interactive 3D view and the GLB, OBJ and JSON records to download.

    python app.py --checkpoint output/checkpoint/<exp>/snapshot_49.pth.tar
    python app.py --checkpoint snapshot.pth.tar --mano_root data/mano_standin --port 7861

Then open http://127.0.0.1:7860 (the page is served on this machine only; from another machine,
use an SSH tunnel: ssh -L 7860:127.0.0.1:7860 user@server, then open the same address there).
It runs on the CPU (--device cpu is the default here); any config.py field can follow, as for
demo.py. `--host 0.0.0.0` serves it to the network, and only with a login:

    python app.py --checkpoint snapshot.pth.tar --host 0.0.0.0 --auth_file users.txt

What the page can and cannot do:
- the network, MANO and every file on disk are chosen here, on the command line; the page only
  sends photos (at most MAX_UPLOAD_MB each, MAX_PIXELS decoded) and the options below;
- intrinsics: the photo's EXIF FocalLengthIn35mmFilm (else a 60 degree field of view), a focal
  length in pixels, or a field of view across the longer side;
- the hand detector (MediaPipe) is offered when its optional extra is installed; without it the
  page says so, and the photo is one hand of the chosen side, from the centred box re-cropped
  around the prediction (demo.py --bbox auto) or the centred box itself;
- bad input (not an image, too large, corrupt, no hand found) is a message in the page;
- requests are queued (one at a time): two users never share a run;
- each request works in its own temporary folder, deleted when its results are handed over;
  everything the app writes (Gradio's cache included) lives under one temporary folder removed
  when the app stops (Ctrl-C or SIGTERM).
"""
import argparse
import dataclasses
import ipaddress
import logging
import os
import shutil
import signal
import sys
import tempfile
import time

import torch
from PIL import Image, UnidentifiedImageError

import config as config_module
from run.config import resolve_config
from utils.errors import UserError
from utils.files.images import read_image
from utils.runtime.launch import log_config_notes, run_main
from utils.runtime.logger import setup_logger
from wild.detector import INSTALL_COMMAND, detector_available
from wild.outputs import write_outputs
from inference.predictor import load_predictor
from wild.photo import PhotoOptions, process_photo

DEFAULT_HOST = '127.0.0.1'  # loopback: the page is served on this machine only
DEFAULT_PORT = 7860
MAX_UPLOAD_MB = 25  # MiB per uploaded file (Gradio refuses bigger uploads before storing them)
MAX_PIXELS = 40_000_000  # decoded pixels of a photo (8000 x 5000); bigger ones are refused
MAX_HANDS = 4  # hands per photo the detector may return (the page's slider's top)
MIN_FOV_DEG, MAX_FOV_DEG = 1, 170  # degrees: the field-of-view choice's range
MAX_ROOT_DEPTH_M = 100.0  # m: the largest wrist depth the page accepts
CACHE_PRUNE = (300, 900)  # s: every 5 min, Gradio's cached files older than 15 min are deleted
REQUEST_PREFIX = 'request_'  # per-request folders under the app's temporary folder
INTRINSICS = {  # page label -> how the focal length is chosen
    'EXIF focal length (else 60° field of view)': 'exif',
    'focal length (px)': 'focal',
    'field of view (degrees, longer side)': 'fov',
}
AXES = {  # page label -> wild.outputs axes of the mesh files
    'OpenGL / Blender / glTF (y up, camera looks down -z)': 'opengl',
    'OpenCV camera frame (y down, z forward), as the JSON': 'opencv',
}

logger = logging.getLogger('sar')


class PageError(UserError):
    """A request that cannot be served as asked; the message (shown in the page) says why and
    what to do."""


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--port', type=int, default=DEFAULT_PORT,
                        help='TCP port (default %(default)s)')
    parser.add_argument('--host', default=DEFAULT_HOST,
                        help='address to listen on (default %(default)s: this machine only); any '
                             'other (0.0.0.0: every interface) needs --auth or --auth_file')
    parser.add_argument('--auth', metavar='USER:PASSWORD',
                        help='the login the page asks for (visible to other users of this '
                             'machine in the process list: prefer --auth_file)')
    parser.add_argument('--auth_file', metavar='FILE',
                        help='logins, one USER:PASSWORD per line (# comments and blank lines '
                             'skipped)')
    args, rest = parser.parse_known_args(argv)
    # --mano-root is accepted as an alias of config.py's --mano_root (issue 29 spells it so)
    rest = ['--mano_root' if a == '--mano-root' else
            '--mano_root=' + a.split('=', 1)[1] if a.startswith('--mano-root=') else a
            for a in rest]
    if not any(a == '--device' or a.startswith('--device=') for a in rest):
        rest += ['--device', 'cpu']
    return args, rest


# ---- who may connect ----------------------------------------------------------------------

def is_loopback(host):
    """True for an address (or 'localhost') that only this machine can reach."""
    if host == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def parse_login(text, where):
    """(user, password) of 'USER:PASSWORD'; ConfigError naming `where` otherwise."""
    user, sep, password = text.partition(':')
    if not sep or not user.strip() or not password:
        raise config_module.ConfigError(f'{where}: expected USER:PASSWORD (a user name, a colon, '
                                        f'a non-empty password)')
    return user.strip(), password


def read_logins(path):
    """[(user, password)] of an --auth_file: one USER:PASSWORD per line."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as err:
        raise config_module.ConfigError(
            f'--auth_file {path}: cannot read it ({err.strerror})') from None
    logins = [parse_login(line, f'--auth_file {path} line {k}') for k, line in
              enumerate(lines, 1) if line.strip() and not line.lstrip().startswith('#')]
    if not logins:
        raise config_module.ConfigError(f'--auth_file {path}: no USER:PASSWORD line in it')
    return logins


def access(args):
    """(host, logins or None) of the command line: a host beyond loopback only with a login."""
    logins = None
    if args.auth is not None:
        logins = [parse_login(args.auth, '--auth')]
    if args.auth_file is not None:
        logins = (logins or []) + read_logins(args.auth_file)
    if not is_loopback(args.host):
        if logins is None:
            raise config_module.ConfigError(
                f'--host {args.host} serves the page to every machine that can reach it: give '
                f'--auth USER:PASSWORD (or --auth_file FILE) as well, or keep the default '
                f'--host {DEFAULT_HOST} and reach it through an SSH tunnel (docs/own_images.md)')
        logger.warning('serving beyond this machine on %s: anyone who reaches port %d gets the '
                       'login page; HTTP is not encrypted (the password and photos cross the '
                       'network in clear text unless a TLS proxy sits in front)', args.host,
                       args.port)
    return args.host, logins


# ---- the photo ----------------------------------------------------------------------------

def read_photo(path):
    """The uploaded photo as an H x W x 3 uint8 BGR array; PageError naming the problem for a
    file that is not an image, too large, or damaged."""
    if path is None:
        raise PageError('no photo: upload one (or take one with the webcam), then press Run')
    name = os.path.basename(path)
    try:
        with Image.open(path) as img:  # reads the header only: the size before decoding
            width, height = img.size
    except (UnidentifiedImageError, OSError, ValueError):
        raise PageError(f'{name}: not an image this app can read (use a JPEG, PNG or WebP '
                        f'photo)') from None
    except Image.DecompressionBombError:
        raise PageError(f'{name}: far too many pixels; scale it down to at most '
                        f'{MAX_PIXELS / 1e6:g} megapixels') from None
    if width * height > MAX_PIXELS:
        raise PageError(f'{name}: {width} x {height} px is more than this app decodes '
                        f'({MAX_PIXELS / 1e6:g} megapixels); scale it down (hands need no more '
                        f'than a few hundred pixels)')
    img_bgr, damage = read_image(path)
    if img_bgr is None:
        raise PageError(f'{name}: the file is damaged or not an image OpenCV can decode; '
                        f'upload the photo again or re-export it')
    if damage is not None:
        raise PageError(f'{name}: {damage}; upload the complete file')
    return img_bgr


def intrinsics_options(choice, focal, fov_deg):
    """The PhotoOptions fields (focal, fov_deg) of the page's intrinsics choice: none for the
    photo's EXIF (else the default field of view; wild.camera.image_intrinsics)."""
    how = INTRINSICS.get(choice)
    if how is None:
        raise PageError(f'intrinsics {choice!r}: choose one of {list(INTRINSICS)}')
    if how == 'focal':
        if focal is None or not 0 < focal < float('inf'):
            raise PageError(f'focal length {focal}: give a positive number of pixels')
        return {'focal': float(focal)}
    if how == 'fov':
        if fov_deg is None or not MIN_FOV_DEG <= fov_deg <= MAX_FOV_DEG:
            raise PageError(f'field of view {fov_deg}: give degrees between {MIN_FOV_DEG} and '
                            f'{MAX_FOV_DEG}')
        return {'fov_deg': float(fov_deg)}
    return {}


def status_line(records, seconds):
    """One line about the hands found: side, score, wrist depth and where K came from."""
    hands = ', '.join(f"{r['hand']}" + (f" {r['score']:.2f}" if r.get('score') is not None else '')
                      + f" (wrist at {r['root_depth_m']:.2f} m)" for r in records)
    return (f"{len(records)} hand(s): {hands}; intrinsics: {records[0]['K_source']}; "
            f"{seconds:.1f} s")


def root_depth_option(meters):
    """PhotoOptions.root_depth of the page's wrist depth: 0 (or empty) for 'auto', else meters."""
    if meters is None or meters == 0:
        return 'auto'
    if not 0 < meters <= MAX_ROOT_DEPTH_M:
        raise PageError(f'wrist depth {meters}: give meters in (0, {MAX_ROOT_DEPTH_M}], or 0 for '
                        f'the depth from the hand\'s size')
    return float(meters)


def photo_options(choices):
    """wild.photo.PhotoOptions of the page's `choices` (Choices)."""
    return PhotoOptions(detector='mediapipe' if choices.detect else 'none',
                        max_hands=int(choices.max_hands), auto_box=bool(choices.recrop),
                        side=choices.side, root_depth=root_depth_option(choices.root_depth_m),
                        fit_mano=bool(choices.fit_mano),
                        axes=AXES[choices.axes],
                        **intrinsics_options(choices.intrinsics, choices.focal, choices.fov_deg))


@dataclasses.dataclass(frozen=True)
class Choices:
    """What the page sends besides the photo (labels as shown; see INTRINSICS, AXES)."""
    intrinsics: str
    focal: float
    fov_deg: float
    detect: bool
    max_hands: int
    recrop: bool
    side: str
    root_depth_m: float
    fit_mano: bool
    axes: str


# ---- one request ----------------------------------------------------------------------------

def sweep_requests(root):
    """Delete the folders of finished requests (requests are queued one at a time, so every
    folder there when one starts is finished; the page's own clean-up step may not have run
    for an API client)."""
    for name in os.listdir(root):
        if name.startswith(REQUEST_PREFIX):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def delete_request(folder):
    """The page's step after a result is shown: its request folder goes (Gradio has copied
    the files it serves into its cache)."""
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


PAGE_OUTPUTS = ('overlay', 'side', 'obj', 'glb', 'json')  # wild.outputs names the page shows
EMPTY = (None, None, None, None, None)  # overlay, side view, 3D view, downloads, records


def run_request(predictor, root, photo, choices):
    """One request: (overlay, side view, GLB, [downloads], records, status, request folder).

    A problem with the input is a message in the status line (and a warning in the page),
    never a traceback; a bug is logged here with its traceback and named in the page."""
    start = time.perf_counter()
    sweep_requests(root)
    folder = tempfile.mkdtemp(prefix=REQUEST_PREFIX, dir=root)
    try:
        img_bgr = read_photo(photo)
        options = photo_options(choices)
        result = process_photo(img_bgr, predictor, options, image_path=photo)
        if not result.hands:
            raise PageError('no hand found in this photo: try one where the hand is larger, '
                            'or switch the detector off (the centred box is then used)')
        paths = write_outputs(folder, os.path.basename(photo), img_bgr, result, predictor.faces,
                              PAGE_OUTPUTS, options.axes)
    except UserError as err:  # a problem of the input, named (PageError, DataError, ...)
        delete_request(folder)
        # the upload's name, not where Gradio keeps it
        message = str(err).replace(photo, os.path.basename(photo)) if photo else str(err)
        return (*EMPTY, f'error: {message}', None)
    except Exception as err:  # a bug: the page says so, the log keeps the traceback
        logger.exception('request failed')
        delete_request(folder)
        return (*EMPTY, f'error: the app failed ({type(err).__name__}); the server log has '
                        f'the details', None)
    downloads = [paths[k] for k in ('glb', 'obj', 'json')]
    status = status_line(result.records, time.perf_counter() - start)
    if 'side' not in paths:
        status += '; no side view (the turned mesh reaches behind the camera)'
    logger.info('%s', status)
    return (paths['overlay'], paths.get('side'), paths['glb'], downloads, result.records, status,
            folder)


# ---- the page -------------------------------------------------------------------------------

def build_page(predictor, root, has_detector):
    """The Gradio Blocks of the app (not launched)."""
    import gradio as gr

    def on_run(photo, *page_choices):
        # Unprocessed inputs (preprocess=False below): gr.Image would open the upload with
        # Pillow first and answer a damaged file with a bare "Error"; read_photo names the
        # problem instead. Gradio still checks that the path is an upload of its own cache.
        # page_choices: the page's controls in the order of Choices' fields.
        photo = (photo or {}).get('path')
        choices = Choices(*page_choices)
        choices = dataclasses.replace(choices, detect=bool(choices.detect) and has_detector)
        outputs = run_request(predictor, root, photo, choices)
        if outputs[5].startswith('error: '):
            gr.Warning(outputs[5][len('error: '):])
        return outputs

    detector_note = ('Detects every hand (MediaPipe), with its side.' if has_detector else
                     f'Off: MediaPipe is not installed; to install it: {INSTALL_COMMAND}. '
                     f'Without it the photo is one hand, in the centred box.')
    with gr.Blocks(title='SAR: hand meshes from a photo', analytics_enabled=False,
                   delete_cache=CACHE_PRUNE) as page:
        gr.Markdown('## SAR: 3D hand meshes from a photo\nUpload a photo (or take one with the '
                    'webcam), press **Run**. Runs on this machine\'s CPU; one request at a time.')
        with gr.Row():
            with gr.Column(scale=1):
                photo = gr.Image(label='Photo', type='filepath', image_mode=None, height=320,
                                 sources=['upload', 'webcam', 'clipboard'], elem_id='photo')
                intrinsics = gr.Radio(list(INTRINSICS), value=next(iter(INTRINSICS)),
                                      label='Camera intrinsics')
                with gr.Row():
                    focal = gr.Number(value=1000, label='focal length (px)', minimum=1)
                    fov_deg = gr.Number(value=60, label='field of view (degrees)', minimum=1,
                                        maximum=170)
                detect = gr.Checkbox(value=has_detector, interactive=has_detector,
                                     label='Hand detector', info=detector_note)
                max_hands = gr.Slider(1, MAX_HANDS, value=2, step=1, label='Hands at most '
                                      '(detector)', interactive=has_detector)
                recrop = gr.Checkbox(value=True, label='Without the detector: re-crop around '
                                     'the hand (else the centred box)', elem_id='recrop')
                side = gr.Radio(['right', 'left'], value='right',
                                label='Without the detector: the hand is a')
                root_depth_m = gr.Number(value=0, minimum=0, label='Wrist depth (m; 0: from '
                                         'the hand\'s size)')
                fit_mano = gr.Checkbox(value=False, label='Fit MANO parameters (in the JSON)')
                axes = gr.Radio(list(AXES), value=next(iter(AXES)),
                                label="Axes of the OBJ file (the GLB is always glTF's)")
                run = gr.Button('Run', variant='primary', elem_id='run')
            with gr.Column(scale=2):
                status = gr.Textbox(label='Status', interactive=False, elem_id='status')
                with gr.Row():
                    overlay = gr.Image(label='Overlay', type='filepath', elem_id='overlay',
                                       interactive=False)
                    side_view = gr.Image(label='Side view', type='filepath', elem_id='side',
                                         interactive=False)
                view3d = gr.Model3D(label='3D (drag to turn)', elem_id='view3d', height=360)
                downloads = gr.File(label='Downloads: GLB, OBJ, JSON', file_count='multiple',
                                    interactive=False, elem_id='downloads')
                records = gr.JSON(label='Records (camera frame, m)', open=False)
        request = gr.State(None)
        run.click(on_run, [photo, intrinsics, focal, fov_deg, detect, max_hands, recrop, side,
                           root_depth_m, fit_mano, axes], [overlay, side_view, view3d, downloads, records, status, request],
                  api_name='reconstruct', preprocess=False).then(delete_request, request, None, api_name=False)
    return page


# ---- the app --------------------------------------------------------------------------------

def load_network(rest):
    """(inference.predictor.HandPredictor, cfg) of the command line's config (the checkpoint's
    own, as demo.py)."""
    cfg, notes = resolve_config(rest, from_checkpoint=True)
    if not cfg.checkpoint and not cfg.onnx:
        raise config_module.ConfigError('no network given: python app.py --checkpoint PATH '
                                        '(or --onnx FILE)')
    log_config_notes(setup_logger(), notes)
    return load_predictor(cfg, torch.device(cfg.device)), cfg


def stop_on_sigterm():
    """SIGTERM stops the app as Ctrl-C does (its temporary folder is then removed)."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, handler)


def launch_kwargs(host, port, blocked, logins=None):
    """The keyword arguments of Gradio's Blocks.launch: `logins` [(user, password)] or None."""
    return dict(server_name=host, server_port=port, max_file_size=f'{MAX_UPLOAD_MB}mb',
                show_error=False, prevent_thread_lock=True, ssr_mode=False, blocked_paths=blocked,
                footer_links=[], auth=logins)


def serve(page, kwargs):
    """Launch with `kwargs` (launch_kwargs), queued one request at a time, until Ctrl-C or
    SIGTERM."""
    page.queue(default_concurrency_limit=1)
    page.launch(**kwargs)
    print(f"app.py: serving http://{kwargs['server_name']}:{kwargs['server_port']} "
          f"{'(login required) ' if kwargs['auth'] else ''}(Ctrl-C stops it)", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        print('app.py: stopping', flush=True)
    finally:
        page.close()


def main(argv):
    args, rest = parse_args(argv)
    if not 0 < args.port < 65536:
        raise config_module.ConfigError(f'--port {args.port}: give a TCP port in 1..65535')
    host, logins = access(args)
    stop_on_sigterm()
    # Everything the app and Gradio write goes under one folder, removed when the app stops.
    root = tempfile.mkdtemp(prefix='sar_app_')
    os.environ['GRADIO_TEMP_DIR'] = os.path.join(root, 'gradio')  # read when gradio is imported
    os.environ['GRADIO_ANALYTICS_ENABLED'] = 'False'  # no telemetry, no version check
    try:
        predictor, cfg = load_network(rest)
        page = build_page(predictor, root, detector_available())
        # never served, whatever a request asks for (the page only serves its own results)
        blocked = [os.path.abspath(p) for p in (cfg.checkpoint, cfg.onnx, cfg.mano_root) if p]
        serve(page, launch_kwargs(host, args.port, blocked, logins))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(run_main(main, sys.argv[1:], 'app.py'))
