"""LabelStore: migrations, derived current labels, undo, discard, bad files, verify, the read-only
query edge and the write transaction, bulk writes (concurrent ones: test_store_concurrency.py),
export and import, read-only stores (a read-only mount, chmod 444 / 555 for a user that is not
root, ``readonly=True``) and a full disk (a real small tmpfs, and SQLite's max_page_count). Real
SQLite files in tmp_path, digits as the data."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pseudolabel.exceptions import DataError, InputError, StoreError
from pseudolabel.store import MIGRATIONS, SCHEMA_VERSION, LabelStore, apply_migrations


@pytest.fixture
def store(tmp_path, digits):
    """A store of 300 digits: 100 given labels, classes 0..9."""
    _, y = digits
    s = LabelStore(tmp_path / "labels.db")
    s.set_classes([str(d) for d in range(10)])
    keys = [f"train/{i}" for i in range(300)]
    s.add_items(keys, [f"x:{i}" for i in range(300)])
    given = y[:300].copy()
    given[100:] = -1
    s.add_labels(keys, given, "given", round=0)
    yield s
    s.close()


def _event_count(path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]


def test_new_store_applies_named_migrations_in_order(tmp_path):
    s = LabelStore(tmp_path / "labels.db")
    assert s.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
    assert s.migrations() == [name for name, _ in MIGRATIONS]
    with sqlite3.connect(tmp_path / "labels.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        versions = [r[0] for r in conn.execute("SELECT version FROM migrations ORDER BY version")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    s.close()
    # Reopening applies nothing twice.
    assert LabelStore(tmp_path / "labels.db").migrations() == [name for name, _ in MIGRATIONS]


def test_old_store_is_upgraded_and_keeps_its_events(tmp_path):
    path = tmp_path / "labels.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert apply_migrations(conn, upto=1) == [MIGRATIONS[0][0]]
    conn.execute("INSERT INTO items(key, location) VALUES ('a', 'x:0')")
    conn.execute("INSERT INTO events(item_id, label, source, created_at) VALUES (1, 3, 'given', 'then')")
    conn.close()
    s = LabelStore(path)
    assert s.migrations() == [name for name, _ in MIGRATIONS]
    assert s.current_labels()["label"].tolist() == [3]
    s.record_predictions(["a"], np.array([[0.2, 0.8]]), "r1")  # a table of migration 2 works
    assert len(s.queue("active")) == 0  # 'a' is labeled


def test_newer_schema_is_refused_and_file_untouched(tmp_path):
    path = tmp_path / "labels.db"
    LabelStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'")
    before = path.read_bytes()
    with pytest.raises(StoreError) as err:
        LabelStore(path)
    assert str(err.value) == (f"labels.db has schema version 7 but this pseudolabel knows up to "
                              f"{SCHEMA_VERSION}; upgrade pseudolabel.")
    assert path.read_bytes() == before


@pytest.mark.parametrize("content", [b"this is not a database\n" * 100,
                                     b"SQLite format 3\x00" + bytes(range(256)) * 30])
def test_corrupt_file_is_refused_and_never_overwritten(tmp_path, content):
    path = tmp_path / "labels.db"
    path.write_bytes(content)
    with pytest.raises(StoreError, match="labels.db") as err:
        LabelStore(path)
    assert "left untouched" in str(err.value)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.db"]


@pytest.mark.reliability
def test_foreign_sqlite_database_is_refused(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE photos (id INTEGER)")
        conn.execute("CREATE TABLE albums (id INTEGER)")
    before = path.read_bytes()
    for create in (True, False):
        with pytest.raises(StoreError) as err:
            LabelStore(path, create=create)
        assert str(err.value) == ("other.db is not a label store (it has tables albums, photos; no 'meta'); "
                                  "pass a label store made by pseudolabel or a new path.")
    assert path.read_bytes() == before
    with pytest.raises(StoreError, match="no label store"):
        LabelStore(tmp_path / "missing.db", create=False)


@pytest.mark.reliability
def test_verify_finds_a_store_damaged_past_its_first_page(tmp_path):
    path = tmp_path / "labels.db"
    with LabelStore(path) as s:
        keys = [f"train/{i}" for i in range(4000)]
        s.add_items(keys, [f"x_train:{i}" for i in range(4000)])
        s.add_labels(keys, np.arange(4000) % 10, "given", round=0)
        s.verify()  # a sound store passes
    size = path.stat().st_size
    assert size > 40 * 4096
    with open(path, "r+b") as fh:  # garbage over pages in the middle; page 1 stays intact
        fh.seek((size // 2) // 4096 * 4096)
        fh.write(np.random.default_rng(0).integers(0, 256, 3 * 4096, dtype=np.uint8).tobytes())
    s = LabelStore(path, create=False)  # the first pages read, so opening works ...
    with pytest.raises(StoreError) as err:
        s.verify()  # ... but verify reads every page
    msg = str(err.value)
    assert msg.startswith("labels.db is damaged (") and "\n" not in msg
    assert msg.endswith("; restore it from a backup or pass a new --store.")
    s.close()


@pytest.mark.reliability
def test_verify_and_open_refuse_a_store_missing_a_table(tmp_path):
    path = tmp_path / "labels.db"
    LabelStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE predictions")
    with pytest.raises(StoreError) as err:
        LabelStore(path, create=False)
    assert str(err.value) == ("labels.db is not a label store (it has tables classes, discards, events, items, "
                              "meta, migrations, ...; no 'predictions'); pass a label store made by pseudolabel "
                              "or a new path.")


@pytest.mark.reliability
def test_query_and_rows_only_read(store):
    df = store.query("SELECT source, COUNT(*) AS n FROM events GROUP BY source")
    assert df.to_dict("records") == [{"source": "given", "n": 100}]
    assert store.rows("WITH t AS (SELECT ? AS x) SELECT x FROM t", (3,)) == [(3,)]
    assert store.rows("  -- a comment\n select count(*) from items") == [(300,)]
    n = _event_count(store.path)
    for sql in ("DELETE FROM events", "INSERT INTO runs(run_id, created_at) VALUES ('x', 'y')",
                "WITH t AS (SELECT 1) INSERT INTO runs(run_id, created_at) SELECT 'x', 'y' FROM t",
                "PRAGMA query_only = 0", "BEGIN", "ATTACH DATABASE ':memory:' AS other", "DROP TABLE items",
                "SELECT 1; DELETE FROM events", ""):
        with pytest.raises(InputError) as err:
            store.rows(sql)
        assert "\n" not in str(err.value) and "labels.db" in str(err.value)
    with pytest.raises(InputError, match="no such table"):
        store.query("SELECT * FROM photos")
    assert _event_count(store.path) == n and "x" not in set(store.runs()["run_id"])
    # The store writes as before after a refused statement.
    assert store.add_labels(["train/150"], [1], "human") == 1


def test_transaction_commits_or_rolls_back_as_one(store):
    n = _event_count(store.path)
    with store.transaction() as tx:
        tx.register_runs(["script-1"])
        assert tx.last_event_id() == n and tx.n_classes() == 10
        assert tx.add_predictions("suspect", [1, 2], "script-1", predicted=[3, 4], given=[0, 0],
                                  score=[0.9, 0.1]) == 2
    assert "script-1" in set(store.runs()["run_id"])
    assert store.predictions("suspect", "script-1")["predicted"].tolist() == [3, 4]
    with pytest.raises(InputError, match="label 12 is outside"):
        with store.transaction() as tx:
            tx.add_predictions("proba", [3], "script-2", predicted=[5])
            tx.check_labels(np.array([12]))
    assert "script-2" not in set(store.runs()["run_id"])  # rolled back
    assert store.predictions("proba", "script-2").empty
    with store.transaction():
        with pytest.raises(StoreError, match="already open"):
            store.add_labels(["train/150"], [1], "human")
    assert _event_count(store.path) == n


def test_events_location_and_revision(store, digits):
    _, y = digits
    run = store.begin_run("selftrain")
    store.add_labels([f"train/{i}" for i in range(100, 110)], y[100:110], "pseudo", run_id=run, confidence=0.9)
    store.add_labels(["train/100"], [(y[100] + 1) % 10], "pseudo", run_id=run)
    ev = store.events(run, "pseudo")
    assert list(ev.columns) == ["event_id", "item_id", "label", "source", "confidence", "round", "run_id",
                                "model_id", "who", "created_at", "note"]
    assert len(ev) == 11 and ev["event_id"].is_monotonic_increasing
    latest = store.events(source=("given", "pseudo"), latest=True)
    assert len(latest) == 110 and latest.set_index("item_id").loc[101, "label"] == (y[100] + 1) % 10
    before = store.revision()
    store.discard("pseudo", run)
    assert store.events(run).empty and store.revision() != before
    assert len(store.events(items=["train/0", "train/100"])) == 1  # the given label of train/0
    with pytest.raises(InputError, match="source must be"):
        store.events(source="undo")
    assert store.location("train/7") == store.location(8) == "x:7"
    assert store.location("nope") is None and store.location(99999) is None
    assert store.max_label() == max(y[:110])


def test_current_label_is_derived_from_events_and_history_keeps_all(store, digits):
    _, y = digits
    run = store.begin_run("selftrain", {"threshold": 0.9})
    keys = [f"train/{i}" for i in range(100, 300)]
    store.add_labels(keys, y[100:300], "pseudo", confidence=0.95, round=1, run_id=run)
    store.add_labels(["train/5"], [(y[5] + 1) % 10], "human", who="ana", note="looked")
    # A later machine label does not override the person.
    store.add_labels(["train/5", "train/6"], [y[5], (y[6] + 2) % 10], "corrected", run_id="clean-1")
    cur = store.current_labels().set_index("key")
    assert (cur["label"] >= 0).all()
    assert cur.loc["train/5", "label"] == (y[5] + 1) % 10 and cur.loc["train/5", "source"] == "human"
    assert cur.loc["train/6", "label"] == (y[6] + 2) % 10 and cur.loc["train/6", "source"] == "corrected"
    assert cur.loc["train/150", "source"] == "pseudo" and cur.loc["train/150", "round"] == 1
    assert cur.loc["train/150", "run_id"] == run
    hist = store.history("train/5")
    assert [e["source"] for e in hist] == ["given", "human", "corrected"]
    assert [e["status"] for e in hist] == ["superseded", "current", "superseded"]
    assert hist[1]["who"] == "ana" and hist[1]["note"] == "looked" and hist[1]["created_at"].endswith("Z")
    assert set(store.runs()["run_id"]) == {run, "clean-1"}
    assert store.counts() == {"given": 98, "corrected": 1, "pseudo": 200, "human": 1}


def test_undo_cancels_the_last_human_decision(store, digits):
    _, y = digits
    store.add_labels(["train/1"], [7], "human", who="ana")
    store.add_labels(["train/2"], [8], "human", who="bob")
    store.add_labels(["train/3"], [9], "human", who="ana")
    undone = store.undo(who="ana")
    assert (undone["key"], undone["label"], undone["who"]) == ("train/3", 9, "ana")
    cur = store.current_labels().set_index("key")
    assert cur.loc["train/3", "label"] == y[3] and cur.loc["train/3", "source"] == "given"
    assert cur.loc["train/2", "label"] == 8  # bob's decision stays
    assert store.undo(who="ana")["key"] == "train/1"
    assert store.undo(who="ana") is None
    assert store.undo()["key"] == "train/2"
    assert [e["status"] for e in store.history("train/3")] == ["current", "undone", "undo"]
    assert _event_count(store.path) == 100 + 3 + 3  # nothing deleted


def test_discard_drops_machine_labels_but_never_given_or_human(store, digits):
    _, y = digits
    r1, r2 = store.begin_run("selftrain"), store.begin_run("selftrain")
    store.add_labels([f"train/{i}" for i in range(100, 200)], y[100:200], "pseudo", confidence=0.99, run_id=r1)
    store.add_labels([f"train/{i}" for i in range(200, 250)], y[200:250], "pseudo", confidence=0.99, run_id=r2)
    store.add_labels(["train/120"], [y[120]], "human", who="ana")
    store.add_labels(["train/0"], [y[0]], "pseudo", run_id=r1)  # a pseudo label on a given item
    events = _event_count(store.path)
    assert store.discard("pseudo", run_id=r2) == 50
    assert store.discard("pseudo") == 101
    assert store.discard("pseudo") == 0
    cur = store.current_labels().set_index("key")
    assert (cur["source"] == "pseudo").sum() == 0
    assert cur.loc["train/120", "source"] == "human"
    assert cur.loc["train/0", "source"] == "given" and cur.loc["train/0", "label"] == y[0]
    assert (cur["source"] == "given").sum() == 100 and (cur["label"] == -1).sum() == 300 - 100 - 1
    assert _event_count(store.path) == events  # a discard writes no event and deletes none
    # A redone run after the discard shows again.
    store.add_labels(["train/130"], [y[130]], "pseudo", run_id=store.begin_run("selftrain"))
    assert store.current_labels().set_index("key").loc["train/130", "source"] == "pseudo"
    for source in ("given", "human"):
        with pytest.raises(InputError, match="machine labels only"):
            store.discard(source)


def test_events_are_append_only(store):
    with sqlite3.connect(store.path) as conn:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM events")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE events SET label = 0")


def test_bad_labels_and_keys_are_input_errors(store):
    n = _event_count(store.path)
    with pytest.raises(InputError, match="label 10 is outside the known classes"):
        store.add_labels(["train/1", "train/2"], [3, 10], "human")
    with pytest.raises(InputError, match="unknown item key 'nope'"):
        store.add_labels(["nope"], [1], "human")
    with pytest.raises(InputError, match="unknown item id 99999"):
        store.add_labels([99999], [1], "human")
    with pytest.raises(InputError, match="same length"):
        store.add_labels(["train/1"], [1, 2], "human")
    with pytest.raises(InputError, match="source must be one of"):
        store.add_labels(["train/1"], [1], "undo")
    with pytest.raises(InputError, match=r"confidence must be in \[0, 1\]"):
        store.add_labels(["train/1"], [1], "pseudo", confidence=1.5)
    with pytest.raises(InputError, match="already in labels.db"):
        store.add_items(["train/1"], ["x:999"])
    with pytest.raises(InputError, match="already holds the label 9"):
        store.set_classes(["a", "b"])
    assert _event_count(store.path) == n
    # -1 is "no label": skipped for machine sources, a decision for a person.
    assert store.add_labels(["train/200", "train/201"], [-1, 4], "pseudo") == 1
    assert store.add_labels(["train/202"], [-1], "human") == 1


def test_bulk_60k_events_in_one_call(tmp_path):
    s = LabelStore(tmp_path / "labels.db")
    s.set_classes([str(d) for d in range(10)])
    n = 60_000
    keys = [f"train/{i}" for i in range(n)]
    ids = s.add_items(keys, [f"x_train:{i}" for i in range(n)])
    assert len(np.unique(ids)) == n
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, n)
    conf = rng.random(n)
    assert s.add_labels(keys, labels, "pseudo", confidence=conf, round=2, run_id="r") == n
    cur = s.current_labels()
    assert len(cur) == n
    np.testing.assert_array_equal(cur["label"].to_numpy(), labels)
    np.testing.assert_allclose(cur["confidence"].to_numpy(), conf)
    assert set(cur["source"]) == {"pseudo"} and set(cur["round"]) == {2}


def test_export_csv_parquet_and_folder_manifest(store, tmp_path, digits):
    _, y = digits
    store.add_labels(["train/150"], [4], "human", who="ana")
    csv = pd.read_csv(store.export(tmp_path / "labels.csv"))
    assert len(csv) == 101 and set(csv["source"]) == {"given", "human"}
    row = csv.set_index("key").loc["train/150"]
    assert (row["label"], row["source"], row["location"]) == (4, "human", "x:150")
    pq = pd.read_parquet(store.export(tmp_path / "labels.parquet", format="parquet"))
    pd.testing.assert_frame_equal(pq[["key", "label", "source"]], csv[["key", "label", "source"]])
    everything = pd.read_csv(store.export(tmp_path / "all.csv", labeled_only=False))
    assert len(everything) == 300 and (everything["label"] == -1).sum() == 199
    manifest = pd.read_csv(store.export(tmp_path / "manifest.csv", format="folder"))
    assert list(manifest.columns) == ["path", "label", "source", "class"]
    assert manifest.set_index("path").loc["x:0", "label"] == y[0]
    with pytest.raises(InputError, match="format must be"):
        store.export(tmp_path / "x.json", format="json")


def test_import_labels_csv_by_index_and_name(tmp_path):
    s = LabelStore(tmp_path / "labels.db")
    s.set_classes(["cat", "dog"])
    s.add_items(["a.jpg", "b.jpg", "c.jpg"])
    (tmp_path / "in.csv").write_text("item,label\na.jpg,dog\nb.jpg,0\nc.jpg,\n")
    assert s.import_labels_csv(tmp_path / "in.csv", who="ana") == 2
    cur = s.current_labels().set_index("key")
    assert cur.loc["a.jpg", "label"] == 1 and cur.loc["b.jpg", "label"] == 0
    assert cur.loc["a.jpg", "who"] == "ana" and cur.loc["c.jpg", "label"] == -1
    (tmp_path / "bad.csv").write_text("key,label\na.jpg,bird\n")
    with pytest.raises(InputError, match="'bird'"):
        s.import_labels_csv(tmp_path / "bad.csv")
    (tmp_path / "cols.csv").write_text("file,class\na.jpg,dog\n")
    with pytest.raises(InputError, match="needs 'key'"):
        s.import_labels_csv(tmp_path / "cols.csv")
    with pytest.raises(DataError, match="no CSV file"):
        s.import_labels_csv(tmp_path / "missing.csv")
    assert _event_count(s.path) == 2


# ---------------------------------------------------------------- read-only stores
READ_ONLY = ("labels.db is read-only (the file or its folder cannot be written); copy it somewhere "
             "writable or fix the permissions.")


def _filled(path: Path) -> Path:
    """A store of 20 items with given and human labels, a run, predictions and suggestions."""
    with LabelStore(path) as s:
        s.set_classes([str(d) for d in range(10)])
        keys = [f"train/{i}" for i in range(20)]
        s.add_items(keys, [f"x:{i}" for i in range(20)])
        s.add_labels(keys[:10], np.arange(10), "given", round=0)
        run = s.begin_run("selftrain", {"threshold": 0.9}, run_id="st-1")
        s.add_labels(keys[10:15], [1, 2, 3, 4, 5], "pseudo", confidence=0.95, run_id=run)
        s.add_labels(["train/0"], [7], "human", who="ana")
        proba = np.full((5, 10), 0.05)
        proba[:, 3] = 0.55
        s.record_predictions(keys[15:], proba, run)
        s.record_suggestions(keys[:2], [0, 1], [8, 9], [0.9, 0.8], "clean-1")
        s.set_meta("images", "digits")
    return path


def _writes(s: LabelStore, tmp: Path) -> dict:
    """Every write of the public API, each meant to be refused."""
    (tmp / "in.csv").write_text("key,label\ntrain/3,4\n")

    def tx():
        with s.transaction() as t:
            t.register_runs(["x"])
    return {
        "add_items": lambda: s.add_items(["new/0"]),
        "add_labels": lambda: s.add_labels(["train/1"], [2], "human"),
        "set_classes": lambda: s.set_classes(["a", "b"] * 5),
        "set_meta": lambda: s.set_meta("images", "elsewhere"),
        "begin_run": lambda: s.begin_run("clean"),
        "undo": lambda: s.undo(),
        "discard": lambda: s.discard("pseudo"),
        "record_predictions": lambda: s.record_predictions(["train/19"], np.full((1, 10), 0.1), "r"),
        "record_suggestions": lambda: s.record_suggestions(["train/3"], [3], [4], [0.5], "r"),
        "import_labels_csv": lambda: s.import_labels_csv(tmp / "in.csv"),
        "transaction": tx,
    }


@pytest.mark.reliability
def test_readonly_store_reads_everything_and_refuses_every_write(tmp_path):
    path = _filled(tmp_path / "labels.db")
    with LabelStore(path) as s:
        want = s.current_labels()
        history = s.history("train/0")
    before = path.read_bytes()
    s = LabelStore(path, readonly=True)
    assert s.readonly
    s.verify()
    pd.testing.assert_frame_equal(s.current_labels(), want)
    seen = [(e["source"], e["label"], e["status"]) for e in s.history("train/0")]
    assert seen == [(e["source"], e["label"], e["status"]) for e in history]
    assert seen == [("given", 0, "superseded"), ("human", 7, "current")]
    assert s.runs()["run_id"].tolist()[:1] == ["st-1"] and s.runs()["config"][0] == {"threshold": 0.9}
    assert len(s.events(run_id="st-1")) == 5 and s.get_meta("images") == "digits"
    assert s.schema_version == SCHEMA_VERSION and s.rows("SELECT COUNT(*) FROM events") == [(16,)]
    assert len(s.queue("all")) == 20 and len(s.queue("active")) == 5 and len(s.queue("suspects")) == 2
    assert len(s.queue("audit")) == 5 and s.counts()["none"] == 5
    (tmp_path / "out").mkdir()
    csv = pd.read_csv(s.export(tmp_path / "out" / "labels.csv"))
    assert len(csv) == 15 and csv.set_index("key").loc["train/0", "label"] == 7
    for name, write in _writes(s, tmp_path).items():
        with pytest.raises(StoreError) as err:
            write()
        assert str(err.value) == READ_ONLY, name
    assert s.current_labels().equals(want)
    s.close()
    assert path.read_bytes() == before  # not one byte written
    with LabelStore(path) as w:  # a writable handle still writes
        assert not w.readonly and w.add_labels(["train/1"], [2], "human") == 1


@pytest.mark.reliability
def test_readonly_needs_a_current_store(tmp_path):
    with pytest.raises(StoreError, match="no label store at"):
        LabelStore(tmp_path / "missing.db", readonly=True)
    assert not (tmp_path / "missing.db").exists()
    path = tmp_path / "labels.db"
    conn = sqlite3.connect(path, isolation_level=None)
    apply_migrations(conn, upto=1)
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError) as err:
        LabelStore(path, readonly=True)
    assert str(err.value) == ("labels.db has schema version 1 and needs upgrading to "
                              f"{SCHEMA_VERSION}, which writes, but it is read-only (the file or its folder "
                              "cannot be written); copy it somewhere writable or fix the permissions.")
    assert path.read_bytes() == before
    (tmp_path / "empty.db").write_bytes(b"")
    with pytest.raises(StoreError, match="^empty.db is empty, not a label store; pass a label store"):
        LabelStore(tmp_path / "empty.db", readonly=True)


@contextlib.contextmanager
def _tmpfs(where: Path, size: str):
    """A real small filesystem (tmpfs) mounted at ``where``; skips where mounting needs a root
    this test does not have."""
    where.mkdir()
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
                           capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        pytest.skip("no mount command here")
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here ({r.stderr.strip()}); needs root")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


@pytest.mark.reliability
def test_store_on_a_readonly_mount_opens_for_reading(tmp_path):
    with _tmpfs(tmp_path / "mnt", "4m") as mnt:
        path = _filled(mnt / "labels.db")
        (mnt / "crashed").mkdir()
        with LabelStore(path) as s:
            want = s.current_labels()
            s.add_labels(["train/2"], [5], "human")  # in the -wal only, while the store is open
            for name in ("labels.db", "labels.db-wal"):  # as a writer that died leaves it
                shutil.copyfile(mnt / name, mnt / "crashed" / name)
            s.undo()
        assert sorted(p.name for p in mnt.iterdir()) == ["crashed", "labels.db"]  # closed: no -wal, -shm
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True, timeout=30)
        with pytest.raises(StoreError) as err:  # its last writes are in the -wal: not shown stale
            LabelStore(mnt / "crashed" / "labels.db", create=False)
        assert str(err.value) == ("labels.db is read-only and its labels.db-wal holds changes not yet merged "
                                  "into it; copy the store with its -wal and -shm files somewhere writable "
                                  "and open it there once.")
        # A WAL store whose -shm cannot be made: the commands that only read still work.
        s = LabelStore(path, create=False)
        assert s.readonly
        s.verify()
        pd.testing.assert_frame_equal(s.current_labels(), want)
        assert len(s.history("train/0")) == 2 and len(s.runs()) == 2 and len(s.queue("active")) == 5
        assert len(pd.read_csv(s.export(tmp_path / "labels.csv"))) == 15
        for name, write in _writes(s, tmp_path).items():
            with pytest.raises(StoreError) as err:
                write()
            assert str(err.value) == READ_ONLY, name
        s.close()
        with pytest.raises(StoreError) as err:  # a job asking to write is told at once
            LabelStore(path)
        assert str(err.value) == READ_ONLY
        with pytest.raises(StoreError, match="cannot create new.db: its folder .* cannot be written"):
            LabelStore(mnt / "new.db")


_AS_USER = """
import json, sys
from pathlib import Path
from pseudolabel.exceptions import StoreError
from pseudolabel.store import LabelStore
out = {}
for name in sys.argv[2:]:
    rec = out[name] = {}
    s = LabelStore(name, create=False)
    s.verify()
    rec["readonly"] = s.readonly
    rec["labels"] = s.current_labels()["label"].tolist()
    rec["history"] = [e["status"] for e in s.history("train/0")]
    rec["runs"] = len(s.runs())
    rec["queue"] = len(s.queue("all"))
    rec["export"] = len(Path(s.export(Path(sys.argv[1]) / (Path(name).parent.name + ".csv"))).read_text().splitlines())
    for what, write in (("add_labels", lambda: s.add_labels(["train/1"], [2], "human")),
                        ("undo", lambda: s.undo())):
        try:
            write()
            rec[what] = "written"
        except StoreError as exc:
            rec[what] = str(exc)
    s.close()
    try:
        LabelStore(name).close()
        rec["create"] = "opened"
    except StoreError as exc:
        rec["create"] = str(exc)
print(json.dumps(out))
"""


@pytest.mark.reliability
def test_readonly_file_and_folder_for_a_user_who_is_not_root(tmp_path):
    """chmod 444 on the file, chmod 555 on its folder: root ignores both, so the check runs as
    'nobody' when the tests run as root."""
    base = Path(tempfile.mkdtemp(prefix="pl-ro-"))  # tmp_path's parents are closed to other users
    try:
        base.chmod(0o755)
        out = base / "out"
        out.mkdir(mode=0o777)
        out.chmod(0o777)
        paths = {}
        for case in ("file444", "dir555"):
            (base / case).mkdir()
            paths[case] = _filled(base / case / "labels.db")
        with LabelStore(paths["file444"]) as s:
            want = s.current_labels()["label"].tolist()
        paths["file444"].chmod(0o444)
        (base / "file444").chmod(0o777)  # the folder is writable: the -shm can be made
        paths["dir555"].chmod(0o644)
        (base / "dir555").chmod(0o555)
        cmd = [sys.executable, "-c", _AS_USER, str(out)] + [str(p) for p in paths.values()]
        if os.geteuid() == 0:
            if not shutil.which("setpriv"):
                pytest.skip("running as root without setpriv: cannot drop to a plain user")
            cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + cmd
        env = {**os.environ, "HOME": str(out)}
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=str(out))
        assert r.returncode == 0, r.stderr[-2000:]
        res = json.loads(r.stdout.strip().splitlines()[-1])
        for case, path in paths.items():
            rec = res[str(path)]
            assert rec["readonly"] is True, case
            assert rec["labels"] == want and rec["history"] == ["superseded", "current"], case
            assert rec["runs"] == 2 and rec["queue"] == 20 and rec["export"] == 16, case
            assert rec["add_labels"] == rec["undo"] == rec["create"] == READ_ONLY, case
        (base / "dir555").chmod(0o755)
        for path in paths.values():
            path.chmod(0o644)
            with LabelStore(path) as s:  # untouched and sound
                s.verify()
                assert s.current_labels()["label"].tolist() == want
                assert s.rows("SELECT COUNT(*) FROM events") == [(16,)]
    finally:
        for d in (base, *base.iterdir()):
            d.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------- a full disk
def _fill_until_full(s: LabelStore, keys: list[str]) -> StoreError:
    """Write ever more label events (with long notes) until the disk refuses one."""
    labels = np.arange(len(keys)) % 10
    for k in range(1000):
        try:
            s.add_labels(keys, labels, "pseudo", run_id=f"r{k}", note="n" * 300)
        except StoreError as exc:
            return exc
    pytest.fail("the store never filled up")


@pytest.mark.reliability
@pytest.mark.parametrize("how", ["tmpfs", "max_page_count"])
def test_full_disk_rolls_the_write_back_and_the_store_stays_sound(tmp_path, how):
    with contextlib.ExitStack() as stack:
        where = stack.enter_context(_tmpfs(tmp_path / "mnt", "384k")) if how == "tmpfs" else tmp_path
        path = where / "labels.db"
        s = stack.enter_context(LabelStore(path))
        s.set_classes([str(d) for d in range(10)])
        keys = [f"train/{i}" for i in range(200)]
        s.add_items(keys)
        s.add_labels(keys, np.arange(200) % 10, "given")
        if how == "max_page_count":  # SQLite's own cap on the file: the same SQLITE_FULL, no root needed
            s._conn.execute(f"PRAGMA max_page_count = {s._conn.execute('PRAGMA page_count').fetchone()[0] + 40}")
        err = _fill_until_full(s, keys)
        msg = str(err)
        assert msg.startswith("labels.db cannot grow: the disk is full (database or disk is full); the "
                              "write was rolled back and the store is intact: free space where ")
        assert msg.endswith(", then run it again.") and "\n" not in msg
        n = s.rows("SELECT COUNT(*) FROM events")[0][0]
        assert n % 200 == 0 and n >= 200  # whole writes only: the failed one left nothing
        before = s.current_labels()
        # A transaction of many writes is kept whole or not at all.
        with pytest.raises(StoreError, match="the disk is full"):
            with s.transaction() as tx:
                tx.register_runs(["half"])
                tx.add_predictions("proba", np.arange(1, 201), "half", predicted=np.zeros(200, int),
                                   proba=[b"x" * 2000] * 200)
                tx.add_events([(1, 1, "human", None, None, "half", None, "x", "now", "n" * 5000)] * 200)
        assert s.rows("SELECT COUNT(*) FROM runs WHERE run_id = 'half'") == [(0,)]
        assert s.rows("SELECT COUNT(*) FROM events")[0][0] == n
        s.verify()
        pd.testing.assert_frame_equal(s.current_labels(), before)
        assert s.add_labels(["train/0"], [9], "human") == 1  # a small write still fits
        s.close()
        with LabelStore(path, create=False) as again:
            again.verify()
            assert again.rows("SELECT COUNT(*) FROM events")[0][0] == n + 1
            assert again.current_labels().set_index("key").loc["train/0", "label"] == 9
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
