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
