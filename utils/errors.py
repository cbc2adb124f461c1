"""Errors shared by the data loaders, the evaluator and the writers of outputs.

Every error here is a `UserError`: its message names the file, field or value and the fix,
so the entry scripts print it as one line without a traceback (utils.runtime.launch.run_main).
"""


class UserError(Exception):
    """An error whose message is the whole story (bad configuration, data, checkpoint, output
    or launch); subclasses add the kind."""


class ConfigError(ValueError, UserError):
    """A configuration that cannot run; the message names the field, the value and the fix."""


class DataError(ValueError, UserError):
    """Missing or malformed data on disk; the message names the path, what was expected and the fix."""


class EvaluationInputError(DataError):
    """A prediction or ground-truth input that cannot be evaluated; the message says why."""


class ImageInputError(DataError):
    """One image (or frame) cannot be processed as asked; the message names it, the bad value
    and the fix. demo.py reports it and goes on with the other images."""


class CheckpointError(RuntimeError, UserError):
    """A checkpoint or weight file that is missing, unreadable, refused (it would run code) or
    does not fit the network; the message names the file and the fix."""


class OutputError(OSError, UserError):
    """An output file that cannot be written (no space left, no permission, a read-only
    folder); the message names the file and the cause. Its previous version, if any, is intact
    (outputs are written to a temporary file and renamed, utils.files.atomic)."""


class LaunchError(RuntimeError, UserError):
    """A multi-process start that cannot work (half-set SLURM or torchrun variables, an
    unreachable master); the message names the variable or address and the fix."""
