"""Calibrated confidences and thresholds: temperature scaling, calibration error, and the threshold
that meets a target precision, all estimated on held-out labeled data.

Plain numpy and scipy over arrays (no torch), so scikit-learn users pay nothing for it.
SelfTraining calls these once a round when ``calibration`` or ``target_precision`` is set.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from scipy.stats import norm

from pseudolabel._validation import check_same_length
from pseudolabel.exceptions import InputError

# Search range of the temperature: wide enough for any realistic over- or under-confidence,
# narrow enough that a separable held-out set (NLL -> 0 as T -> 0) stops at a finite value.
T_BOUNDS = (0.05, 20.0)


def _as_scores(scores, name: str) -> np.ndarray:
    try:
        arr = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a numeric 2-D array (n_samples, n_classes), got {type(scores).__name__} "
                         "that is not one; pass one row of class scores per sample.") from None
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise InputError(
            f"{name} must be a 2-D array (n_samples, n_classes) with at least 2 classes, got shape {arr.shape}; "
            "pass one row of class scores per sample."
        )
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contains NaN or infinity; pass finite scores.")
    return arr


def _as_targets(y, n_classes: int, name: str = "y") -> np.ndarray:
    try:
        y_arr = np.asarray(y)
    except (TypeError, ValueError):
        y_arr = np.asarray(None)
    if y_arr.ndim == 1 and y_arr.dtype == object and len(y_arr) and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in y_arr.tolist()):
        y_arr = y_arr.astype(np.int64)
    if y_arr.ndim != 1 or y_arr.dtype.kind not in "iu":
        raise InputError(
            f"{name} must be a 1-D array of integer column indices, got dtype {y_arr.dtype} and shape {y_arr.shape}; "
            "pass the index of each sample's true class in the score columns."
        )
    if y_arr.size and (y_arr.min() < 0 or y_arr.max() >= n_classes):
        raise InputError(
            f"{name} holds the column index {int(y_arr.min() if y_arr.min() < 0 else y_arr.max())}, but the scores "
            f"have {n_classes} columns; pass indices in [0, {n_classes}) (e.g. np.searchsorted(classes_, y))."
        )
    return y_arr.astype(np.int64)


def _log_proba(proba: np.ndarray) -> np.ndarray:
    # log p differs from the logits by a per-row constant, which softmax ignores; an underflowed
    # 0 becomes the smallest normal float's log (-708), still "impossible" after any T in range.
    return np.log(np.clip(proba, np.finfo(np.float64).tiny, None))


def _nll(logits: np.ndarray, y: np.ndarray, T: float) -> float:
    return float(-np.mean(log_softmax(logits / T, axis=1)[np.arange(len(y)), y]))


def fit_temperature(logits_or_proba, y, *, from_proba: bool = False, prior_sd: float | None = 0.5) -> float:
    """The temperature T that minimizes the negative log-likelihood of ``softmax(logits / T)``.

    Temperature scaling (Guo et al., 2017) divides every logit by one number fitted on held-out
    labeled data: T > 1 softens an overconfident model, T < 1 sharpens an underconfident one.
    It never changes the predicted class. The search runs over log T, bounded to [0.05, 20].

    When every held-out prediction is right, the likelihood keeps growing as T falls to 0 and
    plain maximum likelihood returns the lower bound: every confidence becomes 1. With the few
    held-out labels of semi-supervised work (20 at 100 labels) that happens by chance, so by
    default log T gets a Gaussian prior centred on 0 (T = 1) with standard deviation ``prior_sd``
    (a maximum a posteriori fit). Its weight does not grow with the number of samples, so with
    hundreds of them the data decide; on 20 separable digits it gives T near 0.6 instead of 0.05.

    Parameters
    ----------
    logits_or_proba : array (n_samples, n_classes)
        Logits, or probabilities with ``from_proba=True`` (their log is used as logits).
    y : array of int (n_samples,)
        Column index of each sample's true class.
    from_proba : bool, default=False
    prior_sd : float > 0 or None, default=0.5
        Standard deviation of the prior on log T; None fits by maximum likelihood alone.

    Returns
    -------
    float
        The fitted temperature.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> z = 4 * rng.normal(size=(2000, 3))
    >>> y = np.array([rng.choice(3, p=p) for p in softmax(z / 2.0, axis=1)])
    >>> bool(1.7 < fit_temperature(z, y) < 2.3)
    True
    """
    scores = _as_scores(logits_or_proba, "logits_or_proba")
    y_idx = _as_targets(y, scores.shape[1])
    check_same_length("logits_or_proba", scores, "y", y_idx)
    if len(scores) == 0:
        raise InputError("fit_temperature got no samples; pass at least one held-out labeled sample.")
    if prior_sd is not None and (isinstance(prior_sd, bool) or not isinstance(prior_sd, numbers.Real)
                                 or not (math.isfinite(prior_sd) and prior_sd > 0)):
        raise InputError(f"The 'prior_sd' parameter must be a finite float > 0 or None. Got {prior_sd!r} instead.")
    if from_proba:
        if scores.min() < 0 or scores.max() > 1:
            raise InputError(
                "logits_or_proba holds values outside [0, 1] with from_proba=True; pass probabilities, "
                "or logits with from_proba=False."
            )
        scores = _log_proba(scores)
    return _fit_temperature(scores, y_idx, prior_sd)


def _fit_temperature(logits: np.ndarray, y: np.ndarray, prior_sd: float | None) -> float:
    lo, hi = np.log(T_BOUNDS[0]), np.log(T_BOUNDS[1])
    # The mean NLL plus the prior's share per sample: -log prior(log T) / n.
    penalty = 0.0 if prior_sd is None else 1.0 / (2.0 * prior_sd ** 2 * len(y))
    res = minimize_scalar(lambda log_t: _nll(logits, y, float(np.exp(log_t))) + penalty * log_t ** 2,
                          bounds=(lo, hi), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))


def apply_temperature(proba_or_logits, T: float, from_proba: bool = True) -> np.ndarray:
    """Probabilities ``softmax(logits / T)``; with ``from_proba=True`` the logits are ``log(proba)``.

    Examples
    --------
    >>> apply_temperature(np.array([[0.9, 0.1]]), 2.0).round(3).tolist()
    [[0.75, 0.25]]
    """
    if isinstance(T, bool) or not isinstance(T, numbers.Real) or not (math.isfinite(T) and T > 0):
        raise InputError(f"The temperature T must be a finite float > 0. Got {T!r} instead.")
    scores = _as_scores(proba_or_logits, "proba_or_logits")
    logits = _log_proba(scores) if from_proba else scores
    return softmax(logits / float(T), axis=1)


def expected_calibration_error(proba, y, n_bins: int = 15) -> float:
    """Expected calibration error of the top-class confidence, over equal-width bins of (0, 1].

    ECE = sum over bins of (share of samples in the bin) * |accuracy - mean confidence| in the bin.
    0 is perfectly calibrated; an overconfident model has confidence above its accuracy.

    Parameters
    ----------
    proba : array (n_samples, n_classes)
    y : array of int (n_samples,)
        Column index of each sample's true class.
    n_bins : int, default=15

    Examples
    --------
    >>> expected_calibration_error(np.array([[0.9, 0.1], [0.9, 0.1]]), np.array([0, 1]))
    0.4
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, numbers.Integral) or n_bins < 1:
        raise InputError(f"The 'n_bins' parameter must be an int >= 1. Got {n_bins!r} instead.")
    p = _as_scores(proba, "proba")
    y_idx = _as_targets(y, p.shape[1])
    check_same_length("proba", p, "y", y_idx)
    if len(p) == 0:
        raise InputError("expected_calibration_error got no samples; pass at least one labeled sample.")
    conf = p.max(axis=1)
    correct = p.argmax(axis=1) == y_idx
    # Bin i holds (i/n, (i+1)/n]; a confidence of exactly 0 joins the first bin.
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        in_bin = bins == b
        total += in_bin.sum() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(round(total / len(p), 12))


def wilson_lower_bound(n_correct, n, confidence: float = 0.95):
    """One-sided Wilson score lower bound of a proportion (``n_correct`` of ``n``).

    Examples
    --------
    >>> round(float(wilson_lower_bound(100, 100)), 3)
    0.974
    """
    try:
        n_correct = np.asarray(n_correct, dtype=np.float64)
        n = np.asarray(n, dtype=np.float64)
        finite = bool(np.all(np.isfinite(n)) & np.all(np.isfinite(n_correct)))
        # Counts: whole numbers (a fraction of a sample, e.g. 5e-324, makes the bound inf - inf).
        bad = (not finite or bool(np.any(n_correct < 0) | np.any(n_correct > n))
               or bool(np.any(np.mod(n, 1) != 0) | np.any(np.mod(n_correct, 1) != 0)))
        np.broadcast(n_correct, n)
    except (TypeError, ValueError):
        raise InputError("n_correct and n of wilson_lower_bound must be numbers or arrays of one shape; pass "
                         "counts.") from None
    if bad:
        raise InputError("wilson_lower_bound needs whole counts 0 <= n_correct <= n; pass the count of correct "
                         "predictions and of all predictions.")
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real) or not (0 < confidence < 1):
        raise InputError(f"The 'confidence' parameter must be a float in (0, 1). Got {confidence!r} instead.")
    z = norm.ppf(confidence)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = n_correct / n
        centre = p + z * z / (2 * n)
        spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return np.where(n > 0, (centre - spread) / (1 + z * z / n), 0.0)


def threshold_for_precision(conf, correct, target: float = 0.99, *, min_count: int = 10,
                            conservative: bool = False, confidence: float = 0.95) -> float | None:
    """The lowest threshold t at which the estimated precision of ``{conf > t}`` reaches ``target``.

    Estimated on held-out labeled data: ``conf`` is the model's confidence on each held-out sample
    and ``correct`` whether its prediction was right. The candidates are the held-out confidences
    themselves, so ``{conf > t}`` on the held-out data is exactly the set whose precision was
    estimated and the threshold never reaches below the held-out evidence. A candidate counts
    only when at least ``min_count`` held-out samples pass it. Precision is the plain share of
    correct predictions, or with ``conservative=True`` its one-sided Wilson lower bound at
    ``confidence``: with few held-out samples the plain share is 1.0 by luck far more often than the
    true precision is, while the bound reaches 0.99 only with hundreds of samples (about 270 all
    correct at 95 %).

    Parameters
    ----------
    conf : array (n,)
        Confidence of each held-out prediction (e.g. its highest probability).
    correct : array of bool (n,)
        Whether each held-out prediction equals the true label.
    target : float in (0, 1], default=0.99
    min_count : int >= 1, default=10
    conservative : bool, default=False
    confidence : float in (0, 1), default=0.95
        Confidence level of the Wilson bound (conservative only).

    Returns
    -------
    float or None
        The threshold, or None when no candidate reaches ``target``.

    Examples
    --------
    >>> conf = np.linspace(0.5, 1.0, 50, endpoint=False)
    >>> correct = conf > 0.6
    >>> t = threshold_for_precision(conf, correct, target=0.99)
    >>> bool(0.59 < t < 0.61)
    True
    """
    if isinstance(target, bool) or not isinstance(target, numbers.Real) or not (0 < target <= 1):
        raise InputError(f"The 'target' parameter must be a float in (0, 1]. Got {target!r} instead.")
    if isinstance(min_count, bool) or not isinstance(min_count, numbers.Integral) or min_count < 1:
        raise InputError(f"The 'min_count' parameter must be an int >= 1. Got {min_count!r} instead.")
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real) or not (0 < confidence < 1):
        raise InputError(f"The 'confidence' parameter must be a float in (0, 1). Got {confidence!r} instead.")
    c = _as_conf(conf)
    try:
        ok = np.asarray(correct)
    except (TypeError, ValueError):
        ok = np.asarray(None)
    if ok.ndim != 1 or ok.dtype.kind not in "biu" or (ok.dtype.kind in "iu" and not np.isin(ok, (0, 1)).all()):
        raise InputError(f"correct must be a 1-D array of bool, one per confidence, got dtype {ok.dtype} and shape "
                         f"{ok.shape}; pass prediction == truth.")
    check_same_length("conf", c, "correct", ok)
    return _threshold_for_precision(c, ok.astype(bool), float(target), int(min_count), conservative, confidence)


def _as_conf(conf) -> np.ndarray:
    try:
        c = np.asarray(conf, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"conf must be a 1-D array of confidences, got {type(conf).__name__} that is not numeric; "
                         "pass e.g. proba.max(axis=1).") from None
    if c.ndim > 1:
        raise InputError(f"conf must be a 1-D array of confidences, got shape {c.shape}; pass e.g. proba.max(axis=1).")
    c = c.ravel()
    if not np.all(np.isfinite(c)):
        raise InputError("conf contains NaN or infinity; pass finite confidences.")
    return c


def _threshold_for_precision(conf: np.ndarray, correct: np.ndarray, target: float, min_count: int,
                             conservative: bool, confidence: float) -> float | None:
    if len(conf) == 0:
        return None
    order = np.argsort(-conf, kind="stable")
    c, ok = conf[order], correct[order]
    n_correct_above = np.concatenate([[0], np.cumsum(ok)])  # [i] = correct among the i most confident
    candidates = np.unique(c)  # ascending
    # Rows with conf > t are the first n_above of the descending order.
    n_above = len(c) - np.searchsorted(c[::-1], candidates, side="right")
    k_above = n_correct_above[n_above]
    if conservative:
        precision = wilson_lower_bound(k_above, n_above, confidence)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(n_above > 0, k_above / np.maximum(n_above, 1), 0.0)
    # A small tolerance so a target of exactly 1.0 or 0.99 is not missed by float rounding.
    meets = (n_above >= min_count) & (precision >= target - 1e-12)
    if not meets.any():
        return None
    return float(candidates[np.argmax(meets)])


def threshold_for_expected_precision(conf, target: float = 0.99, *, min_count: int = 1) -> float | None:
    """The lowest threshold t at which the mean of the confidences above it reaches ``target``.

    When ``conf`` are calibrated probabilities that each prediction is right (e.g. after
    :func:`apply_temperature` with a temperature from held-out labels), the mean confidence of
    ``{conf > t}`` is the expected precision of that set. Unlike :func:`threshold_for_precision`
    it needs no labels, so it can run on the whole unlabeled pool, and its resolution is not
    limited by the few held-out samples; it is exactly as good as the calibration. The
    candidates are the confidences themselves.

    Parameters
    ----------
    conf : array (n,)
        Calibrated confidence of each prediction.
    target : float in (0, 1], default=0.99
    min_count : int >= 1, default=1
        Least number of rows that must pass.

    Returns
    -------
    float or None
        The threshold, or None when not even the most confident rows reach ``target``.

    Examples
    --------
    >>> threshold_for_expected_precision(np.array([0.999, 0.99, 0.98, 0.9, 0.6]), target=0.98)
    0.9
    """
    if isinstance(target, bool) or not isinstance(target, numbers.Real) or not (0 < target <= 1):
        raise InputError(f"The 'target' parameter must be a float in (0, 1]. Got {target!r} instead.")
    if isinstance(min_count, bool) or not isinstance(min_count, numbers.Integral) or min_count < 1:
        raise InputError(f"The 'min_count' parameter must be an int >= 1. Got {min_count!r} instead.")
    c = _as_conf(conf)
    return _threshold_for_expected_precision(c, float(target), int(min_count))


def _threshold_for_expected_precision(conf: np.ndarray, target: float, min_count: int) -> float | None:
    if len(conf) == 0:
        return None
    c = np.sort(conf)[::-1]
    sum_above = np.concatenate([[0.0], np.cumsum(c)])  # [i] = sum of the i largest
    candidates = np.unique(c)
    n_above = len(c) - np.searchsorted(c[::-1], candidates, side="right")
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_above = np.where(n_above > 0, sum_above[n_above] / np.maximum(n_above, 1), 0.0)
    meets = (n_above >= min_count) & (mean_above >= target - 1e-12)
    if not meets.any():
        return None
    return float(candidates[np.argmax(meets)])
