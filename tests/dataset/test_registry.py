"""dataset.DATASETS and the configuration fields the data sets add (DatasetEntry.fields)."""
import dataclasses

import config
import dataset
from dataset import DATASETS, DatasetFields, _fields_classes


def test_config_inherits_every_registered_data_sets_fields():
    for name, entry in DATASETS.items():
        if entry.fields is not None:
            own = {field.name for field in dataclasses.fields(entry.fields)}
            assert own <= {field.name for field in dataclasses.fields(config.Config)}, name
            assert issubclass(DatasetFields, entry.fields), name
    # Two data sets never add a field of the same name (the second would silently lose).
    names = [field.name for cls in _fields_classes(DATASETS) for field in dataclasses.fields(cls)]
    assert len(names) == len(set(names)), names


def test_each_fields_class_is_taken_once_in_registry_order():
    @dataclasses.dataclass(frozen=True)
    class First:
        a: int = 1

    @dataclasses.dataclass(frozen=True)
    class Second:
        b: str = ''

    def entry(fields):
        return dataset.DatasetEntry(reader=None, build=None, write_outputs=None, fields=fields)

    registry = {'x': entry(First), 'y': entry(None), 'z': entry(Second), 'w': entry(First)}
    assert _fields_classes(registry) == [First, Second]


def test_valid_values_name_the_declaring_class_own_fields():
    # A data set's CHOICES and RANGES name fields of its own class (a typo would make config.py
    # check an attribute no configuration has), and reach config.py's checks and docs/config.md.
    for cls in _fields_classes(DATASETS):
        own = {field.name for field in dataclasses.fields(cls)}
        declared = set(getattr(cls, 'CHOICES', {})) | set(getattr(cls, 'RANGES', {}))
        assert declared <= own, (cls.__name__, declared - own)
        for name in declared:
            assert name in config._CHOICES or name in config._RANGES, name
    assert config._CHOICES['ho3d_version'] == ('v2', 'v3')
    assert config._RANGES['custom_repeat'] == (1, None, False)
