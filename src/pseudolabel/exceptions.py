"""Exceptions of pseudolabel: one package base class, so a caller (the CLI) can catch them all.

Every message is one line that names what was found, what was expected, and the fix.
"""
from __future__ import annotations

from sklearn.exceptions import NotFittedError as _SkNotFittedError


class PseudolabelError(Exception):
    """Base class of every error pseudolabel raises on purpose."""


class InputError(PseudolabelError, ValueError):
    """Bad user input: shapes, NaNs, unknown labels, bad parameter values."""


class DataError(PseudolabelError, OSError):
    """Data that cannot be found, read or decoded (missing files, corrupt images, bad checksums)."""


class RunDirectoryError(PseudolabelError):
    """A run directory that exists already, belongs to another job, or cannot be resumed."""


class StoreError(PseudolabelError):
    """A label store that is corrupt, too new, or refuses an event."""


class NotFittedError(PseudolabelError, _SkNotFittedError):
    """An estimator was used before `fit`."""
