"""Your own annotated hands (docs/own_data.md): `--dataset custom --data_root DIR`, a folder
with labels.jsonl (one hand per line) and the images it names.

A data set package: `labels` (reading and checking the lines), `reader` (the
HandCropDataset), `entry` (the registry entry: build, check, evaluation, pred.json), `check`
(`python -m dataset.custom.check DIR`) and `convert` (`python -m dataset.custom.convert
freihand|ho3d|demo ...`).
"""
from dataset.custom.entry import ENTRY
from dataset.custom.labels import LABELS_FILE, Hand, LabelError, read_labels
from dataset.custom.reader import Custom

__all__ = ['Custom', 'ENTRY', 'Hand', 'LABELS_FILE', 'LabelError', 'read_labels']
