"""`test.py --as_published true` writes the pred.json of the published decoding: checked against
an independent transcription of that decoding (docs/method.md §7, §11) on the same network."""
import dataclasses
import json

import numpy as np
import pytest
import torch

import config
import test as test_script
from dataset import get_dataset
from inference import precision
from inference.network import load_for_inference
from synthetic.fixture import make_freihand
from tests.helpers import save_random_checkpoint
from utils.mano import MANO

pytestmark = pytest.mark.slow

NUM_EVAL = 4


def published_decoding(coord, bb2img_trans, K, root_depth, input_size):
    """The published evaluation decoding, transcribed from its description (docs/method.md §7):
    `(coord[:, :2] + 1) * input_size // 2` on the float32 output, the crop -> image affine,
    depth `d * 0.3 + root`, back-projection with K[0][0] for x and y."""
    coord = torch.as_tensor(coord, dtype=torch.float32)  # one sample, 799 x 3
    uv = ((coord[:, :2] + 1) * input_size // 2).double()
    uv1 = torch.cat([uv, torch.ones(len(uv), 1, dtype=torch.float64)], dim=1)
    uv_img = uv1 @ torch.as_tensor(bb2img_trans, dtype=torch.float64).T
    K = torch.as_tensor(K, dtype=torch.float64)
    depth = coord[:, 2].double() * 0.3 + float(root_depth)
    x = (uv_img[:, 0] - K[0, 2]) / K[0, 0] * depth
    y = (uv_img[:, 1] - K[1, 2]) / K[0, 0] * depth
    return torch.stack([x, y, depth], dim=1).numpy()


# A small two-stage network, and the authors' architecture (ResNet-34, two stages, 256 px).
ARCHITECTURES = [('resnet18', 64), ('resnet34', 256)]


@pytest.fixture(scope='module', params=ARCHITECTURES, ids=lambda a: f'{a[0]}_{a[1]}px')
def checkpoint(request, tmp_path_factory, random_mano_dir):
    """A randomly initialised two-stage SAR whose checkpoint stores its configuration (no
    config.json beside it), and a FreiHAND-layout folder (fx != fy)."""
    backbone, size = request.param
    root = tmp_path_factory.mktemp('published')
    make_freihand(str(root / 'FreiHAND'), num_samples=1, num_eval=NUM_EVAL, seed=5)
    cfg = config.resolve(device='cpu', backbone=backbone, input_img_shape=(size, size),
                         num_stage=2, pretrained_backbone=False, num_worker=0, amp='auto',
                         test_batch_size=NUM_EVAL, data_root=str(root / 'FreiHAND'),
                         mano_root=str(random_mano_dir), experiment_name='published')
    path = root / 'ckpt' / 'snapshot_0.pth.tar'
    save_random_checkpoint(cfg, path, config_in='checkpoint', last_epoch=0)
    return path, cfg


def test_as_published_pred_json_equals_the_transcribed_published_decoding(checkpoint, tmp_path,
                                                                          monkeypatch):
    path, cfg = checkpoint
    size = cfg.input_img_shape[0]
    out = tmp_path / 'out'
    # A CPU with native bf16, where the stored amp 'auto' picks bf16: as_published runs fp32.
    monkeypatch.setattr(precision, 'cpu_bf16_flags', lambda: ('avx512_bf16',))
    # Nothing but the checkpoint: network, data and device come from the config stored in it.
    test_script.main(['--checkpoint', str(path), '--as_published', 'true',
                      '--output_root', str(out)])
    log = (out / 'log' / 'test_published.log').read_text()
    assert f'configuration: the configuration stored in {path}' in log
    assert 'precision: as_published: fp32' in log and "would pick bf16" in log
    xyz, verts = json.loads((out / 'pred.json').read_text())

    # The same network's coordinates, decoded by the transcription.
    model, _ = load_for_inference(dataclasses.replace(cfg, checkpoint=str(path)),
                                  MANO(cfg.mano_root), torch.device('cpu'))
    dataset = get_dataset('FreiHAND', 'evaluation', root=cfg.data_root, input_img_shape=(size, size))
    items = [dataset[j] for j in range(NUM_EVAL)]
    img = torch.stack([torch.from_numpy(inputs['img']) for inputs, _, _ in items])
    with torch.no_grad():
        coords = model({'img': img})['coords'].numpy()
    expected = np.stack([published_decoding(coords[j], meta['bb2img_trans'], meta['K'],
                                            meta['root_depth'], size)
                         for j, (_, _, meta) in enumerate(items)])
    expected = np.round(expected, 6)
    np.testing.assert_array_equal(np.array(verts), expected[:, :778])
    np.testing.assert_array_equal(np.array(xyz), expected[:, 778:])

    # The default decoding differs, by less than a crop pixel (130 / size image px: 2.03 for
    # 64 px, 0.51 for 256 px) in x and y, and not at all in z.
    test_script.main(['--checkpoint', str(path), '--amp', 'off',
                      '--output_root', str(tmp_path / 'default')])
    default_verts = np.array(json.loads((tmp_path / 'default' / 'pred.json').read_text())[1])
    shift = np.abs(default_verts - expected[:, :778])
    assert shift[..., :2].max() > 0 and shift[..., 2].max() <= 1e-6
    assert shift[..., :2].max() < 130 / size * expected[..., 2].max() / 440
