"""Errors shared by the data loaders, the evaluator and the writers of outputs."""


class DataError(ValueError):
    """Missing or malformed data on disk; the message names the path, what was expected and the fix."""


class EvaluationInputError(DataError):
    """A prediction or ground-truth input that cannot be evaluated; the message says why."""


class CheckpointError(RuntimeError):
    """A checkpoint or weight file that is missing, unreadable, refused (it would run code) or
    does not fit the network; the message names the file and the fix."""


class OutputError(OSError):
    """An output file that cannot be written (no space left, no permission, a read-only
    folder); the message names the file and the cause. Its previous version, if any, is intact
    (outputs are written to a temporary file and renamed, utils.files.atomic)."""


class LaunchError(RuntimeError):
    """A multi-process start that cannot work (half-set SLURM or torchrun variables, an
    unreachable master); the message names the variable or address and the fix."""
