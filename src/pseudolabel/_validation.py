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
