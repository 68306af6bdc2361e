"""Jobs and the label store: what a selftrain run records in labels.db (also across a resume),
the redo loop (store import, store discard, selftrain --store), export round trips, the review
command over real HTTP, and bad stores. Real SQLite files, real training on digits, kept small."""
from __future__ import annotations

import hashlib
import queue
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from pseudolabel.cli import main
from pseudolabel.datasets import load_digits, load_image_folder
from pseudolabel.jobs.outputs import StoreRecorder, register_dataset
from pseudolabel.jobs.selftrain import run_selftrain
from pseudolabel.review.images import open_image_source, render_png
from pseudolabel.store import SCHEMA_VERSION, LabelStore

# Small and quick on two busy cores: the case study's small CNN and a few dozen steps per round.
CONFIG = dict(data="digits", labeled=100, max_iter=2, epochs=2, min_steps=30, batch_size=64, arch="seed",
              augment=None, threshold=0.9, seed=0, device="cpu")


class Killed(Exception):
    """Stands in for the process being killed."""


def _quiet(msg: str) -> None:
    pass


def _events(db) -> pd.DataFrame:
    with closing(sqlite3.connect(db)) as conn:
        return pd.read_sql("SELECT e.*, i.key FROM events e JOIN items i ON i.id = e.item_id ORDER BY e.id", conn)


def _copy(db: Path, dest: Path) -> Path:
    """A private copy of a store (the SQLite backup API, so the WAL is included)."""
    with closing(sqlite3.connect(db)) as src, closing(sqlite3.connect(dest)) as dst:
        src.backup(dst)
    return dest


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def ds():
    return load_digits()


@pytest.fixture(scope="module")
def base(tmp_path_factory, ds):
    """A selftrain run killed after round 2 reached the store, with its checkpoint set back to
    round 1 (as if killed between the store write and the checkpoint), then resumed."""
    out = tmp_path_factory.mktemp("st") / "run"
    round1 = {}

    def say(msg):
        if msg.startswith("round 1:"):
            round1["checkpoint"] = (out / "checkpoint.joblib").read_bytes()
        elif msg.startswith("round 2:"):
            raise Killed

    with pytest.raises(Killed):
        run_selftrain(CONFIG, out, dataset=ds, say=say)
    before = _events(out / "labels.db")
    (out / "checkpoint.joblib").write_bytes(round1["checkpoint"])
    result = run_selftrain(CONFIG, out, resume=True, dataset=ds, say=_quiet)
    return result, before


def test_selftrain_records_given_pseudo_labels_and_predictions(base, ds):
    result, _ = base
    ev = _events(result.store)
    given = ev[ev["source"] == "given"]
    assert len(given) == 100 and set(given["round"]) == {0} and set(given["run_id"]) == {result.run_id}
    pseudo = ev[ev["source"] == "pseudo"]
    assert len(pseudo) > 100
    assert (pseudo["round"] >= 1).all() and (pseudo["confidence"] > CONFIG["threshold"]).all()
    assert (pseudo["model_id"] == result.run_id + "/round-" + pseudo["round"].astype(str)).all()
    with LabelStore(result.store, create=False) as store:
        runs = store.runs().set_index("run_id")
        assert runs.loc[result.run_id, "job"] == "selftrain"
        assert runs.loc[result.run_id, "config"]["threshold"] == CONFIG["threshold"]
        assert store.classes == ds.classes
        # The store's current labels are the run's final labels, item by item.
        csv = pd.read_csv(result.run.path / "labels.csv").set_index("item")
        cur = store.current_labels().set_index("key").loc[csv.index]
        np.testing.assert_array_equal(cur["label"].to_numpy(), csv["label"].to_numpy())
        np.testing.assert_array_equal(cur["source"].fillna("none").to_numpy(), csv["source"].to_numpy())
        # The final model's predictions cover exactly the pool it left unlabeled.
        assert set(store.queue("active")["key"]) == set(csv.index[csv["label"] == -1])
        # The review page finds every item's own image.
        assert store.get_meta("images") == "digits"
        images = open_image_source(store.get_meta("images"))
        where = store.items().set_index("key")["location"]
        for i in (0, 7, 1000):
            assert images.png(where[f"train/{i}"]) == render_png(ds.X[i])


def test_resumed_run_records_no_round_twice(base):
    result, before = base
    after = _events(result.store)
    assert [r["round"] for r in result.history] == [0, 1, 2]
    # Round 2 was in the store before the kill and was trained again after the resume.
    assert before["round"].max() == 2
    for source in ("given", "pseudo"):
        assert (after["source"] == source).sum() == (before["source"] == source).sum()
    assert len(after) == len(before)


def test_recorder_follows_rounds_that_drop_and_change_labels(ds, tmp_path):
    """Relabeling rounds may drop or change labels; the store's current labels follow the loop."""
    from sklearn.linear_model import LogisticRegression

    n = len(ds)
    with LabelStore(tmp_path / "labels.db") as store:
        rec = StoreRecorder(store, ds, "run-a")
        y = np.full(n, -1)
        y[:10] = ds.y[:10]
        assert rec.record_given(y) == 10 and rec.record_given(y) == 0
        trans, rounds, conf = y.copy(), np.where(y >= 0, 0, -1), np.full(n, np.nan)
        trans[10:20], rounds[10:20], conf[10:20] = ds.y[10:20], 1, 0.95
        assert rec.record_pseudo(trans, rounds, conf, 1) == 10
        assert rec.record_pseudo(trans, rounds, conf, 1) == 0  # the same state again: nothing twice
        # Round 2 drops two labels, changes one and adds three.
        trans[[10, 11]], rounds[[10, 11]], conf[[10, 11]] = -1, -1, np.nan
        trans[12], rounds[12], conf[12] = (ds.y[12] + 1) % 10, 2, 0.97
        trans[20:23], rounds[20:23], conf[20:23] = ds.y[20:23], 2, 1.0000001  # float32 softmax
        rec.record_pseudo(trans, rounds, conf, 2)
        cur = store.current_labels().set_index("key").loc[ds.items]
        np.testing.assert_array_equal(cur["label"].to_numpy(), trans)
        np.testing.assert_array_equal(cur["round"].fillna(-1).to_numpy(), rounds)
        assert [e["status"] for e in store.history("train/10")] == ["discarded"]
        assert store.history("train/12")[-1]["model_id"] == "run-a/round-2"
        # A recorder that opens the store again (a resumed run) finds nothing left to write.
        assert StoreRecorder(store, ds, "run-a").record_pseudo(trans, rounds, conf, 2) == 0
        # Predictions get one column per class even when the model saw fewer classes.
        seen = ds.y < 9
        flat = ds.X.reshape(n, -1)
        model = LogisticRegression(max_iter=200).fit(flat[seen][:300], ds.y[seen][:300])
        pool = np.flatnonzero(trans == -1)
        assert rec.record_predictions(model, flat, pool, 2) == len(pool)
        active = store.queue("active")
        assert set(active["key"]) == {ds.items[i] for i in pool} and (active["suggestion"] < 9).all()


def test_discard_then_redo_starts_from_given_and_human_labels(base, ds, tmp_path):
    result, _ = base
    db = _copy(result.store, tmp_path / "labels.db")
    first = pd.read_csv(result.run.path / "labels.csv")
    given = set(first.loc[first["source"] == "given", "item"])
    others = first.loc[first["source"] != "given", "item"].tolist()
    human, rejected = others[:5], others[5]
    truth = {k: int(ds.y[int(k.split("/")[1])]) for k in human}
    rows = [f"{k},{truth[k]}" for k in human] + [f"{rejected},-1"]
    (tmp_path / "human.csv").write_text("key,label\n" + "\n".join(rows) + "\n")
    runner = CliRunner()

    r = runner.invoke(main, ["store", "import", str(db), str(tmp_path / "human.csv"), "--who", "ana"])
    assert r.exit_code == 0 and "imported 6 human labels" in r.output
    n_pseudo = int((first["source"] == "pseudo").sum())
    r = runner.invoke(main, ["store", "discard", str(db), "--source", "pseudo"])
    assert r.exit_code == 0 and f"discarded {n_pseudo} pseudo labels" in r.output
    r = runner.invoke(main, ["store", "discard", str(db), "--source", "human"])
    assert r.exit_code == 2
    r = runner.invoke(main, ["store", "discard", str(db), "--run", "no-such-run"])
    assert r.exit_code == 2 and "no run 'no-such-run'" in r.stderr
    with LabelStore(db, create=False) as store:
        counts = store.counts()
    assert counts.get("given") == 100 and counts.get("human") == 6 and "pseudo" not in counts
    machine = first.loc[first["source"] == "pseudo", "item"].iloc[0]
    r = runner.invoke(main, ["store", "history", str(db), machine])
    assert r.exit_code == 0 and "discarded" in r.output and result.run_id in r.output
    r = runner.invoke(main, ["store", "history", str(db), human[0]])
    assert r.exit_code == 0 and "ana" in r.output and "current" in r.output

    redo = run_selftrain({**CONFIG, "max_iter": 1, "store": str(db)}, tmp_path / "redo", dataset=ds, say=_quiet)
    assert Path(redo.store).resolve() == db.resolve() and redo.run_id != result.run_id
    labels = pd.read_csv(tmp_path / "redo" / "labels.csv").set_index("item")
    start = labels[labels["round"] == 0]
    assert set(start.index) == given | set(human)
    assert (start.loc[human, "source"] == "human").all() and (start.loc[sorted(given), "source"] == "given").all()
    assert start.loc[human, "label"].tolist() == [truth[k] for k in human]
    assert rejected not in labels.index  # a person said it fits no class: left out of training
    ev = _events(db)
    assert (ev["source"] == "given").sum() == 100  # the redo wrote no starting label again
    mine = ev[ev["run_id"] == redo.run_id]
    assert set(mine["source"]) == {"pseudo"} and not set(mine["key"]) & (given | set(human) | {rejected})
    with LabelStore(db, create=False) as store:
        cur = store.current_labels().set_index("key")
        assert set(cur.loc[cur["source"] == "pseudo", "run_id"]) == {redo.run_id}
        assert cur.loc[human, "source"].eq("human").all() and cur.loc[rejected, "label"] == -1


def test_selftrain_refuses_a_store_of_other_data(tmp_path):
    db = tmp_path / "other.db"
    with LabelStore(db) as store:
        store.set_classes([str(d) for d in range(10)])
        store.add_items([f"img/{i}.png" for i in range(5)])
    digest = _digest(db)
    r = CliRunner().invoke(main, ["selftrain", "--data", "digits", "--store", str(db), "--out", str(tmp_path / "run")])
    assert r.exit_code == 2, r.output
    line = r.stderr.strip()
    assert "\n" not in line and "holds 5 items" in line and "pass the data set the store was built from" in line
    assert not (tmp_path / "run").exists() and _digest(db) == digest


def test_export_csv_and_parquet_round_trip(base, tmp_path):
    result, _ = base
    db = _copy(result.store, tmp_path / "labels.db")
    runner = CliRunner()
    with LabelStore(db, create=False) as store:
        cur = store.current_labels()
    labeled = cur[cur["label"] >= 0].set_index("key")
    for fmt, read in (("csv", pd.read_csv), ("parquet", pd.read_parquet)):
        out = tmp_path / f"out.{fmt}"
        r = runner.invoke(main, ["export", str(db), "--format", fmt, "--out", str(out)])
        assert r.exit_code == 0, r.output
        got = read(out).set_index("key").loc[labeled.index]
        assert len(read(out)) == len(labeled)
        np.testing.assert_array_equal(got["label"].to_numpy(), labeled["label"].to_numpy())
        np.testing.assert_array_equal(got["source"].to_numpy(), labeled["source"].to_numpy())
    # The default file sits next to the store and is never overwritten without --force.
    r = runner.invoke(main, ["export", str(db)])
    assert r.exit_code == 0 and (tmp_path / "labels-export.csv").is_file()
    r = runner.invoke(main, ["export", str(db)])
    assert r.exit_code == 2 and "exists already" in r.stderr
    assert runner.invoke(main, ["export", str(db), "--force"]).exit_code == 0
    # An exported CSV imports into a fresh store of the same items as the same labels.
    fresh = tmp_path / "fresh.db"
    with LabelStore(db, create=False) as store, LabelStore(fresh) as new:
        new.set_classes(store.classes)
        items = store.items()
        new.add_items(items["key"], items["location"])
    r = runner.invoke(main, ["store", "import", str(fresh), str(tmp_path / "out.csv")])
    assert r.exit_code == 0 and f"imported {len(labeled)} human labels" in r.output
    with LabelStore(fresh, create=False) as new:
        back = new.current_labels().set_index("key").loc[labeled.index]
    np.testing.assert_array_equal(back["label"].to_numpy(), labeled["label"].to_numpy())


def test_export_folder_manifest_round_trips_through_the_image_folder_loader(ds, tmp_path):
    root = tmp_path / "pets"
    names = {0: "zero", 1: "one", 2: "two"}
    for i in range(80):
        folder = root / names.get(int(ds.y[i]), "unlabeled")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((ds.X[i] * 15).astype(np.uint8)).save(folder / f"{i}.png")
    data = load_image_folder(root)
    db = tmp_path / "labels.db"
    with LabelStore(db) as store:
        register_dataset(store, data)
        assert store.get_meta("images") == str(root.resolve())
        store.add_labels(data.items, data.y, "given", round=0)
        moved = data.items[int(np.flatnonzero(data.y == 0)[0])]  # a person says: not 'one' but 'two'
        store.add_labels([moved], [data.classes.index("two")], "human", who="ana")
    out = tmp_path / "manifest.csv"
    r = CliRunner().invoke(main, ["export", str(db), "--format", "folder", "--out", str(out)])
    assert r.exit_code == 0, r.output
    back = load_image_folder(root, manifest=out)
    assert back.classes == data.classes and back.items == data.items
    expected = data.y.copy()
    expected[data.items.index(moved)] = data.classes.index("two")
    np.testing.assert_array_equal(back.y, expected)


def _read_lines(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def test_review_command_serves_the_page_over_http(base, tmp_path, ds):
    result, _ = base
    db = _copy(result.store, tmp_path / "labels.db")
    proc = subprocess.Popen([sys.executable, "-m", "pseudolabel.cli", "review", str(db), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
        url = None
        while url is None:
            line = lines.get(timeout=120)
            assert line is not None, "pseudolabel review exited before printing its URL"
            if line.startswith("review page: "):
                url = line.split(": ", 1)[1].strip()
        parts = urlparse(url)
        assert parts.hostname == "127.0.0.1" and parts.port
        token = parse_qs(parts.query)["token"][0]
        base_url = f"http://127.0.0.1:{parts.port}"
        with httpx.Client(base_url=base_url, timeout=30) as http:
            page = http.get(url)
            assert page.status_code == 200 and "<html" in page.text.lower()
            summary = http.get("/api/summary").json()
            assert summary["classes"] == ds.classes and summary["queues"]["audit"] > 0
            with LabelStore(db, create=False) as store:
                item_id = int(store.item_ids(["train/3"])[0])
            image = http.get(f"/image/{item_id}")
            assert image.status_code == 200 and image.content == render_png(ds.X[3])
            refused = http.post("/api/decide", json={"item_id": item_id, "label": 1})
            assert refused.status_code == 403
            ok = http.post("/api/decide", json={"item_id": item_id, "label": 1}, headers={"X-Review-Token": token})
            assert ok.status_code == 200
        last = _events(db).iloc[-1]
        assert (last["key"], last["label"], last["source"]) == ("train/3", 1, "human")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _newer(path: Path) -> Path:
    with LabelStore(path) as store:
        store.add_items(["train/0"])
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
        conn.commit()
    return path


def _corrupt(path: Path) -> Path:
    path.write_bytes(b"this is no database\n" * 200)
    return path


def _damaged_inside(path: Path) -> Path:
    """A store of the digits items whose later pages (the label events) are overwritten: SQLite
    opens it and fails only when a query reaches them."""
    with LabelStore(path) as store:
        store.set_classes([str(d) for d in range(10)])
        keys = [f"train/{i}" for i in range(1347)]
        store.add_items(keys)
        for _ in range(4):
            store.add_labels(keys, np.arange(1347) % 10, "given", note="x" * 40)
    data = bytearray(path.read_bytes())
    start = int(len(data) * 0.4)
    data[start:] = b"\x55" * (len(data) - start)
    path.write_bytes(bytes(data))
    return path


COMMANDS = {
    "discard": ["store", "discard", "{db}"],
    "history": ["store", "history", "{db}", "train/0"],
    "import": ["store", "import", "{db}", "{csv}"],
    "runs": ["store", "runs", "{db}"],
    "export": ["export", "{db}", "--out", "{tmp}/out.csv"],
    "review": ["review", "{db}", "--port", "0"],
    "selftrain": ["selftrain", "--data", "digits", "--labeled", "100", "--store", "{db}", "--out", "{tmp}/run"],
    "clean": ["clean", "--data", "digits", "--folds", "2", "--store", "{db}", "--out", "{tmp}/run"],
}


def _foreign(path: Path) -> Path:
    """A SQLite file of other data: no label store's tables."""
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE people (name TEXT, age INTEGER)")
        conn.executemany("INSERT INTO people VALUES (?, ?)", [("ana", 31), ("bo", 47)])
        conn.commit()
    return path


@pytest.mark.reliability
@pytest.mark.parametrize("make", [_newer, _corrupt, _damaged_inside, _foreign],
                         ids=["newer", "corrupt", "damaged", "foreign"])
def test_bad_store_is_one_line_exit_2_and_left_untouched(make, tmp_path):
    """Every command that opens a store refuses a bad one in one line before any work (no fold or
    round trains: the run directory is never made) and leaves the file as it was."""
    db = make(tmp_path / "labels.db")
    digest = _digest(db)
    (tmp_path / "in.csv").write_text("key,label\ntrain/0,1\n")
    runner = CliRunner()
    for name, args in COMMANDS.items():
        argv = [a.format(db=db, csv=tmp_path / "in.csv", tmp=tmp_path) for a in args]
        r = runner.invoke(main, argv)
        assert r.exit_code == 2, (name, r.output)
        message = r.stderr.strip()
        assert message.startswith("error: ") and "\n" not in message, (name, message)
        assert ("upgrade pseudolabel" if make is _newer else "labels.db") in message, (name, message)
        assert _digest(db) == digest, name
        assert not (tmp_path / "out.csv").exists() and not (tmp_path / "run").exists(), name
