"""Intrinsics of your own images (given, JSON, EXIF, default field of view, checks) and the root
depth from the hand's size, against independent computations on stand-in MANO hands."""
import json
import math

import numpy as np
import pytest
from PIL import Image

from inference.root_depth import RootDepthPrior, place_at_root_depth, solve_root_depth
from wild.camera import (DEFAULT_FOV_DEG, check_intrinsics, exif_focal_35mm, image_intrinsics,
                         parse_K)
from utils.errors import ImageInputError
from synthetic.geometry import GeometrySampler, sample_generators
from utils.constants import SKELETON
from utils.mano import MANO
from utils.transforms import project

PARENTS, CHILDREN = (list(p) for p in zip(*SKELETON))


@pytest.fixture(scope='module')
def hands(standin_mano):
    """40 stand-in hands in FreiHAND framing: camera-frame joints (m) and K."""
    sampler = GeometrySampler(standin_mano, max_tilt=50.0)
    geometry = sampler.sample([sample_generators(3, 1, i)[0] for i in range(40)])
    return geometry['xyz'], geometry['K']


def test_K_numbers_and_json_forms(tmp_path):
    K, source = parse_K('500,510,100.5,80')
    np.testing.assert_array_equal(K, [[500, 0, 100.5], [0, 510, 80], [0, 0, 1]])
    assert source == 'K'
    for i, content in enumerate(({'fx': 500, 'fy': 510, 'cx': 100.5, 'cy': 80},
                                 {'K': K.tolist()}, K.tolist())):
        path = tmp_path / f'k{i}.json'
        path.write_text(json.dumps(content))
        parsed, source = parse_K(str(path))
        np.testing.assert_array_equal(parsed, K)
        assert source == 'K_file'
    (tmp_path / 'bad.json').write_text(json.dumps({'focal': 3}))
    with pytest.raises(ImageInputError, match=r'bad\.json.*"fx"'):
        parse_K(str(tmp_path / 'bad.json'))
    with pytest.raises(ImageInputError, match='four numbers'):
        parse_K('500,500')


def test_exif_focal_and_default_field_of_view(tmp_path):
    width, height = 300, 200
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 26  # FocalLengthIn35mmFilm, mm
    Image.new('RGB', (width, height)).save(tmp_path / 'phone.jpg', exif=exif)
    Image.new('RGB', (width, height)).save(tmp_path / 'plain.jpg')
    assert exif_focal_35mm(str(tmp_path / 'phone.jpg')) == 26
    K, source, _ = image_intrinsics(width, height, image_path=str(tmp_path / 'phone.jpg'))
    # 26 mm on a 36 mm film side, which the 300 px side spans.
    assert source == 'exif' and K[0, 0] == pytest.approx(26 / 36 * 300) == K[1, 1]
    assert (K[0, 2], K[1, 2]) == (149.5, 99.5)
    K, source, _ = image_intrinsics(width, height, image_path=str(tmp_path / 'plain.jpg'))
    half_angle = math.atan(150 / K[0, 0])
    assert source == 'default_fov' and math.degrees(2 * half_angle) == pytest.approx(DEFAULT_FOV_DEG)
    assert image_intrinsics(width, height, focal=400.0)[:2][1] == 'focal'


def test_a_K_of_another_image_or_a_bad_focal_is_refused():
    K = parse_K('300,300,112,112')[0]
    check_intrinsics(K, 224, 224, 'a.jpg')
    with pytest.raises(ImageInputError, match=r'small\.jpg: principal point \(112, 112\).*100 x 80'):
        check_intrinsics(K, 100, 80, 'small.jpg')
    with pytest.raises(ImageInputError, match=r'a\.jpg: focal length fx=-300'):
        check_intrinsics(parse_K('-300,300,112,112')[0], 224, 224, 'a.jpg')


def _ground_truth_inputs(xyz, K):
    uvd = project(xyz, K)
    return uvd[..., :2], uvd[..., 2] - uvd[..., :1, 2]


def _skeleton_length(xyz):
    return np.linalg.norm(xyz[:, CHILDREN] - xyz[:, PARENTS], axis=-1).sum(-1)


def _slope(xyz, depth):
    """dL/dZ of the skeleton length with the wrist moved to depth Z along the true rays,
    from the 3D joints themselves: the ray of joint j is X_j / z_j (no K involved)."""
    rays = xyz / xyz[..., 2:]
    rel = xyz[..., 2] - xyz[..., :1, 2]
    points = rays * (depth[:, None] + rel)[..., None]
    bones = points[:, CHILDREN] - points[:, PARENTS]
    a = rays[:, CHILDREN] - rays[:, PARENTS]
    return ((a * bones).sum(-1) / np.linalg.norm(bones, axis=-1)).sum(-1)


def test_ground_truth_depth_recovered_exactly_with_the_hands_own_size(hands):
    xyz, K = hands
    uv, rel = _ground_truth_inputs(xyz, K)
    depth = solve_root_depth(uv, rel, K, _skeleton_length(xyz))
    np.testing.assert_allclose(depth, xyz[:, 0, 2], rtol=1e-9)


def test_ground_truth_depth_with_the_prior_within_the_convexity_bound(hands, standin_mano):
    """L(Z) is convex, so by the mean value theorem |Z - Z_true| <= |L* - L_true| / min(L'(Z_true),
    L'(Z)); L' comes from the 3D joints (_slope), not from the solver."""
    xyz, K = hands
    mano = MANO(standin_mano)
    prior = RootDepthPrior(0.0326, mano.joints_from_verts(mano.template))
    uv, rel = _ground_truth_inputs(xyz, K)
    depth = solve_root_depth(uv, rel, K, prior.skeleton_m)
    truth = xyz[:, 0, 2]
    length = _skeleton_length(xyz)
    bound = np.abs(prior.skeleton_m - length) / np.minimum(_slope(xyz, truth), _slope(xyz, depth))
    assert np.all(np.abs(depth - truth) <= bound * (1 + 1e-6) + 1e-9)
    # and the first-order estimate holds on average: depth error ~ size error / elasticity
    assert np.median(np.abs(depth / truth - 1)) < 0.15


def test_collapsed_joints_are_named():
    uv = np.full((21, 2), 50.0)
    K = parse_K('300,300,50,50')[0]
    with pytest.raises(ImageInputError, match=r'hand\.jpg: --root_depth auto: the predicted joints '
                                              r'collapse'):
        solve_root_depth(uv, np.zeros(21), K, 0.7, names=['hand.jpg'])


def test_moving_the_wrist_keeps_pixels_and_relative_depths(hands):
    xyz, K = hands
    moved = place_at_root_depth(xyz, np.full(len(xyz), 2.0), K, num_joint=21)
    np.testing.assert_allclose(project(moved, K)[..., :2], project(xyz, K)[..., :2],
                               atol=1e-9)
    np.testing.assert_allclose(moved[..., 2] - moved[..., :1, 2], xyz[..., 2] - xyz[..., :1, 2],
                               atol=1e-12)
    assert np.all(moved[:, -21, 2] == 2.0)
