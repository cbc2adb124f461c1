"""demo.py --input FOLDER: an image it cannot decode is named and skipped, the others are
processed, and the run ends with a summary and a non-zero exit."""
import cv2
import numpy as np
import pytest
import torch

import config
import demo
from run.network import build_model
from utils.runtime.launch import run_main
from synthetic.mano_file import save_mano
from tests.helpers import random_mano_data
from utils.mano import MANO

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """A randomly initialised small network whose checkpoint stores its configuration."""
    root = tmp_path_factory.mktemp('demo_folder')
    save_mano(root / 'mano' / 'MANO_RIGHT.pkl', random_mano_data(0))
    cfg = config.resolve(['--device', 'cpu', '--backbone', 'resnet18', '--input_img_shape', '64,64',
                          '--num_stage', '1', '--pretrained_backbone', 'false',
                          '--mano_root', str(root / 'mano')])
    torch.manual_seed(0)
    model = build_model(cfg, MANO(cfg.mano_root), torch.device('cpu'))
    path = root / 'snapshot_0.pth.tar'
    torch.save({'net': model.state_dict(), 'config': cfg.to_dict()}, path)
    return str(path)


def test_an_undecodable_image_is_skipped_named_and_fails_the_run_at_the_end(checkpoint, tmp_path,
                                                                            capsys):
    photos = tmp_path / 'photos'
    photos.mkdir()
    img = np.random.default_rng(0).integers(0, 255, size=(120, 160, 3), dtype=np.uint8)
    cv2.imwrite(str(photos / 'a.png'), img)
    (photos / 'b.jpg').write_bytes(b'not a JPEG at all')  # sorts between the two good ones
    cv2.imwrite(str(photos / 'c.png'), img[::-1])
    out = tmp_path / 'out'
    # (at a given depth: the untrained network's collapsed joints give no --root_depth auto)
    code = run_main(demo.main, ['--input', str(photos), '--out', str(out), '--checkpoint',
                                checkpoint, '--root_depth', '0.7'], 'demo.py')
    captured = capsys.readouterr()
    assert code == 1
    assert f'skipping {photos / "b.jpg"}' in captured.out  # named when met (the log)
    assert (f'demo.py: error: 1 of 3 image(s) could not be decoded and were skipped: '
            f'{photos / "b.jpg"}') in captured.err
    assert 'Traceback' not in captured.err
    for name in ('a', 'c'):  # the images after the bad one were processed too
        for suffix in ('.obj', '_mesh.png', '_skeleton.png'):
            assert (out / f'{name}{suffix}').is_file()
    assert not list(out.glob('b*'))
