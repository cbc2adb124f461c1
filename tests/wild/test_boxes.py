"""wild/boxes.py: a --boxes file is read per image name; a bad one is refused naming the file,
the image and the field."""
import json

import pytest

from utils.errors import DataError
from wild.boxes import BoxSpec, boxes_for, read_boxes


def write(tmp_path, value, name='boxes.json'):
    path = tmp_path / name
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return str(path)


def test_boxes_per_image_name(tmp_path):
    path = write(tmp_path, {'a.jpg': [{'box': [1, 2, 30, 40], 'side': 'left', 'score': 0.5},
                                      {'box': [50, 2, 30.5, 40], 'side': 'right'}],
                            'b': []})
    boxes = read_boxes(path)
    assert boxes_for(boxes, '/photos/a.jpg') == [BoxSpec((1.0, 2.0, 30.0, 40.0), 'left', 0.5),
                                                 BoxSpec((50.0, 2.0, 30.5, 40.0), 'right', None)]
    assert boxes_for(boxes, 'b.png') == []  # by the name without its extension
    assert boxes_for(boxes, 'c.png') is None


@pytest.mark.parametrize('value, field', [
    ('{"a.jpg": [', 'not valid JSON'),
    ([1, 2], 'expected an object'),
    ({'a.jpg': {'box': [1, 2, 3, 4]}}, '"a.jpg": expected a list'),
    ({'a.jpg': [[1, 2, 3, 4]]}, '"a.jpg"[0]: expected an object'),
    ({'a.jpg': [{'box': [1, 2, 3], 'side': 'left'}]}, '"a.jpg"[0].box'),
    ({'a.jpg': [{'box': [1, 2, 3, 'x'], 'side': 'left'}]}, '"a.jpg"[0].box'),
    ({'a.jpg': [{'box': [1, 2, 0, 4], 'side': 'left'}]}, '"a.jpg"[0].box: width and height'),
    ({'a.jpg': [{'box': [1, 2, 3, 4], 'side': 'right'}, {'box': [1, 2, 3, 4], 'side': 'L'}]},
     '"a.jpg"[1].side'),
    ({'a.jpg': [{'box': [1, 2, 3, 4]}]}, '"a.jpg"[0].side'),
    ({'a.jpg': [{'box': [1, 2, 3, 4], 'side': 'left', 'score': 2}]}, '"a.jpg"[0].score'),
    ({'a.jpg': [{'box': [1, 2, 3, 4], 'side': 'left', 'hand': 'x'}]}, "unknown field(s) ['hand']"),
])
def test_a_bad_file_names_the_file_and_the_field(tmp_path, value, field):
    path = write(tmp_path, value)
    with pytest.raises(DataError) as err:
        read_boxes(path)
    assert path in str(err.value) and field in str(err.value)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='nothing.json'):
        read_boxes(str(tmp_path / 'nothing.json'))
