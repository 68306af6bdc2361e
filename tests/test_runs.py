"""RunDirectory: a run is never overwritten, history survives a kill, writes are atomic."""
from __future__ import annotations

import csv
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from pseudolabel.exceptions import RunDirectoryError
from pseudolabel.runs import CHECKPOINT, CONFIG, HISTORY, RunDirectory, atomic_write


def snapshot(folder: Path) -> dict:
    """Every file under folder, by relative path, with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def run(tmp_path):
    return RunDirectory.create(tmp_path / "run", job="selftrain", config={"seed": 0, "threshold": 0.99})


# -- creation ------------------------------------------------------------------------------------

def test_create_writes_config_and_status(tmp_path):
    config = {"seed": np.int64(3), "lr": np.float32(0.5), "missing": float("nan"), "data": tmp_path / "x.npz",
              "sizes": np.array([1, 2]), "schedule": (0.9, 0.8)}
    run = RunDirectory.create(tmp_path / "a" / "b", job="selftrain", config=config)
    saved = json.loads((run.path / CONFIG).read_text())
    assert saved["job"] == "selftrain" and "created_at" in saved
    assert saved["seed"] == 3 and saved["lr"] == 0.5 and saved["missing"] is None
    assert saved["data"] == str(tmp_path / "x.npz") and saved["sizes"] == [1, 2] and saved["schedule"] == [0.9, 0.8]
    assert run.config == saved
    assert run.status["state"] == "running"
    assert RunDirectory.create(tmp_path / "empty_ok", job="clean", config={}).config["job"] == "clean"


def test_existing_run_is_refused_and_left_intact(run):
    run.append_history({"round": 0, "test_accuracy": 0.9})
    run.save_checkpoint({"round": 0})
    (run.path / "labels.csv").write_text("item,label\n0,1\n")
    before = snapshot(run.path)
    with pytest.raises(RunDirectoryError) as exc:
        RunDirectory.create(run.path, job="selftrain", config={"seed": 1})
    assert str(exc.value) == f"{run.path} holds a run already; pass --resume to continue it or choose a new --out."
    assert snapshot(run.path) == before  # byte for byte, nothing written or removed


def test_non_empty_folder_and_file_are_refused(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.png").write_bytes(b"not really a png")
    before = snapshot(folder)
    with pytest.raises(RunDirectoryError, match="is not empty; choose a new or empty --out directory"):
        RunDirectory.create(folder, job="selftrain", config={})
    assert snapshot(folder) == before
    file = tmp_path / "notes.txt"
    file.write_text("keep me")
    with pytest.raises(RunDirectoryError, match="is a file, not a run directory"):
        RunDirectory.create(file, job="selftrain", config={})
    assert file.read_text() == "keep me"


def test_resume_reopens_the_same_job(run):
    run.append_history({"round": 0})
    again = RunDirectory.create(run.path, job="selftrain", config={"seed": 99}, resume=True)
    assert again.config["seed"] == 0  # the saved config wins; resume does not rewrite it
    assert again.status["state"] == "running" and "resumed_at" in again.status
    assert again.read_history() == [{"round": 0}]


def test_resume_of_another_job_is_refused(run):
    before = snapshot(run.path)
    with pytest.raises(RunDirectoryError) as exc:
        RunDirectory.create(run.path, job="clean", config={}, resume=True)
    assert str(exc.value) == (f"{run.path} holds a 'selftrain' run, not 'clean'; "
                              "resume it with 'pseudolabel selftrain'.")
    assert snapshot(run.path) == before


def test_resume_without_a_run_is_refused(tmp_path):
    with pytest.raises(RunDirectoryError, match="holds no run to resume"):
        RunDirectory.create(tmp_path / "nothing", job="selftrain", config={}, resume=True)
    assert not (tmp_path / "nothing").exists()


def test_damaged_config_is_named(run):
    (run.path / CONFIG).write_text("{not json")
    with pytest.raises(RunDirectoryError, match=r"cannot read .*config\.json.*the run directory is damaged"):
        run.config


# -- history -------------------------------------------------------------------------------------

def test_history_appends_and_reads_back(run):
    records = [{"round": r, "n_labeled": 100 * (r + 1), "test_accuracy": np.float64(0.9 + r / 100),
                "threshold": None if r == 0 else 0.99} for r in range(3)]
    for rec in records:
        run.append_history(rec)
    back = run.read_history()
    assert [r["round"] for r in back] == [0, 1, 2]
    assert back[2]["test_accuracy"] == pytest.approx(0.92) and back[0]["threshold"] is None
    assert len((run.path / HISTORY).read_text().splitlines()) == 3


def test_torn_last_history_line_is_ignored(run):
    run.append_history({"round": 0, "n_labeled": 100})
    run.append_history({"round": 1, "n_labeled": 900})
    with open(run.path / HISTORY, "a") as fh:
        fh.write('{"round": 2, "n_lab')  # the process died in the middle of this write
    assert run.read_history() == [{"round": 0, "n_labeled": 100}, {"round": 1, "n_labeled": 900}]
    # rewriting (what resume does) drops the torn tail, so later appends read back
    run.rewrite_history(run.read_history())
    run.append_history({"round": 2, "n_labeled": 1000})
    assert [r["round"] for r in run.read_history()] == [0, 1, 2]


def test_rewrite_history_drops_rounds_after_a_checkpoint(run):
    for r in range(4):
        run.append_history({"round": r})
    run.rewrite_history(run.read_history()[:2])
    assert run.read_history() == [{"round": 0}, {"round": 1}]


def test_history_csv_has_every_column(run):
    run.append_history({"round": 0, "n_labeled": 10, "threshold": None})
    run.append_history({"round": 1, "n_labeled": 50, "threshold": 0.9, "test_accuracy": 0.8})
    path = run.write_history_csv()
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == ["round", "n_labeled", "threshold", "test_accuracy"]
    assert rows[0] == {"round": "0", "n_labeled": "10", "threshold": "", "test_accuracy": ""}
    assert rows[1]["test_accuracy"] == "0.8"
    assert run.read_history() == [{"round": 0, "n_labeled": 10, "threshold": None},
                                  {"round": 1, "n_labeled": 50, "threshold": 0.9, "test_accuracy": 0.8}]


def test_status_merges(run):
    run.set_status("finished", termination="max_iter", test_accuracy=np.float64(0.97))
    status = run.status
    assert status["state"] == "finished" and status["termination"] == "max_iter"
    assert status["test_accuracy"] == pytest.approx(0.97) and "updated_at" in status


# -- atomic writes -------------------------------------------------------------------------------

def test_atomic_write_replaces_and_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "out.json"
    atomic_write(target, "first")
    atomic_write(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_failed_atomic_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.json"
    atomic_write(target, "old content")
    with pytest.raises(TypeError):
        atomic_write(target, 12345)  # fails inside the write, after the temporary file exists
    assert target.read_text() == "old content"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_readers_never_see_a_torn_file(tmp_path):
    target = tmp_path / "big.json"
    versions = [b"a" * 2_000_000, b"b" * 3_000_000]
    atomic_write(target, versions[0])
    seen, stop = set(), threading.Event()

    def reader():
        while not stop.is_set():
            data = target.read_bytes()
            seen.add((len(data), data[:1], data[-1:]))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(30):
            atomic_write(target, versions[i % 2])
    finally:
        stop.set()
        t.join()
    assert seen <= {(2_000_000, b"a", b"a"), (3_000_000, b"b", b"b")}


# -- checkpoints ---------------------------------------------------------------------------------

def test_checkpoint_round_trip(run, digits):
    X, y = digits[0][:200].reshape(200, -1), digits[1][:200]
    model = LogisticRegression(max_iter=500).fit(X, y)
    state = {"estimator_": model, "transduction_": np.arange(5), "label_confidence_": np.array([np.nan, 0.5]),
             "history_": [{"round": 0}], "n_iter_": 0, "termination_condition_": None}
    assert run.load_checkpoint() is None
    run.save_checkpoint(state)
    back = run.load_checkpoint()
    np.testing.assert_array_equal(back["transduction_"], state["transduction_"])
    np.testing.assert_array_equal(back["label_confidence_"], state["label_confidence_"])
    assert back["history_"] == [{"round": 0}] and back["termination_condition_"] is None
    np.testing.assert_array_equal(back["estimator_"].predict_proba(X), model.predict_proba(X))
    # a second save replaces the first
    run.save_checkpoint({**state, "n_iter_": 1})
    assert run.load_checkpoint()["n_iter_"] == 1
    assert sorted(p.name for p in run.path.iterdir() if p.name.endswith(".tmp")) == []


def test_damaged_checkpoint_is_named(run):
    (run.path / CHECKPOINT).write_bytes(b"\x80\x04 definitely not a pickle")
    with pytest.raises(RunDirectoryError, match=r"cannot load checkpoint .*; delete it to restart the run"):
        run.load_checkpoint()
