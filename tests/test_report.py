"""The report: tables over runs, PNG plots, the cleaning section and the self-contained HTML page,
on a real small selftrain run (digits) and a real ranking of injected label noise."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import CHROMIUM_ARGS
from pseudolabel.cli import main
from pseudolabel.exceptions import InputError, RunDirectoryError
from pseudolabel.report import write_report
from pseudolabel.runs import RunDirectory
from pseudolabel.tables import (
    load_history_frame, markdown_table, precision_recall_at_k, results_table, suggestion_confusion,
    summarize_rounds,
)


def assert_png_not_blank(path):
    image = np.asarray(Image.open(path).convert("L"), dtype=float)
    assert image.shape[0] > 100 and image.shape[1] > 100
    # A figure with curves, text and grid lines has many grey levels and real contrast.
    assert image.std() > 5 and len(np.unique(image)) > 20, path


@pytest.fixture(scope="module")
def selftrain_run(tmp_path_factory):
    """digits, 60 labels, 2 rounds of 2 short epochs: a real run directory in a few seconds."""
    from pseudolabel.jobs.selftrain import run_selftrain

    out = tmp_path_factory.mktemp("report") / "st"
    run_selftrain(dict(data="digits", labeled=60, seed=0, max_iter=2, epochs=2, min_steps=60, threshold=0.9,
                       device="cpu"), out, say=lambda m: None)
    return out


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    """A clean run shaped as the clean job leaves it: issues.csv (with is_noisy), labels.csv with an
    action per item, grid.png, a history of fold records and one summary."""
    from sklearn.neighbors import KNeighborsClassifier

    from pseudolabel.crossval import out_of_fold_proba
    from pseudolabel.datasets import inject_noise, load_digits
    from pseudolabel.imagegrid import suspect_grid
    from pseudolabel.issues import fix_labels, rank_label_issues

    ds = load_digits()
    y_noisy, mask = inject_noise(ds.y, 0.1, random_state=0)
    folds = []
    proba = out_of_fold_proba(KNeighborsClassifier(10), ds.X.reshape(len(ds.X), -1), y_noisy, cv=3,
                              random_state=0, n_jobs=1,
                              callback=lambda i, n, info: folds.append({"record": "fold", "fold": i}))
    issues = rank_label_issues(y_noisy, proba)
    issues["is_noisy"] = mask[issues["item"].to_numpy()]
    new, record = fix_labels(y_noisy, proba, threshold=0.9, issues=issues, return_record=True)
    action = np.full(len(new), "none", dtype=object)
    action[record["item"].to_numpy()] = record["action"].to_numpy()
    path = tmp_path_factory.mktemp("report") / "clean"
    run = RunDirectory.create(path, job="clean", config={"data": "digits", "noise": 0.1, "folds": 3})
    for f in folds:
        run.append_history(f)
    run.append_history({"record": "summary", "n_flagged": int(issues["is_issue"].sum()),
                        "detection": {"precision": 0.5}})
    issues.to_csv(path / "issues.csv", index=False)
    pd.DataFrame({"item": ds.items, "given": y_noisy, "label": new, "action": action}).to_csv(
        path / "labels.csv", index=False)
    suspect_grid(ds.X, issues, path / "grid.png", n=10)
    run.set_status("finished")
    return path


def fake_selftrain(path, *, seed, accuracies, state="finished", termination="max_iter", labeled=50,
                   threshold=0.95):
    """A selftrain run directory written through RunDirectory, with chosen test accuracies."""
    run = RunDirectory.create(path, job="selftrain", config=dict(data="digits", labeled=labeled, seed=seed,
                                                                 threshold=threshold, relabel=True))
    for r, acc in enumerate(accuracies):
        run.append_history(dict(round=r, threshold=None if r == 0 else threshold, n_labeled=labeled + 100 * r,
                                n_added=0 if r == 0 else 100, train_label_accuracy=1.0 - 0.01 * r,
                                test_accuracy=acc))
    run.set_status(state, termination=termination)
    return path


# ------------------------------------------------------------------------------------- tables

def test_frame_and_table_match_the_run_history(selftrain_run):
    history = RunDirectory(selftrain_run).read_history()
    frame = load_history_frame([selftrain_run])
    assert len(frame) == len(history)
    assert frame["round"].tolist() == [r["round"] for r in history]
    table = results_table(frame)
    assert len(table) == 1 and table.loc[0, "initial_labeled"] == 60 and table.loc[0, "threshold"] == "0.9"
    assert table.loc[0, "test_accuracy_mean"] == pytest.approx(history[-1]["test_accuracy"])
    assert table.loc[0, "improvement_mean"] == pytest.approx(history[-1]["test_accuracy"]
                                                             - history[0]["test_accuracy"])


def test_runs_that_stopped_early_are_carried_forward_killed_runs_are_not(tmp_path):
    sweep = tmp_path / "sweep"
    RunDirectory.create(sweep, job="sweep", config={"data": "digits"}).set_status("finished")
    fake_selftrain(sweep / "cells" / "a", seed=0, accuracies=[0.80, 0.90, 0.92, 0.94])
    fake_selftrain(sweep / "cells" / "b", seed=1, accuracies=[0.70, 0.86], termination="no_change")
    fake_selftrain(sweep / "cells" / "c", seed=2, accuracies=[0.60, 0.50], state="running", termination=None)
    frame = load_history_frame([sweep])
    summary = summarize_rounds(frame).set_index("round")
    # b stopped on purpose after round 1: its model (0.86) stands for rounds 2 and 3; c was killed.
    assert summary.loc[3, "test_accuracy_mean"] == pytest.approx((0.94 + 0.86) / 2)
    assert summary.loc[3, "n_runs"] == 2 and summary.loc[1, "n_runs"] == 3
    assert summary.loc[0, "test_accuracy_std"] == pytest.approx(np.std([0.8, 0.7, 0.6], ddof=1))
    assert frame.loc[frame["carried"], "name"].unique().tolist() == ["b"]


def test_precision_recall_at_k_invariants():
    rng = np.random.default_rng(0)
    noisy = rng.random(500) < 0.1
    pr = precision_recall_at_k(noisy)
    assert pr["recall"].is_monotonic_increasing and pr["recall"].iloc[-1] == 1.0
    assert pr["precision"].iloc[-1] == pytest.approx(noisy.mean())
    perfect = precision_recall_at_k(np.sort(noisy)[::-1], ks=[int(noisy.sum())])
    assert perfect.loc[0, "precision"] == 1.0 and perfect.loc[0, "recall"] == 1.0


def test_ranking_finds_the_injected_noise_better_than_chance(clean_run):
    issues = pd.read_csv(clean_run / "issues.csv")
    n_noisy = int(issues["is_noisy"].sum())
    at = precision_recall_at_k(issues["is_noisy"].to_numpy(), ks=[n_noisy]).iloc[0]
    assert at["precision"] > 3 * issues["is_noisy"].mean()


def test_confusion_counts_every_flagged_sample_off_the_diagonal(clean_run):
    issues = pd.read_csv(clean_run / "issues.csv")
    matrix = suggestion_confusion(issues)
    assert matrix.to_numpy().sum() == issues["is_issue"].sum()
    assert np.trace(matrix.to_numpy()) == 0  # a flagged sample's suggestion differs from its label


def test_markdown_table_has_one_line_per_row():
    text = markdown_table(pd.DataFrame({"labeled": [100, 1000], "accuracy": ["0.9 ± 0.1", "0.95"]}))
    lines = text.splitlines()
    assert len(lines) == 4 and lines[1] == "|--:|---|" and "0.9 ± 0.1" in lines[2]


# ------------------------------------------------------------------------------ files written

def test_selftrain_report_writes_pngs_tables_and_a_self_contained_page(selftrain_run):
    path = write_report([selftrain_run])
    assert path == selftrain_run / "report.html"
    pngs = sorted((selftrain_run / "plots").glob("*.png"))
    assert {p.name for p in pngs} >= {"test_accuracy.png", "train_label_accuracy.png", "training_samples.png",
                                      "confidence_accuracy.png"}
    for p in pngs:
        assert_png_not_blank(p)
    page = path.read_text()
    srcs = re.findall(r'src="([^"]+)"', page)
    assert len(srcs) == len(pngs) and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in page and "https://" not in page and "<link" not in page
    assert "<h2>Test accuracy by round</h2>" in page
    config = json.loads((selftrain_run / "config.json").read_text())
    assert f"<td>{config['labeled']}</td>" in page and "<summary>settings</summary>" in page
    csv = pd.read_csv(selftrain_run / "table.csv")
    assert len(csv) == 1 and (selftrain_run / "table.md").read_text().startswith("## Results")


def test_clean_report_sections_and_missing_optional_files(clean_run, tmp_path):
    page = write_report([clean_run]).read_text()
    for heading in ("Summary", "Counts by decision", "Precision and recall at k", "Given against suggested labels",
                    "Suspects", "Folds"):
        assert f"<h3>{heading}</h3>" in page
    # Decisions come from labels.csv: every item once, unflagged ones as ok.
    labels = pd.read_csv(clean_run / "labels.csv")
    assert f"<td>ok (not flagged)</td>\n      <td>{int((labels['action'] == 'none').sum())}</td>" in page
    assert "<td>detection precision</td>" in page
    assert_png_not_blank(clean_run / "plots" / "precision_recall.png")
    assert_png_not_blank(clean_run / "plots" / "confusion.png")

    bare = tmp_path / "bare"
    shutil.copytree(clean_run, bare)
    shutil.rmtree(bare / "plots")
    (bare / "grid.png").unlink()
    (bare / "labels.csv").unlink()
    issues = pd.read_csv(bare / "issues.csv").drop(columns="is_noisy")
    issues["action"] = np.where(issues["is_issue"], "relabel", "keep")
    issues.to_csv(bare / "issues.csv", index=False)
    page = write_report([bare]).read_text()
    assert "No is_noisy column" in page and "no grid.png" in page
    assert "<td>relabel</td>" in page and not (bare / "plots" / "precision_recall.png").exists()

    (bare / "issues.csv").unlink()
    assert "issues.csv is missing" in write_report([bare]).read_text()


def test_failed_and_empty_runs(tmp_path, selftrain_run):
    with pytest.raises(RunDirectoryError, match="not a run directory"):
        write_report([tmp_path])
    empty = tmp_path / "empty"
    RunDirectory.create(empty, job="selftrain", config={"data": "digits"}).set_status("failed", error="boom")
    with pytest.raises(RunDirectoryError, match="no finished round") as info:
        write_report([empty])
    assert "\n" not in str(info.value)

    failed = tmp_path / "failed"
    shutil.copytree(selftrain_run, failed)
    RunDirectory(failed).set_status("failed", error="CUDA out of memory")
    page = write_report([failed]).read_text()
    assert "this selftrain run failed (CUDA out of memory)" in page


def test_several_runs_side_by_side(tmp_path, selftrain_run, clean_run):
    other = fake_selftrain(tmp_path / "other", seed=0, accuracies=[0.5, 0.6, 0.7], labeled=60, threshold=0.99)
    with pytest.raises(InputError, match="--out"):
        write_report([selftrain_run, other])
    path = write_report([selftrain_run, other, clean_run], out=tmp_path / "both")
    table = pd.read_csv(tmp_path / "both" / "table.csv")
    assert table["source"].tolist() == ["st", "other"]
    page = path.read_text()
    assert "<h2>Cleaning: clean</h2>" in page and page.count("<h3>selftrain: ") == 2
    assert_png_not_blank(tmp_path / "both" / "plots" / "test_accuracy.png")


def test_cli_report(selftrain_run, tmp_path):
    result = CliRunner().invoke(main, ["report", str(selftrain_run), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "report.html").is_file()
    result = CliRunner().invoke(main, ["report", str(tmp_path / "nothing")])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error:") and len(result.output.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------ browser

@pytest.mark.browser
def test_report_in_headless_chromium(selftrain_run, clean_run, tmp_path, chromium_path):
    from playwright.sync_api import sync_playwright

    path = write_report([selftrain_run, clean_run], out=tmp_path / "combined")
    outside = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
            page.goto(path.resolve().as_uri())
            page.wait_for_load_state("load")
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            headings = page.eval_on_selector_all("h1, h2, h3", "els => els.map(e => e.textContent)")
            widths = page.eval_on_selector_all("img", "els => els.map(e => e.complete ? e.naturalWidth : 0)")
        finally:
            browser.close()
    assert headings[0].startswith("pseudolabel report")
    for expected in ("Results", "Test accuracy by round", "Correct training labels by round",
                     "Training samples by round", "Cleaning: clean", "Suspects"):
        assert expected in headings
    assert len(widths) >= 6 and all(w > 0 for w in widths)
    assert outside == []
    assert Image.open(shot).size[1] > 2000  # the whole page, with its figures, was laid out
