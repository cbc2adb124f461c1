"""Tests for utils/vis/render.py against analytic projections of spheres.

Renders offscreen with OSMesa (no GPU). This module must not import torchvision (see the
library-clash note in utils/vis/render.py).
"""
import os
import sys
import types

import numpy as np
import pytest
import trimesh

from utils.vis import render
from utils.runtime.machine import resident_mb

# Non-square image and fx != fy so that swapped axes or a transposed image would show.
HEIGHT, WIDTH = 200, 240
FX, FY, CX, CY = 500.0, 520.0, 120.0, 100.0
K = np.array([[FX, 0.0, CX], [0.0, FY, CY], [0.0, 0.0, 1.0]])


@pytest.fixture(scope='module', autouse=True)
def osmesa_platform():
    """Render with OSMesa unless the caller chose a platform; free the renderers afterwards."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('PYOPENGL_PLATFORM', os.environ.get('PYOPENGL_PLATFORM', 'osmesa'))
        yield
        render.close_renderers()


def sphere(radius, center, subdivisions=4):
    """Icosphere (V x 3 verts in m, F x 3 faces) of `radius` m about `center` (camera frame)."""
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return mesh.vertices + np.asarray(center), mesh.faces


def projected_disc(radius, depth):
    """Analytic silhouette of a sphere centred on the optical axis at `depth` m.

    The silhouette cone has half-angle asin(r / z), so image points satisfy
    ((u - cx) / fx)^2 + ((v - cy) / fy)^2 <= r^2 / (z^2 - r^2).
    """
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH]
    return ((u - CX) / FX) ** 2 + ((v - CY) / FY) ** 2 <= radius ** 2 / (depth ** 2 - radius ** 2)


def iou(a, b):
    return np.count_nonzero(a & b) / np.count_nonzero(a | b)


def centroid_uv(mask):
    """Mean (u, v) pixel coordinates of a mask."""
    rows, cols = np.nonzero(mask)
    return np.array([cols.mean(), rows.mean()])


def test_sphere_silhouette_and_depth_match_projection():
    radius, depth = 0.05, 0.5
    verts, faces = sphere(radius, (0.0, 0.0, depth))
    rgb, depth_map, mask = render.render_mesh(verts, faces, K, (HEIGHT, WIDTH))
    assert rgb.shape == (HEIGHT, WIDTH, 3) and rgb.dtype == np.uint8
    assert depth_map.shape == (HEIGHT, WIDTH) and depth_map.dtype == np.float32
    assert mask.shape == (HEIGHT, WIDTH) and mask.dtype == np.bool_

    disc = projected_disc(radius, depth)
    assert iou(mask, disc) > 0.99
    # 0.25 px catches a missed OpenGL half-pixel shift (pixel centres at j + 0.5).
    np.testing.assert_allclose(centroid_uv(mask), [CX, CY], atol=0.25)
    # Nearest point of the sphere, seen at the principal point, is at z - r.
    assert abs(depth_map[int(CY), int(CX)] - (depth - radius)) < 1e-3
    np.testing.assert_array_equal(mask, depth_map > 0)
    assert np.all(rgb[~mask] == 255)  # white background without a background image


def test_rasterize_mask_matches_projection_and_pyrender():
    radius, depth = 0.05, 0.5
    verts, faces = sphere(radius, (0.0, 0.0, depth))
    soft_mask = render.rasterize_mask(verts, faces, K, (HEIGHT, WIDTH))
    _, _, gl_mask = render.render_mesh(verts, faces, K, (HEIGHT, WIDTH))
    assert soft_mask.shape == (HEIGHT, WIDTH) and soft_mask.dtype == np.bool_
    assert iou(soft_mask, projected_disc(radius, depth)) > 0.97
    assert iou(soft_mask, gl_mask) > 0.97
    np.testing.assert_allclose(centroid_uv(soft_mask), [CX, CY], atol=0.25)


def test_off_centre_object_lands_where_projection_says():
    # x right (+u), y down (+v): a point at x > 0, y < 0 appears right of and above the centre.
    center = np.array([0.05, -0.03, 0.5])
    verts, faces = sphere(0.01, center, subdivisions=3)
    expected_uv = [CX + FX * center[0] / center[2], CY + FY * center[1] / center[2]]  # (170, 68.8)
    _, depth_map, mask = render.render_mesh(verts, faces, K, (HEIGHT, WIDTH))
    np.testing.assert_allclose(centroid_uv(mask), expected_uv, atol=0.5)
    np.testing.assert_allclose(centroid_uv(render.rasterize_mask(verts, faces, K, (HEIGHT, WIDTH))),
                               expected_uv, atol=0.5)
    assert depth_map[mask].min() == pytest.approx(center[2] - 0.01, abs=1e-3)  # z - r


def test_background_composite_keeps_pixels_outside_mask():
    verts, faces = sphere(0.05, (0.01, 0.02, 0.5))
    background = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    plain, _, plain_mask = render.render_mesh(verts, faces, K, (HEIGHT, WIDTH))
    rgb, _, mask = render.render_mesh(verts, faces, K, (HEIGHT, WIDTH), background=background)
    np.testing.assert_array_equal(mask, plain_mask)
    assert 0 < np.count_nonzero(mask) < mask.size
    np.testing.assert_array_equal(rgb[~mask], background[~mask])
    np.testing.assert_array_equal(rgb[mask], plain[mask])


def test_open_mesh_inside_is_shaded_like_outside():
    # Keep only the far half of a sphere: the camera looks into the bowl, at faces whose
    # outward normals point away from it. They must be drawn and lit, not culled or black.
    radius, depth = 0.05, 0.5
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=radius)
    far_faces = mesh.faces[mesh.triangles_center[:, 2] > 0]
    verts = mesh.vertices + [0.0, 0.0, depth]
    bowl_rgb, bowl_depth, bowl_mask = render.render_mesh(verts, far_faces, K, (HEIGHT, WIDTH))
    ball_rgb, _, _ = render.render_mesh(verts, mesh.faces, K, (HEIGHT, WIDTH))

    # The rim (the equator, at depth z) projects to the ellipse of semi-axes f r / z.
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH]
    rim_disc = ((u - CX) * depth / (FX * radius)) ** 2 + ((v - CY) * depth / (FY * radius)) ** 2 <= 1
    assert iou(bowl_mask, rim_disc) > 0.97
    assert abs(bowl_depth[int(CY), int(CX)] - (depth + radius)) < 1e-3
    # Bottom of the bowl and front of the ball both face the camera and its light.
    np.testing.assert_allclose(bowl_rgb[int(CY), int(CX)].astype(int),
                               ball_rgb[int(CY), int(CX)].astype(int), atol=3)


def test_light_from_camera_shades_rim_darker_than_centre():
    radius, depth = 0.05, 0.5
    verts, faces = sphere(radius, (0.0, 0.0, depth))
    rgb, _, _ = render.render_mesh(verts, faces, K, (HEIGHT, WIDTH))
    rim_u = int(CX + 0.95 * FX * radius / np.sqrt(depth ** 2 - radius ** 2))
    centre, rim = rgb[int(CY), int(CX)].astype(int), rgb[int(CY), rim_u].astype(int)
    assert np.all(centre > rim + 20)
    assert centre[0] > centre[1] > centre[2]  # hue of the default skin colour (0.8, 0.6, 0.5)


def test_render_views_frames_and_orients_the_extra_views():
    # Big sphere far, small sphere near; same vertex count, so the centroid is midway (z = 0.55).
    big_verts, faces = sphere(0.03, (0.0, 0.0, 0.6), subdivisions=3)
    small_verts, _ = sphere(0.01, (0.0, 0.0, 0.5), subdivisions=3)
    verts = np.concatenate([big_verts, small_verts])
    faces = np.concatenate([faces, faces + len(big_verts)])
    background = np.full((HEIGHT, WIDTH, 3), 40, dtype=np.uint8)

    views = render.render_views(verts, faces, K, (HEIGHT, WIDTH), background=background)
    assert len(views) == len(render.VIEW_NAMES) == 3
    for view in views:
        assert view.shape == (HEIGHT, WIDTH, 3) and view.dtype == np.uint8
    np.testing.assert_array_equal(
        views[0], render.render_mesh(verts, faces, K, (HEIGHT, WIDTH), background=background)[0])

    image_centre = np.array([(WIDTH - 1) / 2, (HEIGHT - 1) / 2])
    side_mask, top_mask = (np.any(view != 255, axis=2) for view in views[1:])
    for mask in (side_mask, top_mask):
        assert mask.any()
        # Framed: the mesh fills the middle of the image without touching its border.
        assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
    # Seen from the right, the far big sphere is right of centre; from above, it is at the top.
    side_offset = centroid_uv(side_mask) - image_centre
    top_offset = centroid_uv(top_mask) - image_centre
    assert side_offset[0] > 10 and abs(side_offset[1]) < 1
    assert top_offset[1] < -10 and abs(top_offset[0]) < 1


def test_bad_inputs_raise_with_the_value():
    verts, faces = sphere(0.05, (0.0, 0.0, 0.5), subdivisions=1)
    with pytest.raises(ValueError, match='in front of the camera'):
        render.render_mesh(verts - [0.0, 0.0, 1.0], faces, K, (HEIGHT, WIDTH))
    with pytest.raises(ValueError, match='no skew'):
        render.rasterize_mask(verts, faces, K + [[0, 1, 0], [0, 0, 0], [0, 0, 0]], (HEIGHT, WIDTH))
    with pytest.raises(ValueError, match='faces index'):
        render.rasterize_mask(verts, faces + len(verts), K, (HEIGHT, WIDTH))
    with pytest.raises(ValueError, match='background'):
        render.render_mesh(verts, faces, K, (HEIGHT, WIDTH),
                           background=np.zeros((WIDTH, HEIGHT, 3), np.uint8))


def test_unsupported_platform_is_named(monkeypatch):
    # A size no other test uses, so no cached renderer exists and creation is attempted.
    monkeypatch.setenv('PYOPENGL_PLATFORM', 'glx')
    verts, faces = sphere(0.05, (0.0, 0.0, 0.5), subdivisions=1)
    with pytest.raises(RuntimeError, match="PYOPENGL_PLATFORM='glx'.*osmesa"):
        render.render_mesh(verts, faces, K, (17, 19))


def test_context_failure_says_what_to_install(monkeypatch):
    # Stand-in for pyrender failing the way a machine without libOSMesa does.
    def failing_renderer(width, height):
        raise AttributeError("'NoneType' object has no attribute 'OSMesaCreateContextAttribs'")
    monkeypatch.setitem(sys.modules, 'pyrender', types.SimpleNamespace(OffscreenRenderer=failing_renderer))
    monkeypatch.setenv('PYOPENGL_PLATFORM', 'osmesa')
    verts, faces = sphere(0.05, (0.0, 0.0, 0.5), subdivisions=1)
    with pytest.raises(RuntimeError, match="PYOPENGL_PLATFORM='osmesa'") as info:
        render.render_mesh(verts, faces, K, (23, 29))  # a size no other test uses
    message = str(info.value)
    assert 'OSMesaCreateContextAttribs' in message and 'libosmesa6' in message
    assert 'libegl1' in message and 'PYOPENGL_PLATFORM=osmesa' in message


def test_close_renderers_then_render_again():
    verts, faces = sphere(0.05, (0.0, 0.0, 0.5), subdivisions=2)
    _, _, before = render.render_mesh(verts, faces, K, (HEIGHT, WIDTH))
    render.close_renderers()
    _, _, after = render.render_mesh(verts, faces, K, (HEIGHT, WIDTH))
    np.testing.assert_array_equal(before, after)


@pytest.mark.skipif(not os.path.exists('/proc/self/status'), reason='reads /proc/self/status')
def test_repeated_renders_keep_memory_flat():
    # With OSMesa, PyOpenGL gave the current context as a new object per call, never equal to
    # the last: pyrender compiled and kept a new shader program for every draw (about 5 MB per
    # render, 150 MB over these 30; utils/vis/render.py, Memory).
    verts, faces = sphere(0.05, (0.0, 0.0, 0.5), subdivisions=2)
    for _ in range(3):  # the renderer, its programs and the allocator's pools settle
        render.render_mesh(verts, faces, K, (HEIGHT, WIDTH))
    from OpenGL import contextdata  # after the first render (PyOpenGL after Triton: module doc)
    assert contextdata.getContext() == contextdata.getContext()
    before = resident_mb()
    for _ in range(30):
        render.render_mesh(verts, faces, K, (HEIGHT, WIDTH))
    assert resident_mb() - before < 20, f'{resident_mb() - before:.0f} MiB more after 30 renders'
