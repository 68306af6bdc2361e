"""Which predictions become labels: a threshold (fixed or per round), the k best, a per-class quota.

Plain functions over probability arrays; SelfTraining calls them once a round.
"""
from __future__ import annotations

import numbers
from typing import Callable, Sequence, Union

import numpy as np

from pseudolabel._validation import check_threshold
from pseudolabel.exceptions import InputError

ThresholdSchedule = Union[float, Sequence[float], Callable[[int], float]]


def threshold_for_round(schedule: ThresholdSchedule, round_: int) -> float:
    """The threshold of round ``round_`` (1-based).

    A float is used in every round; a list gives one value per round and its last value repeats
    after it runs out; a callable is called with the round number.

    Examples
    --------
    >>> threshold_for_round([0.99, 0.95], 1), threshold_for_round([0.99, 0.95], 5)
    (0.99, 0.95)
    """
    if isinstance(round_, bool) or not isinstance(round_, numbers.Integral) or round_ < 1:
        raise InputError(f"The round of threshold_for_round must be an int >= 1. Got {round_!r} instead.")
    if callable(schedule):
        value = schedule(round_)
        name = f"threshold returned by the schedule for round {round_}"
    elif isinstance(schedule, (list, tuple, np.ndarray)):
        if len(schedule) == 0:
            raise InputError("The 'threshold' list of SelfTraining is empty; give at least one value in [0, 1).")
        value = schedule[min(round_, len(schedule)) - 1]
        name = "threshold"
    else:
        value = schedule
        name = "threshold"
    return check_threshold(value, name)


def check_schedule(schedule: ThresholdSchedule) -> None:
    """Check every value of a list schedule (a callable is checked round by round)."""
    if isinstance(schedule, (list, tuple, np.ndarray)):
        if len(schedule) == 0:
            raise InputError("The 'threshold' list of SelfTraining is empty; give at least one value in [0, 1).")
        for v in schedule:
            check_threshold(v)
    elif not callable(schedule):
        check_threshold(schedule)


def _check_proba(proba, owner: str) -> np.ndarray:
    """proba as a float array of shape (n_samples, n_classes >= 1) without NaN, or one InputError line."""
    try:
        arr = np.asarray(proba, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"proba of {owner} must be a numeric array of shape (n_samples, n_classes), got "
                         f"{type(proba).__name__}; pass predict_proba's output.") from None
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise InputError(f"proba of {owner} must be 2-D with one column per class, got shape {arr.shape}; "
                         "pass predict_proba's output.")
    if np.isnan(arr).any():
        raise InputError(f"proba of {owner} contains NaN in {int(np.isnan(arr).any(axis=1).sum())} row(s); "
                         "pass finite probabilities.")
    return arr


def select_by_threshold(proba: np.ndarray, threshold: float) -> np.ndarray:
    """Mask of rows whose highest probability is strictly greater than ``threshold`` (as the seed).

    Examples
    --------
    >>> select_by_threshold(np.array([[0.9, 0.1], [0.6, 0.4]]), 0.8).tolist()
    [True, False]
    """
    proba = _check_proba(proba, "select_by_threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or np.isnan(threshold):
        raise InputError(f"The 'threshold' parameter of select_by_threshold must be a float. "
                         f"Got {threshold!r} instead.")
    return proba.max(axis=1) > threshold


def select_k_best(proba: np.ndarray, k: int) -> np.ndarray:
    """Mask of the ``k`` most confident rows (all rows when there are fewer)."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise InputError(f"The 'k_best' parameter of SelfTraining must be an int >= 1. Got {k!r} instead.")
    proba = _check_proba(proba, "select_k_best")
    mask = np.zeros(len(proba), dtype=bool)
    if len(proba) <= k:
        mask[:] = True
        return mask
    conf = proba.max(axis=1)
    mask[np.argpartition(-conf, k - 1)[:k]] = True
    return mask


def class_balanced(proba: np.ndarray, mask: np.ndarray, quota: int | np.ndarray) -> np.ndarray:
    """Keep at most ``quota`` of the selected rows per predicted class, the most confident first.

    ``quota`` is one number for every class or one per column of ``proba``. Classes the model
    finds easy otherwise flood the training set and drown the hard ones.

    Examples
    --------
    >>> p = np.array([[0.9, 0.1], [0.95, 0.05], [0.2, 0.8]])
    >>> class_balanced(p, np.ones(3, bool), 1).tolist()
    [False, True, True]
    """
    proba = _check_proba(proba, "class_balanced")
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != (len(proba),):
        raise InputError(f"mask of class_balanced must be one bool per row of proba, got dtype {mask.dtype} and "
                         f"shape {mask.shape} for {len(proba)} rows; pass e.g. select_by_threshold's result.")
    try:
        quotas = np.broadcast_to(np.asarray(quota), (proba.shape[1],))
        ok = quotas.dtype.kind in "iu" and bool(np.all(quotas >= 0))
    except ValueError:
        ok = False
    if not ok or isinstance(quota, bool):
        raise InputError(f"The 'quota' of class_balanced must be an int >= 0, or one per column of proba. "
                         f"Got {quota!r} instead.")
    pred = proba.argmax(axis=1)
    conf = proba.max(axis=1)
    keep = np.zeros_like(mask)
    for c in range(proba.shape[1]):
        rows = np.flatnonzero(mask & (pred == c))
        if len(rows) > quotas[c]:
            rows = rows[np.argsort(-conf[rows], kind="stable")[: int(quotas[c])]]
        keep[rows] = True
    return keep


# SelfTraining's criterion="auto" for any model but the CNN (docs/selftraining.md): each round
# takes at most this share of the unlabeled pool, split over the classes in the proportions of the
# given labels, the most confident first (with max_iter=10, all of it can be taken) ...
ADAPTIVE_STEP = 0.1
# ... and only predictions at least 70 % likely right: calibrated confidence above 0.7. Chosen
# with bench/bench_stc.py on seeds 0-9 (docs/benchmarks.md): step 0.05 and 0.2, floors of chance
# (1 / n_classes), 0.5, 0.8 and 0.9, a stop when a round's mean calibrated confidence falls under
# 0.8 or 0.9, leaving the last 5 % or 10 % of the pool, and also taking every row above a
# calibrated 0.9 did no better on the mean; 0.7 alone was at or above STC on all 9 cases there.
ADAPTIVE_MIN_CONFIDENCE = 0.7


def adaptive_quota(given: np.ndarray, n_pool: int, step: float = ADAPTIVE_STEP) -> np.ndarray:
    """Per class (sorted), the most the adaptive selection takes in a round: ``step`` of the pool
    in the proportions of the ``given`` labels, rounded up.

    >>> adaptive_quota(np.array([0, 0, 0, 1]), 100).tolist()
    [8, 3]
    """
    counts = np.unique(np.asarray(given), return_counts=True)[1]
    return np.ceil(step * n_pool * counts / counts.sum()).astype(np.int64)


def adaptive_take(proba: np.ndarray, quota: np.ndarray, min_confidence: float = ADAPTIVE_MIN_CONFIDENCE
                  ) -> np.ndarray:
    """Rows the adaptive selection takes from calibrated ``proba``: per predicted class the most
    confident, at most the class's ``quota`` (:func:`adaptive_quota`), and only those whose
    confidence is above ``min_confidence``.

    >>> p = np.array([[0.9, 0.1], [0.95, 0.05], [0.6, 0.4], [0.2, 0.8]])
    >>> adaptive_take(p, np.array([1, 1])).tolist()
    [False, True, False, True]
    """
    proba = _check_proba(proba, "adaptive_take")
    return class_balanced(proba, proba.max(axis=1) > min_confidence, quota)


# criterion="auto" first looks at the supervised model's raw confidence on the pool: when it puts
# at least CONFIDENT_SHARE of the pool above CONFIDENT_THRESHOLD (scikit-learn's default), a plain
# threshold at 0.75 takes that share at once, as SelfTrainingClassifier does; the adaptive pacing
# is for models whose probabilities run low (forests on many classes, TF-IDF texts). On the design
# seeds 0-4 of bench/bench_stc.py the shares were 0.77-0.99 for logistic regression on digits,
# breast_cancer and wine and for forests and boosted trees on breast_cancer, and 0-0.65 for
# forests on digits and wine, boosted trees on wine and TF-IDF texts; 0.7 lies between.
CONFIDENT_THRESHOLD = 0.75
CONFIDENT_SHARE = 0.7


def confident_enough(proba: np.ndarray, threshold: float = CONFIDENT_THRESHOLD,
                     share: float = CONFIDENT_SHARE) -> bool:
    """Whether at least ``share`` of the rows of ``proba`` have a confidence above ``threshold``.

    >>> confident_enough(np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4]]))
    False
    >>> confident_enough(np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4]]), share=0.6)
    True
    """
    proba = _check_proba(proba, "confident_enough")
    return bool(len(proba)) and float(np.mean(proba.max(axis=1) > threshold)) >= share
