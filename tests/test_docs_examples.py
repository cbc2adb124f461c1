"""The recipes of docs/development.md ("Adding things") run: the three toy extensions in
docs/examples/ (a data set, a head, a demo output), which the page shows verbatim (generated
blocks, tools/make_docs.py), are registered (monkeypatch: the registries are left as they
were) and used for real: train.py trains one epoch on the tiny FreiHAND-layout folder with the
toy data set and head, and demo.py runs that checkpoint writing the toy output's CSV."""
import csv
import importlib.util
import inspect
import json
import os

import cv2
import numpy as np
import pytest

import dataset
import demo
import train
from dataset.base import HandCropDataset
from model import heads
from synthetic.fixture import make_freihand
from tests.test_layout import ALLOWED, imports_of
from training import loop
from wild import outputs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, 'docs', 'examples')
# example file -> the package it would live in (it may import what that package may)
LAYERS = {'tight_dataset.py': 'dataset', 'steep_head.py': 'model', 'joints_csv.py': 'wild'}


def load_example(name):
    """The module docs/examples/<name>, imported from its file."""
    spec = importlib.util.spec_from_file_location(f'docs_examples_{name[:-3]}',
                                                  os.path.join(EXAMPLES, name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_is_shown_and_keeps_to_its_layer():
    page = open(os.path.join(REPO, 'docs', 'development.md')).read()
    assert sorted(os.listdir(EXAMPLES)) == sorted(LAYERS)
    for name, package in LAYERS.items():
        assert f'<!-- BEGIN generated: include docs/examples/{name} -->' in page, name
        for line, target in imports_of(os.path.join(EXAMPLES, name)):
            top = target.split('.')[0]
            assert top not in ALLOWED or top in ALLOWED[package], f'{name}:{line}: {target}'


def test_the_data_set_recipe_names_every_method_a_reader_defines():
    """The methods HandCropDataset leaves to a data set: its hooks (raise NotImplementedError)
    and what get_item_with_aug calls that it does not define (`read_image`, `__len__`)."""
    hooks = {name for name, value in vars(HandCropDataset).items()
             if callable(value) and 'raise NotImplementedError' in inspect.getsource(value)}
    assert hooks == {'image_path', 'crop_box', 'intrinsics', 'training_points', 'evaluation_meta'}
    assert not hasattr(HandCropDataset, 'read_image') and '__len__' not in vars(HandCropDataset)
    docstring = load_example('tight_dataset.py').__doc__
    page = open(os.path.join(REPO, 'docs', 'development.md')).read()
    for name in hooks | {'read_image', '__len__'}:
        assert f'`{name}`' in docstring and f'`{name}`' in page, name


@pytest.fixture()
def registered(monkeypatch):
    """The three examples, registered for this test only."""
    tight, steep, joints = (load_example(name) for name in LAYERS)
    monkeypatch.setitem(dataset.DATASETS, 'TightFreiHAND', tight.ENTRY)
    monkeypatch.setitem(heads.HEADS, 'steep', steep.HEAD)
    monkeypatch.setitem(outputs.OUTPUTS, 'joints_csv', outputs.Output(joints.write_joints_csv))
    return tight, steep


@pytest.mark.slow  # trains an epoch (about 10-50 s on 2 shared cores)
def test_the_toy_data_set_and_head_train_and_the_toy_output_writes(registered, tmp_path,
                                                                   random_mano_dir, monkeypatch):
    tight, steep = registered
    make_freihand(str(tmp_path / 'FreiHAND'), num_samples=2, num_eval=2)
    seen = {}
    real_epoch = loop.train_one_epoch

    def record(model, loader, *args, **kwargs):
        seen['model'], seen['dataset'] = model, loader.dataset
        return real_epoch(model, loader, *args, **kwargs)

    monkeypatch.setattr(loop, 'train_one_epoch', record)
    out = tmp_path / 'out'
    train.main(['--dataset', 'TightFreiHAND', '--head', 'steep', '--device', 'cpu',
                '--backbone', 'resnet18', '--input_img_shape', '64,64',
                '--pretrained_backbone', 'false', '--batch_size', '4', '--num_worker', '0',
                '--total_epoch', '1', '--amp', 'off', '--eval_interval', '0',
                '--data_root', str(tmp_path / 'FreiHAND'), '--mano_root', str(random_mano_dir),
                '--output_root', str(out), '--experiment_name', 'toy'])

    # The toy data set: FreiHAND's 130 px box (224 px image), 0.85 x: 110.5 px onto 64 px.
    data = seen['dataset']
    assert isinstance(data, tight.TightFreiHAND) and len(data) == 4 * 2
    _, _, meta = data.get_item_with_aug(0)
    np.testing.assert_allclose(meta['img2bb_trans'][:, :2], np.eye(2) * 64 / (0.85 * 130),
                               rtol=1e-6, atol=1e-7)
    # The toy head in every stage, its LeakyReLUs at 0.3.
    model = seen['model']
    assert all(isinstance(m, steep.SteepGraphBuilder) for m in model.saigb)
    assert all(isinstance(m, steep.SteepGraphRegressor) for m in model.gbbmr)
    slopes = {m.negative_slope for part in (model.saigb, model.gbbmr) for m in part.modules()
              if type(m).__name__ == 'LeakyReLU'}
    assert slopes == {0.3}
    folder = out / 'checkpoint' / 'toy'
    saved = json.loads((folder / 'config.json').read_text())
    assert (saved['dataset'], saved['head']) == ('TightFreiHAND', 'steep')

    # demo.py with that checkpoint (its config says head 'steep') and the toy output: two
    # hands, one of them left; the CSV's pixels are the JSON record's joints_2d.
    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / 'hands.png'), rng.integers(0, 255, (180, 240, 3), np.uint8))
    (tmp_path / 'boxes.json').write_text(json.dumps({'hands.png': [
        {'box': [10, 20, 100, 100], 'side': 'right'}, {'box': [120, 40, 90, 90], 'side': 'left'}]}))
    demo.main(['--input', str(tmp_path / 'hands.png'), '--out', str(tmp_path / 'demo'),
               '--checkpoint', str(folder / 'snapshot_0.pth.tar'), '--boxes',
               str(tmp_path / 'boxes.json'), '--focal', '400', '--root_depth', '0.7',
               '--outputs', 'json,joints_csv'])
    record = json.loads((tmp_path / 'demo' / 'hands.json').read_text())
    with open(tmp_path / 'demo' / 'hands_joints.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert [h['hand'] for h in record['hands']] == ['right', 'left']
    assert len(rows) == 2 * 21
    for k, hand in enumerate(record['hands']):
        mine = [row for row in rows if row['hand'] == str(k)]
        assert [row['joint'] for row in mine] == [str(j) for j in range(21)]
        assert {row['side'] for row in mine} == {hand['hand']}
        uv = np.array([[float(row['u_px']), float(row['v_px'])] for row in mine])
        np.testing.assert_allclose(uv, hand['joints_2d'], atol=0.005 + 1e-9)  # record: 0.01 px
