"""Error types raised by recbole_ext.

Each derives from the built-in exception a RecBole user would already catch (``ValueError`` /
``FileNotFoundError``), so existing ``except`` clauses keep working; the message always says what is
wrong, where, and how to fix it.
"""


class RecBoleExtError(Exception):
    """Base class of every recbole_ext error."""


class ConfigError(RecBoleExtError, ValueError):
    """An inconsistent or invalid configuration value."""


class UnknownNameError(RecBoleExtError, ValueError):
    """An unknown model, trainer, metric or re-ranker name."""


class DatasetError(RecBoleExtError, ValueError):
    """Missing or malformed dataset (atomic) files."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """No atomic files where the configuration says they are."""


class CheckpointError(RecBoleExtError, ValueError):
    """A checkpoint that is not ours, truncated, or incompatible with the current run."""


class ComparisonError(RecBoleExtError, ValueError):
    """Runs that cannot be compared user by user (no per-user file, other dataset, split or users)."""


class MissingPackageError(RecBoleExtError, ImportError):
    """A model needs an optional package that is not installed; the message says how to install it."""


class RunInterrupted(KeyboardInterrupt):
    """Training stopped by the user (Ctrl-C); ``checkpoint`` is the last checkpoint written, or ``None``.
    A ``KeyboardInterrupt`` (not an ``Exception``), so that ``except Exception`` never swallows it."""

    def __init__(self, message, checkpoint=None):
        super().__init__(message)
        self.checkpoint = checkpoint
