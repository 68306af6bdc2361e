"""Hypothesis fuzzing of the public functions and SelfTraining: random shapes, dtypes (int, float,
bool, strings, mixed objects), NaN and inf, empty arrays, labels with gaps, probabilities that do
not sum to 1 or are negative, pandas and scipy.sparse inputs.

The property, for every call: it returns a well-formed result (shapes, classes, probabilities in
[0, 1]) or raises one of the package's own exceptions (a PseudolabelError) with a one-line message;
never a raw numpy / scikit-learn error. Errors raised by the user's own estimator while it fits its
X are its own (as in scikit-learn's meta-estimators), so X given to an estimator here is numeric.
"""
from __future__ import annotations

import os

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sparse
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression

from pseudolabel.calibration import (
    apply_temperature, expected_calibration_error, fit_temperature, threshold_for_expected_precision,
    threshold_for_precision, wilson_lower_bound,
)
from pseudolabel.crossval import out_of_fold_proba
from pseudolabel.exceptions import PseudolabelError
from pseudolabel.issues import ISSUE_COLUMNS, fix_labels, rank_label_issues
from pseudolabel.selection import class_balanced, select_by_threshold, select_k_best, threshold_for_round
from pseudolabel.selftrain import SelfTraining

# Part of the reliability suite (`make reliability`, docs/reliability.md); `make test` runs it too.
pytestmark = pytest.mark.reliability

# Fixed examples in `make test` and CI (derandomize: the same draws every run, so a red run is a
# regression, not luck); PSEUDOLABEL_FUZZ_RANDOM=1 draws new ones to look for new bugs.
_DERANDOMIZE = os.environ.get("PSEUDOLABEL_FUZZ_RANDOM") != "1"
FAST = settings(max_examples=60, deadline=None, derandomize=_DERANDOMIZE,
                suppress_health_check=[HealthCheck.too_slow])
MODELS = settings(max_examples=40, deadline=None, derandomize=_DERANDOMIZE,
                  suppress_health_check=[HealthCheck.too_slow])

# -- strategies ------------------------------------------------------------------------------------

floats_any = st.floats(allow_nan=True, allow_infinity=True, width=64)
floats_unit = st.floats(0, 1)
NAMES = ["cat", "dog", "eel", "-1", ""]


@st.composite
def label_arrays(draw, n=None):
    """Labels of every kind: integers with gaps or negatives, floats (integral or not, NaN),
    bool, names, names with -1, mixed objects; as an array, list or Series."""
    n = draw(st.integers(0, 12)) if n is None else n
    kind = draw(st.sampled_from(["int", "gapped", "float", "bool", "str", "str_obj", "mixed", "none"]))
    if kind == "int":
        values = draw(st.lists(st.integers(-2, 4), min_size=n, max_size=n))
        arr = np.array(values, dtype=np.int64)
    elif kind == "gapped":
        arr = np.array(draw(st.lists(st.sampled_from([3, 7, 100, -1]), min_size=n, max_size=n)), dtype=np.int64)
    elif kind == "float":
        arr = np.array(draw(st.lists(st.one_of(st.sampled_from([0.0, 1.0, 2.0, -1.0]), floats_any),
                                     min_size=n, max_size=n)), dtype=np.float64)
    elif kind == "bool":
        arr = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    elif kind == "str":
        arr = np.array(draw(st.lists(st.sampled_from(NAMES), min_size=n, max_size=n)), dtype=str)
    elif kind == "str_obj":
        arr = np.array(draw(st.lists(st.one_of(st.sampled_from(NAMES[:3]), st.just(-1)), min_size=n, max_size=n)),
                       dtype=object)
    elif kind == "mixed":
        arr = np.array(draw(st.lists(st.one_of(st.sampled_from(NAMES), st.integers(-1, 3), st.none(), floats_any),
                                     min_size=n, max_size=n)), dtype=object)
    else:
        arr = np.array([None] * n, dtype=object)
    wrap = draw(st.sampled_from(["array", "list", "series"]))
    if wrap == "list":
        return arr.tolist()
    if wrap == "series":
        return pd.Series(arr, dtype=object if arr.dtype == object else None)
    return arr


@st.composite
def prob_arrays(draw, n=None):
    """Probabilities: proper rows, rows that do not sum to 1, negatives, NaN/inf, wrong shapes."""
    n = draw(st.integers(0, 12)) if n is None else n
    k = draw(st.integers(0, 4))
    kind = draw(st.sampled_from(["proper", "proper", "raw", "1d", "3d", "strings"]))
    if kind == "proper":
        raw = draw(hnp.arrays(np.float64, (n, k), elements=st.floats(0, 1)))
        sums = raw.sum(axis=1, keepdims=True)
        return np.divide(raw, sums, out=np.full_like(raw, 1.0 / max(k, 1)), where=sums > 0)
    if kind == "raw":
        return draw(hnp.arrays(np.float64, (n, k), elements=floats_any))
    if kind == "1d":
        return draw(hnp.arrays(np.float64, (n,), elements=floats_unit))
    if kind == "3d":
        return draw(hnp.arrays(np.float64, (n, k, 2), elements=floats_unit))
    return np.full((n, k), "p", dtype=object)


@st.composite
def feature_arrays(draw, n):
    """Numeric X of shape (n, d) as an array (int, float with NaN/inf, bool), DataFrame or sparse."""
    d = draw(st.integers(1, 3))
    if draw(st.booleans()):  # plain finite features, often enough for a fit to succeed
        X = draw(hnp.arrays(np.float64, (n, d), elements=st.floats(-10, 10)))
        return draw(st.sampled_from([X, pd.DataFrame(X, columns=[f"f{j}" for j in range(d)]),
                                     sparse.csr_matrix(X)]))
    dtype = draw(st.sampled_from([np.float64, np.int64, bool, np.float32]))
    elements = floats_any if dtype == np.float64 else None
    X = draw(hnp.arrays(dtype, (n, d), elements=elements)) if elements is not None else \
        draw(hnp.arrays(dtype, (n, d)))
    if dtype == np.float32:
        X = np.nan_to_num(X, nan=0.0, posinf=1.0, neginf=-1.0)
    X = np.clip(X, -1e6, 1e6) if X.dtype.kind == "f" and draw(st.booleans()) else X
    wrap = draw(st.sampled_from(["array", "frame", "csr", "coo", "object"]))
    if wrap == "frame":
        return pd.DataFrame(X, columns=[f"f{j}" for j in range(d)])
    if wrap in ("csr", "coo") and X.dtype.kind != "b":
        return (sparse.csr_matrix if wrap == "csr" else sparse.coo_matrix)(X.astype(np.float64))
    if wrap == "object":
        return X.astype(object)
    return X


@st.composite
def valid_labels(draw, n, k, unlabeled=False):
    """Labels of k classes for n samples (every class present when n >= k): integers 0..k-1,
    gapped integers or names; with -1 for some samples when ``unlabeled``."""
    values = draw(st.sampled_from([np.arange(k), np.array([3, 7, 100, 5])[:k], np.array(NAMES[:3] + ["ant"])[:k]]))
    idx = np.array(draw(st.permutations(np.arange(n) % k))) if n else np.zeros(0, dtype=np.int64)
    y = values[idx]
    if unlabeled and n:
        hide = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
        y = y.astype(object)
        y[hide] = -1
    return y


def outcome(call):
    """Run ``call``: its result, or None when it raised a PseudolabelError with a one-line message."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = call()
        except PseudolabelError as exc:
            message = str(exc)
            assert message and "\n" not in message, repr(message)
            event(f"{getattr(call, '__name__', 'call')}: refused")
            return None
    event("succeeded")
    return result


def _user_values(labels) -> set:
    return set(np.asarray(labels, dtype=object).tolist())


def _in_unit(a) -> bool:
    a = np.asarray(a, dtype=np.float64)
    return bool(np.all((a >= -1e-9) & (a <= 1 + 1e-9)))


# -- issues ----------------------------------------------------------------------------------------

@FAST
@given(data=st.data())
def test_rank_label_issues_and_fix_labels(data):
    if data.draw(st.booleans()):  # well-formed input of k classes, in any label kind
        k = data.draw(st.integers(2, 4))
        n = data.draw(st.integers(0, 12))
        labels = data.draw(valid_labels(n, k))
        raw = data.draw(hnp.arrays(np.float64, (n, k), elements=st.floats(0.01, 1)))
        probs = raw / raw.sum(axis=1, keepdims=True)
    else:
        n = data.draw(st.integers(0, 12))
        labels = data.draw(label_arrays(n=n if data.draw(st.booleans()) else None))
        probs = data.draw(prob_arrays(n=n))
    method = data.draw(st.sampled_from(["posterior", "confident_joint", "disagreement", "self_confidence",
                                        "normalized_margin"]))
    classes = data.draw(st.one_of(st.none(), st.none(), st.just(np.unique(np.asarray(labels, dtype=str))),
                                  st.lists(st.integers(0, 5), max_size=5)))
    issues = outcome(lambda: rank_label_issues(labels, probs, method=method, classes=classes))
    if issues is not None:
        assert list(issues.columns) == ISSUE_COLUMNS and len(issues) == len(labels)
        assert sorted(issues["item"]) == list(range(len(labels)))
        assert _user_values(issues["given"]) <= _user_values(labels)
        for col in ("p_given", "p_max", "score"):
            assert _in_unit(issues[col]), col
    policy = data.draw(st.sampled_from(["relabel", "drop", "prune", "review"]))
    threshold = data.draw(st.one_of(st.floats(0, 0.99), st.sampled_from([1.0, -0.5, float("nan")])))
    fixed = outcome(lambda: fix_labels(labels, probs, method=method, classes=classes, policy=policy,
                                       threshold=threshold, return_record=True))
    if fixed is not None:
        new, record = fixed
        assert len(new) == len(labels)
        assert _user_values(new) <= _user_values(labels) | set(classes if classes is not None else []) | {-1} \
            | set(range(np.asarray(probs).shape[1]))


@FAST
@given(labels=label_arrays(), issues=st.one_of(st.none(), st.builds(
    pd.DataFrame, st.fixed_dictionaries({"item": st.lists(st.integers(-2, 20), min_size=2, max_size=2),
                                         "predicted": st.lists(st.sampled_from(["cat", 1, None]), min_size=2,
                                                               max_size=2),
                                         "p_max": st.lists(floats_any, min_size=2, max_size=2),
                                         "score": st.lists(floats_unit, min_size=2, max_size=2),
                                         "is_issue": st.lists(st.booleans(), min_size=2, max_size=2)}))))
def test_fix_labels_with_a_hand_made_issue_table(labels, issues):
    n = len(labels)
    probs = np.full((n, 2), 0.5)
    new = outcome(lambda: fix_labels(labels, probs, issues=issues))
    if new is not None:
        assert len(new) == n


# -- out_of_fold_proba -----------------------------------------------------------------------------

@MODELS
@given(data=st.data())
def test_out_of_fold_proba(data):
    n = data.draw(st.integers(0, 16))
    X = data.draw(feature_arrays(n))
    if data.draw(st.booleans()):
        y = data.draw(valid_labels(n, data.draw(st.integers(2, 3))))
    else:
        y = data.draw(label_arrays(n=n if data.draw(st.integers(0, 5)) else None))
    model = data.draw(st.sampled_from([DummyClassifier(strategy="prior"), LogisticRegression(max_iter=50)]))
    cv = data.draw(st.one_of(st.integers(2, 3), st.integers(-1, 4), st.just("3"),
                             st.just([(np.arange(2), np.arange(2, 4))])))
    weights = data.draw(st.one_of(st.none(), st.none(), hnp.arrays(np.float64, data.draw(st.integers(0, 16)),
                                                        elements=floats_any)))
    proba = outcome(lambda: out_of_fold_proba(model, X, y, cv=cv, random_state=0, sample_weight=weights))
    if proba is not None:
        n_classes = len(np.unique(np.asarray(y).astype(str) if np.asarray(y).dtype.kind in "UO" else y))
        assert proba.shape == (len(y), n_classes)
        assert _in_unit(proba)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)


# -- SelfTraining ----------------------------------------------------------------------------------

@MODELS
@given(data=st.data())
def test_self_training(data):
    n = data.draw(st.integers(0, 16))
    X = data.draw(feature_arrays(n))
    if data.draw(st.booleans()):
        y = data.draw(valid_labels(n, data.draw(st.integers(2, 3)), unlabeled=True))
    else:
        y = data.draw(label_arrays(n=n if data.draw(st.integers(0, 5)) else None))
    params = {} if data.draw(st.booleans()) else data.draw(st.fixed_dictionaries({
        "threshold": st.one_of(st.floats(0, 0.99), st.sampled_from([1.0, -1.0, [0.5, 0.9], []])),
        "criterion": st.sampled_from(["threshold", "k_best", "bogus"]),
        "k_best": st.integers(-1, 5),
        "max_iter": st.one_of(st.none(), st.integers(-1, 3)),
        "class_quota": st.one_of(st.none(), st.integers(0, 3)),
        "relabel": st.booleans(),
        "calibration": st.sampled_from([None, "temperature"]),
    }))
    params.setdefault("threshold", data.draw(st.floats(0, 0.99)))
    st_ = SelfTraining(LogisticRegression(max_iter=50), **params)
    fitted = outcome(lambda: st_.fit(X, y))
    if fitted is not None:
        labels = set(np.asarray(y, dtype=object).tolist())
        assert set(fitted.classes_.tolist()) <= labels
        pred = fitted.predict(X)
        assert len(pred) == n and set(pred.tolist()) <= set(fitted.classes_.tolist())
        proba = fitted.predict_proba(X)
        assert proba.shape == (n, len(fitted.classes_)) and _in_unit(proba)
        assert len(fitted.transduction_) == n
        assert set(fitted.transduction_.tolist()) <= set(fitted.classes_.tolist()) | {-1}


# -- selection -------------------------------------------------------------------------------------

garbage = st.one_of(st.none(), st.text(max_size=2), floats_any, st.integers(-3, 3),
                    st.lists(st.integers(0, 2), max_size=3), st.just([[0.1, 0.9], [0.5]]))


@FAST
@given(proba=st.one_of(prob_arrays(), garbage), threshold=st.one_of(floats_any, garbage),
       k=st.one_of(st.integers(-1, 20), garbage), quota=st.one_of(st.integers(-1, 5), garbage),
       round_=st.one_of(st.integers(-2, 5), garbage), schedule=st.one_of(floats_any, garbage,
                                                                          st.lists(floats_unit, max_size=3)))
def test_selection(proba, threshold, k, quota, round_, schedule):
    mask = outcome(lambda: select_by_threshold(proba, threshold))
    if mask is not None:
        assert mask.dtype == bool and mask.shape == (len(proba),)
    best = outcome(lambda: select_k_best(proba, k))
    if best is not None:
        assert best.dtype == bool and best.shape == (len(proba),) and best.sum() == min(k, len(proba))
    some = np.ones(len(proba), dtype=bool) if hasattr(proba, "__len__") else proba
    kept = outcome(lambda: class_balanced(proba, some, quota))
    if kept is not None:
        assert kept.dtype == bool and kept.shape == (len(proba),)
    t = outcome(lambda: threshold_for_round(schedule, round_))
    if t is not None:
        assert 0 <= t < 1


# -- calibration -----------------------------------------------------------------------------------

@FAST
@given(data=st.data())
def test_calibration(data):
    n = data.draw(st.integers(0, 10))
    scores = data.draw(st.one_of(prob_arrays(n=n), garbage))
    y = data.draw(st.one_of(label_arrays(n=n), garbage))
    from_proba = data.draw(st.booleans())
    T = data.draw(st.one_of(st.floats(0.01, 10), floats_any, garbage))
    t = outcome(lambda: fit_temperature(scores, y, from_proba=from_proba,
                                        prior_sd=data.draw(st.one_of(st.none(), st.floats(-1, 2), garbage))))
    if t is not None:
        assert 0.05 - 1e-9 <= t <= 20 + 1e-9
    p = outcome(lambda: apply_temperature(scores, T, from_proba=from_proba))
    if p is not None:
        assert p.shape == np.shape(scores) and _in_unit(p)
    ece = outcome(lambda: expected_calibration_error(scores, y, n_bins=data.draw(st.one_of(st.integers(-1, 20),
                                                                                          garbage))))
    if ece is not None:
        assert 0 <= ece <= 1 + 1e-9
    conf = data.draw(st.one_of(hnp.arrays(np.float64, n, elements=floats_any), garbage))
    correct = data.draw(st.one_of(hnp.arrays(bool, n), label_arrays(n=n), garbage))
    target = data.draw(st.one_of(st.floats(0.01, 1), floats_any, garbage))
    tp = outcome(lambda: threshold_for_precision(conf, correct, target, min_count=data.draw(
        st.one_of(st.integers(-1, 5), garbage)), conservative=data.draw(st.booleans())))
    if tp is not None:
        assert np.isfinite(tp)
    te = outcome(lambda: threshold_for_expected_precision(conf, target))
    if te is not None:
        assert np.isfinite(te)
    w = outcome(lambda: wilson_lower_bound(data.draw(st.one_of(st.integers(-2, 10), garbage)),
                                           data.draw(st.one_of(st.integers(-2, 10), garbage))))
    if w is not None:
        assert _in_unit(w)


def test_fuzz_examples_are_modest():
    """This file runs in seconds: a guard against raising the example counts by accident."""
    assert FAST.max_examples <= 100 and MODELS.max_examples <= 40
    pytest.importorskip("hypothesis")
