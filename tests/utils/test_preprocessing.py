"""Crop, colour gain, normalisation and augmentation draws (docs/method.md §2), against hand-worked pixels."""
import numpy as np

from utils.preprocessing import augment_params, crop_and_augment, normalize


def test_unit_box_crop_is_the_image():
    # Box centre (128, 128), side 256, onto a 256 crop: the identity map.
    img = np.random.default_rng(0).integers(0, 256, size=(256, 256, 3), dtype=np.uint8)
    crop, img2crop, _ = crop_and_augment(img, (128.0, 128.0), 256.0, 256)
    np.testing.assert_allclose(img2crop, [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    np.testing.assert_array_equal(crop, img)


def test_rot90_crop_by_hand():
    # rot 90 with that box: crop (x, y) samples image (u, v) = (256 - y, x), i.e. row x, column 256 - y.
    img = np.random.default_rng(1).integers(0, 256, size=(256, 256, 3), dtype=np.uint8)
    crop, _, _ = crop_and_augment(img, (128.0, 128.0), 256.0, 256, rot=90.0)
    ys, xs = np.mgrid[1:256, 0:256]
    np.testing.assert_array_equal(crop[1:], img[xs, 256 - ys])
    np.testing.assert_array_equal(crop[0], 0)  # column 256 is outside the image: zero border


def test_color_gain_truncates_clips_in_bgr_order():
    img = np.empty((224, 224, 3), dtype=np.uint8)
    img[...] = (100, 250, 50)  # B, G, R
    crop, _, _ = crop_and_augment(img, (112.0, 112.0), 130.0, 256, color_gain=(1.195, 1.2, 0.817))
    # B: 100 * 1.195 = 119.5 -> 119 (truncated, not rounded); G: 300 -> clipped 255;
    # R: 50 * 0.817 = 40.85 -> 40.
    assert crop.dtype == np.uint8
    np.testing.assert_array_equal(crop[128, 128], [119, 255, 40])
    np.testing.assert_array_equal(crop[5, 250], [119, 255, 40])


def test_color_gain_keeps_zero_border():
    img = np.full((224, 224, 3), 200, dtype=np.uint8)
    crop, _, _ = crop_and_augment(img, (112.0, 112.0), 130.0, 256, scale=2.0, color_gain=(1.1, 1.1, 1.1))
    # Scale 2: the source box [-18, 242] exceeds the image; crop corner (0, 0) is image (-18, -18).
    np.testing.assert_array_equal(crop[0, 0], [0, 0, 0])
    np.testing.assert_array_equal(crop[128, 128], [220, 220, 220])


def test_normalize_hand_pixel():
    crop = np.zeros((2, 3, 3), dtype=np.uint8)
    crop[1, 2] = (10, 128, 250)  # B, G, R
    out = normalize(crop)
    assert out.shape == (3, 2, 3) and out.dtype == np.float32
    expected_rgb = [(250 / 255 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (10 / 255 - 0.406) / 0.225]
    np.testing.assert_allclose(out[:, 1, 2], expected_rgb, rtol=1e-6)
    np.testing.assert_allclose(out[:, 0, 0], [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225], rtol=1e-6)


def test_augment_params_ranges_and_reproducibility():
    rng = np.random.default_rng(5)
    draws = [augment_params(rng) for _ in range(2000)]
    scale = np.array([d['scale'] for d in draws])
    rot = np.array([d['rot'] for d in draws])
    transl = np.array([d['transl'] for d in draws])
    gain = np.array([d['color_gain'] for d in draws])
    assert transl.shape == (2000, 2) and gain.shape == (2000, 3)
    assert 0.9 <= scale.min() and scale.max() <= 1.1 and scale.max() - scale.min() > 0.19
    assert -180 <= rot.min() and rot.max() <= 180 and rot.max() - rot.min() > 350
    assert -10 <= transl.min() and transl.max() <= 10 and abs(np.corrcoef(transl.T)[0, 1]) < 0.1
    assert 0.8 <= gain.min() and gain.max() <= 1.2
    again = augment_params(np.random.default_rng(5))
    assert again['scale'] == draws[0]['scale'] and np.array_equal(again['color_gain'], draws[0]['color_gain'])


def test_lookup_tables_equal_the_per_pixel_formulas():
    # The gain and normalisation tables give bit for bit what the formulas of docs/method.md §2 give
    # when applied to every pixel (float64 gain, truncation; float32 normalisation).
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8)
    img[:2].reshape(-1, 3)[:256] = np.arange(256)[:, None]  # every level appears
    for gain in ((0.8, 1.2, 1.0), tuple(rng.uniform(0.8, 1.2, size=3))):
        crop, _, _ = crop_and_augment(img, (112.0, 112.0), 224.0, 224, color_gain=gain)
        plain, _, _ = crop_and_augment(img, (112.0, 112.0), 224.0, 224)
        direct = np.clip(plain * np.asarray(gain)[None, None, :], 0.0, 255.0).astype(np.uint8)
        np.testing.assert_array_equal(crop, direct)
        rgb = crop[..., ::-1].astype(np.float32) / np.float32(255.0)
        mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)
        std = np.array([0.229, 0.224, 0.225], dtype=np.float32)
        np.testing.assert_array_equal(normalize(crop), ((rgb - mean) / std).transpose(2, 0, 1))


def test_normalize_rejects_float_input():
    import pytest
    with pytest.raises(ValueError, match='uint8'):
        normalize(np.zeros((4, 4, 3), dtype=np.float32))
