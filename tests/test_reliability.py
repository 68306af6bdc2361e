"""Crash and resume: real `pseudolabel` processes killed with SIGKILL in the middle of their work,
then resumed. The killed job's worker processes end with it, the resumed run equals an
uninterrupted one with the same seed, and its label store is whole with no event twice.
(The selftrain kill is in test_cli.py; this file covers the jobs that run worker processes.)"""
from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from pseudolabel.cli import main
from pseudolabel.store import LabelStore

# Part of the reliability suite (`make reliability`, docs/reliability.md); `make test` runs it too.
pytestmark = pytest.mark.reliability

CLEAN = ["clean", "--data", "digits", "--noise", "0.1", "--folds", "4", "--epochs", "2", "--min-steps", "60",
         "--passes", "1", "--seed", "0", "--jobs", "2"]
# One grid cell (60 labels, no rounds) and the all-labels reference (1347): the small cell finishes
# first and the kill comes while the reference still trains.
SWEEP = ["sweep", "--data", "digits", "--labeled", "60", "--threshold", "0.9", "--max-iter", "0",
         "--epochs", "10", "--recipe", "seed", "--arch", "fast", "--jobs", "2"]


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"  # a zombie has ended; only its parent's wait is missing


def _kill_when(argv: list[str], ready, cwd: Path, log: Path) -> set[int]:
    """Start `pseudolabel ARGV`, SIGKILL the main process alone (as `kill -9 PID` does) once
    ``ready()`` holds and it has worker processes; return the workers it had."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "pseudolabel.cli", *argv], cwd=cwd, env=env,
                                stdout=fh, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 240
            workers: set[int] = set()
            while time.monotonic() < deadline and proc.poll() is None:
                workers = _descendants(proc.pid)
                if len(workers) >= 2 and ready():
                    break
                time.sleep(0.05)
            assert proc.poll() is None, "the run ended before it could be killed:\n" + log.read_text()[-3000:]
            workers = _descendants(proc.pid)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
    return workers


def _assert_workers_end(workers: set[int], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    left = [p for p in workers if _alive(p)]
    assert not left, f"worker processes {left} outlived the killed job"


def _rows(path: Path, drop=()) -> list[list[str]]:
    with open(path) as fh:
        rows = list(csv.reader(fh))
    keep = [i for i, name in enumerate(rows[0]) if name not in drop]
    return [[r[i] for i in keep] for r in rows]


def _events(db: Path) -> list[tuple]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)], db
    with LabelStore(db, create=False) as store:
        store.verify()
        return store.rows("SELECT i.key, e.label, e.source FROM events e JOIN items i ON i.id = e.item_id "
                          "ORDER BY e.id")


@pytest.fixture(scope="module")
def clean_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("clean-ref") / "run"
    result = CliRunner().invoke(main, [*CLEAN, "--out", str(out)])
    assert result.exit_code == 0, result.output + (result.stderr or "")
    return out, result.stdout.strip().splitlines()[-2:]


# Two kill points: while the folds train (worker processes), and while the simulation's
# test-accuracy models train (worker processes again, after issues.csv is written).
KILL_POINTS = {
    "folds": lambda out: (out / "fold-0.joblib").exists(),
    "evaluation": lambda out: (out / "issues.csv").exists(),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_killed_clean_ends_its_workers_and_resumes_to_the_same_result(clean_reference, tmp_path, point):
    reference, last_lines = clean_reference
    out = tmp_path / "run"
    workers = _kill_when([*CLEAN, "--out", str(out)], lambda: KILL_POINTS[point](out), tmp_path,
                         tmp_path / "killed.log")
    _assert_workers_end(workers)
    assert '"finished"' not in (out / "status.json").read_text(), "killed after the end"
    done = CliRunner().invoke(main, [*CLEAN, "--out", str(out), "--resume"])
    assert done.exit_code == 0, done.output + (done.stderr or "")
    assert "loaded from fold-0.joblib" in done.stderr
    assert done.stdout.strip().splitlines()[-2:] == last_lines  # detection scores and test accuracies
    for name in ("issues.csv", "labels.csv"):
        assert _rows(out / name) == _rows(reference / name), name
    got, want = _events(out / "labels.db"), _events(reference / "labels.db")
    assert got == want and len(set(got)) == len(got)  # every event once, none lost


def test_killed_sweep_ends_its_workers_and_continues_to_the_same_table(tmp_path):
    ref = tmp_path / "ref"
    result = CliRunner().invoke(main, [*SWEEP, "--out", str(ref)])
    assert result.exit_code == 0, result.output + (result.stderr or "")
    out = tmp_path / "sweep"
    cells = out / "cells"

    def one_cell_finished():
        return any((c / "status.json").is_file() and '"finished"' in (c / "status.json").read_text()
                   for c in cells.iterdir()) if cells.is_dir() else False

    workers = _kill_when([*SWEEP, "--out", str(out)], one_cell_finished, tmp_path, tmp_path / "killed.log")
    _assert_workers_end(workers)
    again = CliRunner().invoke(main, [*SWEEP, "--out", str(out)])
    assert again.exit_code == 0, again.output + (again.stderr or "")
    assert "finished already" in again.stderr
    def table(path):  # its first column names the sweep directory; times differ from run to run
        rows = _rows(path / "table.csv")
        drop = {0} | {i for i, name in enumerate(rows[0]) if "second" in name or name.endswith("_s")}
        return [[v for i, v in enumerate(r) if i not in drop] for r in rows]

    assert table(out) == table(ref)
    for cell in sorted(p.name for p in (ref / "cells").iterdir()):
        assert _events(out / "cells" / cell / "labels.db") == _events(ref / "cells" / cell / "labels.db"), cell
