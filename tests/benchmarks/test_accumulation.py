"""benchmarks.accumulation: the side-by-side table and the refusals that need no training."""
import pytest

from benchmarks import accumulation


def scores(value):
    return {key: value for key, _ in accumulation.ROWS}


def test_table_lines_up_the_runs_with_time_and_rate():
    text = accumulation.table([('16 s0', scores(1.5), 300.0, 12000),
                               ('4x4 s0', scores(0.25), None, 12000)])
    lines = text.splitlines()
    assert lines[0].split() == ['metric', '16', 's0', '4x4', 's0']
    assert lines[1].split()[-2:] == ['1.500', '0.250']
    assert lines[-2].split()[-2:] == ['300', 'reused']  # a finished run is reused, not timed
    assert lines[-1].split()[-2:] == ['40.0', '-']  # 12000 images / 300 s
    assert len({len(line) for line in lines}) == 1  # one width for every row


def test_one_micro_batch_is_refused(capsys):
    with pytest.raises(SystemExit):
        accumulation.parse_args(['--accumulate', '1'])
    assert '--accumulate 1: compare with 2 or more micro-batches' in capsys.readouterr().err


def test_missing_demo_data_names_the_folder_and_the_fix(tmp_path):
    with pytest.raises(SystemExit, match=f'no training set in {tmp_path}: run `make demo` first'):
        accumulation.main(['--data_root', str(tmp_path)])
