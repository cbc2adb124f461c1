"""utils/vis/panels.py: result pictures."""
import numpy as np

from utils.vis.panels import enlarge
from utils.transforms import project


def test_enlarge_keeps_projections_on_the_same_content():
    # A point projecting to pixel centre (u, v) of a 96 px crop must land on the centre of the
    # block that pixel became: with s = 3, pixel (10, 20) covers u' in [30, 32], centre 31.
    crop = np.zeros((96, 96, 3), dtype=np.uint8)
    crop[20, 10] = 255
    K = np.array([[100.0, 0.0, 48.0], [0.0, 100.0, 48.0], [0.0, 0.0, 1.0]])
    point = np.array([[(10 - 48) / 100 * 0.5, (20 - 48) / 100 * 0.5, 0.5]])  # -> (10, 20)
    big, K_big = enlarge(crop, K)
    assert big.shape == (288, 288, 3)
    np.testing.assert_allclose(project(point, K_big)[0, :2], [31.0, 61.0], atol=1e-9)
    assert big[61, 31].max() > 128 and big[61, 37].max() == 0  # the bright pixel's block
    same, K_same = enlarge(np.zeros((256, 256, 3), np.uint8), K)
    assert same.shape == (256, 256, 3) and np.array_equal(K_same, K)
