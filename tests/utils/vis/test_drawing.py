"""Tests for utils/vis/drawing.py: pixel colours, grid sizes worked out by hand."""
import numpy as np
import pytest

from utils.vis import drawing as vis
from utils.constants import SKELETON

THUMB, INDEX, MIDDLE, RING, PINKY = vis.FINGER_COLORS


def spread_hand():
    """21 joints (u, v) at integer pixels, >= 30 px apart: wrist at the bottom, fingers upward."""
    joints = np.zeros((21, 2))
    joints[0] = (100, 190)
    for finger in range(5):
        for k in range(4):
            joints[1 + 4 * finger + k] = (20 + 40 * finger, 150 - 35 * k)
    return joints


def test_draw_skeleton_paints_joints_and_bones_in_finger_colours():
    img = np.zeros((200, 200, 3), dtype=np.uint8)
    original = img.copy()
    joints = spread_hand()
    out = vis.draw_skeleton(img, joints)

    np.testing.assert_array_equal(img, original)  # input untouched
    assert out.shape == img.shape and out.dtype == np.uint8
    # Joint j (j >= 1) belongs to finger (j - 1) // 4; values are RGB (thumb red first).
    expected = [vis.WRIST_COLOR] + [c for c in vis.FINGER_COLORS for _ in range(4)]
    for (u, v), color in zip(joints.astype(int), expected):
        np.testing.assert_array_equal(out[v, u], color)
    assert tuple(out[150, 20]) == (228, 26, 28)
    # Midpoint of the middle finger's bone 10 -> 11, (100, 97.5), is far from any joint disc.
    np.testing.assert_array_equal(out[97, 100], MIDDLE)
    np.testing.assert_array_equal(out[98, 100], MIDDLE)
    # Wrist -> pinky1 bone is drawn in the pinky colour: midpoint (140, 170).
    np.testing.assert_array_equal(out[170, 140], PINKY)
    # Far from the hand nothing is drawn.
    np.testing.assert_array_equal(out[10, 190], [0, 0, 0])


def test_draw_skeleton_options():
    img = np.full((200, 200, 3), 7, dtype=np.uint8)
    joints = spread_hand()
    bones_only = vis.draw_skeleton(img, joints, radius=0)
    # No discs: the thumb tip (an end point) only gets the line's end, which is thumb coloured.
    np.testing.assert_array_equal(bones_only[45, 20], THUMB)
    joints_only = vis.draw_skeleton(img, joints, thickness=0)
    np.testing.assert_array_equal(joints_only[97, 100], [7, 7, 7])  # no middle-finger bone
    custom = ((1, 2, 3),) * 5
    out = vis.draw_skeleton(img, joints, skeleton=SKELETON[:4], colors=custom, wrist_color=(9, 9, 9))
    np.testing.assert_array_equal(out[150, 60], (1, 2, 3))  # index1 joint
    np.testing.assert_array_equal(out[190, 100], (9, 9, 9))
    np.testing.assert_array_equal(out[97, 100], [7, 7, 7])  # middle bones not in the skeleton


def test_draw_skeleton_rejects_bad_input():
    img = np.zeros((50, 50, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match='21 x 2'):
        vis.draw_skeleton(img, np.zeros((16, 2)))
    joints = spread_hand()
    joints[7, 1] = np.nan
    with pytest.raises(ValueError, match=r'\[7\].*index3'):
        vis.draw_skeleton(img, joints)
    with pytest.raises(ValueError, match='uint8 RGB'):
        vis.draw_skeleton(img.astype(np.float32), spread_hand())


def test_make_grid_sizes_and_placement():
    a = np.full((10, 20, 3), 1, dtype=np.uint8)
    b = np.full((30, 5), 2, dtype=np.uint8)  # grey
    c = np.ones((12, 12), dtype=bool)  # mask -> 255
    grid = vis.make_grid([a, b, c], ncols=2, pad_value=0)
    # Cells are max H x max W = 30 x 20; 3 images in 2 columns -> 2 rows: 60 x 40.
    assert grid.shape == (60, 40, 3) and grid.dtype == np.uint8
    assert np.all(grid[0:10, 0:20] == 1) and np.all(grid[10:30, 0:20] == 0)
    assert np.all(grid[0:30, 20:25] == 2) and np.all(grid[0:30, 25:40] == 0)
    assert np.all(grid[30:42, 0:12] == 255) and np.all(grid[42:60, 0:20] == 0)
    assert np.all(grid[30:60, 20:40] == 0)  # empty last cell
    assert grid.sum() == 10 * 20 * 3 * 1 + 30 * 5 * 3 * 2 + 12 * 12 * 3 * 255

    # More columns than images: one row of 3 cells, 30 x 60.
    assert vis.make_grid([a, b, c], ncols=5).shape == (30, 60, 3)
    # Default padding is white.
    assert np.all(vis.make_grid([a, b], ncols=1)[10:30, 0:20] == 255)


def test_make_grid_labels_write_in_each_cell():
    images = [np.full((60, 100, 3), 128, dtype=np.uint8) for _ in range(2)]
    plain = vis.make_grid(images, ncols=2)
    labelled = vis.make_grid(images, ncols=2, labels=['camera', 'side'])
    assert labelled.shape == plain.shape == (60, 200, 3)
    changed = np.any(labelled != plain, axis=2)
    assert changed[:25, :100].any() and changed[:25, 100:].any()  # text in both cells
    assert not changed[30:].any()  # only near the top
    # Black text with a white outline.
    assert (labelled[:25] == 0).all(axis=2).any() and (labelled[:25] == 255).all(axis=2).any()
    with pytest.raises(ValueError, match='one string per image'):
        vis.make_grid(images, ncols=2, labels=['camera'])


def test_label_outline_hugs_the_text_to_the_last_letter():
    # A thicker white copy of the text advances further per glyph and ends ~2 px per letter to
    # the right of the black text (a doubled last letter); the outline must end with it.
    grid = vis.make_grid([np.full((30, 120, 3), 120, np.uint8)], ncols=1, labels=['skeleton'])
    columns = np.arange(grid.shape[1])
    dark = columns[(grid < 60).all(axis=2).any(axis=0)]
    light = columns[(grid > 200).all(axis=2).any(axis=0)]
    assert len(dark) and len(light)
    assert 0 <= light.max() - dark.max() <= 2 and 0 <= dark.min() - light.min() <= 2
