"""Input checks shared by the public functions. Each raises InputError with one line that says
what was found, what was expected, and how to fix it."""
from __future__ import annotations

import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import DataConversionWarning
from sklearn.utils.validation import _num_samples

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


# -- class labels that are names (added for string classes; check_labels above stays as it was) -----
UNLABELED = -1


def _is_unlabeled_marker(v) -> bool:
    """-1 (an int in an object array, scikit-learn's convention) or "-1" (what numpy makes of -1 in
    an array of strings)."""
    if isinstance(v, (bool, np.bool_)):
        return False
    if isinstance(v, numbers.Integral):
        return int(v) == UNLABELED
    return isinstance(v, str) and v == "-1"


def encode_labels(y, name: str = "y", allow_unlabeled: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Return ``(codes, names)``: labels as an int64 array and, for labels that are names, the names.

    Integer (or integral float, or bool) labels come back as :func:`check_labels` gives them, with
    ``names`` None: the codes are the labels. Strings (numpy ``str`` arrays, object arrays of
    ``str``, pandas Series of them) are encoded once here: ``names = np.unique(labeled values)`` and
    ``codes[i]`` is the position of ``y[i]`` in ``names``. -1 marks an unlabeled sample, as in
    scikit-learn's ``SelfTrainingClassifier``: the integer -1 in an object array, or the string "-1"
    (what numpy makes of -1 in an array of strings); its code is -1. A column vector (n, 1) is
    read as (n,) with scikit-learn's DataConversionWarning.

    Examples
    --------
    >>> codes, names = encode_labels(np.array(["dog", "cat", -1], dtype=object))
    >>> codes.tolist(), names.tolist()
    ([1, 0, -1], ['cat', 'dog'])
    """
    if y is None:
        raise InputError(f"{name} is None; pass one label per sample.")
    try:
        y_arr = np.asarray(y)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} could not be read as an array of labels ({' '.join(str(exc).split())}); "
                         "pass one label per sample.") from None
    if y_arr.ndim == 2 and y_arr.shape[1] == 1:
        warnings.warn("A column-vector y was passed when a 1d array was expected. Please change the shape of y "
                      "to (n_samples, ), for example using ravel().", DataConversionWarning, stacklevel=3)
        y_arr = y_arr[:, 0]
    if y_arr.ndim != 1:
        raise InputError(f"{name} must be one-dimensional, got shape {y_arr.shape}; pass one label per sample.")
    kind = y_arr.dtype.kind
    if kind == "c":
        raise InputError(f"{name} holds complex numbers (Complex data not supported); pass class labels.")
    if kind == "f" and np.all(np.isfinite(y_arr)) and not np.all(np.equal(np.mod(y_arr, 1), 0)):
        bad = y_arr[np.mod(y_arr, 1) != 0][0].item()
        raise InputError(
            f"{name} must hold class labels, found the continuous value {bad!r}; encode classes as integers "
            "or names" + (", with -1 for unlabeled samples." if allow_unlabeled else ".")
        )
    if kind in "biuf":
        return check_labels(y_arr, name, allow_unlabeled), None
    if kind == "S":
        y_arr = y_arr.astype(str)
        kind = "U"
    if kind not in "UO":
        raise InputError(f"{name} must hold integer class labels or names, got dtype {y_arr.dtype}; "
                         "pass integers or strings.")
    values = y_arr.tolist() if kind == "O" else None
    if kind == "O":
        if all(isinstance(v, numbers.Integral) for v in values):  # e.g. a pandas object column of ints
            return check_labels(np.asarray(values, dtype=np.int64) if values else np.zeros(0, np.int64),
                                name, allow_unlabeled), None
        if all(isinstance(v, numbers.Real) for v in values):
            return encode_labels(np.asarray(values, dtype=np.float64), name, allow_unlabeled)
    unlabeled = np.fromiter((_is_unlabeled_marker(v) for v in (values if values is not None else y_arr.tolist())),
                            dtype=bool, count=len(y_arr))
    if unlabeled.any() and not allow_unlabeled:
        raise InputError(f"{name} contains the label -1 (unlabeled) in {int(unlabeled.sum())} row(s); "
                         "every sample needs a label here: pass only the labeled rows.")
    if kind == "O":
        others = [v for v, u in zip(values, unlabeled) if not u and not isinstance(v, str)]
        if others:
            missing = sum(1 for v in others if v is None or (isinstance(v, float) and v != v))
            if missing:
                raise InputError(f"{name} contains None or NaN in {missing} row(s); "
                                 + ("mark unlabeled samples with -1." if allow_unlabeled
                                    else "drop those rows or give them a label."))
            raise InputError(
                f"{name} mixes class names with {type(others[0]).__name__} values such as {others[0]!r}; "
                "Unknown label type: pass every label as a string (or every label as an integer)."
            )
    labeled = y_arr[~unlabeled]
    names, inverse = np.unique(labeled, return_inverse=True)
    codes = np.full(len(y_arr), UNLABELED, dtype=np.int64)
    codes[~unlabeled] = inverse.ravel()
    return codes, names


def num_samples(X, name: str = "X") -> int:
    """Number of rows of X (arrays, sparse matrices, data frames, lists, array-likes)."""
    try:
        return int(_num_samples(X))
    except TypeError:
        raise InputError(f"{name} must be array-like with one row per sample, got {type(X).__name__}; "
                         "pass an array, a list or a DataFrame.") from None


def allows_nan(estimator) -> bool:
    """Whether ``estimator`` takes NaN in X itself (scikit-learn's ``allow_nan`` tag: histogram
    gradient boosting, forests), so a caller passes such X on as scikit-learn's
    SelfTrainingClassifier does instead of refusing it."""
    if estimator is None:
        return False
    try:
        from sklearn.utils import get_tags  # scikit-learn >= 1.6
    except ImportError:
        return False
    try:
        return bool(get_tags(estimator).input_tags.allow_nan)
    except (AttributeError, TypeError, ValueError):  # an estimator without scikit-learn's tags
        return False


def check_finite_any(X, name: str = "X") -> None:
    """:func:`check_finite` for numpy arrays, scipy.sparse matrices (their stored values) and data
    frames (their numeric columns); anything else (texts, lazy readers) passes unchecked."""
    if sp.issparse(X):
        data = X.data if hasattr(X, "data") and isinstance(X.data, np.ndarray) else X.tocsr().data
        if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
            rows = np.unique(X.tocoo().row[~np.isfinite(X.tocoo().data)])
            raise InputError(f"{name} contains NaN or infinity in {len(rows)} sample(s); drop or impute those rows "
                             "first.")
        return
    if hasattr(X, "select_dtypes") and hasattr(X, "to_numpy"):
        numeric = X.select_dtypes(include="number")
        if numeric.shape[1]:
            # na_value: a nullable column's pd.NA counts as missing, like NaN.
            check_finite(numeric.to_numpy(dtype=np.float64, na_value=np.nan), name)
        return
    if hasattr(X, "dtype") and hasattr(X, "to_numpy"):  # a Series
        # pandas' own dtypes (StringDtype, Float64, categories) are no numpy dtype: read their kind.
        if getattr(X.dtype, "kind", "O") in "iuf":
            check_finite(X.to_numpy(dtype=np.float64, na_value=np.nan), name)
        return
    if isinstance(X, np.ndarray):
        if X.dtype.kind == "O":
            try:
                X = X.astype(np.float64)
            except (TypeError, ValueError):
                return  # texts or mixed objects: the estimator's business
        check_finite(X, name)


def indexable_rows(X):
    """X as given, unless rows cannot be taken from it: an array-like without len() or [] (numpy
    reads it), or a sparse format without row indexing (COO, DIA, BSR: CSR keeps it sparse)."""
    if sp.issparse(X):
        return X if X.format in ("csr", "csc", "lil", "dok") else X.tocsr()
    if hasattr(X, "__array__") and not (hasattr(X, "__len__") and hasattr(X, "__getitem__")):
        return np.asarray(X)
    return X
