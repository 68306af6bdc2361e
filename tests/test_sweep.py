"""The sweep job on digits: a tiny real grid, resumed after a simulated kill, a failed cell, changed
settings, the table and plots it leaves, and the command line's answers to bad input."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from pseudolabel.cli import main
from pseudolabel.exceptions import InputError, PseudolabelError, RunDirectoryError
from pseudolabel.jobs.sweep import (
    parse_int_axis, parse_mode, parse_threshold_axis, read_sweep, run_sweep, sweep_grid,
)
from pseudolabel.runs import RunDirectory

# 2 labeled sizes x 2 thresholds x 1 seed + 1 all-labels reference = 5 cells of seconds each.
CONFIG = dict(data="digits", labeled=[30, 60], threshold=[0.8, [0.95, 0.8]], seeds=[0], max_iter=1, epochs=1,
              min_steps=30, device="cpu")


def quiet(_msg):
    pass


def snapshot(folder):
    """Bytes and mtime of every file below ``folder``."""
    return {p.relative_to(folder): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "sweep"
    result = run_sweep(CONFIG, out, n_jobs=1, say=quiet)
    assert [o.state for o in result.outcomes] == ["finished"] * 5
    return out


@pytest.fixture
def sweep_copy(sweep_dir, tmp_path):
    """A private copy (mtimes kept) for tests that change the sweep."""
    target = tmp_path / "sweep"
    shutil.copytree(sweep_dir, target)
    return target


# ----------------------------------------------------------------------------------- the axes

def test_threshold_axis_syntax():
    assert parse_threshold_axis("0.9, 0.95,0.99>0.95") == [0.9, 0.95, [0.99, 0.95]]
    with pytest.raises(InputError, match="threshold 1.2 is outside"):
        parse_threshold_axis("0.9,1.2")
    with pytest.raises(InputError, match="in the schedule '0.99>-0.1'"):
        parse_threshold_axis("0.99>-0.1")
    with pytest.raises(InputError, match="not a number"):
        parse_threshold_axis("0.9,high")
    with pytest.raises(InputError, match="empty"):
        parse_threshold_axis(" , ")


def test_grid_names_modes_and_empty_axes():
    cells = sweep_grid([100, 1000], [0.9, [0.99, 0.95]], [0, 1], ["keep", "relabel+quota=50"])
    assert len(cells) == 2 * 2 * 2 * 2 + 2 and len({c.name for c in cells}) == len(cells)
    assert "n100_t0.99-0.95_relabel-quota50_s1" in {c.name for c in cells}
    assert [c.reference for c in cells].count(True) == 2
    assert parse_mode("keep") == {"relabel": False, "class_quota": None}
    assert parse_int_axis("100,1000,100", "labeled") == [100, 1000]
    with pytest.raises(InputError, match="grid is empty"):
        sweep_grid([100], [], [0], ["keep"])
    with pytest.raises(InputError, match="mode 'fast' is unknown"):
        parse_mode("fast")


# ------------------------------------------------------------------------------- a real sweep

def test_every_cell_is_an_ordinary_finished_run(sweep_dir):
    settings, cells = read_sweep(sweep_dir)
    assert settings["job"] == "sweep" and len(cells) == 5
    for cell in cells:
        run = RunDirectory(sweep_dir / "cells" / cell.name)
        assert run.status["state"] == "finished" and run.config["job"] == "selftrain"
        history = run.read_history()
        assert history[-1]["round"] == (0 if cell.reference else 1) or run.status["termination"] != "max_iter"
        log = (sweep_dir / "logs" / f"{cell.name}.log").read_text().splitlines()
        assert [line.split()[2] for line in log if line.startswith("--- ")] == ["starting"]
    reference = RunDirectory(sweep_dir / "cells" / "all_s0")
    assert reference.read_history()[0]["n_labeled"] == 1347  # every label of digits' training split
    assert json.loads((sweep_dir / "status.json").read_text())["state"] == "finished"


def test_table_and_plots(sweep_dir):
    table = pd.read_csv(sweep_dir / "table.csv")
    assert len(table) == 5 and table["reference"].sum() == 1
    assert sorted(table.loc[~table["reference"], "threshold"].unique()) == ["0.8", "0.95>0.8"]
    assert table["test_accuracy_mean"].between(0, 1).all()
    # The table's last-round accuracy is the history's: nothing is lost between files.
    cell = RunDirectory(sweep_dir / "cells" / "n60_t0.8_relabel_s0").read_history()
    row = table[(table["initial_labeled"] == 60) & (table["threshold"] == "0.8")].iloc[0]
    assert row["test_accuracy_mean"] == pytest.approx(cell[-1]["test_accuracy"])
    markdown = (sweep_dir / "table.md").read_text()
    assert "all (1347)" in markdown and "0.95>0.8" in markdown
    for name in ("test_accuracy", "improvement", "train_label_accuracy", "training_samples"):
        image = np.asarray(Image.open(sweep_dir / "plots" / f"{name}.png").convert("L"), dtype=float)
        assert image.std() > 5 and len(np.unique(image)) > 20, name
    assert (sweep_dir / "report.html").stat().st_size > 10_000


def test_resume_reruns_only_the_killed_cell_and_never_touches_finished_ones(sweep_copy):
    killed = sweep_copy / "cells" / "n30_t0.8_relabel_s0"
    (killed / "status.json").unlink()  # as if the process died before the cell finished
    before = {c: snapshot(c) for c in (sweep_copy / "cells").iterdir() if c != killed}
    # Two workers: the parallel path (joblib, one torch thread per worker) is the one under test.
    result = run_sweep(CONFIG, sweep_copy, n_jobs=2, say=quiet, report=False)
    states = {o.name: o.state for o in result.outcomes}
    assert states.pop(killed.name) == "finished" and set(states.values()) == {"skipped"}
    assert {c: snapshot(c) for c in before} == before
    assert RunDirectory(killed).status["state"] == "finished"
    log = (sweep_copy / "logs" / f"{killed.name}.log").read_text()
    assert f"resuming {killed.name} in a worker with 1 torch thread(s)" in log


def test_failed_cell_gives_one_clear_line_and_is_retried(sweep_copy):
    broken = sweep_copy / "cells" / "n60_t0.95-0.8_relabel_s0"
    (broken / "checkpoint.joblib").write_bytes(b"not a checkpoint")
    RunDirectory(broken).set_status("running")
    with pytest.raises(PseudolabelError) as info:
        run_sweep(CONFIG, sweep_copy, say=quiet, report=False)
    message = str(info.value)
    assert "\n" not in message and "1 of 5 cells failed" in message and broken.name in message
    assert "run the same sweep again" in message
    assert RunDirectory(broken).status["state"] == "failed"
    assert RunDirectory(sweep_copy).status["state"] == "failed"
    (broken / "checkpoint.joblib").unlink()  # the fix the message of the failed cell suggests
    result = run_sweep(CONFIG, sweep_copy, say=quiet, report=False)
    assert {o.name: o.state for o in result.outcomes}[broken.name] == "finished"
    assert RunDirectory(sweep_copy).status["state"] == "finished"


def test_changed_settings_are_refused_and_the_grid_may_grow(sweep_copy):
    before = snapshot(sweep_copy)
    with pytest.raises(RunDirectoryError, match="epochs=1, not 2"):
        run_sweep({**CONFIG, "epochs": 2}, sweep_copy, say=quiet, report=False)
    assert snapshot(sweep_copy) == before
    # A run directory of another job is refused too.
    run_dir = sweep_copy / "cells" / "all_s0"
    with pytest.raises(RunDirectoryError, match="'selftrain' run, not 'sweep'"):
        run_sweep(CONFIG, run_dir, say=quiet, report=False)
    # A new threshold adds its cells; the old ones stay in the grid, untouched.
    cells_before = snapshot(sweep_copy / "cells")
    grown = {**CONFIG, "labeled": [30], "threshold": [0.9], "reference": False}
    result = run_sweep(grown, sweep_copy, say=quiet, report=False)
    assert [o.name for o in result.outcomes if o.state == "finished"] == ["n30_t0.9_relabel_s0"]
    assert len(read_sweep(sweep_copy)[1]) == 6
    after = snapshot(sweep_copy / "cells")
    assert {k: v for k, v in after.items() if k.parts[0] != "n30_t0.9_relabel_s0"} == cells_before


def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path):
    out = tmp_path / "sweep"
    cases = [
        (["--labeled", "30", "--threshold", "0.9,1.2"], "threshold 1.2 is outside [0, 1)"),
        (["--labeled", ",", "--threshold", "0.9"], "--labeled ',' is empty"),
        (["--labeled", "30", "--threshold", ","], "is empty"),
        (["--labeled", "30", "--seeds", "0"], "grid empty"),
        (["--labeled", "30", "--modes", "greedy"], "mode 'greedy' is unknown"),
        (["--labeled", "5000"], "not fewer than the 1347 labeled samples"),
    ]
    for args, expected in cases:
        result = CliRunner().invoke(main, ["sweep", "--data", "digits", *args, "--out", str(out)])
        assert result.exit_code == 2, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (args, result.output)
        assert not out.exists()
