"""The label store at pool scale (issue #15): migration 0003 adds the queue indexes to old stores;
the audit queue read through them equals the queue read the old way (every event in memory), and
answers its least confident 100 of 100,000 pseudo labels in well under a second."""
from __future__ import annotations

import sqlite3
import time

import numpy as np
import pandas as pd
import pytest

from pseudolabel.store import SCHEMA_VERSION, LabelStore, apply_migrations
from pseudolabel.store.queues import _current, _finish


def audit_the_old_way(store, per_class=5, least_confident=20, run_id=None, random_state=0) -> pd.DataFrame:
    """The audit queue as it was before migration 0003: every event and every item in memory."""
    latest = store.events(source=("given", "pseudo", "corrected"), latest=True)
    keep = latest["source"] == "pseudo"
    if run_id is not None:
        keep &= latest["run_id"] == run_id
    pseudo = (latest[keep].sort_values("item_id", kind="stable")
              .rename(columns={"event_id": "baseline", "label": "suggestion"})
              [["item_id", "baseline", "suggestion", "confidence", "run_id"]])
    df = _current(store).merge(pseudo, on="item_id", how="inner")
    conf = df["confidence"].fillna(np.inf)
    low = df.assign(_c=conf).sort_values(["_c", "item_id"], kind="stable").head(max(0, least_confident))
    rest = df[~df["item_id"].isin(low["item_id"])]
    rng = np.random.default_rng(random_state)
    picks = []
    for cls in sorted(rest["suggestion"].unique()):
        members = rest[rest["suggestion"] == cls].sort_values("item_id")
        take = rng.choice(len(members), size=min(per_class, len(members)), replace=False)
        picks.append(members.iloc[np.sort(take)])
    sample = pd.concat(picks) if picks else rest.iloc[:0]
    out = pd.concat([low.drop(columns="_c"), sample])
    out["score"] = 1.0 - out["confidence"]
    return _finish(out, ["least_confident"] * len(low) + ["random"] * len(sample))


def test_an_old_store_gains_the_queue_indexes(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    apply_migrations(conn, upto=2)
    conn.close()
    store = LabelStore(path)
    assert store.schema_version == SCHEMA_VERSION == 3
    names = {r[0] for r in store.rows("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"events_source_confidence", "events_run_source", "events_item_source"} <= names
    assert store.rows("SELECT name FROM migrations WHERE version = 3") == [("0003_queue_indexes",)]


@pytest.fixture(scope="module")
def busy_store(tmp_path_factory):
    """3,000 items through two runs, a discard, later given labels, human overrides, no-confidence
    pseudo labels and an undo: every case the audit queue's SQL must get right."""
    store = LabelStore(tmp_path_factory.mktemp("store") / "labels.db")
    store.set_classes([str(d) for d in range(10)])
    rng = np.random.default_rng(0)
    n = 3000
    ids = store.add_items([f"pool/{i}" for i in range(n)])
    store.add_labels(ids[:500], rng.integers(0, 10, 500), "given")
    conf = np.round(rng.uniform(0.5, 1.0, n), 3)  # ties on purpose: then item order decides
    store.add_labels(ids, rng.integers(0, 10, n), "pseudo", confidence=conf, run_id="old")
    store.discard("pseudo", "old")
    conf2 = np.round(rng.uniform(0.5, 1.0, n), 3)
    conf2[::97] = np.nan
    store.add_labels(ids[300:], rng.integers(0, 10, n - 300), "pseudo", confidence=conf2[300:], run_id="new")
    store.add_labels(ids[2900:], rng.integers(0, 10, 100), "corrected", run_id="clean")  # later machine label
    store.add_labels(ids[1000:1010], np.zeros(10, np.int64), "human", who="ana")
    store.undo(who="ana")
    yield store
    store.close()


@pytest.mark.parametrize("options", [
    dict(), dict(per_class=0, least_confident=100), dict(per_class=3, least_confident=0),
    dict(run_id="new", least_confident=30, random_state=4), dict(run_id="old"),
    dict(least_confident=5000, per_class=1),
])
def test_audit_queue_equals_the_old_way(busy_store, options):
    new, old = busy_store.queue("audit", **options), audit_the_old_way(busy_store, **options)
    cols = ["item_id", "key", "label", "source", "suggestion", "confidence", "reason", "baseline", "reviewed"]
    pd.testing.assert_frame_equal(new[cols].reset_index(drop=True), old[cols].reset_index(drop=True),
                                  check_dtype=False)


def test_least_confident_100_of_100k_pseudo_labels_is_fast(tmp_path):
    store = LabelStore(tmp_path / "big.db")
    store.set_classes([str(d) for d in range(10)])
    n = 100_000
    rng = np.random.default_rng(1)
    ids = store.add_items([f"pool/{i}" for i in range(n)])
    conf = rng.uniform(0.9, 1.0, n)
    t = time.perf_counter()
    assert store.add_labels(ids, rng.integers(0, 10, n), "pseudo", confidence=conf, run_id="r") == n
    write_s = time.perf_counter() - t
    t = time.perf_counter()
    low = store.queue("audit", least_confident=100, per_class=0)
    read_s = time.perf_counter() - t
    np.testing.assert_allclose(low["confidence"], np.sort(conf)[:100])
    assert read_s < 1.0, read_s
    assert write_s < 60, write_s  # one transaction; about 3 s on an idle 2-core machine
