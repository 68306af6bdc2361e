"""Review queues: suspects from cleaning, pseudo-label audit, active learning. Real models
(scikit-learn's logistic regression) on digits feed them."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict

from pseudolabel import inject_noise, out_of_fold_proba, rank_label_issues
from pseudolabel.exceptions import InputError
from pseudolabel.store import (
    QUEUE_COLUMNS, LabelStore, active_queue, audit_queue, predictions, queue, suspect_queue,
)

N = 600


@pytest.fixture
def data(digits, seed):
    X, y = digits
    return X[:N].reshape(N, -1) / 16.0, y[:N]


@pytest.fixture
def store(tmp_path):
    s = LabelStore(tmp_path / "labels.db")
    s.set_classes([str(d) for d in range(10)])
    s.add_items([f"train/{i}" for i in range(N)], [f"x:{i}" for i in range(N)])
    yield s
    s.close()


KEYS = np.array([f"train/{i}" for i in range(N)])


def test_suspects_from_out_of_fold_predictions_find_the_flipped_labels(store, data, seed):
    X, y = data
    rng = np.random.default_rng(seed)
    flipped = rng.random(N) < 0.1
    noisy = np.where(flipped, (y + rng.integers(1, 10, N)) % 10, y)
    store.add_labels(KEYS, noisy, "given")
    proba = cross_val_predict(LogisticRegression(max_iter=300), X, noisy, cv=5, method="predict_proba")
    pred = proba.argmax(1)
    disagree = np.flatnonzero(pred != noisy)
    run = store.begin_run("clean", {"folds": 5})
    store.record_suggestions(KEYS[disagree], noisy[disagree], pred[disagree], proba[disagree].max(1), run,
                             confidence=proba[disagree].max(1))
    q = suspect_queue(store)
    assert list(q.columns[:len(QUEUE_COLUMNS)]) == QUEUE_COLUMNS
    assert len(q) == len(disagree)
    assert np.all(np.diff(q["score"].to_numpy()) <= 0)  # most suspicious first
    top = q.head(flipped.sum())
    precision = flipped[top["item_id"].to_numpy() - 1].mean()
    assert precision > 0.6, precision  # a real detector, not chance (0.1)
    assert (q["label"] == q["given"]).all() and not q["reviewed"].any()
    # A decision after the suggestion marks the item reviewed; it stays in the queue.
    first = q["key"].iloc[0]
    store.add_labels([first], [int(q["suggestion"].iloc[0])], "human")
    q2 = suspect_queue(store)
    assert len(q2) == len(q) and q2.set_index("key").loc[first, "reviewed"]
    assert q2["reviewed"].sum() == 1


def test_suspects_put_disagreements_first_most_likely_wrong_first(store, data, seed):
    X, y = data
    noisy, flipped = inject_noise(y, 0.02, random_state=seed)
    store.add_labels(KEYS, noisy, "given")
    proba = out_of_fold_proba(LogisticRegression(max_iter=500), X, noisy, cv=3, random_state=seed, n_jobs=1)
    # Every sample ranked by 1 - p_given; record the 80 most suspicious, agreements among them.
    issues = rank_label_issues(noisy, proba, method="self_confidence").sort_values(
        "score", ascending=False, kind="stable").head(80)
    rows = issues["item"].to_numpy()
    store.record_suggestions(KEYS[rows], issues["given"], issues["predicted"], issues["score"], "clean-1",
                             confidence=issues["p_max"])
    q = suspect_queue(store)
    assert len(q) == 80
    disagree = (q["suggestion"] != q["given"]).to_numpy()
    n = int(disagree.sum())
    assert 5 <= n < 80  # both kinds are there
    assert disagree[:n].all() and not disagree[n:].any()  # disagreements first
    for part in (q.iloc[:n], q.iloc[n:]):
        assert np.all(np.diff(part["score"].to_numpy()) <= 0)  # then most suspicious first
    # The top of the queue is the flipped labels (the rest of the disagreements are model errors).
    top = q["item_id"].to_numpy()[:flipped.sum()] - 1
    assert flipped[top].mean() > 0.6, flipped[top].mean()
    np.testing.assert_array_equal(q["suggestion"].to_numpy(), proba.argmax(1)[q["item_id"].to_numpy() - 1])


def test_an_agreement_never_outranks_a_disagreement(store):
    store.add_labels(["train/0", "train/1", "train/2", "train/3"], [1, 2, 3, 4], "given")
    # train/0: the model agrees, with the highest score; ties in score go to the more confident.
    store.record_suggestions(["train/0", "train/1", "train/2", "train/3"], [1, 2, 3, 4], [1, 5, 6, 7],
                             [0.9, 0.4, 0.6, 0.6], "clean-1", confidence=[0.5, 0.6, 0.7, 0.8])
    q = suspect_queue(store)
    assert q["key"].tolist() == ["train/3", "train/2", "train/1", "train/0"]


def test_human_label_before_the_suggestion_is_not_counted_as_reviewed(store):
    store.add_labels(["train/0", "train/1"], [1, 2], "given")
    store.add_labels(["train/0"], [3], "human")
    store.record_suggestions(["train/0", "train/1"], [3, 2], [4, 5], [0.9, 0.8], "clean-1")
    assert not suspect_queue(store)["reviewed"].any()


def _pseudo_store(store, data, seed):
    X, y = data
    labeled = np.arange(N) < 100
    store.add_labels(KEYS[labeled], y[labeled], "given")
    model = LogisticRegression(max_iter=300).fit(X[labeled], y[labeled])
    proba = model.predict_proba(X[~labeled])
    take = proba.max(1) > 0.6
    run = store.begin_run("selftrain", {"threshold": 0.6})
    store.add_labels(KEYS[~labeled][take], proba.argmax(1)[take], "pseudo", confidence=proba.max(1)[take],
                     round=1, run_id=run)
    return proba, take, run


def test_audit_queue_is_seeded_per_class_and_starts_with_the_least_confident(store, data, seed):
    proba, take, run = _pseudo_store(store, data, seed)
    q = audit_queue(store, per_class=3, least_confident=10, random_state=seed)
    conf = proba.max(1)[take]
    low = q[q["reason"] == "least_confident"]
    assert len(low) == 10
    np.testing.assert_allclose(low["confidence"].to_numpy(), np.sort(conf)[:10])
    rand = q[q["reason"] == "random"]
    assert rand.groupby("suggestion").size().max() <= 3 and rand["suggestion"].nunique() >= 8
    assert set(q["source"]) == {"pseudo"} and not set(low["item_id"]) & set(rand["item_id"])
    assert q.equals(audit_queue(store, per_class=3, least_confident=10, random_state=seed))
    assert not set(rand["item_id"]) == set(
        audit_queue(store, per_class=3, least_confident=10, random_state=seed + 1).query("reason == 'random'")["item_id"])
    # Reviewed items stay in the audit queue, marked.
    store.add_labels([q["key"].iloc[0]], [0], "human")
    q2 = audit_queue(store, per_class=3, least_confident=10, random_state=seed)
    assert q2["item_id"].tolist() == q["item_id"].tolist() and q2["reviewed"].sum() == 1
    # After a discard there is nothing left to audit.
    store.discard("pseudo", run_id=run)
    assert len(audit_queue(store)) == 0


@pytest.mark.parametrize("strategy", ["least_confidence", "margin", "entropy"])
def test_active_queue_orders_unlabeled_items_by_uncertainty(store, data, seed, strategy):
    X, y = data
    labeled = np.arange(N) < 100
    store.add_labels(KEYS[labeled], y[labeled], "given")
    model = LogisticRegression(max_iter=300).fit(X[labeled], y[labeled])
    proba = model.predict_proba(X)
    store.record_predictions(KEYS, proba, "st-1", model_id="logreg")
    q = active_queue(store, strategy, limit=50)
    assert len(q) == 50 and (q["label"] == -1).all() and (q["item_id"] > 100).all()
    srt = np.sort(proba, axis=1)
    uncertainty = {"least_confidence": 1 - srt[:, -1], "margin": 1 - (srt[:, -1] - srt[:, -2]),
                   "entropy": -(proba * np.log(proba)).sum(1)}[strategy]
    uncertainty[labeled] = -np.inf
    expected = np.sort(uncertainty)[::-1][:50]
    np.testing.assert_allclose(q["score"].to_numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(q["suggestion"].to_numpy(), proba.argmax(1)[q["item_id"].to_numpy() - 1])
    # A person's label keeps the item (reviewed); a machine label takes it out.
    k0, k1 = q["key"].iloc[0], q["key"].iloc[1]
    store.add_labels([k0], [3], "human")
    store.add_labels([k1], [3], "pseudo")
    q2 = active_queue(store, strategy)
    assert q2.set_index("key").loc[k0, "reviewed"] and k1 not in set(q2["key"])


def test_predictions_keep_the_probability_rows(store, data):
    X, y = data
    proba = np.full((N, 10), 0.1)
    store.record_predictions(KEYS, proba, "r1")
    back = predictions(store, "proba", with_proba=True)
    assert len(back) == N and np.allclose(np.stack(back["proba"]), 0.1)
    np.testing.assert_allclose(back["entropy"], np.log(10))
    with pytest.raises(InputError, match="9 columns but labels.db knows 10"):
        store.record_predictions(KEYS, np.full((N, 9), 1 / 9), "r1")
    with pytest.raises(InputError, match="NaN"):
        store.record_predictions(KEYS[:1], np.full((1, 10), np.nan), "r1")
    with pytest.raises(InputError, match="same length"):
        store.record_suggestions(KEYS[:2], [1, 2], [3], [0.5, 0.4], "c")


def test_queue_dispatch_and_class_filter(store, data, seed):
    _pseudo_store(store, data, seed)
    everything = queue(store, "all")
    assert len(everything) == N and everything["item_id"].tolist() == list(range(1, N + 1))
    threes = queue(store, "all", cls=3)
    assert len(threes) > 0 and (threes["label"] == 3).all()
    assert len(store.queue("audit", cls=3)) <= 3 + 20
    assert len(queue(store, "suspects")) == 0
    with pytest.raises(InputError, match="queue must be one of"):
        queue(store, "nope")
    with pytest.raises(InputError, match="strategy must be one of"):
        active_queue(store, "random")
