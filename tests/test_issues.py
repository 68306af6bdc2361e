"""rank_label_issues and fix_labels on digits with injected noise, and their input checks."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from pseudolabel import fix_labels, out_of_fold_proba, rank_label_issues
from pseudolabel.exceptions import InputError
from pseudolabel.issues import ISSUE_COLUMNS, METHODS, RECORD_COLUMNS, fit_noise_temperature, noise_matrix, noise_posterior

NOISE_RATE = 0.10


def flip_labels(y, rate, seed, n_classes=10):
    """Symmetric noise: `rate` of the labels moved to a different class chosen at random."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(y), size=round(rate * len(y)), replace=False)
    noisy = y.copy()
    noisy[idx] = (y[idx] + rng.integers(1, n_classes, size=len(idx))) % n_classes
    flipped = np.zeros(len(y), dtype=bool)
    flipped[idx] = True
    return noisy, flipped


@pytest.fixture(scope="module")
def noisy_digits():
    """Digits with 10 % flipped labels and out-of-fold logistic-regression probabilities."""
    from sklearn.datasets import load_digits

    X, y_true = load_digits(return_X_y=True)
    X = X / 16.0
    y_noisy, flipped = flip_labels(y_true.astype(np.int64), NOISE_RATE, seed=0)
    proba = out_of_fold_proba(LogisticRegression(max_iter=1000), X, y_noisy, cv=5, random_state=0)
    return X, y_true, y_noisy, flipped, proba


def detection(issues: pd.DataFrame, flipped: np.ndarray) -> tuple[float, float, float]:
    found = np.zeros(len(flipped), dtype=bool)
    found[issues.loc[issues.is_issue, "item"].to_numpy()] = True
    tp = np.sum(found & flipped)
    precision = tp / max(found.sum(), 1)
    recall = tp / flipped.sum()
    return precision, recall, 2 * precision * recall / max(precision + recall, 1e-12)


# Floors measured on 5 noise seeds (worst seen: confident_joint F1 0.888, self_confidence 0.914,
# normalized_margin 0.906; disagreement precision 0.649, recall 0.994), set with margin.
FLOORS = {
    "confident_joint": dict(precision=0.75, recall=0.75, f1=0.80),
    "self_confidence": dict(precision=0.80, recall=0.80, f1=0.80),
    "normalized_margin": dict(precision=0.80, recall=0.80, f1=0.80),
    "disagreement": dict(precision=0.55, recall=0.95, f1=0.70),
    # worst of 5 seeds: F1 0.926
    "posterior": dict(precision=0.80, recall=0.80, f1=0.85),
}


@pytest.mark.parametrize("method", METHODS)
def test_each_method_finds_injected_noise(method, noisy_digits):
    _, _, y_noisy, flipped, proba = noisy_digits
    issues = rank_label_issues(y_noisy, proba, method=method)
    precision, recall, f1 = detection(issues, flipped)
    floor = FLOORS[method]
    assert precision > floor["precision"], (method, precision)
    assert recall > floor["recall"], (method, recall)
    assert f1 > floor["f1"], (method, f1)


def test_table_has_every_row_most_suspicious_first(noisy_digits):
    _, _, y_noisy, _, proba = noisy_digits
    for method in METHODS:
        issues = rank_label_issues(y_noisy, proba, method=method)
        assert list(issues.columns) == ISSUE_COLUMNS
        assert sorted(issues["item"]) == list(range(len(y_noisy)))
        flags = issues["is_issue"].to_numpy()
        n_flagged = int(flags.sum())
        assert flags[:n_flagged].all() and not flags[n_flagged:].any()  # flagged rows first
        for part in (issues[flags], issues[~flags]):
            assert np.all(np.diff(part["score"].to_numpy()) <= 1e-12)
        rows = issues["item"].to_numpy()
        np.testing.assert_array_equal(issues["given"], y_noisy[rows])
        # "posterior" reads its columns from the posterior, not from the model (its own test).
        source = noise_posterior(y_noisy, proba) if method == "posterior" else proba
        np.testing.assert_array_equal(issues["predicted"], source[rows].argmax(axis=1))
        np.testing.assert_allclose(issues["p_given"], source[rows, y_noisy[rows]])
        np.testing.assert_allclose(issues["p_max"], source[rows].max(axis=1))
        # A label the model agrees with is never flagged.
        assert not (issues["is_issue"] & (issues["given"] == issues["predicted"])).any()


def test_scores_follow_their_definitions(noisy_digits):
    _, _, y_noisy, _, proba = noisy_digits
    sc = rank_label_issues(y_noisy, proba, method="self_confidence").sort_values("item")
    np.testing.assert_allclose(sc["score"], 1 - sc["p_given"])
    nm = rank_label_issues(y_noisy, proba, method="normalized_margin").sort_values("item")
    others = proba.copy()
    others[np.arange(len(y_noisy)), y_noisy] = -1
    np.testing.assert_allclose(nm["score"], (others.max(axis=1) - nm["p_given"] + 1) / 2)
    dis = rank_label_issues(y_noisy, proba, method="disagreement")
    np.testing.assert_array_equal(dis["is_issue"], dis["given"] != dis["predicted"])
    np.testing.assert_allclose(dis.loc[dis.is_issue, "score"], dis.loc[dis.is_issue, "p_max"])


@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_posterior_fixes_more_labels_than_the_model_alone(rate):
    """Weighing the given label by the estimated noise rate beats trusting the model's ranking:
    more labels right after relabeling, on three noise draws at each rate."""
    from sklearn.datasets import load_digits

    X, y_true = load_digits(return_X_y=True)
    for seed in range(3):
        y_noisy, _ = flip_labels(y_true.astype(np.int64), rate, seed=seed)
        proba = out_of_fold_proba(LogisticRegression(max_iter=1000), X / 16.0, y_noisy, cv=5, random_state=0)
        posterior = np.mean(fix_labels(y_noisy, proba, method="posterior") == y_true)
        model_only = np.mean(fix_labels(y_noisy, proba, method="self_confidence") == y_true)
        assert posterior >= model_only, (rate, seed, posterior, model_only)
        assert posterior > 1 - rate / 4  # three quarters of the wrong labels are fixed, at least


def test_posterior_follows_bayes_rule(noisy_digits):
    _, _, y_noisy, _, proba = noisy_digits
    T = noise_matrix(y_noisy, proba)
    np.testing.assert_allclose(T.sum(axis=1), 1.0)
    # 10 % symmetric noise: about 0.9 on the diagonal, about 0.011 off it.
    assert 0.85 < np.mean(np.diag(T)) < 0.95
    q = noise_posterior(y_noisy, proba)
    np.testing.assert_allclose(q.sum(axis=1), 1.0)
    t = fit_noise_temperature(y_noisy, proba, T)
    clean = proba ** (1 / t)
    clean /= clean.sum(axis=1, keepdims=True)
    expected = clean * T[:, y_noisy].T
    np.testing.assert_allclose(q, expected / expected.sum(axis=1, keepdims=True), rtol=1e-6, atol=1e-9)
    # Where the model is unsure, the given label wins: it stays on a sample whose model
    # prediction beats it by little.
    rows = np.arange(len(q))
    close = (proba.argmax(axis=1) != y_noisy) & (proba.max(axis=1) < 1.5 * proba[rows, y_noisy])
    assert close.any() and (q[close].argmax(axis=1) == y_noisy[close]).all()
    issues = rank_label_issues(y_noisy, proba, method="posterior").sort_values("item")
    np.testing.assert_allclose(issues["score"], 1 - q[np.arange(len(q)), y_noisy])
    np.testing.assert_array_equal(issues["is_issue"], q.argmax(axis=1) != y_noisy)


def test_confident_joint_estimates_the_number_of_wrong_labels(noisy_digits):
    X, y_true, y_noisy, flipped, proba = noisy_digits
    n_flagged = int(rank_label_issues(y_noisy, proba, method="confident_joint").is_issue.sum())
    assert 0.75 * flipped.sum() < n_flagged < 1.25 * flipped.sum()
    # Clean labels: far fewer flagged than there were flipped labels.
    clean_proba = out_of_fold_proba(LogisticRegression(max_iter=1000), X, y_true, cv=5,
                                    random_state=0)
    n_clean_flagged = int(rank_label_issues(y_true, clean_proba, method="confident_joint").is_issue.sum())
    assert n_clean_flagged < 0.5 * flipped.sum()


def test_ranking_puts_flipped_labels_on_top(noisy_digits):
    _, _, y_noisy, flipped, proba = noisy_digits
    k = int(flipped.sum())
    for method in ("self_confidence", "normalized_margin", "confident_joint"):
        top = rank_label_issues(y_noisy, proba, method=method).head(k)["item"]
        assert flipped[top].mean() > 0.8, method


def test_confident_joint_at_least_as_good_as_cleanlab(noisy_digits):
    cleanlab_filter = pytest.importorskip("cleanlab.filter")
    _, _, y_noisy, flipped, proba = noisy_digits
    ours = detection(rank_label_issues(y_noisy, proba, method="confident_joint"), flipped)[2]
    mask = cleanlab_filter.find_label_issues(y_noisy, proba)
    tp = np.sum(mask & flipped)
    p, r = tp / mask.sum(), tp / flipped.sum()
    assert ours >= 2 * p * r / (p + r) - 0.02


def test_top_k_caps_the_flagged_count(noisy_digits):
    _, _, y_noisy, _, proba = noisy_digits
    full = rank_label_issues(y_noisy, proba, method="normalized_margin")
    capped = rank_label_issues(y_noisy, proba, method="normalized_margin", top_k=10)
    assert capped.is_issue.sum() == 10
    assert list(capped.head(10)["item"]) == list(full.head(10)["item"])
    assert rank_label_issues(y_noisy, proba, top_k=0).is_issue.sum() == 0
    huge = rank_label_issues(y_noisy, proba, top_k=10**6)
    assert huge.is_issue.sum() == rank_label_issues(y_noisy, proba).is_issue.sum()


def test_classes_map_label_values_to_columns(noisy_digits):
    _, _, y_noisy, _, proba = noisy_digits
    classes = np.arange(10) * 3 + 100  # labels 100, 103, ..., 127 in column order
    by_index = rank_label_issues(y_noisy, proba)
    by_value = rank_label_issues(classes[y_noisy], proba, classes=classes)
    np.testing.assert_array_equal(by_value["item"], by_index["item"])
    np.testing.assert_array_equal(by_value["is_issue"], by_index["is_issue"])
    np.testing.assert_array_equal(by_value["given"], classes[by_index["given"]])
    np.testing.assert_array_equal(by_value["predicted"], classes[by_index["predicted"]])
    # Columns in any order: shuffle the columns and the classes together, same answer.
    perm = np.random.default_rng(0).permutation(10)
    shuffled = rank_label_issues(classes[y_noisy], proba[:, perm], classes=classes[perm])
    np.testing.assert_array_equal(shuffled["is_issue"], by_value["is_issue"])
    fixed = fix_labels(classes[y_noisy], proba, classes=classes, threshold=0.5)
    assert set(np.unique(fixed)) <= set(classes)


def test_fix_labels_relabel_improves_labels_and_never_modifies_input(noisy_digits):
    _, y_true, y_noisy, _, proba = noisy_digits
    labels, probs = y_noisy.copy(), proba.copy()
    new = fix_labels(labels, probs, threshold=0.5)
    assert isinstance(new, np.ndarray) and new is not labels
    np.testing.assert_array_equal(labels, y_noisy)
    np.testing.assert_array_equal(probs, proba)
    assert np.mean(new == y_true) > np.mean(y_noisy == y_true) + 0.05
    as_list = y_noisy.tolist()
    np.testing.assert_array_equal(fix_labels(as_list, proba, threshold=0.5), new)
    assert as_list == y_noisy.tolist()


def test_fix_labels_record_and_threshold(noisy_digits):
    _, y_true, y_noisy, _, proba = noisy_digits
    new, record = fix_labels(y_noisy, proba, threshold=0.9, return_record=True)
    assert list(record.columns) == RECORD_COLUMNS
    flagged = rank_label_issues(y_noisy, proba)
    assert len(record) == flagged.is_issue.sum()
    relabeled = record[record.action == "relabel"]
    assert len(relabeled) > 0 and (relabeled.p_max >= 0.9).all()
    assert (record.loc[record.action == "keep", "p_max"] < 0.9).all()
    np.testing.assert_array_equal(new[relabeled.item], relabeled.new)
    changed = np.flatnonzero(new != y_noisy)
    assert sorted(changed) == sorted(relabeled.item)
    # Confident relabels are nearly always right.
    assert np.mean(new[changed] == y_true[changed]) > 0.9
    assert record.reason.str.contains("threshold 0.9").all()
    # A higher threshold changes a subset of what a lower one changes.
    low = fix_labels(y_noisy, proba, threshold=0.5)
    assert set(changed) <= set(np.flatnonzero(low != y_noisy))


def test_default_fix_relabels_every_flagged_sample_and_beats_a_fixed_threshold(noisy_digits):
    _, y_true, y_noisy, flipped, proba = noisy_digits
    issues = rank_label_issues(y_noisy, proba)  # the default: self-confidence, confident-joint count
    new, record = fix_labels(y_noisy, proba, return_record=True)
    assert len(record) == issues.is_issue.sum() and (record.action == "relabel").all()
    assert np.mean(new == y_true) > np.mean(fix_labels(y_noisy, proba, threshold=0.9) == y_true)
    assert np.mean(new == y_true) > 1 - 0.5 * flipped.mean()  # at least half the wrong labels are fixed


def test_fix_labels_drop_and_review_policies(noisy_digits):
    _, y_true, y_noisy, _, proba = noisy_digits
    dropped, record = fix_labels(y_noisy, proba, threshold=0.5, policy="drop", return_record=True)
    gone = dropped == -1
    assert gone.sum() == (record.action == "drop").sum() > 0
    np.testing.assert_array_equal(dropped[~gone], y_noisy[~gone])
    assert np.mean(dropped[~gone] == y_true[~gone]) > np.mean(y_noisy == y_true) + 0.05

    reviewed, record = fix_labels(y_noisy, proba, policy="review", return_record=True)
    np.testing.assert_array_equal(reviewed, y_noisy)
    assert (record.action == "review").all()
    assert len(record) == rank_label_issues(y_noisy, proba).is_issue.sum()


def test_fix_labels_reuses_a_given_issue_table(noisy_digits):
    _, _, y_noisy, _, proba = noisy_digits
    issues = rank_label_issues(y_noisy, proba, method="disagreement")
    reused = fix_labels(y_noisy, proba, threshold=0.5, issues=issues)
    np.testing.assert_array_equal(
        reused, fix_labels(y_noisy, proba, threshold=0.5, method="disagreement"))
    # A person unflags a row: it is left alone.
    edited = issues.copy()
    first = edited.index[edited.is_issue & (edited.p_max >= 0.5)][0]
    edited.loc[first, "is_issue"] = False
    item = int(edited.loc[first, "item"])
    assert fix_labels(y_noisy, proba, threshold=0.5, issues=edited)[item] == y_noisy[item]


def test_design_example_works():
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8], [0.95, 0.05]])
    y = np.array([0, 0, 1, 1, 1])
    issues = rank_label_issues(y, proba, method="disagreement")
    assert issues.loc[0, "item"] == 4 and issues.loc[0, "is_issue"]
    np.testing.assert_array_equal(fix_labels(y, proba, threshold=0.9, method="disagreement"),
                                  [0, 0, 1, 1, 0])
    np.testing.assert_array_equal(y, [0, 0, 1, 1, 1])


@pytest.mark.parametrize("labels, probs, message", [
    ([0, 1, 1], [[0.9, 0.1], [0.5, 0.9], [0.1, 2.0]],
     r"^pred_probs must hold probabilities in \[0, 1\], found values from 0\.1 to 2"),
    ([0, 1, 1], [[0.9, 0.1], [0.5, 0.4], [0.1, 0.7]],
     r"^pred_probs rows must sum to 1, but 2 of 3 rows do not \(row 1 sums to 0\.9\); pass "
     r"probabilities, e\.g\. the softmax"),
    ([0, 1], [[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]],
     r"^labels and pred_probs must be the same length, but labels is length 2 and pred_probs "
     r"is length 3"),
    ([0, 1], [0.9, 0.1], r"^pred_probs must be 2-D with one column per class"),
    ([0, 1], [[1.0], [1.0]], r"^pred_probs must be 2-D with one column per class \(at least 2\)"),
    ([0, 2, 5], [[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]],
     r"^labels contains 5, but pred_probs has 2 columns \(labels 0\.\.1\) and labels hold 3 distinct values, "
     r"not 2; pass classes="),
    ([0, 1], [[0.9, 0.1], [np.nan, 0.8]], r"^pred_probs contains NaN or infinity in 1 sample"),
    ([0, np.nan], [[0.9, 0.1], [0.2, 0.8]],
     r"^labels contains NaN or infinity in 1 row\(s\), but every row needs a given"),
    ([0, -1], [[0.9, 0.1], [0.2, 0.8]], r"^labels contains -1 \(unlabeled\) in 1 row"),
    ([0, 1], [["a", "b"], ["c", "d"]], r"^pred_probs must be a numeric array"),
])
def test_bad_input_is_one_clear_line(labels, probs, message):
    for call in (rank_label_issues, fix_labels):
        with pytest.raises(InputError, match=message) as info:
            call(labels, probs)
        assert "\n" not in str(info.value)


def test_bad_options_are_named():
    y, proba = [0, 1], [[0.9, 0.1], [0.2, 0.8]]
    with pytest.raises(InputError, match=r"'method' parameter of rank_label_issues must be one of"):
        rank_label_issues(y, proba, method="cleanlab")
    with pytest.raises(InputError, match=r"'top_k' parameter of rank_label_issues must be an int"):
        rank_label_issues(y, proba, top_k=-1)
    with pytest.raises(InputError, match=r"'policy' parameter of fix_labels must be one of"):
        fix_labels(y, proba, policy="delete")
    with pytest.raises(InputError, match=r"'threshold' parameter of fix_labels must be a float"):
        fix_labels(y, proba, threshold=1.5)
    with pytest.raises(InputError, match=r"classes must name one label per column"):
        rank_label_issues(y, proba, classes=[0, 1, 2])
    with pytest.raises(InputError, match=r"labels contains 7, which is not in classes \[3, 5\]"):
        rank_label_issues([3, 7], proba, classes=[3, 5])
    with pytest.raises(InputError, match=r"issues lacks the column\(s\) is_issue"):
        fix_labels(y, proba, issues=pd.DataFrame({"item": [0], "predicted": [1], "p_max": [0.9],
                                                  "score": [0.9]}))
    with pytest.raises(InputError, match=r"issues refers to item 5, but there are 2 labels"):
        issues = rank_label_issues(y, proba)
        issues.loc[0, "item"] = 5
        fix_labels(y, proba, issues=issues)


def test_prune_relabels_the_sure_and_drops_the_unsure(noisy_digits):
    _, y_true, y_noisy, _, proba = noisy_digits
    issues = rank_label_issues(y_noisy, proba)
    new, record = fix_labels(y_noisy, proba, policy="prune", threshold=0.9, issues=issues, return_record=True)
    by_item = issues.set_index("item")
    unsure = by_item.loc[np.arange(len(new)), "p_max"].to_numpy() < 0.9
    np.testing.assert_array_equal(new == -1, unsure)  # dropped: exactly the unsure ones, flagged or not
    sure_flagged = by_item["is_issue"].to_numpy()[np.argsort(by_item.index)] & ~unsure
    relabeled = new[sure_flagged]
    np.testing.assert_array_equal(relabeled, by_item.loc[np.flatnonzero(sure_flagged), "predicted"].to_numpy())
    assert set(record["action"]) <= {"relabel", "drop"} and (record["action"] == "drop").sum() == unsure.sum()
    kept = new >= 0
    relabel_all = fix_labels(y_noisy, proba, issues=issues)
    # A smaller set whose labels are more often right than relabeling everything.
    assert np.mean(new[kept] == y_true[kept]) > np.mean(relabel_all == y_true)
    # threshold 0: nothing is unsure, prune is relabel.
    np.testing.assert_array_equal(fix_labels(y_noisy, proba, policy="prune", issues=issues), relabel_all)


# -- class names and chaining with out_of_fold_proba -----------------------------------------------

def test_chaining_with_gapped_integer_labels_needs_no_classes(noisy_digits):
    X, _, y_noisy, _, proba = noisy_digits
    values = np.arange(10) ** 2 + 3  # 3, 4, 7, ..., 84: gaps, not 0..9
    gapped = values[y_noisy]
    chained = out_of_fold_proba(LogisticRegression(max_iter=1000), X, gapped, cv=5, random_state=0)
    np.testing.assert_allclose(chained, proba, atol=1e-6)  # the same columns, in sorted value order
    issues = rank_label_issues(gapped, chained)
    reference = rank_label_issues(y_noisy, proba)
    np.testing.assert_array_equal(issues["is_issue"], reference["is_issue"])
    np.testing.assert_array_equal(issues["given"], values[reference["given"]])
    fixed = fix_labels(gapped, chained)
    np.testing.assert_array_equal(fixed, values[fix_labels(y_noisy, proba)])
    assert fixed.dtype == np.int64
    # the case of the issue: labels {3, 7, 100}, 3 columns
    small = np.array([3, 7, 100, 3, 7, 100])
    p3 = np.eye(3)[[0, 1, 2, 0, 2, 2]] * 0.9 + 0.1 / 3
    assert fix_labels(small, p3, method="disagreement").tolist() == [3, 7, 100, 3, 100, 100]


def test_string_labels_are_ranked_and_fixed_in_names(noisy_digits):
    _, _, y_noisy, _, proba = noisy_digits
    names = np.array([f"digit {k}" for k in range(10)])  # sorted order is the column order
    reference = rank_label_issues(y_noisy, proba)
    for labels in (names[y_noisy], names[y_noisy].astype(object), pd.Series(names[y_noisy]).tolist()):
        issues = rank_label_issues(labels, proba)
        np.testing.assert_array_equal(issues["is_issue"], reference["is_issue"])
        np.testing.assert_array_equal(issues["predicted"], names[reference["predicted"]])
    # classes= may be names, in any column order
    perm = np.random.default_rng(0).permutation(10)
    shuffled = rank_label_issues(names[y_noisy], proba[:, perm], classes=names[perm])
    np.testing.assert_array_equal(shuffled["is_issue"], reference["is_issue"])
    fixed = fix_labels(names[y_noisy], proba)
    np.testing.assert_array_equal(fixed, names[fix_labels(y_noisy, proba)])
    dropped = fix_labels(names[y_noisy], proba, policy="drop")
    gone = fix_labels(y_noisy, proba, policy="drop") == -1
    assert dropped.dtype == object and gone.any()
    assert all(v == -1 for v in dropped[gone]) and set(dropped[~gone]) <= set(names)
    with pytest.raises(InputError, match=r"^labels hold 10 distinct names \(e\.g\. 'digit 0'\), but pred_probs has "
                                         r"11 columns; pass classes="):
        rank_label_issues(names[y_noisy], np.c_[proba, np.zeros(len(proba))])
    with pytest.raises(InputError, match=r"^labels contains 'digit 0', which is not in classes \[0, 1"):
        rank_label_issues(names[y_noisy], proba, classes=np.arange(10))
