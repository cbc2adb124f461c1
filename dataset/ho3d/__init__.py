"""HO3D v2 / v3 (docs/ho3d.md), one package: the reader with the meta-pickle and frame-list
checks (`reader.py`), its constants (`constants.py`: versions, split sizes, joint order, frame),
the local evaluator with its report (`eval/`, `python -m dataset.ho3d.eval`) and the registry
entry with the submission arrays (`entry.py`)."""
from dataset.ho3d.entry import ENTRY, submission_arrays, write_outputs
from dataset.ho3d.reader import DEFAULT_ROOT, HO3D, read_frame_list, read_meta

__all__ = ['DEFAULT_ROOT', 'ENTRY', 'HO3D', 'read_frame_list', 'read_meta', 'submission_arrays',
           'write_outputs']
