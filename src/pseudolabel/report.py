"""The report of runs: one self-contained HTML page plus PNGs and tables, for selftrain runs, sweeps
and clean runs.

:func:`write_report` is the verb: give it run directories, get ``report.html`` (every image
embedded as a data URI, so the page opens offline and can be mailed) plus ``plots/*.png`` and,
for self-training, ``table.csv``, ``table.md`` and ``rounds.csv``. Several runs are reported side
by side: one combined table and overlaid curves. The numbers come from :mod:`pseudolabel.tables`,
the figures from :mod:`pseudolabel.plots`.

A run directory without a finished round is an error (one line); a run that failed or was
killed after some rounds is reported, with a note at the top that it did not finish. A clean run
needs only its ``issues.csv``; ``is_noisy`` (simulations), a decision column and ``grid.png``
are shown when present.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from pseudolabel import plots
from pseudolabel.exceptions import InputError, RunDirectoryError, one_line
from pseudolabel.runs import RunDirectory, atomic_write, now_iso
from pseudolabel.tables import (
    ISSUES, RunInfo, decision_counts, display_results, flagged_mask, improvement_summary,
    load_history_frame, open_run, precision_recall_at_k, results_table, rounds_table, markdown_table,
    suggestion_confusion, summarize_rounds,
)

__all__ = ["write_report"]

GRID_FILES = ("grid.png", "suspects.png", "plots/grid.png")

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2rem auto;max-width:1200px;
padding:0 1.5rem;color:#1d2430;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #d8dde6;padding-bottom:.25rem}
h3{margin-top:1.4rem}.meta{color:#5b6575;font-size:.9rem}
.note{background:#fff6e0;border-left:4px solid #e0a100;padding:.5rem .8rem;margin:.6rem 0}
table{border-collapse:collapse;font-size:.85rem;margin:.6rem 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d8dde6;padding:.25rem .55rem;text-align:right}td{white-space:nowrap}th{background:#f1f4f8}
td:first-child,th:first-child{text-align:left}figure{margin:.8rem 0}img{max-width:100%;height:auto;
border:1px solid #eef0f4}figcaption{color:#4a5361;font-size:.88rem;max-width:60rem}
.scroll{overflow-x:auto}
"""


def _img(path: Path | None, caption: str, alt: str) -> str:
    if path is None or not Path(path).is_file():
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _table(frame: pd.DataFrame, float_digits: int = 4) -> str:
    if frame is None or frame.empty:
        return "<p>(nothing to show)</p>"
    return ('<div class="scroll">' + frame.to_html(index=False, na_rep="-", border=0, escape=True,
                                                   float_format=lambda v: f"{v:.{float_digits}f}") + "</div>")


def _notes(notes: Sequence[str]) -> str:
    return "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes)


def _settings(info: RunInfo) -> pd.DataFrame:
    keep = {k: v for k, v in info.config.items() if k not in ("created_at",)}
    status = {f"status: {k}": v for k, v in info.status.items() if k != "updated_at"}
    values = {**keep, **status}
    return pd.DataFrame({"setting": list(values),
                         "value": [json.dumps(v) if isinstance(v, (list, dict, bool)) or v is None else str(v)
                                   for v in values.values()]})


_HISTORY_COLUMNS = ["round", "threshold", "n_labeled", "n_added", "added_accuracy", "train_label_accuracy",
                    "high_conf_accuracy", "low_conf_accuracy", "pool_accuracy", "test_accuracy", "seconds"]


def _experiment_section(infos, found_frame: pd.DataFrame, out: Path, plot_dir: Path, say) -> str:
    frame = found_frame
    summary = summarize_rounds(frame)
    table = results_table(frame)
    atomic_write(out / "table.csv", table.to_csv(index=False, float_format="%.6f"))
    shown = display_results(table)
    by_round = rounds_table(summary)
    atomic_write(out / "table.md", "## Results\n\n" + markdown_table(shown) + "\n\n## Test accuracy by round\n\n"
                 + markdown_table(by_round) + "\n")
    atomic_write(out / "rounds.csv", summary.to_csv(index=False, float_format="%.6f"))
    spread = "mean ± one standard deviation over seeds (shaded)" if summary["n_runs"].max() > 1 else "one run per curve"
    figures = [
        ("Test accuracy by round", plots.plot_by_round(
            summary, "test_accuracy", plot_dir / "test_accuracy.png", ylabel="test accuracy",
            title="Test accuracy by round", reference=True),
         f"Accuracy on the held-out test set after each round; {spread}. Round 0 is the supervised fit on the "
         "given labels" + ("; the grey line is the same model trained on every label" if frame["reference"].any()
                           else "") + ". This is the number to watch."),
        ("Improvement over round 0 by threshold", plots.plot_improvement(
            improvement_summary(frame), plot_dir / "improvement.png"),
         "Test accuracy gained over the supervised round 0 (same run, then averaged; error bars: one standard "
         "deviation), for each threshold and round."),
        ("Correct training labels by round", plots.plot_by_round(
            summary, "train_label_accuracy", plot_dir / "train_label_accuracy.png",
            ylabel="share of correct training labels", title="Share of correct training labels by round"),
         "Given and pseudo-labels that match the hidden truth. Test accuracy rarely rises far above it: "
         "a strict threshold keeps it high."),
        ("Training samples by round", plots.plot_by_round(
            summary, "n_labeled", plot_dir / "training_samples.png", ylabel="training samples",
            title="Number of training samples by round", logy=True),
         "Given plus pseudo-labeled samples the model trains on after each round (log scale)."),
        ("High- and low-confidence accuracy by round", plots.plot_confidence_accuracy(
            summary, plot_dir / "confidence_accuracy.png"),
         "Solid: accuracy of the predictions that passed the threshold and became labels. Dashed: accuracy of "
         "those left in the pool. The dashed curve falls with the rounds because what is left is the harder "
         "part of the data, not because the model gets worse; judge the model by test accuracy."),
    ]
    parts = ["<h2>Results</h2>", _table(shown),
             "<p class=\"meta\">Last round: the last round any seed reached; seeds that stopped earlier because "
             "nothing passed the threshold keep their last model. Full numbers: table.csv, rounds.csv.</p>"]
    for title, path, caption in figures:
        if path is not None:
            parts.append(f"<h2>{html.escape(title)}</h2>" + _img(path, caption, title))
    parts += ["<h2>Test accuracy by round (table)</h2>", _table(by_round)]
    say(f"wrote {out / 'table.csv'}, {out / 'table.md'} and {sum(p is not None for _, p, _ in figures)} plots")
    return "".join(parts)


def _flatten(record: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in record.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k} "))
        elif k != "record":
            out[f"{prefix}{k}"] = f"{v:.4f}" if isinstance(v, float) else v
    return out


def _clean_history(info: RunInfo) -> tuple[str, str]:
    """(summary table, folds table) from a clean run's history: fold records, then one summary."""
    history = RunDirectory(info.path).read_history()
    folds = pd.DataFrame([r for r in history if r.get("record", "fold") == "fold"])
    summary = next((r for r in reversed(history) if r.get("record") == "summary"), None)
    summary_html = ""
    if summary:
        flat = _flatten(summary)
        summary_html = "<h3>Summary</h3>" + _table(pd.DataFrame({"": list(flat), "value": list(flat.values())}))
    folds_html = ""
    if not folds.empty:
        folds_html = ("<h3>Folds</h3>" + _table(folds.drop(columns=["record"], errors="ignore"))
                      + '<p class="meta">Each fold\'s model predicts the samples it never saw: the out-of-fold '
                        "probabilities the ranking uses.</p>")
    return summary_html, folds_html


def _clean_section(info: RunInfo, plot_dir: Path, prefix: str) -> tuple[str, pd.DataFrame | None]:
    parts = [f"<h2>Cleaning: {html.escape(info.name)}</h2>", _notes(info.notes)]
    summary_html, folds_html = _clean_history(info)
    issues_path = info.path / ISSUES
    if not issues_path.is_file():
        parts.append(_notes([f"{ISSUES} is missing: the clean run did not get to ranking its labels."]))
        return "".join(parts) + folds_html, None
    try:
        issues = pd.read_csv(issues_path)
    except (OSError, ValueError) as exc:
        raise RunDirectoryError(f"cannot read {issues_path}: {one_line(exc)}; the run directory is damaged.") from exc
    missing = [c for c in ("given", "predicted") if c not in issues]
    if missing:
        raise RunDirectoryError(f"{issues_path} lacks the column(s) {', '.join(missing)}; it must hold "
                                "rank_label_issues output (item, given, predicted, ...).")
    flagged = flagged_mask(issues)
    counts, origin = decision_counts(info.path, issues)
    parts += [f"<p>{len(issues)} samples ranked, {int(flagged.sum())} flagged as suspects.</p>", summary_html,
              "<h3>Counts by decision</h3>", _table(counts), f'<p class="meta">From {html.escape(origin)}.</p>']
    pr = None
    if "is_noisy" in issues:
        noisy = issues["is_noisy"].astype(str).str.lower().isin(["true", "1"]).to_numpy()
        pr = precision_recall_at_k(noisy)
        n_flag, n_noisy = int(flagged.sum()), int(noisy.sum())
        ks = [10, 25, 50, 100, 250, 500, 1000, n_flag, n_noisy]
        at = precision_recall_at_k(noisy, ks)
        at.insert(1, "note", ["= flagged" if k == n_flag else "= noisy" if k == n_noisy else "" for k in at["k"]])
        plot = plots.plot_precision_recall_at_k({info.name: _thin(pr)}, plot_dir / f"{prefix}precision_recall.png",
                                                {info.name: n_flag})
        caught = int((flagged & noisy).sum())
        parts += ["<h3>Precision and recall at k</h3>",
                  f"<p>{n_noisy} labels were made wrong on purpose; the {n_flag} flagged samples hold {caught} of "
                  f"them (precision {caught / max(n_flag, 1):.3f}, recall {caught / max(n_noisy, 1):.3f}).</p>",
                  _table(at, 3), _img(plot, "Share of true label errors among the k most suspicious samples "
                                            "(precision) and share of all label errors found (recall).",
                                      "precision and recall at k")]
    else:
        parts.append('<p class="meta">No is_noisy column in issues.csv: precision and recall need the true noise '
                     "mask, which only simulated noise has.</p>")
    matrix = suggestion_confusion(issues)
    plot = plots.plot_confusion(matrix, plot_dir / f"{prefix}confusion.png")
    parts += ["<h3>Given against suggested labels</h3>",
              _img(plot, "For the flagged samples: the label they were given (rows) against the label the "
                         "model suggests (columns). Large off-diagonal cells are classes the labels confuse.",
                   "confusion of given against suggested labels") or "<p>(no flagged samples)</p>"]
    grid = next((info.path / g for g in GRID_FILES if (info.path / g).is_file()), None)
    parts.append("<h3>Suspects</h3>")
    parts.append(_img(grid, "The most suspicious samples: given label | suggested label (confidence).",
                      "suspect images") if grid else "<p>(no grid.png in the run directory)</p>")
    cols = [c for c in ("item", "given", "given_class", "predicted", "predicted_class", "p_given", "p_max", "score",
                        "is_issue", "is_noisy") if c in issues]
    parts += ["<h3>Most suspicious samples</h3>", _table(issues[cols].head(20), 3), folds_html]
    return "".join(parts), pr


def _thin(pr: pd.DataFrame, points: int = 2000) -> pd.DataFrame:
    if len(pr) <= points:
        return pr
    idx = np.unique(np.linspace(0, len(pr) - 1, points).astype(int))
    return pr.iloc[idx]


def _runs_section(infos: Sequence[RunInfo], frame: pd.DataFrame | None) -> str:
    parts = ["<h2>Runs</h2>"]
    for info in infos:
        parts.append(f"<h3>{html.escape(info.job)}: {html.escape(str(info.path))}</h3>")
        if info.job == "selftrain":
            history = pd.DataFrame(RunDirectory(info.path).read_history())
            parts.append(_table(history[[c for c in _HISTORY_COLUMNS if c in history]]))
        elif info.job == "sweep" and frame is not None:
            cells = frame[(frame["source"] == info.name) & ~frame["carried"]]
            last = cells.groupby("name", sort=False).tail(1)  # the frame is in round order
            parts.append(_table(last[["name", "labeled", "threshold", "mode", "seed", "state", "termination",
                                      "round", "test_accuracy"]].rename(
                columns={"round": "last round", "test_accuracy": "test accuracy"})))
        parts.append("<details><summary>settings</summary>" + _table(_settings(info)) + "</details>")
    return "".join(parts)


def _unique_names(infos: Sequence[RunInfo]) -> None:
    seen: dict = {}
    for info in infos:
        name = info.name
        if name in seen:
            name = f"{info.path.resolve().parent.name}/{info.name}"
        while name in seen:
            name += "'"
        seen[name] = True
        info.name = name


def write_report(runs: Sequence, out=None, *, say=lambda m: None) -> Path:
    """Write ``report.html`` and ``plots/*.png`` for one or several run directories.

    Parameters
    ----------
    runs : sequence of path
        selftrain runs, sweep directories and clean runs, in the order to show them.
    out : path, optional
        A folder (or a path ending in ``.html``) for the report. Default: the run's own directory
        when there is one run; required for several.
    say : callable, optional
        Receives one line per file group written.

    Returns
    -------
    pathlib.Path
        The report.html written.

    Raises
    ------
    RunDirectoryError
        For a path that is not a run directory, or a run without any finished round.

    Examples
    --------
    >>> write_report(["runs/st"])  # doctest: +SKIP
    PosixPath('runs/st/report.html')
    """
    runs = list(runs)
    if not runs:
        raise InputError("no run directory given; pass at least one, e.g. pseudolabel report runs/st.")
    infos = [open_run(r) for r in runs]
    _unique_names(infos)
    if out is None:
        if len(infos) > 1:
            raise InputError(f"{len(infos)} runs given but no --out; pass --out DIR for a report over several runs.")
        out = infos[0].path
    out = Path(out)
    html_path = out if out.suffix.lower() == ".html" else out / "report.html"
    folder = html_path.parent
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--out {folder} is a file; pass a folder or a path ending in .html.")
    plot_dir = folder / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)

    experiments = [i for i in infos if i.job in ("selftrain", "sweep")]
    cleans = [i for i in infos if i.job == "clean"]
    body, frame = [], None
    if experiments:
        frame = load_history_frame(experiments)
        body.append(_experiment_section(experiments, frame, folder, plot_dir, say))
    pr_curves = {}
    for info in cleans:
        prefix = f"{info.name.replace('/', '_')}_" if len(infos) > 1 else ""
        section, pr = _clean_section(info, plot_dir, prefix)
        body.append(section)
        if pr is not None:
            pr_curves[info.name] = _thin(pr)
    if len(pr_curves) > 1:
        plot = plots.plot_precision_recall_at_k(pr_curves, plot_dir / "precision_recall_all.png")
        body.append("<h2>Cleaning runs side by side</h2>"
                    + _img(plot, "Precision and recall at k of every clean run.", "precision and recall at k"))
    body.append(_runs_section(infos, frame))

    title = "pseudolabel report: " + ", ".join(i.name for i in infos)
    notes = [n for i in infos for n in (i.notes if i.job != "clean" else [])]
    page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" "
            f"content=\"width=device-width, initial-scale=1\"><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p class=\"meta\">{len(infos)} run(s): "
            + ", ".join(f"{html.escape(i.name)} ({i.job})" for i in infos)
            + f". Written {now_iso()} by pseudolabel.</p>" + _notes(notes) + "".join(body) + "</body></html>")
    atomic_write(html_path, page)
    say(f"wrote {html_path}")
    return html_path
