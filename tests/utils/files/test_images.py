"""utils/files/images.py: RGB in, BGR on disk, BGR back from read_image; truncated JPEGs named."""
import os

import cv2
import numpy as np
import pytest

from utils.files.images import read_image, save_image


def test_read_image_returns_bgr_as_opencv_stores_it(tmp_path):
    rgb = np.zeros((6, 6, 3), np.uint8)
    rgb[..., 0] = 250  # red
    save_image(tmp_path / 'red.png', rgb)
    img, damage = read_image(tmp_path / 'red.png')
    assert damage is None
    assert (img[..., 2] == 250).all() and (img[..., 0] == 0).all()  # BGR: red is the last channel


def test_read_image_names_a_truncated_jpeg(tmp_path):
    # Noise: the entropy-coded data dominates the file, so cutting it keeps the headers whole.
    noise = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    ok, data = cv2.imencode('.jpg', noise)
    path = tmp_path / 'cut.jpg'
    path.write_bytes(data.tobytes()[: len(data) * 3 // 4])
    img, damage = read_image(path)
    assert img is not None and img.shape == (64, 64, 3)
    assert 'truncated' in damage
    assert read_image(tmp_path / 'missing.jpg') == (None, None)


def test_save_image_round_trip_rgb_to_file(tmp_path):
    img = np.zeros((8, 10, 3), dtype=np.uint8)
    img[..., 0] = 200  # pure-ish red in RGB
    img[2, 3] = (10, 20, 30)
    path = tmp_path / 'new' / 'folder' / 'x.png'
    save_image(path, img)
    on_disk = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # cv2 reads BGR
    np.testing.assert_array_equal(on_disk[..., ::-1], img)
    assert on_disk[0, 0, 2] == 200 and on_disk[0, 0, 0] == 0
    assert os.listdir(path.parent) == ['x.png']  # no temporary file left behind

    grey = np.arange(80, dtype=np.uint8).reshape(8, 10)
    save_image(tmp_path / 'g.png', grey)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / 'g.png'), cv2.IMREAD_UNCHANGED), grey)


def test_save_image_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match='extension'):
        save_image(tmp_path / 'x.unknownext', np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match='uint8'):
        save_image(tmp_path / 'x.png', np.zeros((4, 4, 3), np.float32))
    assert os.listdir(tmp_path) == []
