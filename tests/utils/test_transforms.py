"""Crop affines, projection and the docs/method.md §3 / docs/method.md §7 target coding, against hand-worked values."""
import cv2
import numpy as np
import pytest

from utils.transforms import (apply_affine, backproject, decode_uvd, encode_uvd, floor_to_crop_pixels,
                              get_affine, project)

BOX_CENTER = (112.0, 112.0)
BOX_SIZE = 130.0


def _random_K(rng):
    f = rng.uniform(300.0, 800.0)
    return np.array([[f, 0.0, 112.0], [0.0, f * 1.001, 112.0], [0.0, 0.0, 1.0]])


def _random_hand(rng):
    center = np.array([0.0, 0.0, 0.5]) + rng.uniform(-0.02, 0.02, size=3)
    return (center + rng.uniform(-0.06, 0.06, size=(778, 3)),
            center + rng.uniform(-0.06, 0.06, size=(21, 3)))


def test_affine_round_trip_returns_points():
    rng = np.random.default_rng(0)
    points = rng.uniform(-50, 270, size=(100, 2))
    for _ in range(10):
        img2crop, crop2img = get_affine(BOX_CENTER, BOX_SIZE, 256, scale=rng.uniform(0.9, 1.1),
                                        rot=rng.uniform(-180, 180), transl=rng.uniform(-10, 10, size=2))
        np.testing.assert_allclose(apply_affine(apply_affine(points, img2crop), crop2img), points, atol=1e-9)
        np.testing.assert_allclose(apply_affine(apply_affine(points, crop2img), img2crop), points, atol=1e-9)


def test_affine_identity_box_maps_centre_and_edges():
    img2crop, _ = get_affine(BOX_CENTER, BOX_SIZE, (256, 256))
    # Box [47, 177]^2 onto [0, 256]^2: u_crop = (u - 47) * 256 / 130.
    points = np.array([[112.0, 112.0], [47.0, 47.0], [177.0, 177.0], [177.0, 112.0], [60.0, 90.0]])
    expected = (points - 47.0) * 256.0 / 130.0
    np.testing.assert_allclose(apply_affine(points, img2crop), expected, atol=1e-9)
    assert np.allclose(expected[0], [128.0, 128.0])


def test_affine_rot90_scale2_corners_by_hand():
    # Box side 260, half 130; rot 90: "down" (0, 130) -> (-130, 0), "right" (130, 0) -> (0, 130).
    # Crop (x, y) comes from image centre + (x-128)/128 * right + (y-128)/128 * down.
    img2crop, crop2img = get_affine(BOX_CENTER, BOX_SIZE, 256, scale=2.0, rot=90.0)
    crop_corners = np.array([[0.0, 0.0], [256.0, 0.0], [0.0, 256.0], [256.0, 256.0], [128.0, 128.0]])
    img_corners = np.array([[242.0, -18.0], [242.0, 242.0], [-18.0, -18.0], [-18.0, 242.0], [112.0, 112.0]])
    np.testing.assert_allclose(apply_affine(crop_corners, crop2img), img_corners, atol=1e-9)
    np.testing.assert_allclose(apply_affine(img_corners, img2crop), crop_corners, atol=1e-9)


def test_affine_translation_moves_source_centre():
    img2crop, _ = get_affine(BOX_CENTER, BOX_SIZE, 256, rot=33.0, transl=(5.0, -3.0))
    np.testing.assert_allclose(apply_affine([[117.0, 109.0]], img2crop), [[128.0, 128.0]], atol=1e-9)


def test_affine_matches_opencv_from_the_same_point_pairs():
    scale, rot, transl = 1.07, -50.0, (4.0, -7.0)
    c, s = np.cos(np.deg2rad(rot)), np.sin(np.deg2rad(rot))
    center = np.array(BOX_CENTER) + transl
    half = BOX_SIZE * scale / 2
    src = np.float32([center, center + [-s * half, c * half], center + [c * half, s * half]])
    dst = np.float32([[128, 128], [128, 256], [256, 128]])
    img2crop, crop2img = get_affine(BOX_CENTER, BOX_SIZE, 256, scale=scale, rot=rot, transl=transl)
    np.testing.assert_allclose(img2crop, cv2.getAffineTransform(src, dst), atol=1e-4)
    np.testing.assert_allclose(crop2img, cv2.getAffineTransform(dst, src), atol=1e-4)


def test_apply_affine_batched():
    rng = np.random.default_rng(1)
    affines = rng.normal(size=(4, 2, 3))
    points = rng.normal(size=(4, 5, 2))
    expected = np.stack([p @ a[:, :2].T + a[:, 2] for p, a in zip(points, affines)])
    np.testing.assert_allclose(apply_affine(points, affines), expected, atol=1e-12)


def test_project_and_backproject_hand_values():
    K = np.array([[500.0, 0.0, 112.0], [0.0, 502.0, 110.0], [0.0, 0.0, 1.0]])
    xyz = np.array([[0.1, -0.05, 0.5], [0.0, 0.0, 2.0]])
    # u = 500 * 0.2 + 112 = 212; v = 502 * -0.1 + 110 = 59.8.
    expected = np.array([[212.0, 59.8, 0.5], [112.0, 110.0, 2.0]])
    np.testing.assert_allclose(project(xyz, K), expected, atol=1e-12)
    np.testing.assert_allclose(backproject(expected, K), xyz, atol=1e-12)


def test_encode_hand_values():
    K = np.array([[500.0, 0.0, 112.0], [0.0, 500.0, 112.0], [0.0, 0.0, 1.0]])
    img2crop, _ = get_affine(BOX_CENTER, BOX_SIZE, 256)
    verts = np.tile([0.0, 0.0, 0.53], (778, 1))  # projects to the image centre, 3 cm behind the wrist
    # u = 500 * 0.065 / 0.5 + 112 = 177 (right edge of the box) -> crop 256 -> normalised 1.
    verts[1] = [0.065, -0.065, 0.5]
    joints = np.tile([0.0, 0.0, 0.5], (21, 1))
    coords = encode_uvd(verts, joints, K, img2crop, crop_size=256, depth_box=0.3)
    assert coords.shape == (799, 3)
    np.testing.assert_allclose(coords[0], [0.0, 0.0, 0.1], atol=1e-12)
    np.testing.assert_allclose(coords[1], [1.0, -1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(coords[778], [0.0, 0.0, 0.0], atol=1e-12)


def test_crop_target_maps_back_onto_the_projection():
    rng = np.random.default_rng(2)
    verts, joints = _random_hand(rng)
    K = _random_K(rng)
    img2crop, crop2img = get_affine(BOX_CENTER, BOX_SIZE, 256, scale=0.95, rot=120.0, transl=(3.0, 8.0))
    coords = encode_uvd(verts, joints, K, img2crop)
    uv_crop = (coords[:, :2] + 1.0) * 128.0
    xyz = np.concatenate([verts, joints])
    uv_expected = np.stack([K[0, 0] * xyz[:, 0] / xyz[:, 2] + 112.0, K[1, 1] * xyz[:, 1] / xyz[:, 2] + 112.0], 1)
    np.testing.assert_allclose(apply_affine(uv_crop, crop2img), uv_expected, atol=1e-9)
    np.testing.assert_allclose(coords[:, 2], (xyz[:, 2] - joints[0, 2]) / 0.3, atol=1e-12)


@pytest.mark.parametrize('crop_size', [256, (192, 256)])
def test_encode_then_decode_recovers_xyz(crop_size):
    rng = np.random.default_rng(3)
    verts, joints = _random_hand(rng)
    K = _random_K(rng)
    img2crop, crop2img = get_affine(BOX_CENTER, BOX_SIZE, crop_size, scale=1.1, rot=-75.0, transl=(-9.0, 2.0))
    coords = encode_uvd(verts, joints, K, img2crop, crop_size=crop_size, depth_box=0.3)
    xyz = decode_uvd(coords, joints[0, 2], crop2img, K, crop_size=crop_size, depth_box=0.3)
    np.testing.assert_allclose(xyz, np.concatenate([verts, joints]), atol=1e-6, rtol=0)


def test_encode_decode_batched_match_per_sample():
    rng = np.random.default_rng(4)
    batch = [_random_hand(rng) for _ in range(3)]
    verts = np.stack([b[0] for b in batch])
    joints = np.stack([b[1] for b in batch])
    Ks = np.stack([_random_K(rng) for _ in range(3)])
    affines = [get_affine(BOX_CENTER, BOX_SIZE, 256, rot=r) for r in (0.0, 45.0, -170.0)]
    img2crop = np.stack([a[0] for a in affines])
    crop2img = np.stack([a[1] for a in affines])
    coords = encode_uvd(verts, joints, Ks, img2crop)
    for b in range(3):
        np.testing.assert_allclose(coords[b], encode_uvd(verts[b], joints[b], Ks[b], img2crop[b]), atol=1e-12)
    xyz = decode_uvd(coords.astype(np.float32), joints[:, 0, 2], crop2img, Ks)
    assert xyz.shape == (3, 799, 3)
    # float32 network-like input: about 1e-7 relative of a 0.5 m scale.
    np.testing.assert_allclose(xyz, np.concatenate([verts, joints], axis=1), atol=1e-5)


def test_fx_as_fy_projects_and_decodes_as_the_published_code():
    # A K with fx != fy (1 % apart, more than FreiHAND's 0.3 % to make the difference plain).
    K = np.array([[500.0, 0.0, 112.0], [0.0, 505.0, 110.0], [0.0, 0.0, 1.0]])
    point = np.array([[0.02, -0.03, 0.5]])
    # Hand-worked: u = fx x / z + cx = 500 * 0.04 + 112 = 132; v with fy = 505 * -0.06 + 110
    # = 79.7; the published code reads K[0][0] for v too: 500 * -0.06 + 110 = 80.
    np.testing.assert_allclose(project(point, K), [[132.0, 79.7, 0.5]], atol=1e-12)
    np.testing.assert_allclose(project(point, K, fx_as_fy=True), [[132.0, 80.0, 0.5]], atol=1e-12)
    np.testing.assert_allclose(backproject([[132.0, 80.0, 0.5]], K, fx_as_fy=True), point, atol=1e-12)

    # Targets: only v moves, by (80 - 79.7) px in the image = 0.3 * 256 / 130 crop px, i.e.
    # 0.3 * 2 / 130 in normalised units (the crop spans 2 units over the 130 px box).
    rng = np.random.default_rng(3)
    verts, joints = _random_hand(rng)
    verts[0], joints[0] = point[0], [0.0, 0.0, 0.5]  # wrist at depth 0.5: depths unchanged
    img2crop, crop2img = get_affine(BOX_CENTER, BOX_SIZE, 256)
    ours = encode_uvd(verts, joints, K, img2crop)
    published = encode_uvd(verts, joints, K, img2crop, fx_as_fy=True)
    np.testing.assert_allclose(ours[:, 0], published[:, 0], atol=1e-12)
    np.testing.assert_allclose(ours[:, 2], published[:, 2], atol=1e-12)
    assert published[0, 1] - ours[0, 1] == pytest.approx(0.3 * 2 / 130, rel=1e-9)
    # Each mode decodes its own targets back to the camera-frame points.
    for fx_as_fy, coords in ((False, ours), (True, published)):
        xyz = decode_uvd(coords, 0.5, crop2img, K, fx_as_fy=fx_as_fy)
        np.testing.assert_allclose(xyz, np.concatenate([verts, joints]), atol=1e-12)
    # Mixing the modes scales y by fx / fy: v - cy = 500 y / z read back with fy = 505.
    mixed = decode_uvd(published, 0.5, crop2img, K)
    assert mixed[0, 1] == pytest.approx(point[0, 1] * 500 / 505, abs=1e-12)


def test_published_floor_of_crop_pixels_by_hand():
    # (value + 1) * 256 // 2 in the network's float32: 1.3 * 128 = 166.4 -> 166; 0.75 * 128 =
    # 96 exactly -> 96; -1e-9 + 1 rounds to 1.0 in float32, so it gives 128 (127 in float64).
    uv_norm = np.array([[0.3, -0.25], [-1e-9, 0.999]], dtype=np.float32)
    np.testing.assert_array_equal(floor_to_crop_pixels(uv_norm, 256), [[166.0, 96.0], [128.0, 255.0]])
    # A 96 px crop: 1.3 * 48 = 62.4 -> 62, 0.75 * 48 = 36.
    np.testing.assert_array_equal(floor_to_crop_pixels(uv_norm[:1], (96, 96)), [[62.0, 36.0]])


def test_published_decoding_floors_then_maps_and_backprojects_with_fx():
    # FreiHAND's test crop: crop px -> image px is 130 / 256 plus 47 (box 130 px at (112, 112)).
    _, crop2img = get_affine(BOX_CENTER, BOX_SIZE, 256)
    K = np.array([[500.0, 0.0, 112.0], [0.0, 510.0, 112.0], [0.0, 0.0, 1.0]])
    coords = np.array([[0.3, -0.25, 0.1]], dtype=np.float32)
    z = np.float64(np.float32(0.1)) * 0.3 + 0.7  # 0.73 m
    # Floored crop pixels (166, 96) -> image (166 * 130 / 256 + 47, 96 * 130 / 256 + 47)
    # = (131.296875, 95.75); x and y both divided by fx = 500.
    expected = [[(131.296875 - 112) * z / 500, (95.75 - 112) * z / 500, z]]
    got = decode_uvd(coords, 0.7, crop2img, K, fx_as_fy=True, floor_uv=True)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    # Unfloored (166.4, 96) -> u 131.5 px: the floor moved x by -0.4 crop px.
    exact = decode_uvd(coords, 0.7, crop2img, K, fx_as_fy=True)
    assert exact[0, 0] - got[0, 0] == pytest.approx(0.4 * 130 / 256 * z / 500, rel=1e-5)
    assert exact[0, 1] == pytest.approx(got[0, 1], abs=1e-12)


def test_published_floor_moves_points_half_a_crop_pixel_on_average():
    # A uniform position within a pixel: the floor's error is U(-1, 0) px, mean -0.5, std
    # 1 / sqrt(12) = 0.289 px, on u and v alike.
    rng = np.random.default_rng(0)
    uv_norm = rng.uniform(-0.9, 0.9, size=(200000, 2)).astype(np.float32)
    error = floor_to_crop_pixels(uv_norm, 256) - (uv_norm.astype(np.float64) + 1.0) * 128
    np.testing.assert_allclose(error.mean(axis=0), [-0.5, -0.5], atol=0.003)
    np.testing.assert_allclose(error.std(axis=0), [12 ** -0.5] * 2, atol=0.003)
    assert error.min() > -1.0 - 1e-4 and error.max() < 1e-4


def test_encode_uses_the_wrist_after_however_many_vertices():
    # The root row follows the vertices given (V + 0), not a constant 778.
    K = np.array([[500.0, 0.0, 112.0], [0.0, 500.0, 112.0], [0.0, 0.0, 1.0]])
    img2crop, _ = get_affine(BOX_CENTER, BOX_SIZE, 256)
    verts = np.array([[0.0, 0.0, 0.6], [0.01, 0.0, 0.9]])
    joints = np.array([[0.0, 0.01, 0.75], [0.0, 0.0, 0.45]])
    depth = encode_uvd(verts, joints, K, img2crop)[:, 2]
    np.testing.assert_allclose(depth, (np.array([0.6, 0.9, 0.75, 0.45]) - 0.75) / 0.3, atol=1e-12)
