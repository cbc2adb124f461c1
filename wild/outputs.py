"""Every file demo.py (and the web app) writes for a photo or a video, one writer per output,
chosen by name (`--outputs`).

A photo's outputs (`write_outputs`) and a video's (`open_video_outputs`) come from one
registry, OUTPUTS: each output's photo writer and video opener (or why it has none); both draw with the same overlay (`draw_overlay`) and build records with
wild.records. Meshes are written in camera space (meters), every hand of an image in one file.
GLB files are always in glTF's axes (x right, y up, the camera looking down -z: (x, -y, -z) of
the OpenCV numbers), since glTF defines them and every glTF viewer assumes them. OBJ and PLY
follow `axes`: the OpenCV frame (x right, y down, z forward; 'opencv') or the same convention as
the GLB ('opengl', also Blender's cameras').
Left hands are drawn and written with re-wound faces (their mesh is the mirror image).

Adding an output: one function `write_x(stem, scene) -> path or None` and one registry line,
`'x': Output(write_x, no_video='why')` (docs/development.md, "Adding a demo output").
"""
import contextlib
import json
import logging
import os
from typing import Callable, NamedTuple, Optional

import cv2
import numpy as np

from utils.files.atomic import atomic_open, atomic_write_json
from utils.files.obj import write_obj
from wild.records import frame_record, image_record

logger = logging.getLogger(__name__)

AXES = ('opencv', 'opengl')
GLTF_AXES = 'opengl'  # glTF 2.0: y up, the camera looking down -z; a GLB is always written in it
OPENGL_FROM_OPENCV = np.array([1.0, -1.0, -1.0])  # (x, y, z) -> (x, -y, -z)
BOX_COLOR_BGR = (60, 200, 60)  # overlay: the box a hand was cropped with
RESET_BOX_COLOR_BGR = (40, 40, 230)  # overlay: a video box reset to the last good one
LEFT_BOX_COLOR_BGR = (230, 140, 40)  # overlay: a left hand's box (right hands: BOX_COLOR_BGR)
MESH_COLOR_RGB = (0.45, 0.65, 1.0)  # overlay: light blue, apart from skin tones
MESH_OPACITY = 0.7  # overlay: the image shows through the mesh, so a misfit is visible
LABEL_SCALE = 0.45  # overlay: cv2 font scale of the L/R label


class Scene(NamedTuple):
    """What one photo or video frame gives the writers.

    name: the image's file name (for the JSON record); image_bgr: H x W x 3 uint8; hands:
    list of wild.records.Hand; faces: F x 3 faces of a right hand (MANO's); axes: 'opencv' or
    'opengl' (OBJ and PLY only: GLB is always 'opengl', glTF's axes); box_reset: per hand, the tracker fell back to the last good box.
    """

    name: str
    image_bgr: np.ndarray
    hands: list
    faces: np.ndarray
    axes: str = 'opencv'
    box_reset: tuple = ()


def side_faces(faces, side):
    """The faces of a hand of `side`: a left hand is the mirror image, its faces re-wound."""
    return np.ascontiguousarray(faces[:, ::-1]) if side == 'left' else np.asarray(faces)


def to_axes(points, axes):
    """Camera-frame points (... x 3, OpenCV) in the convention `axes` ('opencv' or 'opengl')."""
    if axes not in AXES:
        raise ValueError(f'axes must be one of {AXES}, got {axes!r}')
    points = np.asarray(points, dtype=np.float64)
    return points * OPENGL_FROM_OPENCV if axes == 'opengl' else points


def merged_mesh(hands, faces, key='verts_cam'):
    """(V x 3 vertices, F x 3 faces) of every hand's mesh in one (camera frame, m)."""
    verts, tris, offset = [], [], 0
    for hand in hands:
        points = np.asarray(getattr(hand, key), dtype=np.float64)
        verts.append(points)
        tris.append(side_faces(faces, hand.side) + offset)
        offset += len(points)
    return np.concatenate(verts), np.concatenate(tris)


# ---- the overlay --------------------------------------------------------------------------------

def mesh_overlay(verts, faces, K, img_bgr):
    """The image with a mesh blended over it (MESH_COLOR_RGB at MESH_OPACITY), BGR uint8.

    Args:
        verts: V x 3 (m, camera frame); faces: F x 3; K: 3 x 3 px; img_bgr: H x W x 3 uint8.
    Raises:
        ValueError: a vertex behind the camera (utils.vis.render).
    """
    # Imported here, after torch/torchvision, and only when rendering (see utils/vis/render.py).
    from utils.vis.render import render_mesh

    rgb, _, mask = render_mesh(verts, faces, K, img_bgr.shape[:2], color=MESH_COLOR_RGB)
    mesh_bgr = rgb[:, :, ::-1].astype(np.float32)
    blended = MESH_OPACITY * mesh_bgr + (1.0 - MESH_OPACITY) * img_bgr.astype(np.float32)
    return np.where(mask[:, :, None], np.rint(blended).astype(np.uint8), img_bgr)


def _draw_box(img_bgr, box_xywh, color):
    """A box outline (1 px, anti-aliased, 1/16 px precision) on an image in place."""
    x, y, w, h = box_xywh
    scale = 16  # cv2 fixed point with 4 fractional bits
    cv2.rectangle(img_bgr, (int(round(x * scale)), int(round(y * scale))),
                  (int(round((x + w) * scale)), int(round((y + h) * scale))), color, 1,
                  cv2.LINE_AA, 4)


def _draw_label(img_bgr, hand, color):
    """'R' or 'L' (and the score) inside the box's top-left corner."""
    text = ('L' if hand.side == 'left' else 'R') + ('' if hand.score is None else f' {hand.score:.2f}')
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, LABEL_SCALE, 1)
    x, y = int(round(hand.box_xywh[0])) + 2, int(round(hand.box_xywh[1])) + 2
    cv2.rectangle(img_bgr, (x, y), (x + width + 2, y + height + baseline + 2), color, -1)
    cv2.putText(img_bgr, text, (x + 1, y + height + 1), cv2.FONT_HERSHEY_SIMPLEX, LABEL_SCALE,
                (255, 255, 255), 1, cv2.LINE_AA)


def draw_overlay(image_bgr, hands, faces, key='verts_cam', box_reset=()):
    """The image with every hand's mesh blended over it, its box and its L/R label (BGR).

    A mesh that cannot be drawn (a vertex behind the camera) is left out and logged; the boxes
    are still drawn. box_reset: per hand, True draws its box red (a video's reset box).
    """
    shown = [hand for hand in hands if getattr(hand, key) is not None]
    out = image_bgr.copy()
    if shown:
        verts, tris = merged_mesh(shown, faces, key)
        try:
            out = mesh_overlay(verts, tris, shown[0].K, image_bgr)
        except ValueError as err:  # e.g. a wild prediction behind the camera
            logger.warning('mesh not drawn on the overlay (%s)', err)
    for k, hand in enumerate(hands):
        reset = k < len(box_reset) and box_reset[k]
        color = RESET_BOX_COLOR_BGR if reset else (
            LEFT_BOX_COLOR_BGR if hand.side == 'left' else BOX_COLOR_BGR)
        _draw_box(out, hand.box_xywh, color)
        _draw_label(out, hand, color)
    return out


# ---- photo writers: (stem, scene) -> path written, or None ---------------------------------------

def _save_bgr(path, img_bgr):
    from utils.files.images import save_image
    save_image(path, np.ascontiguousarray(img_bgr[:, :, ::-1]))
    return path


def write_overlay(stem, scene):
    return _save_bgr(f'{stem}_mesh.png', draw_overlay(scene.image_bgr, scene.hands, scene.faces,
                                                      box_reset=scene.box_reset))


def write_mano_overlay(stem, scene):
    if not any(hand.mano_verts_cam is not None for hand in scene.hands):
        return None  # no hand was fitted (--fit_mano off)
    return _save_bgr(f'{stem}_mano_mesh.png', draw_overlay(scene.image_bgr, scene.hands,
                                                           scene.faces, key='mano_verts_cam'))


def write_skeleton(stem, scene):
    from utils.vis.drawing import draw_skeleton
    img_rgb = np.ascontiguousarray(scene.image_bgr[:, :, ::-1])
    for hand in scene.hands:
        img_rgb = draw_skeleton(img_rgb, hand.joints_uv)
    return _save_bgr(f'{stem}_skeleton.png', img_rgb[:, :, ::-1])


def write_side(stem, scene):
    """Every hand seen from the camera's right (utils.vis.render.render_views' side view);
    None (and a warning) when the turned meshes reach behind the camera, as a wild
    prediction's can: the other outputs are still written."""
    from utils.vis.render import render_views
    verts, tris = merged_mesh(scene.hands, scene.faces)
    try:
        side_rgb = render_views(verts, tris, scene.hands[0].K, scene.image_bgr.shape[:2])[1]
    except ValueError as err:
        logger.warning('%s: side view not drawn (%s)', scene.name, err)
        return None
    return _save_bgr(f'{stem}_side.png', side_rgb[:, :, ::-1])


def write_obj_file(stem, scene):
    verts, tris = merged_mesh(scene.hands, scene.faces)
    write_obj(f'{stem}.obj', to_axes(verts, scene.axes), tris)
    return f'{stem}.obj'


def write_glb(stem, scene):
    """A glTF binary scene with one mesh per hand ('hand0_right', ...), camera space in glTF's
    axes (GLTF_AXES) whatever scene.axes says: glTF viewers and importers assume y up."""
    import trimesh
    meshes = {f'hand{k}_{hand.side}': trimesh.Trimesh(to_axes(hand.verts_cam, GLTF_AXES),
                                                     side_faces(scene.faces, hand.side),
                                                     process=False)
              for k, hand in enumerate(scene.hands)}
    data = trimesh.Scene(meshes).export(file_type='glb')
    with atomic_open(f'{stem}.glb', 'wb') as f:
        f.write(data)
    return f'{stem}.glb'


def write_ply(stem, scene):
    """One binary PLY with every hand (778 vertices each, in the records' order)."""
    import trimesh
    verts, tris = merged_mesh(scene.hands, scene.faces)
    data = trimesh.Trimesh(to_axes(verts, scene.axes), tris, process=False).export(file_type='ply')
    with atomic_open(f'{stem}.ply', 'wb') as f:
        f.write(data)
    return f'{stem}.ply'


def write_json(stem, scene):
    record = image_record(scene.name, scene.image_bgr.shape[:2], scene.hands)
    atomic_write_json(f'{stem}.json', record, indent=1)
    return f'{stem}.json'


def check_outputs(names, video=False):
    """The names as a tuple, refusing unknown ones and, for a video, those without a video form
    (ValueError naming them, why, and the valid ones)."""
    names = tuple(names)
    unknown = [n for n in names if n not in OUTPUTS]
    what, valid = ('videos', VIDEO_FORMS) if video else ('photos', tuple(OUTPUTS))
    if unknown or not names:
        raise ValueError(f"--outputs {','.join(names)}: {'unknown ' + ', '.join(unknown) if unknown else 'none given'}"
                         f"; for {what} choose from {', '.join(valid)}")
    if video:
        for name in names:
            if OUTPUTS[name].video is None:
                raise ValueError(f'--outputs {name}: no video form ({OUTPUTS[name].no_video}); '
                                 f"for videos choose from {', '.join(VIDEO_FORMS)}")
    return names


def write_outputs(out_dir, name, image_bgr, result, faces, outputs=None,
                  axes='opencv'):
    """Write the chosen outputs of one photo.

    Args:
        out_dir: folder (created); name: the image's file name (outputs are `<stem>_...`).
        image_bgr: H x W x 3 uint8; result: wild.photo.PhotoResult (or anything with .hands).
        faces: F x 3 right-hand faces (MANO's; left hands get them re-wound).
        outputs: names from OUTPUTS (default DEFAULT_PHOTO_OUTPUTS); axes: 'opencv' or 'opengl' for the OBJ and PLY
            files (the GLB is always in glTF's axes, 'opengl').
    Returns:
        dict output name -> path written (an output with nothing to write is left out).
    """
    outputs = check_outputs(DEFAULT_PHOTO_OUTPUTS if outputs is None else outputs)
    to_axes(np.zeros(3), axes)  # refuse a bad axes before writing anything
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(out_dir, os.path.splitext(os.path.basename(name))[0])
    scene = Scene(os.path.basename(name), image_bgr, list(result.hands), faces, axes)
    if not scene.hands:
        outputs = tuple(o for o in outputs if o == 'json')  # an image without hands: its record
    written = {}
    for output in outputs:
        path = OUTPUTS[output].write(stem, scene)
        if path is not None:
            written[output] = path
    return written


# ---- video writers: opened once, called per frame -------------------------------------------------

class Frame(NamedTuple):
    """One video frame for the writers: its index, the scene and the tracker's reset reason."""

    index: int
    scene: Scene
    reset_reason: object = None


def _open_lines(stack, stem, fps, image_size):
    jsonl = stack.enter_context(atomic_open(f'{stem}.jsonl', 'w'))

    def write(frame):
        for k, hand in enumerate(frame.scene.hands):
            reset = k < len(frame.scene.box_reset) and frame.scene.box_reset[k]
            jsonl.write(json.dumps(frame_record(frame.index, fps, hand, reset,
                                                frame.reset_reason)) + '\n')
    return write, f'{stem}.jsonl'


def _open_video(stack, stem, fps, image_size):
    from utils.files.video import atomic_video_writer
    video = stack.enter_context(atomic_video_writer(f'{stem}_mesh.mp4', fps, image_size))

    def write(frame):
        scene = frame.scene
        video.write(draw_overlay(scene.image_bgr, scene.hands, scene.faces,
                                 box_reset=scene.box_reset))
    return write, f'{stem}_mesh.mp4'


def _per_frame(writer, suffix):
    """A photo writer applied to every frame: `<stem>_<suffix>/<index:05d>.<ext>`."""
    def open_files(stack, stem, fps, image_size):
        folder = f'{stem}_{suffix}'

        def write(frame):
            os.makedirs(folder, exist_ok=True)
            writer(os.path.join(folder, f'{frame.index:05d}'), frame.scene)
        return write, folder
    return open_files


class Output(NamedTuple):
    """One output: `write(stem, scene) -> path or None` writes a photo's file; `video`, an opener
    `(stack, stem, fps, (H, W)) -> (write(Frame), path)`, a video's; an output without a video
    form says why in `no_video` (the error a video asking for it gets)."""

    write: Callable
    video: Optional[Callable] = None
    no_video: Optional[str] = None


OUTPUTS = {  # name -> Output; a photo's files <stem><suffix>, a video's <name><suffix>
    # _mesh.png / _mesh.mp4: every mesh over the photo or frame, with its box and L/R label
    'overlay': Output(write_overlay, _open_video),
    # _mano_mesh.png: the fitted MANO meshes (--fit_mano)
    'mano_overlay': Output(write_mano_overlay, no_video='a video is fitted frame by frame: the '
                           'fitted parameters are in the JSON lines (--fit_mano)'),
    # _skeleton.png: the 2D joints
    'skeleton': Output(write_skeleton, no_video="the joints' pixels of every frame are in the "
                       'JSON lines (joints_2d) and the overlay video shows the hand'),
    # _side.png: the meshes seen from the camera's right
    'side': Output(write_side, no_video='a side view per frame is not written; the meshes of '
                   'every frame are (obj, glb or ply)'),
    # .obj / _obj/00000.obj, ...: every hand in one Wavefront OBJ
    'obj': Output(write_obj_file, _per_frame(write_obj_file, 'obj')),
    # .glb / _glb/00000.glb, ...: a glTF binary scene, one mesh per hand, in glTF's axes (y up)
    'glb': Output(write_glb, _per_frame(write_glb, 'glb')),
    # .ply / _ply/00000.ply, ...: every hand in one PLY
    'ply': Output(write_ply, _per_frame(write_ply, 'ply')),
    # .json / .jsonl: the image's record, one entry per hand; a video's, one line per frame
    'json': Output(write_json, _open_lines),
}
DEFAULT_PHOTO_OUTPUTS = ('overlay', 'mano_overlay', 'skeleton', 'obj', 'json')
DEFAULT_VIDEO_OUTPUTS = ('json', 'overlay')
VIDEO_FORMS = tuple(name for name, output in OUTPUTS.items() if output.video is not None)


@contextlib.contextmanager
def open_video_outputs(out_dir, name, fps, image_size, outputs=DEFAULT_VIDEO_OUTPUTS):
    """The chosen outputs of one video, open: yields (write(Frame), {output: path}).

    The JSON lines and the video are written to temporary files and renamed when the block
    ends without an error, so an interrupted run leaves neither under its final name.
    """
    outputs = check_outputs(outputs, video=True)
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(out_dir, name)
    with contextlib.ExitStack() as stack:
        writers, paths = [], {}
        for output in outputs:
            write, paths[output] = OUTPUTS[output].video(stack, stem, fps, tuple(image_size))
            writers.append(write)

        def write_frame(frame):
            for write in writers:
                write(frame)
        yield write_frame, paths
