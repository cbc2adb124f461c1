"""Errors shared by the data loaders and the evaluator."""


class DataError(ValueError):
    """Missing or malformed data on disk; the message names the path, what was expected and the fix."""
