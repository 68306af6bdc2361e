"""selection: which predictions become labels (threshold, k-best, per-class quota, schedules)."""
from __future__ import annotations

import numpy as np
import pytest

from pseudolabel.exceptions import InputError
from pseudolabel.selection import (
    check_schedule, class_balanced, select_by_threshold, select_k_best, threshold_for_round,
)


def random_proba(n, k, seed=0, sharpness=3.0):
    """Rows of a softmax over random logits: a spread of confidences, like a model's output."""
    logits = np.random.default_rng(seed).normal(scale=sharpness, size=(n, k))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# -- threshold -----------------------------------------------------------------------------------

def test_threshold_is_strictly_greater():
    proba = np.array([[0.9, 0.1], [0.95, 0.05], [0.05, 0.95], [0.96, 0.04], [0.5, 0.5]])
    np.testing.assert_array_equal(select_by_threshold(proba, 0.95), [False, False, False, True, False])
    np.testing.assert_array_equal(select_by_threshold(proba, 0.0), [True] * 5)


def test_threshold_matches_max_probability_on_random_rows():
    proba = random_proba(500, 10)
    for t in (0.5, 0.9, 0.99):
        mask = select_by_threshold(proba, t)
        assert np.all(proba[mask].max(axis=1) > t)
        assert np.all(proba[~mask].max(axis=1) <= t)
    # a higher threshold takes a subset
    assert not np.any(select_by_threshold(proba, 0.99) & ~select_by_threshold(proba, 0.9))


# -- k best --------------------------------------------------------------------------------------

def test_k_best_takes_the_k_most_confident():
    proba = random_proba(200, 5, seed=1)
    conf = proba.max(axis=1)
    for k in (1, 7, 50):
        mask = select_k_best(proba, k)
        assert mask.sum() == k
        assert conf[mask].min() >= conf[~mask].max()


def test_k_best_takes_all_of_a_small_pool():
    proba = random_proba(3, 4)
    assert select_k_best(proba, 10).all()
    assert select_k_best(proba[:0], 10).shape == (0,)


@pytest.mark.parametrize("k", [0, -3, 2.5, True, "10"])
def test_k_best_bad_values(k):
    with pytest.raises(InputError) as exc:
        select_k_best(random_proba(5, 2), k)
    assert str(exc.value) == f"The 'k_best' parameter of SelfTraining must be an int >= 1. Got {k!r} instead."


# -- per-class quota -----------------------------------------------------------------------------

def test_class_balanced_keeps_per_class_counts_within_quota():
    proba = random_proba(1000, 4, seed=2)
    pred, conf = proba.argmax(axis=1), proba.max(axis=1)
    mask = select_by_threshold(proba, 0.6)
    kept = class_balanced(proba, mask, 25)
    assert not np.any(kept & ~mask)  # only selected rows survive
    for c in range(4):
        chosen = mask & (pred == c)
        in_class = kept & (pred == c)
        assert in_class.sum() == min(25, chosen.sum())
        if chosen.sum() > 25:  # the most confident of the class are the ones kept
            assert conf[in_class].min() >= conf[chosen & ~kept].max()


def test_class_balanced_per_class_quotas():
    proba = random_proba(600, 3, seed=3)
    pred = proba.argmax(axis=1)
    mask = np.ones(600, bool)
    kept = class_balanced(proba, mask, np.array([5, 0, 40]))
    counts = [int((kept & (pred == c)).sum()) for c in range(3)]
    assert counts == [5, 0, 40]


def test_class_balanced_leaves_small_classes_alone():
    proba = np.array([[0.9, 0.1], [0.95, 0.05], [0.2, 0.8]])
    np.testing.assert_array_equal(class_balanced(proba, np.ones(3, bool), 1), [False, True, True])
    np.testing.assert_array_equal(class_balanced(proba, np.array([True, False, False]), 5), [True, False, False])


# -- schedules -----------------------------------------------------------------------------------

def test_float_schedule_is_every_round():
    assert [threshold_for_round(0.9, r) for r in (1, 2, 50)] == [0.9, 0.9, 0.9]


def test_list_schedule_repeats_its_last_value():
    schedule = [0.99, 0.95, 0.9]
    assert [threshold_for_round(schedule, r) for r in range(1, 7)] == [0.99, 0.95, 0.9, 0.9, 0.9, 0.9]
    assert threshold_for_round((0.8,), 4) == 0.8
    assert threshold_for_round(np.array([0.7, 0.6]), 9) == 0.6


def test_callable_schedule_gets_the_round():
    seen = []

    def schedule(r):
        seen.append(r)
        return 0.99 - 0.01 * r

    assert threshold_for_round(schedule, 1) == pytest.approx(0.98)
    assert threshold_for_round(schedule, 4) == pytest.approx(0.95)
    assert seen == [1, 4]


@pytest.mark.parametrize("bad", [1.5, 1.0, -0.1, True, "0.9", None])
def test_bad_threshold_message(bad):
    with pytest.raises(InputError) as exc:
        check_schedule(bad)
    assert str(exc.value) == f"The 'threshold' parameter of SelfTraining must be a float in [0, 1). Got {bad!r} instead."


def test_bad_value_in_a_list_schedule():
    with pytest.raises(InputError) as exc:
        check_schedule([0.99, 1.5, 0.9])
    assert str(exc.value) == "The 'threshold' parameter of SelfTraining must be a float in [0, 1). Got 1.5 instead."
    # numpy values print as plain numbers
    with pytest.raises(InputError, match=r"Got 1\.5 instead\.$"):
        threshold_for_round(np.array([0.5, 1.5]), 2)
    with pytest.raises(InputError, match=r"list of SelfTraining is empty; give at least one value in \[0, 1\)"):
        check_schedule([])
    with pytest.raises(InputError, match="is empty"):
        threshold_for_round([], 1)


def test_bad_value_from_a_callable_schedule_names_the_round():
    check_schedule(lambda r: 2.0)  # a callable is checked round by round, not up front
    with pytest.raises(InputError) as exc:
        threshold_for_round(lambda r: 0.9 + 0.1 * r, 3)
    msg = str(exc.value)
    assert "round 3" in msg and "must be a float in [0, 1)" in msg and "\n" not in msg
