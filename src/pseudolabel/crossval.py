"""Out-of-fold predicted probabilities: every sample is predicted by a model that never saw it.

Label cleaning needs a model's opinion of each training sample that is not memorized from that
sample's own (possibly wrong) label. Stratified K-fold gives one: each fold's model is fit on the
other folds and predicts the held-out fold only. The folds are independent, so they run in
parallel through joblib (and on a Dask cluster through joblib's Dask backend).
"""
from __future__ import annotations

import numbers
import time
import warnings
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold
from sklearn.utils import _safe_indexing

from pseudolabel._validation import (
    allows_nan, check_finite, check_finite_any, encode_labels, indexable_rows, num_samples,
)
from pseudolabel.callbacks import Callback, notify
from pseudolabel.exceptions import InputError
from pseudolabel.parentwatch import exit_with_parent

__all__ = ["out_of_fold_proba", "fold_splits"]

FoldCallback = Callable[[int, int, dict], Any]


def out_of_fold_proba(
    estimator,
    X,
    y,
    *,
    cv: int | Any = 5,
    random_state=None,
    n_jobs: Optional[int] = None,
    verbose: int = 0,
    callback: Optional[FoldCallback] = None,
    sample_weight=None,
    callbacks: Sequence[Callback] | None = None,
    done: Mapping[int, np.ndarray] | None = None,
    classes=None,
    executor: Optional[Callable] = None,
) -> np.ndarray:
    """Predict class probabilities for every sample with a model that was not trained on it.

    The samples are split into ``cv`` stratified folds (shuffled with ``random_state``). For each
    fold a clone of ``estimator`` is fit on the other folds and predicts the held-out fold. This
    is the one fold loop of the package: the clean job calls it with callbacks that checkpoint
    each fold, and with the folds a killed run finished already.

    Parameters
    ----------
    estimator : classifier
        Any scikit-learn classifier with ``predict_proba`` (e.g. ``LogisticRegression``,
        ``pseudolabel.models.ConvNetClassifier``). It is cloned, never fit in place.
    X : array-like of shape (n_samples, ...)
        Samples. Anything indexable by an integer array works: numpy arrays, lists, DataFrames,
        or a lazy image reader with ``shape`` and ``__getitem__``.
    y : array-like of shape (n_samples,)
        Class labels: integers >= 0, or names (strings; encoded once, so the estimator is fit on
        their positions in the sorted names). -1, "unlabeled", is not allowed here.
    cv : int, cross-validation splitter, or list of (train, test) index pairs, default=5
        Number of stratified folds (>= 2). A class with fewer samples than folds lowers the
        number of folds to that class's count, with a ``UserWarning``; a class with a single
        sample raises ``InputError``. A scikit-learn splitter (e.g. ``GroupKFold`` to keep
        near-duplicates together) or the pairs of :func:`fold_splits` are used as given; their
        test folds must cover every sample exactly once.
    random_state : int, RandomState or None, default=None
        Seeds the shuffling of the folds. The estimator's own ``random_state`` is left alone.
    n_jobs : int or None, default=None
        Folds fit in parallel through ``joblib.Parallel`` (each worker gets its own writable
        copy of X); None or 1 runs them one after another in this process.
    verbose : int, default=0
        Passed to ``joblib.Parallel``.
    callback : callable or None, default=None
        Called as ``callback(fold_index, n_folds, info)`` after each fold, in fold order, with
        ``info`` a dict: ``fold``, ``n_train``, ``n_test``, ``accuracy`` (on the held-out
        fold, against the given labels) and ``seconds``; for a model that held out a validation
        split (``ConvNetClassifier(validation_fraction=)``) also ``validation_accuracy``,
        ``epochs`` (trained) and ``best_epoch``.
    sample_weight : array-like of shape (n_samples,) or None, default=None
        Passed, for the training rows of each fold, to ``estimator.fit(..., sample_weight=)``
        (e.g. how much each label is trusted).
    callbacks : list of :class:`pseudolabel.callbacks.Callback`, optional
        ``on_fold_end(fold, n_folds, info)`` after each fold that was trained, in fold order;
        ``info`` as for ``callback`` plus ``test`` (the held-out rows) and ``proba`` (their
        probabilities), so a caller can checkpoint the fold. ``on_fold_begin(fold, n_folds,
        info)`` before a fold trains in this process (``n_jobs`` None or 1).
    done : dict of {fold index: probabilities of its test rows}, optional
        Folds predicted already (e.g. by a killed run): their rows take these probabilities and
        the folds are not trained again.
    classes : array-like, optional
        The columns of the result, sorted (default ``np.unique(y)``); must hold every label of y,
        and be names when y holds names. A class no fold trains on keeps a zero column.
    executor : callable, optional
        Runs the folds elsewhere instead of ``n_jobs``: called once as ``executor(fn, arglists)``,
        it returns ``fn(*args)`` for each of ``arglists``, in order (e.g.
        ``pseudolabel.cluster.Cluster.fold_executor()``: each fold a Ray task).

    Returns
    -------
    proba : ndarray of shape (n_samples, n_classes)
        Out-of-fold probabilities. Column ``k`` belongs to class ``classes[k]``, even when a
        fold's training part lacks a class (that class's column is 0 for the fold).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.linear_model import LogisticRegression
    >>> X, y = load_digits(return_X_y=True)
    >>> model = LogisticRegression(max_iter=2000)
    >>> proba = out_of_fold_proba(model, X / 16, y, cv=3, random_state=0)
    >>> proba.shape
    (1797, 10)
    """
    X = indexable_rows(X)
    y, names = _check_inputs(estimator, X, y)
    if sample_weight is not None:
        try:
            sample_weight = np.asarray(sample_weight, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError("sample_weight must be one number per sample; pass non-negative weights.") from None
        if sample_weight.ndim == 1 and len(sample_weight) != len(y):
            raise InputError(f"sample_weight and y must be the same length, but sample_weight is length "
                             f"{len(sample_weight)} and y is length {len(y)}; pass one weight per sample.")
        check_finite(sample_weight, "sample_weight")
        if sample_weight.ndim != 1 or (sample_weight < 0).any():
            raise InputError(f"sample_weight must be one non-negative weight per sample, got shape "
                             f"{sample_weight.shape} with minimum {sample_weight.min(initial=0):g}; pass weights >= 0.")
    y, classes, shown = _check_classes(y, names, classes)
    # Folds of the labels as given, so messages name the classes; the same folds as for the codes.
    splits = fold_splits(y if names is None else shown[y], cv, random_state, X=X)
    n_folds = len(splits)
    done = dict(done or {})
    proba = np.zeros((len(y), len(classes)), dtype=np.float64)
    for k, fold_proba in done.items():
        proba[splits[k][1]] = fold_proba
    todo = [k for k in range(n_folds) if k not in done]

    def fit_fold(k):
        return _fit_predict_fold(clone(estimator), X, y, splits[k][0], splits[k][1], classes, sample_weight)

    if executor is not None:
        results = executor(_fit_predict_fold, [(clone(estimator), X, y, splits[k][0], splits[k][1], classes,
                                                sample_weight) for k in todo])
    elif n_jobs in (None, 1):
        def one_by_one():
            for k in todo:
                notify(callbacks, "on_fold_begin", k, n_folds,
                       {"fold": k, "n_train": len(splits[k][0]), "n_test": len(splits[k][1])})
                yield fit_fold(k)

        results = one_by_one()
    else:
        # max_nbytes=None: each worker gets its own writable copy (torch refuses read-only memmaps).
        # An ordered generator lets the caller see progress as folds finish, in fold order.
        results = Parallel(n_jobs=n_jobs, verbose=verbose, return_as="generator", max_nbytes=None)(
            delayed(_fit_predict_fold_in_worker)(clone(estimator), X, y, splits[k][0], splits[k][1], classes,
                                                 sample_weight)
            for k in todo)
    for k, (fold_proba, seconds, fitted) in zip(todo, results):
        test = splits[k][1]
        proba[test] = fold_proba
        if callback is None and not callbacks:
            continue
        predicted = classes[np.argmax(fold_proba, axis=1)]
        info = {"fold": k, "n_train": int(len(splits[k][0])), "n_test": int(len(test)),
                "accuracy": float(np.mean(predicted == y[test])), "seconds": float(seconds), **fitted}
        if callback is not None:
            callback(k, n_folds, dict(info))
        notify(callbacks, "on_fold_end", k, n_folds, {**info, "test": test, "proba": fold_proba})
    return proba


def fold_splits(y, cv: int | Any = 5, random_state=None, *, X=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (train, test) index pairs :func:`out_of_fold_proba` uses for ``y`` and ``cv``: the
    same for the same labels and seed, so a resumed run can check and reuse finished folds.

    Examples
    --------
    >>> [len(test) for _, test in fold_splits([0, 0, 0, 1, 1, 1], cv=3, random_state=0)]
    [2, 2, 2]
    """
    y = np.asarray(y)
    if not hasattr(cv, "split") and not isinstance(cv, numbers.Integral) and hasattr(cv, "__iter__"):
        return _given_splits(list(cv), len(y))
    try:
        classes, counts = np.unique(y, return_counts=True)
    except TypeError:
        raise InputError("y mixes labels of different types (e.g. strings and numbers); pass every label as a "
                         "string or every label as an integer.") from None
    return _make_splits(X, y, classes, counts, cv, random_state)


def _given_splits(pairs: list, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    try:
        splits = [(np.asarray(tr, dtype=np.int64), np.asarray(te, dtype=np.int64)) for tr, te in pairs]
    except (TypeError, ValueError):
        raise InputError("the given folds must be (train, test) pairs of row indices; pass e.g. "
                         "list(KFold(5).split(X)).") from None
    for _, te in splits:
        if te.size and (te.min() < -n or te.max() >= n):
            raise InputError(f"the given folds refer to row {int(te.max() if te.max() >= n else te.min())}, but "
                             f"there are {n} samples; pass folds of these samples.")
    _check_partition(splits, n, "the given folds")
    return splits


def _check_partition(splits: list, n: int, what: str) -> None:
    covered = np.zeros(n, dtype=np.int64)
    for _, test in splits:
        np.add.at(covered, test, 1)
    if not np.all(covered == 1):
        raise InputError(
            f"{what} put {int(np.sum(covered != 1))} sample(s) in no test fold or in several; use a "
            "K-fold splitter whose test folds partition the samples."
        )


def _shown(c) -> str:
    """A class as messages name it: 7, or 'cat'."""
    c = c.item() if isinstance(c, np.generic) else c
    return str(c) if isinstance(c, numbers.Integral) else repr(c)


def _check_classes(y: np.ndarray, names, classes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (y for the folds, the column classes the folds use, the label value of each column).

    Integer labels stay as they are (columns: the sorted values). Names become their position in
    the sorted ``classes`` (default: the names in y), so every estimator is fit on integers.
    """
    present = names if names is not None else np.unique(y)
    if classes is None:
        return y, (present if names is None else np.arange(len(names))), present
    try:
        cls = np.asarray(classes)
        if cls.ndim != 1:
            raise ValueError
        if cls.dtype.kind == "O" and all(isinstance(c, str) for c in cls.tolist()):
            cls = cls.astype(str)
        cls = np.unique(cls)
    except (TypeError, ValueError):
        raise InputError(f"classes must be a 1-D list of labels, got {type(classes).__name__}; pass e.g. "
                         "np.unique(y).") from None
    want_names = names is not None
    if want_names != (cls.dtype.kind in "US") or (not want_names and cls.dtype.kind not in "iubf"):
        kind = "names (strings)" if want_names else "integers"
        raise InputError(f"classes must hold {kind} like y, got dtype {cls.dtype}; pass the classes of y, "
                         "e.g. np.unique(y).")
    missing = present[~np.isin(present, cls)]
    if len(missing):
        raise InputError(f"y holds the label {_shown(missing[0])}, which classes={cls.tolist()[:10]} lacks; "
                         "pass every class of y in classes, or leave classes out.")
    if names is None:
        return y, cls, cls
    return np.searchsorted(cls, names)[y], np.arange(len(cls)), cls


def _check_inputs(estimator, X, y) -> tuple[np.ndarray, np.ndarray | None]:
    """Return (labels as int64 codes, the names or None)."""
    if not hasattr(estimator, "get_params"):
        raise InputError(
            f"estimator must be a scikit-learn estimator (with get_params and fit), got "
            f"{type(estimator).__name__}; pass e.g. LogisticRegression() or ConvNetClassifier()."
        )
    if not hasattr(estimator, "predict_proba"):
        name = type(estimator).__name__
        raise InputError(
            f"{name} has no predict_proba, but out-of-fold predictions need class probabilities; "
            f"pass a probabilistic classifier (e.g. LogisticRegression, SVC(probability=True)) "
            f"or wrap {name} in sklearn.calibration.CalibratedClassifierCV."
        )
    y, names = encode_labels(y, "y", allow_unlabeled=False)
    n_x = num_samples(X, "X")
    if n_x != len(y):
        raise InputError(f"X and y must be the same length, but X is length {n_x} and y is length {len(y)}; "
                         "pass one label per sample.")
    # Only check arrays we can see without loading: a lazy image reader is not materialized. NaN goes
    # on to a model that handles it (scikit-learn's allow_nan tag: boosted trees, forests).
    if not allows_nan(estimator):
        check_finite_any(X, "X")
    return y, names


def _make_splits(X, y, classes, counts, cv, random_state) -> list[tuple[np.ndarray, np.ndarray]]:
    if len(classes) < 2:
        raise InputError(
            f"y holds a single class ({_shown(classes[0])}) but out-of-fold probabilities need at "
            "least 2 classes; check that the labels were loaded correctly."
            if len(classes) else "y is empty; pass at least 2 samples of each of 2 classes."
        )
    if hasattr(cv, "split") and hasattr(cv, "get_n_splits"):
        splits = [(np.asarray(tr), np.asarray(te)) for tr, te in cv.split(X, y)]
        _check_partition(splits, len(y), f"the splitter {type(cv).__name__}")
        return splits
    if isinstance(cv, bool) or not isinstance(cv, numbers.Integral) or cv < 2:
        raise InputError(
            f"The 'cv' parameter of out_of_fold_proba must be an int >= 2 or a scikit-learn "
            f"splitter. Got {cv!r} instead."
        )
    n_folds = int(cv)
    smallest = int(counts.min())
    if smallest < n_folds:
        rare = classes[counts == smallest]
        names = ", ".join(_shown(c) for c in rare)
        which = f"class {names} has" if len(rare) == 1 else f"classes {names} have"
        if smallest < 2:
            raise InputError(
                f"{which} 1 sample; out-of-fold predictions need at least 2 per class: "
                "label more or drop it."
            )
        # Stratification needs each class in every fold; fewer folds is the smallest change
        # that keeps "every sample predicted by a model that never saw it" true.
        warnings.warn(
            f"{which} {smallest} samples, fewer than cv={n_folds} folds; using {smallest} folds.",
            UserWarning,
            stacklevel=3,
        )
        n_folds = smallest
    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=random_state)
    return [(train, test) for train, test in skf.split(np.zeros(len(y)), y)]


def _fit_predict_fold_in_worker(*args):
    """A fold in a worker process, which ends if this process is killed."""
    exit_with_parent()
    return _fit_predict_fold(*args)


def _fit_predict_fold(estimator, X, y, train, test, classes, sample_weight=None) -> tuple[np.ndarray, float, dict]:
    """Fit on `train` (with its rows of `sample_weight`, if given), predict `test`, and put the
    columns where `classes` says they belong. Returns (probabilities, seconds, what the fit
    reported: ``validation_accuracy`` and ``epochs`` of a model that early-stopped)."""
    start = time.perf_counter()
    fit_params = {} if sample_weight is None else {"sample_weight": sample_weight[train]}
    estimator.fit(_safe_indexing(X, train), y[train], **fit_params)
    fold_proba = np.asarray(estimator.predict_proba(_safe_indexing(X, test)), dtype=np.float64)
    fitted_classes = getattr(estimator, "classes_", None)
    if fitted_classes is None:
        # An estimator without classes_ is assumed to order its columns like np.unique.
        fitted_classes = np.unique(y[train])
    fitted_classes = np.asarray(fitted_classes)
    if fold_proba.shape != (len(test), len(fitted_classes)):
        raise InputError(
            f"{type(estimator).__name__}.predict_proba returned shape {fold_proba.shape} for "
            f"{len(test)} samples of {len(fitted_classes)} classes; expected "
            f"({len(test)}, {len(fitted_classes)}): check the estimator's predict_proba."
        )
    full = np.zeros((len(test), len(classes)), dtype=np.float64)
    # A training part that lacks a class gives fewer columns: map them by class value.
    full[:, np.searchsorted(classes, fitted_classes)] = fold_proba
    fitted = {}
    if getattr(estimator, "validation_accuracy_", None) is not None:
        fitted = {"validation_accuracy": float(estimator.validation_accuracy_),
                  "epochs": len(getattr(estimator, "history_", ())), "best_epoch": int(estimator.best_epoch_)}
    return full, time.perf_counter() - start, fitted
