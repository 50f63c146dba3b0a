"""User-facing errors: each one carries a message that names the problem and the fix.

Command-line entry points (see `commands.cli`) print these as one line and exit non-zero, without a
traceback; anything else is a bug and keeps its traceback.
"""


class NaoError(Exception):
    """Base class of errors caused by the user's input, files or flags."""


class InvalidArchitectureError(NaoError, ValueError):
    """An architecture string or token sequence is not a member of its search space."""


class DataError(NaoError):
    """A data file or directory is missing or malformed."""


class StateError(NaoError):
    """A run directory holds state that cannot be resumed (corrupt, or from a different run)."""
