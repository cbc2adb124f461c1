"""FreiHAND (docs/method.md §1-3, 7-8), one package: the reader (`reader.py`), its annotation
files as arrays (`annotations.py`, with the bulk JSON parser `json_numbers.py` and the checks
of whole-parsed JSON `json_values.py`), the local evaluator with its report and the pred.json
writer (`eval/`, `python -m dataset.freihand.eval`) and the registry entry (`entry.py`)."""
from dataset.freihand.entry import ENTRY, write_outputs
from dataset.freihand.reader import DEFAULT_ROOT, DOWNLOAD_HINT, FreiHAND

__all__ = ['DEFAULT_ROOT', 'DOWNLOAD_HINT', 'ENTRY', 'FreiHAND', 'write_outputs']
