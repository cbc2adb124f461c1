"""training.resume: --resume auto that finds no checkpoint of its own names the others."""
import json
import logging

from training import resume


def test_resume_auto_names_the_other_experiments_and_their_flags(tmp_path, caplog):
    root = tmp_path / 'checkpoint'
    saved = {'resnet50_3stage_256': {'backbone': 'resnet50', 'num_stage': 3,
                                     'input_img_shape': [256, 256], 'preset': ''},
             'cpu_demo': {'backbone': 'resnet18', 'num_stage': 1, 'input_img_shape': [96, 96],
                          'preset': 'cpu_demo'},
             'mine': {'backbone': 'resnet34', 'num_stage': 2, 'input_img_shape': [128, 128],
                      'preset': ''}}
    for name, fields in saved.items():
        (root / name).mkdir(parents=True)
        (root / name / 'snapshot_4.pth.tar').write_bytes(b'')
        (root / name / 'config.json').write_text(json.dumps(fields))
    (root / 'empty').mkdir()  # no checkpoint: not named
    (root / 'no_config').mkdir()
    (root / 'no_config' / 'snapshot_0.pth.tar').write_bytes(b'')
    own = root / 'resnet34_2stage_256'
    with caplog.at_level(logging.INFO, logger=resume.logger.name):
        assert resume.resume_path('auto', False, '', str(own)) is None
    warning = ' '.join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert 'resnet50_3stage_256 (snapshot_4.pth.tar): --resume auto --backbone resnet50 ' \
           '--num_stage 3 --input_img_shape 256,256' in warning
    assert '--preset cpu_demo --experiment_name cpu_demo' in warning
    assert '--experiment_name mine --backbone resnet34 --num_stage 2 --input_img_shape 128,128' \
        in warning
    assert 'no_config (snapshot_0.pth.tar): --resume auto --experiment_name no_config' in warning
    assert 'empty' not in warning


def test_resume_auto_with_nothing_anywhere_warns_nothing(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger=resume.logger.name):
        assert resume.resume_path('auto', False, '', str(tmp_path / 'checkpoint' / 'x')) is None
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
