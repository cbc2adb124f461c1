"""The custom data set (dataset/custom, docs/own_data.md): reading, checking, mirroring, the
converters, and train.py / test.py on a synthetic FreiHAND set converted to the format."""
import copy
import json
import os

import cv2
import numpy as np
import pytest
import torch

import test as test_script
import train
from dataset.custom import Custom, LabelError, read_labels
from dataset.custom import check as check_cli
from dataset.custom import convert
from dataset.custom.labels import mirror_points
from synthetic.fixture import make_freihand
from utils.files.images import read_image
from utils.mano import MANO


def small_args(out, data_root, mano, *extra):
    """The real network at 64 px with ResNet-18, one epoch, CPU (as tests/test_train.py)."""
    return ['--device', 'cpu', '--backbone', 'resnet18', '--input_img_shape', '64,64',
            '--pretrained_backbone', 'false', '--batch_size', '4', '--num_worker', '0',
            '--total_epoch', '1', '--print_iter', '1', '--amp', 'off', '--tensorboard', 'false',
            '--data_root', str(data_root), '--mano_root', str(mano),
            '--output_root', str(out), '--experiment_name', 'tiny', *extra]


def read_lines(folder):
    with open(os.path.join(folder, 'labels.jsonl')) as f:
        return [json.loads(line) for line in f]


def lines_for(folder, workspace, rows=slice(None)):
    """The converted lines `rows` with image paths relative to `folder`."""
    up = os.path.relpath(workspace / 'custom', folder)
    return [{**line, 'image': os.path.join(up, line['image'])}
            for line in read_lines(workspace / 'custom')[rows]]


def write_lines(folder, lines):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, 'labels.jsonl'), 'w') as f:
        f.writelines(json.dumps(line) + '\n' for line in lines)


def mirrored_copy(source, target):
    """`source`'s hands as left hands: every image flipped (lossless PNG), K, box and points
    mirrored as docs/own_data.md says."""
    lines = []
    for k, line in enumerate(read_lines(source)):
        img, _ = read_image(os.path.join(source, line['image']))
        width = img.shape[1]
        name = f'left_{k}.png'
        os.makedirs(target, exist_ok=True)
        cv2.imwrite(os.path.join(target, name), cv2.flip(img, 1))
        K = np.array(line['K'])
        K[0, 2] = width - 1 - K[0, 2]
        x, y, w, h = line['box']
        lines.append({**line, 'image': name, 'side': 'left', 'K': K.tolist(),
                      'box': [width - 1 - x - w, y, w, h],
                      'joints_3d': mirror_points(line['joints_3d']).tolist(),
                      'verts_3d': mirror_points(line['verts_3d']).tolist()})
    write_lines(target, lines)


@pytest.fixture(scope='module')
def workspace(tmp_path_factory, random_mano_dir):
    """A synthetic FreiHAND folder (3 training, 4 evaluation samples), its conversion to the
    custom format (both parts, one folder), the MANO folder and a one-epoch checkpoint."""
    root = tmp_path_factory.mktemp('custom')
    make_freihand(str(root / 'FreiHAND'), num_samples=3, num_eval=4)
    (root / 'mano').symlink_to(random_mano_dir, target_is_directory=True)
    custom = str(root / 'custom')
    args = convert.parser().parse_args(['freihand', '--root', str(root / 'FreiHAND'), '--out',
                                        custom])
    args.part = 'training'
    train_lines = list(convert.freihand_lines(args))
    args.part = 'evaluation'
    convert.write_labels(custom, train_lines + list(convert.freihand_lines(args)))
    return root


def test_lines_read_back_as_the_freihand_reader_sees_them(workspace):
    hands = read_labels(workspace / 'custom')
    assert [h.split for h in hands] == ['train'] * 12 + ['test'] * 4  # 4 image versions x 3
    assert all(h.box.tolist() == [47.0, 47.0, 130.0, 130.0] for h in hands)
    rootnet = json.loads((workspace / 'FreiHAND' / 'bbox_root_freihand_output.json').read_text())
    assert [h.root_depth for h in hands[12:]] == [
        float(np.float32(e['root_cam'][2])) for e in rootnet]
    xyz = json.loads((workspace / 'FreiHAND' / 'evaluation_xyz.json').read_text())
    assert np.array_equal(np.stack([h.joints for h in hands[12:]]), np.array(xyz))


def test_a_left_hand_item_is_the_right_hand_item_of_the_mirrored_image(workspace, tmp_path):
    mirrored_copy(workspace / 'custom', tmp_path / 'left')
    right = Custom('training', workspace / 'custom', mano_root=workspace / 'mano')
    left = Custom('training', tmp_path / 'left', mano_root=workspace / 'mano')
    for idx in (0, 5):
        a, b = right.get_item_with_aug(idx), left.get_item_with_aug(idx)
        np.testing.assert_array_equal(a[0]['img'], b[0]['img'])
        np.testing.assert_allclose(a[1]['mesh_pose_uvd'], b[1]['mesh_pose_uvd'], atol=1e-6)
        np.testing.assert_allclose(a[2]['K'], b[2]['K'], atol=1e-4)
    xyz = np.random.default_rng(0).normal(size=(len(left.hands), 21, 3))
    back, = left.to_image_frame(xyz)
    np.testing.assert_array_equal(back[..., 0], -xyz[..., 0])
    np.testing.assert_array_equal(back[..., 1:], xyz[..., 1:])


def test_mano_lines_are_posed_with_the_model_of_their_side(workspace, tmp_path):
    line, = lines_for(tmp_path / 'd', workspace, slice(0, 1))
    del line['verts_3d']
    trans = [0.01, -0.02, 0.5]
    line['mano'] = {'pose': [0.0] * 48, 'shape': [0.0] * 10, 'trans': trans}
    write_lines(tmp_path / 'd', [line, {**line, 'side': 'left'}])
    right, left = read_labels(tmp_path / 'd', workspace / 'mano')
    # The flat hand of zero pose and shape is the template, moved by trans.
    for hand, side in ((right, 'right'), (left, 'left')):
        np.testing.assert_allclose(hand.verts, MANO(str(workspace / 'mano'), side).template + trans,
                                   atol=1e-6)


def test_joints_only_lines_train_with_zero_verts_valid(workspace, tmp_path):
    lines = lines_for(tmp_path / 'd', workspace)
    for line in lines[:6]:
        del line['verts_3d']
    write_lines(tmp_path / 'd', lines)
    data = Custom('training', tmp_path / 'd')
    assert [float(data[k][1]['verts_valid']) for k in (0, 5, 6)] == [0.0, 0.0, 1.0]
    assert np.isfinite(data[0][1]['mesh_pose_uvd']).all()


def test_demo_records_become_flagged_pseudo_labels(workspace, tmp_path):
    line = read_lines(workspace / 'custom')[12]
    photo = tmp_path / 'photos'
    photo.mkdir()
    img, _ = read_image(os.path.join(workspace / 'custom', line['image']))
    cv2.imwrite(str(photo / 'a.png'), img)
    record = {'image': 'a.png', 'image_size': [224, 224], 'hands': [{
        'hand': 'left', 'score': 0.9, 'box': line['box'], 'K': line['K'], 'root_depth_m': 0.5,
        'joints_cam': line['joints_3d'], 'verts_cam': line['verts_3d']}]}
    (tmp_path / 'records').mkdir()
    (tmp_path / 'records' / 'a.json').write_text(json.dumps(record))
    assert convert.main(['demo', '--records', str(tmp_path / 'records'), '--images', str(photo),
                         '--out', str(tmp_path / 'pseudo')]) == 0
    written, = read_lines(tmp_path / 'pseudo')
    assert written['pseudo_label'] is True and written['side'] == 'left'
    assert written['joints_3d'] == line['joints_3d'] and written['root_depth'] == 0.5
    assert read_labels(tmp_path / 'pseudo')[0].pseudo_label


# ---- bad input: refused with labels.jsonl, the line number and the field; nothing written ----

def _set(field, value):
    def change(line, folder):
        line[field] = value
    return change


def _drop(field):
    def change(line, folder):
        del line[field]
    return change


def _unreadable(line, folder):
    (folder / 'broken.jpg').write_bytes(b'not an image')
    line['image'] = 'broken.jpg'


def _behind(line, folder):
    line['joints_3d'][3][2] = -0.2


BAD_LINES = [
    ('image', _drop('image'), 'missing'),
    ('image', _set('image', 'nowhere.jpg'), 'does not exist'),
    ('image', _unreadable, 'not a readable'),
    ('joints_3d', _set('joints_3d', [[0.0, 0.0, 0.5]] * 20), 'shape'),
    ('K', _set('K', [[500.0, 0.0, 112.0], [0.0, float('nan'), 112.0], [0.0, 0.0, 1.0]]),
     'non-finite'),
    ('joints_3d', _behind, 'behind the camera'),
    ('box', _set('box', [400.0, 10.0, 50.0, 50.0]), 'outside'),
    ('side', _set('side', 'both'), "'both'"),
    ('split', _set('split', 'val'), "'val'"),
    ('verts_3d', _set('verts_3d', [[0.0, 0.0, 0.5]] * 3), 'shape'),
]


@pytest.mark.parametrize('field, change, problem', BAD_LINES,
                         ids=[f'{field}-{problem}' for field, _, problem in BAD_LINES])
def test_a_bad_line_is_refused_naming_file_line_and_field(workspace, tmp_path, field, change,
                                                          problem):
    folder = tmp_path / 'd'
    lines = lines_for(folder, workspace, slice(10, 14))
    lines[2] = copy.deepcopy(lines[2])
    folder.mkdir()
    change(lines[2], folder)
    write_lines(folder, lines)
    with pytest.raises(LabelError) as err:
        read_labels(folder)
    message = str(err.value)
    assert 'labels.jsonl line 3' in message and f"'{field}'" in message and problem in message
    assert check_cli.main([str(folder)]) == 1
    out = tmp_path / 'out'
    torch.save({'net': {}}, tmp_path / 'weights.pth.tar')  # test.py reads the labels first
    for script, extra in ((train, ()), (test_script, ('--checkpoint', str(tmp_path / 'weights.pth.tar')))):
        with pytest.raises(ValueError, match='labels.jsonl line 3'):
            script.main(small_args(out, folder, workspace / 'mano', '--dataset', 'custom', *extra))
    assert not out.exists()


# ---- train.py and test.py ----

@pytest.fixture(scope='module')
def checkpoint(workspace):
    """A checkpoint of one epoch on the synthetic FreiHAND training set."""
    out = workspace / 'pretrain'
    train.main(small_args(out, workspace / 'FreiHAND', workspace / 'mano'))
    return out / 'checkpoint' / 'tiny' / 'snapshot_0.pth.tar'


def scores_of(out):
    text = (out / 'eval' / 'scores.txt').read_text()
    return {key: float(value) for key, value in (row.split(': ') for row in text.splitlines())}


@pytest.mark.slow
def test_custom_scores_as_freihand_and_its_mirrored_left_copy_as_the_right(workspace,
                                                                           checkpoint, tmp_path):
    mano = workspace / 'mano'
    runs = {'freihand': (workspace / 'FreiHAND', ()),
            'custom': (workspace / 'custom', ('--dataset', 'custom'))}
    mirrored_copy(workspace / 'custom', tmp_path / 'left')
    runs['left'] = (tmp_path / 'left', ('--dataset', 'custom'))
    scores = {}
    for name, (root, extra) in runs.items():
        test_script.main(small_args(tmp_path / name, root, mano, '--checkpoint', str(checkpoint),
                                    *extra))
        scores[name] = scores_of(tmp_path / name)
    assert len(scores['freihand']) == 12 and scores['custom'].keys() == scores['freihand'].keys()
    for key, value in scores['freihand'].items():
        assert abs(scores['custom'][key] - value) <= 1e-6, key
        assert abs(scores['left'][key] - value) <= 1e-3, key
    assert (tmp_path / 'custom' / 'eval' / 'scores.html').is_file()
    assert (tmp_path / 'custom' / 'eval' / 'pck_mesh_aligned.png').is_file()
    pred = {name: json.loads((tmp_path / name / 'pred.json').read_text()) for name in runs}
    assert pred['custom'] == pred['freihand']  # FreiHAND's layout, the same numbers
    xyz, left_xyz = np.array(pred['custom'][0]), np.array(pred['left'][0])
    np.testing.assert_allclose(left_xyz[..., 0], -xyz[..., 0], atol=1e-5)  # the image's frame


@pytest.mark.slow
@pytest.mark.parametrize('joints_only', [False, True])
def test_fine_tuning_from_a_checkpoint_with_vertices_and_with_joints_only(workspace, checkpoint,
                                                                          tmp_path, joints_only):
    folder = tmp_path / 'd'
    lines = lines_for(folder, workspace)
    if joints_only:
        for line in lines:
            del line['verts_3d']
    write_lines(folder, lines)
    out = tmp_path / 'out'
    train.main(small_args(out, folder, workspace / 'mano', '--dataset', 'custom', '--pre',
                          str(checkpoint), '--lr', '1e-4', '--freihand_root',
                          str(workspace / 'FreiHAND'), '--custom_repeat', '2'))
    log = next((out / 'log').glob('train_*.log')).read_text()
    assert 'initialised the network from' in log
    assert 'training set: 36 items' in log  # 12 FreiHAND + 2 x 12 custom
    assert (out / 'checkpoint' / 'tiny' / 'snapshot_0.pth.tar').is_file()
    test_script.main(small_args(tmp_path / 'test', folder, workspace / 'mano', '--dataset',
                                'custom', '--checkpoint',
                                str(out / 'checkpoint' / 'tiny' / 'snapshot_0.pth.tar')))
    scores = scores_of(tmp_path / 'test')
    assert ('mesh_mean3d' in scores) != joints_only  # mesh scores only with test vertices
    assert 'xyz_al_auc3d' in scores
    state = torch.load(out / 'checkpoint' / 'tiny' / 'snapshot_0.pth.tar', weights_only=False)
    assert all(torch.isfinite(v).all() for v in state['net'].values() if v.is_floating_point())
