"""wild/outputs.py: the mesh files (OBJ, GLB, PLY) hold every hand in camera space, 778
vertices each, left hands re-wound; --axes opengl is (x, -y, -z) of the OpenCV numbers for OBJ
and PLY, and a GLB is always in glTF's axes, (x, -y, -z), whatever --axes says; the JSON record
lists the hands; unknown outputs are refused by name."""
import json

import numpy as np
import pytest
import trimesh

from tests.helpers import random_mano_data
from wild.outputs import OUTPUTS, to_axes, write_outputs
from wild.photo import PhotoResult
from wild.records import Hand

K = np.array([[300.0, 0.0, 160.0], [0.0, 300.0, 120.0], [0.0, 0.0, 1.0]])


def hand(side, shift, faces_count=778):
    rng = np.random.default_rng(len(side) + int(100 * (shift + 1)))
    verts = rng.normal(scale=0.03, size=(faces_count, 3)) + [shift, 0.02, 0.6]
    joints = verts[:21]
    return Hand(box_xywh=[10.0, 20.0, 100.0, 100.0], side=side, score=0.9, box_source='boxes',
                K=K, K_source='focal', root_depth=float(joints[0, 2]), root_depth_source='given',
                joints_cam=joints, verts_cam=verts,
                joints_uv=joints[:, :2] / joints[:, 2:] * 300 + [160, 120])


@pytest.fixture()
def scene():
    faces = np.asarray(random_mano_data(0)['f'], dtype=np.int64)
    hands = [hand('right', -0.1), hand('left', 0.1)]
    image = np.zeros((240, 320, 3), np.uint8)
    return image, PhotoResult(hands, [], K, 'focal'), faces


def test_meshes_hold_every_hand_in_camera_space(scene, tmp_path):
    image, result, faces = scene
    paths = write_outputs(tmp_path, 'photo.jpg', image, result, faces, ('obj', 'glb', 'ply', 'json'))
    assert paths == {'obj': str(tmp_path / 'photo.obj'), 'glb': str(tmp_path / 'photo.glb'),
                     'ply': str(tmp_path / 'photo.ply'), 'json': str(tmp_path / 'photo.json')}
    glb = trimesh.load(paths['glb'], force='scene')
    assert sorted(glb.geometry) == ['hand0_right', 'hand1_left']
    for k, (name, side) in enumerate((('hand0_right', 'right'), ('hand1_left', 'left'))):
        mesh = glb.geometry[name]
        assert mesh.vertices.shape == (778, 3)
        # glTF's axes (y up, the camera looking down -z); float32 in the file
        np.testing.assert_allclose(mesh.vertices, result.hands[k].verts_cam * [1, -1, -1],
                                   atol=1e-6)
        expected = faces[:, ::-1] if side == 'left' else faces
        np.testing.assert_array_equal(mesh.faces, expected)
    ply = trimesh.load(paths['ply'], process=False)
    assert ply.vertices.shape == (2 * 778, 3) and ply.faces.shape == (2 * len(faces), 3)
    np.testing.assert_allclose(ply.vertices[778:], result.hands[1].verts_cam, atol=1e-6)
    np.testing.assert_array_equal(ply.faces[len(faces):], faces[:, ::-1] + 778)
    obj = read_obj_vertices(paths['obj'])
    np.testing.assert_allclose(obj, np.concatenate([h.verts_cam for h in result.hands]), atol=5e-7)
    record = json.loads(open(paths['json']).read())
    assert record['image'] == 'photo.jpg' and record['image_size'] == [320, 240]
    assert [h['hand'] for h in record['hands']] == ['right', 'left']
    np.testing.assert_allclose(record['hands'][1]['verts_cam'], result.hands[1].verts_cam, atol=5e-7)


def read_obj_vertices(path):
    return np.array([[float(v) for v in line.split()[1:]] for line in open(path)
                     if line.startswith('v ')])


def test_opengl_axes_flip_y_and_z(scene, tmp_path):
    image, result, faces = scene
    cv = write_outputs(tmp_path / 'cv', 'a.png', image, result, faces, ('obj', 'glb', 'ply'))
    gl = write_outputs(tmp_path / 'gl', 'a.png', image, result, faces, ('obj', 'glb', 'ply'),
                       axes='opengl')
    for output, read in (('obj', read_obj_vertices),
                         ('ply', lambda path: trimesh.load(path, process=False).vertices)):
        opencv, opengl = read(cv[output]), read(gl[output])
        assert opencv.shape == (2 * 778, 3)
        np.testing.assert_allclose(opengl[:, 0], opencv[:, 0], atol=1e-6)
        np.testing.assert_allclose(opengl[:, 1:], -opencv[:, 1:], atol=1e-6)
        assert (opengl[:, 2] < 0).all()  # in front of an OpenGL camera: -z
    # The GLB is in glTF's axes whichever --axes: the opencv OBJ's numbers times (1, -1, -1).
    opencv_obj = read_obj_vertices(cv['obj'])[778:]
    for paths in (cv, gl):
        glb = trimesh.load(paths['glb'], force='scene').geometry['hand1_left'].vertices
        np.testing.assert_allclose(glb, opencv_obj * [1, -1, -1], atol=2e-6)
    np.testing.assert_array_equal(to_axes([[1.0, 2.0, 3.0]], 'opengl'), [[1.0, -2.0, -3.0]])
    with pytest.raises(ValueError, match="axes must be one of"):
        to_axes([[1.0, 2.0, 3.0]], 'blender')


def test_unknown_outputs_are_named_with_the_valid_ones(scene, tmp_path):
    image, result, faces = scene
    with pytest.raises(ValueError) as err:
        write_outputs(tmp_path, 'a.png', image, result, faces, ('obj', 'gltf'))
    assert 'gltf' in str(err.value) and all(name in str(err.value) for name in OUTPUTS)
    assert not list(tmp_path.iterdir())


def test_an_image_without_hands_gets_its_record_only(scene, tmp_path):
    image, _, faces = scene
    paths = write_outputs(tmp_path, 'empty.png', image, PhotoResult([], [], K, 'focal'), faces)
    assert list(paths) == ['json']
    assert json.loads(open(paths['json']).read())['hands'] == []


@pytest.mark.slow  # renders (OSMesa)
def test_a_side_view_behind_the_camera_is_skipped_and_the_rest_written(scene, tmp_path, caplog):
    # A wild prediction whose mesh reaches behind the camera (an untrained network's can).
    image, result, faces = scene
    wide = hand('right', 0.0)
    wide.verts_cam[:, 2] = np.linspace(-0.2, 0.6, len(wide.verts_cam))
    paths = write_outputs(tmp_path, 'wide.png', image, PhotoResult([wide], [], K, 'focal'), faces,
                          outputs=('side', 'obj', 'json'))
    assert sorted(paths) == ['json', 'obj']
    assert not (tmp_path / 'wide_side.png').exists()
    assert 'side view not drawn' in caplog.text


def test_an_output_without_a_video_form_is_refused_for_a_video_with_its_reason():
    from wild.outputs import VIDEO_FORMS, check_outputs
    assert check_outputs(['json', 'obj'], video=True) == ('json', 'obj')
    assert check_outputs(['skeleton']) == ('skeleton',)  # photos have every output
    for name in ('skeleton', 'side', 'mano_overlay'):
        assert name not in VIDEO_FORMS
        with pytest.raises(ValueError, match=f'--outputs {name}: no video form') as err:
            check_outputs(['json', name], video=True)
        assert OUTPUTS[name].no_video in str(err.value)
