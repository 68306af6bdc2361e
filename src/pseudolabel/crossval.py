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
from typing import Any, Callable, Optional

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold
from sklearn.utils import _safe_indexing

from pseudolabel._validation import check_finite, check_labels, check_same_length
from pseudolabel.exceptions import InputError

__all__ = ["out_of_fold_proba"]

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
) -> np.ndarray:
    """Predict class probabilities for every sample with a model that was not trained on it.

    The samples are split into ``cv`` stratified folds (shuffled with ``random_state``). For each
    fold a clone of ``estimator`` is fit on the other folds and predicts the held-out fold.

    Parameters
    ----------
    estimator : classifier
        Any scikit-learn classifier with ``predict_proba`` (e.g. ``LogisticRegression``,
        ``pseudolabel.models.ConvNetClassifier``). It is cloned, never fit in place.
    X : array-like of shape (n_samples, ...)
        Samples. Anything indexable by an integer array works: numpy arrays, lists, DataFrames,
        or a lazy image reader with ``shape`` and ``__getitem__``.
    y : array-like of shape (n_samples,)
        Integer class labels (any integers >= 0; -1, "unlabeled", is not allowed here).
    cv : int or cross-validation splitter, default=5
        Number of stratified folds (>= 2). A class with fewer samples than folds lowers the
        number of folds to that class's count, with a ``UserWarning``; a class with a single
        sample raises ``InputError``. A scikit-learn splitter (e.g. ``GroupKFold`` to keep
        near-duplicates together) is used as given; its test folds must cover every sample
        exactly once.
    random_state : int, RandomState or None, default=None
        Seeds the shuffling of the folds. The estimator's own ``random_state`` is left alone.
    n_jobs : int or None, default=None
        Folds fit in parallel through ``joblib.Parallel``; None runs them one after another.
    verbose : int, default=0
        Passed to ``joblib.Parallel``.
    callback : callable or None, default=None
        Called as ``callback(fold_index, n_folds, info)`` after each fold, in fold order, with
        ``info`` a dict: ``fold``, ``n_train``, ``n_test``, ``accuracy`` (on the held-out
        fold, against the given labels) and ``seconds``.
    sample_weight : array-like of shape (n_samples,) or None, default=None
        Passed, for the training rows of each fold, to ``estimator.fit(..., sample_weight=)``
        (e.g. how much each label is trusted).

    Returns
    -------
    proba : ndarray of shape (n_samples, n_classes)
        Out-of-fold probabilities. Column ``k`` belongs to class ``np.unique(y)[k]``, even when a
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
    y = _check_inputs(estimator, X, y)
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=np.float64)
        check_same_length("sample_weight", sample_weight, "y", y)
        check_finite(sample_weight, "sample_weight")
        if sample_weight.ndim != 1 or (sample_weight < 0).any():
            raise InputError(f"sample_weight must be one non-negative weight per sample, got shape "
                             f"{sample_weight.shape} with minimum {sample_weight.min():g}; pass weights >= 0.")
    classes, counts = np.unique(y, return_counts=True)
    splits = _make_splits(X, y, classes, counts, cv, random_state)
    n_folds = len(splits)

    proba = np.zeros((len(y), len(classes)), dtype=np.float64)
    # An ordered generator lets the caller see progress as folds finish, in fold order.
    results = Parallel(n_jobs=n_jobs, verbose=verbose, return_as="generator")(
        delayed(_fit_predict_fold)(clone(estimator), X, y, train, test, classes, sample_weight)
        for train, test in splits
    )
    for fold, ((_, test), (fold_proba, seconds)) in enumerate(zip(splits, results)):
        proba[test] = fold_proba
        if callback is not None:
            predicted = classes[np.argmax(fold_proba, axis=1)]
            info = {
                "fold": fold,
                "n_train": int(len(y) - len(test)),
                "n_test": int(len(test)),
                "accuracy": float(np.mean(predicted == y[test])),
                "seconds": float(seconds),
            }
            callback(fold, n_folds, info)
    return proba


def _check_inputs(estimator, X, y) -> np.ndarray:
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
    check_same_length("X", X, "y", y)
    # Only check arrays we can see without loading: a lazy image reader is not materialized.
    if isinstance(X, np.ndarray):
        check_finite(X, "X")
    elif hasattr(X, "to_numpy"):
        check_finite(X.to_numpy(), "X")
    return check_labels(y, "y", allow_unlabeled=False)


def _make_splits(X, y, classes, counts, cv, random_state) -> list[tuple[np.ndarray, np.ndarray]]:
    if len(classes) < 2:
        raise InputError(
            f"y holds a single class ({int(classes[0])}) but out-of-fold probabilities need at "
            "least 2 classes; check that the labels were loaded correctly."
            if len(classes) else "y is empty; pass at least 2 samples of each of 2 classes."
        )
    if hasattr(cv, "split") and hasattr(cv, "get_n_splits"):
        splits = [(np.asarray(tr), np.asarray(te)) for tr, te in cv.split(X, y)]
        covered = np.zeros(len(y), dtype=np.int64)
        for _, test in splits:
            covered[test] += 1
        if not np.all(covered == 1):
            raise InputError(
                f"the splitter {type(cv).__name__} puts {int(np.sum(covered != 1))} sample(s) in "
                "no test fold or in several; use a K-fold splitter whose test folds partition "
                "the samples."
            )
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
        names = ", ".join(str(int(c)) for c in rare)
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


def _fit_predict_fold(estimator, X, y, train, test, classes, sample_weight=None) -> tuple[np.ndarray, float]:
    """Fit on `train` (with its rows of `sample_weight`, if given), predict `test`, and put the
    columns where `classes` says they belong."""
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
    return full, time.perf_counter() - start
