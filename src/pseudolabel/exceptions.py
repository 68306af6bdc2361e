"""Exceptions of pseudolabel: one package base class, so a caller (the CLI) can catch them all.

Every message is one line that names what was found, what was expected, and the fix.
"""
from __future__ import annotations

from sklearn.exceptions import NotFittedError as _SkNotFittedError

__all__ = ["PseudolabelError", "InputError", "DataError", "RunDirectoryError", "StoreError", "NotFittedError",
           "one_line"]


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


def one_line(message) -> str:
    r"""A message, or an exception's message, with its whitespace and line breaks squeezed into one line.

    An exception without a message gives its type's name, so an error never reads as empty.

    Examples
    --------
    >>> one_line(OSError("disk\n  full"))
    'disk full'
    >>> one_line(KeyError())
    'KeyError'
    """
    text = " ".join(str(message).split())
    if not text and isinstance(message, BaseException):
        return type(message).__name__
    return text
