"""Offscreen mesh rendering (pyrender) and a software silhouette rasteriser (cv2).

Frames and units: vertices are in meters in the OpenCV camera frame (x right, y down, z forward)
and `K` is the 3x3 pinhole intrinsics in pixels, with pixel (row i, column j) centred on the
continuous image coordinate (u, v) = (j, i) -- the convention of cv2 and of FreiHAND's
u = fx * x / z + cx. Images are returned as (H, W) arrays; `image_size` is always (H, W).

OpenGL backend: pyrender picks it from the environment variable PYOPENGL_PLATFORM, read when the
first renderer is created. If it is unset, the first renderer creation sets it to 'osmesa'
(CPU software rendering, Debian package `libosmesa6`); use 'egl' on GPU machines (packages
`libegl1` and the GPU driver). Set it before anything imports PyOpenGL, as PyOpenGL fixes its
platform on first import.

Library clash: Triton's libtriton (bundled LLVM) segfaults when it is loaded after Mesa's
libOSMesa (which links the system LLVM). torchvision imports Triton, so
`render ...; import torchvision` crashes unless Triton was loaded first. The first renderer
creation therefore imports Triton (when installed) before PyOpenGL.

Renderers are cached: one `pyrender.OffscreenRenderer` per (width, height) per process, created
on first use (creating one is slow); `close_renderers()` frees them. Not thread-safe: use the
renderers from one thread.

Memory: PyOpenGL's OSMesa platform returns the current context as a ctypes pointer, a new object
per call that never equals the last one. pyrender keys its compiled shader programs on it and
PyOpenGL its per-context storage, so every draw compiled and kept a new program (about 6 MB of
llvmpipe code per render, never freed: a web app grew 25 MB per request). The first renderer
creation makes that call return the address as an int, as PyOpenGL's EGL platform does
(`_comparable_osmesa_context`); a render then reuses the programs of its renderer.
"""
import atexit
import ctypes
import importlib.util
import logging
import math
import os
import sys
from typing import NamedTuple, Optional

import cv2
import numpy as np

DEFAULT_PLATFORM = 'osmesa'  # used when PYOPENGL_PLATFORM is unset: works without a GPU
SUPPORTED_PLATFORMS = ('osmesa', 'egl')

VIEW_NAMES = ('camera', 'side', 'top')  # the views returned by render_views, in order
# Rotations (OpenCV camera frame) applied about the mesh centroid for the extra views of
# render_views. side: 90 deg about the vertical (y) axis, so the mesh is seen from the camera's
# right (+x side faces the camera; what was nearest the camera ends up on the left).
# top: 90 deg about the x axis, so the mesh is seen from above (-y side faces the camera; what
# was nearest the camera ends up at the bottom).
_ROT_SIDE = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
_ROT_TOP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
_VIEW_FILL = 0.8  # fraction of the half image that the mesh's bounding sphere fills in extra views

_CV_TO_GL = np.array([1.0, -1.0, -1.0])  # OpenCV (x right, y down, z fwd) -> OpenGL (y up, -z fwd)
_DISPLAY_GAMMA = 2.2  # pyrender's fragment shader writes pow(linear colour, 1 / 2.2)
_ROUGHNESS = 0.7  # mostly diffuse skin: a soft highlight, no mirror-like glare
_BACKGROUND_RGB = (255, 255, 255)  # behind the mesh when no background image is given

_SUPERSAMPLE = 4  # rasterize_mask: subsamples per pixel side (cv2 fills are 0.5 px generous)
_FILL_SHIFT = 4  # rasterize_mask: cv2 fixed-point fractional bits (1/16 px vertex precision)
_MAX_COORD = 2.0 ** 20  # rasterize_mask: clip to keep fixed-point coordinates inside int32

_renderers = {}  # (width, height) -> pyrender.OffscreenRenderer, for _renderers_pid only
_renderers_pid = None
_close_at_exit = False  # close_renderers registered with atexit


def _check_mesh(verts_cam, faces):
    """Validate a mesh; return (V x 3 float64 verts in m, F x 3 int64 faces)."""
    verts = np.asarray(verts_cam, dtype=np.float64)
    faces = np.asarray(faces)
    if verts.ndim != 2 or verts.shape[1] != 3 or len(verts) == 0:
        raise ValueError(f'verts_cam must be V x 3 (meters, camera frame), got shape {verts.shape}')
    if not np.all(np.isfinite(verts)):
        raise ValueError(f'verts_cam has {np.count_nonzero(~np.isfinite(verts))} non-finite values')
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise ValueError(f'faces must be an F x 3 integer array, got shape {faces.shape} '
                         f'dtype {faces.dtype}')
    if faces.size and (faces.min() < 0 or faces.max() >= len(verts)):
        raise ValueError(f'faces index vertices {faces.min()}..{faces.max()} but verts_cam has '
                         f'{len(verts)} vertices')
    min_depth = verts[:, 2].min()
    if min_depth <= 0:
        raise ValueError(f'verts_cam must lie in front of the camera (z > 0 m), min z = '
                         f'{min_depth:.4g} m: are the vertices in the OpenCV camera frame '
                         f'(z forward) and in meters?')
    return verts, faces.astype(np.int64)


def _check_intrinsics(K):
    """Validate a 3x3 pinhole matrix without skew; return it as float64."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f'K must be 3x3 intrinsics (pixels), got shape {K.shape}')
    # Tolerances admit rounding from K built by matrix products (e.g. crop affine @ K).
    tol = 1e-9 * max(abs(K[0, 0]), abs(K[1, 1]), 1.0)
    if not (K[0, 0] > 0 and K[1, 1] > 0 and abs(K[0, 1]) <= tol and abs(K[1, 0]) <= tol
            and np.allclose(K[2], [0.0, 0.0, 1.0], rtol=0.0, atol=1e-9)):
        raise ValueError(f'K must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0 '
                         f'(no skew), got {K.tolist()}')
    return K


def _check_image_size(image_size):
    """Validate (H, W); return it as a tuple of ints."""
    if len(image_size) != 2 or min(image_size) < 1 or any(int(s) != s for s in image_size):
        raise ValueError(f'image_size must be (H, W) positive integers, got {image_size}')
    return int(image_size[0]), int(image_size[1])


def _preload_triton():
    """Load Triton before PyOpenGL: libtriton loaded after libOSMesa segfaults (module doc)."""
    if 'OpenGL.GL' not in sys.modules and importlib.util.find_spec('triton') is not None:
        import triton  # noqa: F401


def _comparable_osmesa_context():
    """PyOpenGL's current-context call returns the OSMesa context's address (an int, equal
    from call to call) instead of a fresh ctypes pointer object (module docstring: Memory)."""
    from OpenGL import platform
    # One ctypes function object serves PyOpenGL's contextdata and OpenGL.osmesa alike.
    platform.PLATFORM.GetCurrentContext.restype = ctypes.c_void_p


def _get_renderer(width, height):
    """Return the process's cached pyrender.OffscreenRenderer for (width, height) pixels."""
    global _renderers_pid, _close_at_exit
    if _renderers_pid != os.getpid():
        # Contexts do not survive fork: a child drops (without freeing) its parent's renderers.
        _renderers.clear()
        _renderers_pid = os.getpid()
    key = (width, height)
    if key not in _renderers:
        platform = os.environ.setdefault('PYOPENGL_PLATFORM', DEFAULT_PLATFORM)
        if platform not in SUPPORTED_PLATFORMS:
            raise RuntimeError(f'PYOPENGL_PLATFORM={platform!r} is not supported for offscreen '
                               f'rendering; set it to one of {SUPPORTED_PLATFORMS} '
                               f"('osmesa' on machines without a GPU)")
        _preload_triton()
        # PyOpenGL logs at INFO ("No OpenGL_accelerate module loaded", and dozens of "Platform
        # import failed (likely during shutdown)" when contexts are freed at interpreter exit),
        # which our INFO-level logs would show as if something failed: keep its warnings only,
        # and free the contexts before the interpreter tears its modules down.
        logging.getLogger('OpenGL').setLevel(logging.WARNING)
        if not _close_at_exit:
            atexit.register(close_renderers)
            _close_at_exit = True
        try:
            import pyrender
            if platform == 'osmesa':
                _comparable_osmesa_context()
            _renderers[key] = pyrender.OffscreenRenderer(width, height)
        except Exception as err:
            raise RuntimeError(
                f'could not create an offscreen OpenGL context with PYOPENGL_PLATFORM={platform!r} '
                f'({type(err).__name__}: {err}). For osmesa install OSMesa (Debian/Ubuntu: '
                f'apt-get install libosmesa6); for egl install libegl1 and the GPU driver. On '
                f'machines without a GPU set PYOPENGL_PLATFORM=osmesa before starting Python.'
            ) from err
    return _renderers[key]


def close_renderers():
    """Free every cached renderer of this process (they are recreated on the next render)."""
    global _renderers_pid
    if _renderers_pid == os.getpid():
        for renderer in _renderers.values():
            renderer.delete()
    _renderers.clear()
    _renderers_pid = None


def _light_pose_gl(light_dir_cam):
    """4x4 pose (OpenGL camera frame) of a directional light shining along `light_dir_cam`.

    pyrender's directional light shines along its local -z axis.
    """
    direction = np.asarray(light_dir_cam, dtype=np.float64) * _CV_TO_GL
    norm = np.linalg.norm(direction)
    if direction.shape != (3,) or not norm > 0:
        raise ValueError(f'light_dir must be a non-zero 3-vector (camera frame), got {light_dir_cam}')
    z_axis = -direction / norm
    helper = np.array([0.0, 1.0, 0.0]) if abs(z_axis[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x_axis = np.cross(helper, z_axis)
    x_axis /= np.linalg.norm(x_axis)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([x_axis, np.cross(z_axis, x_axis), z_axis], axis=1)
    return pose


class Shading(NamedTuple):
    """The lights and normals of `render_mesh`.

    light_dir: 3-vector, direction the light travels in the camera frame; None: (0, 0, 1),
    light coming from the camera. light_intensity: directional light intensity (pyrender
    units, linear). ambient: ambient light intensity (linear). smooth: interpolate vertex
    normals (True) or shade each face flat (False).
    """
    light_dir: Optional[tuple] = None
    light_intensity: float = 3.0
    ambient: float = 0.3
    smooth: bool = True


def render_mesh(verts_cam, faces, K, image_size, color=(0.8, 0.6, 0.5), background=None,
                shading=Shading()):
    """Render a triangle mesh seen by a pinhole camera; optionally composite it over an image.

    Lighting: one directional light plus ambient light. Both sides of every face are drawn and
    each side is shaded with the normal that faces its viewer, so open meshes (the MANO hand is
    open at the wrist) show a lit inside instead of holes or black patches.

    Args:
        verts_cam: V x 3, meters, OpenCV camera frame (x right, y down, z forward); all z > 0.
        faces: F x 3 integer vertex indices.
        K: 3 x 3 intrinsics [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], pixels.
        image_size: (H, W) pixels.
        color: RGB in [0, 1], about the displayed colour of a surface facing the light.
        background: optional H x W x 3 uint8 RGB image; the mesh is pasted over it where the mask
            is set. Without it the background is white.
        shading: Shading (light direction and intensity, ambient light, smooth normals).

    Returns:
        rgb: H x W x 3 uint8 RGB image.
        depth: H x W float32, z of the nearest surface in meters (OpenCV frame), 0 off the mesh.
        mask: H x W bool, pixels covered by the mesh.
    """
    light_dir, light_intensity, ambient, smooth = shading
    verts, faces = _check_mesh(verts_cam, faces)
    K = _check_intrinsics(K)
    height, width = _check_image_size(image_size)
    if background is not None:
        background = np.asarray(background)
        if background.shape != (height, width, 3) or background.dtype != np.uint8:
            raise ValueError(f'background must be an H x W x 3 uint8 RGB image with (H, W) = '
                             f'image_size = {(height, width)}, got shape {background.shape} '
                             f'dtype {background.dtype}')
    if light_dir is None:
        light_dir = (0.0, 0.0, 1.0)
    renderer = _get_renderer(width, height)
    import pyrender
    import trimesh

    verts_gl = verts * _CV_TO_GL  # a rotation (det +1), so face winding is kept
    # A second copy with reversed winding carries the flipped normals: with back-face culling
    # on, every visible side is drawn by the copy whose normal faces the camera. (pyrender's
    # shader does not flip normals of back faces, so plain double-sided drawing shades the
    # inside of an open mesh as if it were unlit.)
    front = trimesh.Trimesh(verts_gl, faces, process=False)
    back = trimesh.Trimesh(verts_gl, faces[:, ::-1], process=False)
    # The shader gamma-encodes its output, so pass the linear colour that displays as `color`.
    color_linear = np.clip(np.asarray(color, dtype=np.float64), 0.0, 1.0) ** _DISPLAY_GAMMA
    material = pyrender.MetallicRoughnessMaterial(
        baseColorFactor=(*color_linear, 1.0), metallicFactor=0.0, roughnessFactor=_ROUGHNESS,
        alphaMode='OPAQUE', doubleSided=False)
    scene = pyrender.Scene(bg_color=(*np.asarray(_BACKGROUND_RGB) / 255.0, 1.0),
                           ambient_light=(ambient, ambient, ambient))
    scene.add(pyrender.Mesh.from_trimesh([front, back], material=material, smooth=smooth))
    # Clipping planes bracket the mesh; znear well above 0 keeps depth precision (24-bit buffer).
    z_min, z_max = verts[:, 2].min(), verts[:, 2].max()
    # OpenGL samples pixel j at j + 0.5, the OpenCV convention at j: shift the principal point.
    camera = pyrender.IntrinsicsCamera(fx=K[0, 0], fy=K[1, 1], cx=K[0, 2] + 0.5, cy=K[1, 2] + 0.5,
                                       znear=0.5 * z_min, zfar=2.0 * z_max + 1.0)
    scene.add(camera, pose=np.eye(4))
    scene.add(pyrender.DirectionalLight(color=np.ones(3), intensity=light_intensity),
              pose=_light_pose_gl(light_dir))
    rgb, depth = renderer.render(scene)
    depth = np.asarray(depth, dtype=np.float32).copy()
    mask = depth > 0
    rgb = np.array(rgb[:, :, :3], dtype=np.uint8)
    if background is not None:
        rgb = np.where(mask[:, :, None], rgb, background)
    return rgb, depth, mask


def render_views(verts_cam, faces, K, image_size, background=None, **render_kwargs):
    """Render the mesh from the camera and from two other views (names in VIEW_NAMES).

    The 'camera' view is `render_mesh` with `background`. The 'side' and 'top' views rotate the
    mesh 90 deg about its centroid (vertex mean) -- see _ROT_SIDE and _ROT_TOP -- and re-frame
    it: same focal lengths, principal point at the image centre, mesh centroid on the optical
    axis at the depth where its bounding sphere fills _VIEW_FILL of the half image. They have a
    white background.

    Args:
        verts_cam, faces, K, image_size, background: as in render_mesh.
        **render_kwargs: color, light_dir, light_intensity, ambient, smooth (see render_mesh).

    Returns:
        list of 3 H x W x 3 uint8 RGB images in VIEW_NAMES order.
    """
    verts, faces = _check_mesh(verts_cam, faces)
    K = _check_intrinsics(K)
    height, width = _check_image_size(image_size)
    images = [render_mesh(verts, faces, K, (height, width), background=background,
                          **render_kwargs)[0]]

    centroid = verts.mean(axis=0)
    radius = max(np.linalg.norm(verts - centroid, axis=1).max(), 1e-9)
    # A sphere of radius R at distance d images to a disc of radius f R / sqrt(d^2 - R^2).
    half_w, half_h = (width - 1) / 2.0, (height - 1) / 2.0
    spread = max(K[0, 0] / (_VIEW_FILL * max(half_w, 0.5)), K[1, 1] / (_VIEW_FILL * max(half_h, 0.5)))
    distance = radius * math.sqrt(1.0 + spread ** 2)
    K_view = np.array([[K[0, 0], 0.0, half_w], [0.0, K[1, 1], half_h], [0.0, 0.0, 1.0]])
    for rotation in (_ROT_SIDE, _ROT_TOP):
        verts_view = (verts - centroid) @ rotation.T + np.array([0.0, 0.0, distance])
        images.append(render_mesh(verts_view, faces, K_view, (height, width), **render_kwargs)[0])
    return images


def rasterize_mask(verts_cam, faces, K, image_size):
    """Silhouette of a mesh by filling its projected triangles (numpy + cv2, no OpenGL).

    An independent check of render_mesh's mask. Pixel (i, j) is set when at least half of its
    area is covered (estimated on a _SUPERSAMPLE x _SUPERSAMPLE subgrid), so edges agree with
    OpenGL's pixel-centre rule to a fraction of a pixel. Triangles are filled one by one
    (cv2.fillConvexPoly): one cv2.fillPoly call over many polygons uses the even-odd rule and
    would cut holes where triangles overlap.

    Args:
        verts_cam: V x 3, meters, OpenCV camera frame; all z > 0.
        faces: F x 3 integer vertex indices.
        K: 3 x 3 intrinsics, pixels.
        image_size: (H, W) pixels.

    Returns:
        H x W bool mask.
    """
    verts, faces = _check_mesh(verts_cam, faces)
    K = _check_intrinsics(K)
    height, width = _check_image_size(image_size)
    uvw = verts @ K.T
    uv = uvw[:, :2] / uvw[:, 2:]  # (V, 2) pixels
    # Subpixel (a, b) of the fine grid is centred at coarse coordinate (a + 0.5) / s - 0.5.
    uv_fine = (uv + 0.5) * _SUPERSAMPLE - 0.5
    scale = 2 ** _FILL_SHIFT
    points = np.round(np.clip(uv_fine, -_MAX_COORD, _MAX_COORD) * scale).astype(np.int32)
    fine = np.zeros((height * _SUPERSAMPLE, width * _SUPERSAMPLE), dtype=np.uint8)
    for face in faces:
        cv2.fillConvexPoly(fine, points[face], 1, lineType=cv2.LINE_8, shift=_FILL_SHIFT)
    coverage = fine.reshape(height, _SUPERSAMPLE, width, _SUPERSAMPLE).mean(axis=(1, 3))
    return coverage >= 0.5
