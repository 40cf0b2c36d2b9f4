"""The tool's own error types.

Only these become one ``error: ...`` line and exit code 2 on the command line: each is raised
where the input (a config value, a data file, a run directory, a checkpoint) is known to be at
fault, with a message that names it and says what to do. Anything else is a bug and keeps its
traceback, so an internal error never looks like bad input.
"""

from __future__ import annotations


class MetapeftError(Exception):
    """Base of every error caused by the user's input or files (never by a bug)."""


class ConfigError(MetapeftError, ValueError):
    """A bad configuration key or value."""


class RunDirError(MetapeftError, RuntimeError):
    """The run directory cannot be used as asked (existing run, lock held, changed config, no checkpoint)."""


class CheckpointError(MetapeftError, ValueError):
    """A checkpoint or export file is missing, truncated, corrupt or hostile."""


class TrainingError(MetapeftError, RuntimeError):
    """Training cannot make progress (e.g. every step of an epoch was skipped as non-finite)."""


class MissingFileError(MetapeftError, FileNotFoundError):
    """A file or directory the user named (weights, run, results) does not exist."""
