"""Input checks shared by the public functions. Each raises InputError with one line that says
what was found, what was expected, and how to fix it."""
from __future__ import annotations

import numbers

import numpy as np

from pseudolabel.exceptions import InputError


def check_same_length(name_a: str, a, name_b: str, b) -> None:
    if len(a) != len(b):
        raise InputError(
            f"{name_a} and {name_b} must be the same length, but {name_a} is length {len(a)} "
            f"and {name_b} is length {len(b)}; pass one label per sample."
        )


def check_finite(X, name: str = "X") -> None:
    """Raise when a numeric array holds NaN or inf (non-numeric X, e.g. texts, passes)."""
    arr = np.asarray(X) if not hasattr(X, "dtype") else X
    if getattr(arr, "dtype", None) is not None and np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr)
        if bad.any():
            n = int(bad.reshape(len(arr), -1).any(axis=1).sum()) if arr.ndim > 1 else int(bad.sum())
            raise InputError(
                f"{name} contains NaN or infinity in {n} sample(s); drop or impute those rows first."
            )


def check_labels(y, name: str = "y", allow_unlabeled: bool = True) -> np.ndarray:
    """Return y as an int64 array. -1 marks unlabeled samples when allow_unlabeled."""
    y_arr = np.asarray(y)
    if y_arr.ndim != 1:
        raise InputError(f"{name} must be one-dimensional, got shape {y_arr.shape}; pass one label per sample.")
    if y_arr.dtype.kind == "b":
        y_arr = y_arr.astype(np.int64)
    if y_arr.dtype.kind not in "iuf":
        raise InputError(
            f"{name} must hold integer class labels, got dtype {y_arr.dtype}; "
            "encode classes as integers first (e.g. sklearn.preprocessing.LabelEncoder)."
        )
    if y_arr.dtype.kind == "f":
        if not np.all(np.isfinite(y_arr)):
            raise InputError(f"{name} contains NaN or infinity; use -1 for unlabeled samples.")
        if not np.all(np.equal(np.mod(y_arr, 1), 0)):
            bad = y_arr[np.mod(y_arr, 1) != 0][0].item()  # 1.5, not numpy 2's np.float64(1.5)
            raise InputError(
                f"{name} must hold integer class labels, found {bad!r}; "
                "encode classes as integers and use -1 for unlabeled samples."
            )
    y_int = y_arr.astype(np.int64)
    lowest = -1 if allow_unlabeled else 0
    if y_int.size and y_int.min() < lowest:
        raise InputError(
            f"{name} contains the label {int(y_int.min())}; labels must be >= 0"
            + (" with -1 marking unlabeled samples." if allow_unlabeled else ".")
        )
    return y_int


def check_threshold(value, name: str = "threshold", owner: str = "SelfTraining") -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0.0 <= float(value) < 1.0):
        raise InputError(
            f"The {name!r} parameter of {owner} must be a float in [0, 1). "
            f"Got {value.item() if isinstance(value, np.generic) else value!r} instead."
        )
    return float(value)


# -- allowed values, declared once (scikit-learn's `_parameter_constraints`) ------------------------
class Interval:
    """Numbers of one kind (``int`` or ``float``) between ``low`` and ``high``; ``closed`` says which
    ends belong: "both", "left", "right" or "neither"."""

    def __init__(self, kind: type, low=None, high=None, closed: str = "both"):
        self.kind, self.low, self.high, self.closed = kind, low, high, closed

    def accepts(self, v) -> bool:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral if self.kind is int else numbers.Real):
            return False
        if self.low is not None and (v < self.low or (v == self.low and self.closed in ("right", "neither"))):
            return False
        if self.high is not None and (v > self.high or (v == self.high and self.closed in ("left", "neither"))):
            return False
        return True

    def __str__(self) -> str:
        kind = "an int" if self.kind is int else "a float"
        if self.high is None:
            return f"{kind} {'>=' if self.closed in ('both', 'left') else '>'} {self.low}"
        if self.low is None:
            return f"{kind} {'<=' if self.closed in ('both', 'right') else '<'} {self.high}"
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        return f"{kind} in {left}{self.low}, {self.high}{right}"


class Options:
    """One of a fixed set of values."""

    def __init__(self, *values):
        self.values = values

    def accepts(self, v) -> bool:
        return not isinstance(v, (list, dict)) and any(v == o and type(v) is type(o) or v is o for o in self.values)

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


class Boolean:
    def accepts(self, v) -> bool:
        return isinstance(v, (bool, np.bool_))

    def __str__(self) -> str:
        return "True or False"


class Satisfies:
    """A value a function accepts (returns normally); ``what`` says what that is."""

    def __init__(self, check, what: str):
        self.check, self.what = check, what

    def accepts(self, v) -> bool:
        try:
            self.check(v)
        except (InputError, TypeError, ValueError):
            return False
        return True

    def __str__(self) -> str:
        return self.what


def check_params(values: dict, constraints: dict, owner: str | None = None) -> None:
    """Check every value that ``constraints`` declares: ``{name: [constraint or None, ...]}``, where
    None in the list allows None. Raises one InputError line naming the first bad value:
    "The 'x' parameter of OWNER must be ... Got ... instead." (``owner`` None: "--x must be ...",
    the command-line flag).
    """
    for name, allowed in constraints.items():
        if name not in values:
            continue
        v = values[name]
        if v is None and None in allowed:
            continue
        rules = [c for c in allowed if c is not None]
        if any(c.accepts(v) for c in rules):
            continue
        expected = " or ".join(str(c) for c in rules) + (" or None" if None in allowed else "")
        who = f"--{name.replace('_', '-')}" if owner is None else f"The {name!r} parameter of {owner}"
        shown = v.item() if isinstance(v, np.generic) else v
        raise InputError(f"{who} must be {expected}. Got {shown!r} instead.")
