"""The errors memrec raises for bad user input, in one leaf module (imports nothing of memrec).

The CLI turns each into one line on stderr and exit status 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations


class DataError(ValueError):
    """Bad user data (malformed file, unknown id, empty dataset)."""


class ConfigError(ValueError):
    """A configuration the user wrote is wrong (unknown model, unknown or mistyped key, a
    protocol or loss the model or split cannot run)."""


class CheckpointError(DataError):
    """A run folder or checkpoint is missing, incomplete or corrupt."""


__all__ = ["DataError", "ConfigError", "CheckpointError"]
