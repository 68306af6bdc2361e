"""The report's tables: the history of selftrain runs and sweep cells as one frame, summaries over
seeds, the case study's results table, and the numbers of a cleaning run (precision and recall at k,
given against suggested labels, counts by decision).

The numbers over seeds are the mean and the sample standard deviation. A run that stopped early
because nothing more passed its threshold ('no_change', 'all_labeled') keeps its last model, so
its test accuracy, training labels and training set size are carried forward to the rounds it
skipped; a run that was killed or failed is not carried forward, and the report says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from pseudolabel.exceptions import InputError, RunDirectoryError, one_line
from pseudolabel.runs import CELLS, CONFIG, SWEEP_FILE, RunDirectory

__all__ = ["RunInfo", "open_run", "load_history_frame", "summarize_rounds", "improvement_summary", "results_table",
           "rounds_table", "markdown_table", "precision_recall_at_k", "suggestion_confusion", "threshold_label",
           "mode_of"]

STATE_METRICS = ("test_accuracy", "train_label_accuracy", "n_labeled", "n_pseudo")
ROUND_METRICS = STATE_METRICS + ("n_added", "high_conf_accuracy", "low_conf_accuracy", "pool_accuracy",
                                 "pool_size", "added_accuracy", "seconds")
GROUP_KEYS = ["source", "reference", "labeled", "mode", "threshold", "threshold_key"]
REFERENCE = "all labels"
ISSUES = "issues.csv"


@dataclass
class RunInfo:
    """A run directory as the report sees it: its job, config, status and the notes to show."""

    path: Path
    name: str
    job: str
    config: dict
    status: dict
    notes: list = field(default_factory=list)


def threshold_label(value) -> str:
    """``0.99`` -> ``"0.99"``; ``[0.99, 0.95]`` -> ``"0.99>0.95"`` (the sweep's axis syntax)."""
    if isinstance(value, (list, tuple)):
        return ">".join(f"{float(v):g}" for v in value)
    return f"{float(value):g}"


def mode_of(config: dict) -> str:
    """The mode string of a run's config: ``keep`` or ``relabel``, then ``+quota=N`` when the run has
    a class quota (the inverse of :func:`pseudolabel.jobs.sweep.parse_mode`)."""
    mode = "relabel" if config.get("relabel") else "keep"
    if config.get("class_quota"):
        mode += f"+quota={int(config['class_quota'])}"
    return mode


def _state_note(info_status: dict, what: str) -> str | None:
    state = info_status.get("state", "unknown")
    if state == "finished":
        return None
    if state == "failed":
        error = info_status.get("error")
        return f"{what} failed" + (f" ({one_line(error)})" if error else "") + "; the report shows what it finished."
    return (f"{what} did not finish (state: {state}: still running, or killed); "
            "the report shows what it finished; resume it with --resume to complete it.")


def open_run(path) -> RunInfo:
    """Read a run directory's job, config and status; refuse what is not a run.

    Examples
    --------
    >>> open_run("runs/st").job  # doctest: +SKIP
    'selftrain'
    """
    p = Path(path)
    if not p.is_dir():
        raise RunDirectoryError(f"{p} is not a directory; pass a run directory made by pseudolabel selftrain, "
                                "sweep or clean.")
    if not (p / CONFIG).is_file():
        raise RunDirectoryError(f"{p} is not a run directory (no {CONFIG}); pass a directory made by "
                                "pseudolabel selftrain, sweep or clean.")
    run = RunDirectory(p)
    config = run.config
    job = config.get("job")
    if job not in ("selftrain", "sweep", "clean"):
        raise RunDirectoryError(f"{p} holds a {job!r} run, which the report does not know; "
                                "pass a selftrain, sweep or clean run directory.")
    info = RunInfo(p, p.resolve().name or str(p), job, config, run.status)
    # A sweep's state is its cells': the note on unfinished cells says it better.
    note = _state_note(info.status, f"this {job} run") if job != "sweep" else None
    if note:
        info.notes.append(note)
    return info


# ------------------------------------------------------------------------- self-training frames

def _threshold_of(config: dict) -> tuple[str, float]:
    t = config.get("threshold", 0.99)
    first = t[0] if isinstance(t, (list, tuple)) and t else t
    try:
        return threshold_label(t), float(first)
    except (TypeError, ValueError):
        return str(t), float("nan")


def _selftrain_rows(info: RunInfo, source: str, history: list) -> list:
    cfg = info.config
    reference = bool(cfg.get("sweep_reference"))
    threshold, key = _threshold_of(cfg)
    labeled = cfg.get("labeled")
    if labeled is None or reference:
        labeled = history[0].get("n_labeled")
    base = dict(source=source, run=str(info.path), name=info.name, reference=reference, labeled=int(labeled),
                mode="" if reference else mode_of(cfg), threshold=REFERENCE if reference else threshold,
                threshold_key=float("inf") if reference else key, seed=cfg.get("seed"),
                state=info.status.get("state", "unknown"), termination=info.status.get("termination"))
    return [{**base, "round": int(rec["round"]), **{m: rec.get(m) for m in ROUND_METRICS}} for rec in history]


def _sweep_cells(info: RunInfo) -> list[RunInfo]:
    if (info.path / SWEEP_FILE).is_file():
        cells = RunDirectory(info.path).read_json(SWEEP_FILE).get("cells", [])
        paths = [info.path / CELLS / c["name"] for c in cells]
    else:
        paths = sorted(p for p in (info.path / CELLS).glob("*") if p.is_dir())
    out, missing = [], []
    for p in paths:
        if not (p / CONFIG).is_file():
            missing.append(p.name)
            continue
        cell = open_run(p)
        cell.notes.clear()
        out.append(cell)
    unfinished = [c.name for c in out if c.status.get("state") != "finished"] + missing
    if unfinished:
        shown = ", ".join(unfinished[:6]) + (" ..." if len(unfinished) > 6 else "")
        info.notes.append(f"{len(unfinished)} of {len(paths)} cells have not finished ({shown}); "
                          "run the same sweep again to complete them.")
    return out


def _experiment_runs(infos: Sequence[RunInfo]) -> list[tuple[str, RunInfo, list]]:
    """(source, run, history) of every selftrain run and sweep cell with at least one finished round."""
    out = []
    for info in infos:
        if info.job == "selftrain":
            history = RunDirectory(info.path).read_history()
            if not history:
                raise RunDirectoryError(
                    f"{info.path} has no finished round (history.jsonl is empty, state "
                    f"{info.status.get('state', 'unknown')}); the run stopped before round 0 ended: rerun it "
                    "with 'pseudolabel selftrain ... --resume'."
                )
            out.append((info.name, info, history))
        elif info.job == "sweep":
            found = [(info.name, c, RunDirectory(c.path).read_history()) for c in _sweep_cells(info)]
            found = [f for f in found if f[2]]
            if not found:
                raise RunDirectoryError(f"sweep {info.path} has no cell with a finished round; run the sweep "
                                        "(again) before reporting it.")
            out += found
    return out


def _carry_forward(frame: pd.DataFrame) -> pd.DataFrame:
    """Repeat the last state of runs that stopped early on purpose up to their group's last round."""
    frame = frame.copy()
    frame["carried"] = False
    last = frame.groupby(GROUP_KEYS, sort=False, dropna=False)["round"].transform("max")
    extra = []
    for _, run in frame.groupby("run", sort=False):
        top = int(run["round"].max())
        target = int(last[run.index].max())
        stopped = run["state"].iloc[0] == "finished" and run["termination"].iloc[0] in ("no_change", "all_labeled")
        if not stopped or top >= target:
            continue
        final = run[run["round"] == top].iloc[0]
        for r in range(top + 1, target + 1):
            row = {k: final[k] for k in frame.columns if k not in ROUND_METRICS}
            row.update({m: final[m] for m in STATE_METRICS}, round=r, carried=True, n_added=0)
            extra.append(row)
    if extra:
        frame = pd.concat([frame, pd.DataFrame(extra)], ignore_index=True)
    return frame


def load_history_frame(runs: Sequence) -> pd.DataFrame:
    """One row per run and round of every selftrain run and sweep cell in ``runs``.

    Columns: source (the run or sweep it belongs to), run, name, reference, labeled (initial
    labeled samples), mode, threshold (as text; schedules as ``0.99>0.95``), threshold_key, seed,
    state, termination, round, carried, and the history metrics (test_accuracy,
    train_label_accuracy, n_labeled, high_conf_accuracy, ...). Runs that stopped early on purpose
    are carried forward (``carried`` True on the repeated rows).

    Examples
    --------
    >>> frame = load_history_frame(["runs/sweep"])  # doctest: +SKIP
    >>> frame.groupby("threshold")["test_accuracy"].max()  # doctest: +SKIP
    """
    infos = [r if isinstance(r, RunInfo) else open_run(r) for r in runs]
    found = _experiment_runs(infos)
    rows = [row for source, info, history in found for row in _selftrain_rows(info, source, history)]
    if not rows:
        raise InputError("none of the runs is a selftrain run or a sweep; pass their run directories.")
    frame = pd.DataFrame(rows)
    for m in ROUND_METRICS:
        frame[m] = pd.to_numeric(frame[m], errors="coerce")
    order = {s: i for i, s in enumerate(dict.fromkeys(frame["source"]))}
    frame = _carry_forward(frame)
    frame["_o"] = frame["source"].map(order)
    frame = frame.sort_values(["_o", "reference", "labeled", "mode", "threshold_key", "threshold", "seed",
                               "round"], kind="stable").drop(columns="_o").reset_index(drop=True)
    base = frame[frame["round"] == 0].set_index("run")["test_accuracy"]
    frame["improvement"] = frame["test_accuracy"] - frame["run"].map(base)
    return frame


def summarize_rounds(frame: pd.DataFrame, metrics: Sequence[str] = ROUND_METRICS) -> pd.DataFrame:
    """Mean, standard deviation and number of runs of each metric per curve and round.

    A curve is one (source, labeled, mode, threshold); its runs are the seeds.

    Examples
    --------
    >>> s = summarize_rounds(load_history_frame(["runs/sweep"]))  # doctest: +SKIP
    >>> s[["labeled", "threshold", "round", "test_accuracy_mean", "n_runs"]]  # doctest: +SKIP
    """
    metrics = [m for m in metrics if m in frame]
    grouped = frame.groupby(GROUP_KEYS + ["round"], sort=False, dropna=False)
    out = grouped.agg(**{f"{m}_{s}": (m, s) for m in metrics for s in ("mean", "std")},
                      n_runs=("run", "nunique")).reset_index()
    return out


def improvement_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy at each round minus round 0 of the same run, mean and std over seeds.

    Round 0 is the supervised fit on the given labels (the case study's first iteration); the
    difference is taken per run before averaging, so seeds are paired.
    """
    return summarize_rounds(frame, ("improvement",))


def _pm(mean, std, digits: int = 4) -> str:
    if mean is None or pd.isna(mean):
        return "-"
    if std is None or pd.isna(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def results_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The case study's table: per labeled size, mode and threshold, the last round reached and
    its test accuracy (mean and std over seeds), with round 0 and the all-labels reference rows.

    Columns: source, reference, initial_labeled, mode, threshold, rounds, seeds,
    round0_test_accuracy_mean/std, test_accuracy_mean/std, improvement_mean/std,
    train_label_accuracy_mean, n_labeled_mean.

    Examples
    --------
    >>> results_table(load_history_frame(["runs/sweep"])).to_csv("table.csv")  # doctest: +SKIP
    """
    rows = []
    for key, part in frame.groupby(GROUP_KEYS, sort=False, dropna=False):
        src, ref, labeled, mode, threshold, _ = key
        last = int(part["round"].max())
        final, first = part[part["round"] == last], part[part["round"] == 0]
        rows.append({
            "source": src, "reference": bool(ref), "initial_labeled": int(labeled), "mode": mode,
            "threshold": threshold, "rounds": last, "seeds": int(final["run"].nunique()),
            "round0_test_accuracy_mean": first["test_accuracy"].mean(),
            "round0_test_accuracy_std": first["test_accuracy"].std(),
            "test_accuracy_mean": final["test_accuracy"].mean(), "test_accuracy_std": final["test_accuracy"].std(),
            "improvement_mean": final["improvement"].mean(), "improvement_std": final["improvement"].std(),
            "train_label_accuracy_mean": final["train_label_accuracy"].mean(),
            "n_labeled_mean": final["n_labeled"].mean(),
        })
    table = pd.DataFrame(rows)
    # The reference rows close each source's table, as in the case study.
    table["_o"] = table["source"].map({s: i for i, s in enumerate(dict.fromkeys(table["source"]))})
    return table.sort_values(["_o", "reference"], kind="stable").drop(columns="_o").reset_index(drop=True)


def display_results(table: pd.DataFrame) -> pd.DataFrame:
    """The results table as people read it: mean ± std strings, 'all (N)' on reference rows."""
    several = table["source"].nunique() > 1
    modes = table.loc[~table["reference"], "mode"].nunique() > 1
    out = pd.DataFrame({
        **({"run": table["source"]} if several else {}),
        "initial labeled": [f"all ({n})" if r else str(n) for n, r in zip(table["initial_labeled"], table["reference"])],
        **({"mode": table["mode"]} if modes else {}),
        "threshold": ["-" if r else t for t, r in zip(table["threshold"], table["reference"])],
        "rounds": table["rounds"],
        "seeds": table["seeds"],
        "test accuracy, round 0": [_pm(m, s) for m, s in zip(table["round0_test_accuracy_mean"],
                                                           table["round0_test_accuracy_std"])],
        "test accuracy, last round": [_pm(m, s) for m, s in zip(table["test_accuracy_mean"], table["test_accuracy_std"])],
        "improvement": ["-" if r else _pm(m, s) for m, s, r in zip(table["improvement_mean"],
                                                                  table["improvement_std"], table["reference"])],
        "correct training labels": [_pm(m, None) for m in table["train_label_accuracy_mean"]],
        "training samples": ["-" if pd.isna(v) else f"{v:.0f}" for v in table["n_labeled_mean"]],
    })
    return out


def rounds_table(summary: pd.DataFrame, metric: str = "test_accuracy") -> pd.DataFrame:
    """One row per curve, one column per round: ``metric`` as 'mean ± std' text."""
    rows = summary[~summary["reference"]]
    several = rows["source"].nunique() > 1
    modes = rows["mode"].nunique() > 1
    out = []
    for key, part in rows.groupby(["source", "labeled", "mode", "threshold"], sort=False):
        row = {**({"run": key[0]} if several else {}), "initial labeled": int(key[1]),
               **({"mode": key[2]} if modes else {}), "threshold": key[3]}
        for _, r in part.sort_values("round").iterrows():
            row[f"round {int(r['round'])}"] = _pm(r[f"{metric}_mean"], r[f"{metric}_std"])
        out.append(row)
    return pd.DataFrame(out).fillna("-")


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table (numbers right-aligned), without extra dependencies.

    Examples
    --------
    >>> print(markdown_table(pd.DataFrame({"a": [1], "b": ["x"]})))
    | a | b |
    |--:|---|
    | 1 | x |
    """
    cols = [str(c) for c in table.columns]
    numeric = [pd.api.types.is_numeric_dtype(table[c]) for c in table.columns]
    lines = ["| " + " | ".join(cols) + " |",
             "|" + "|".join("--:" if n else "---" for n in numeric) + "|"]
    for row in table.itertuples(index=False):
        cells = ["-" if (not isinstance(v, str) and pd.isna(v)) else (f"{v:.4f}" if isinstance(v, float) else str(v))
                 for v in row]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- cleaning

def precision_recall_at_k(is_noisy, ks: Sequence[int] | None = None) -> pd.DataFrame:
    """Precision and recall of the top-k suspects, given the true noise mask in ranking order.

    Parameters
    ----------
    is_noisy : array of bool
        ``True`` where the sample's given label is wrong, ordered most suspicious first (the row
        order of ``rank_label_issues``).
    ks : sequence of int, optional
        The k to report; default every k from 1 to n.

    Examples
    --------
    >>> precision_recall_at_k([True, True, False, True], ks=[2, 4]).to_dict("list")
    {'k': [2, 4], 'found': [2, 3], 'precision': [1.0, 0.75], 'recall': [0.6666666666666666, 1.0]}
    """
    mask = np.asarray(is_noisy, dtype=bool)
    found = np.cumsum(mask)
    total = max(int(mask.sum()), 1)
    k = np.arange(1, len(mask) + 1) if ks is None else np.array(sorted({int(v) for v in ks if 1 <= v <= len(mask)}))
    if len(k) == 0:
        return pd.DataFrame({"k": [], "found": [], "precision": [], "recall": []})
    hits = found[k - 1]
    return pd.DataFrame({"k": k, "found": hits, "precision": hits / k, "recall": hits / total})


def suggestion_confusion(issues: pd.DataFrame) -> pd.DataFrame:
    """Counts of given (rows) against suggested (columns) labels over the flagged samples.

    Examples
    --------
    >>> issues = pd.DataFrame({"given": [1, 1, 2], "predicted": [7, 7, 3], "is_issue": [True, True, False]})
    >>> int(suggestion_confusion(issues).loc[1, 7])
    2
    """
    flagged = issues[flagged_mask(issues)]
    if flagged.empty:
        return pd.DataFrame()
    labels = sorted(set(flagged["given"]) | set(flagged["predicted"]), key=lambda v: (str(type(v)), v))
    return pd.crosstab(flagged["given"], flagged["predicted"]).reindex(index=labels, columns=labels, fill_value=0)


def flagged_mask(issues: pd.DataFrame) -> np.ndarray:
    if "is_issue" in issues:
        return issues["is_issue"].astype(str).str.lower().isin(["true", "1"]).to_numpy()
    return (issues["given"] != issues["predicted"]).to_numpy()


_NOT_FLAGGED = {"none": "ok (not flagged)", "ok": "ok (not flagged)"}


def _counts(values: pd.Series) -> pd.DataFrame:
    named = values.astype(str).replace(_NOT_FLAGGED)
    return named.value_counts().rename_axis("decision").reset_index(name="count")


def decision_counts(path: Path, issues: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Counts by decision from a 'decision'/'action' column: in issues.csv, else in another CSV of
    the run (the clean job's labels.csv), else flagged against not flagged. Returns (counts, origin)."""
    for col in ("decision", "action"):
        if col in issues:
            return _counts(issues[col]), ISSUES
    for csv in sorted(path.glob("*.csv")):
        if csv.name in (ISSUES, "history.csv"):
            continue
        try:
            head = pd.read_csv(csv, nrows=0)
            col = next((c for c in ("decision", "action") if c in head), None)
            if col:
                return _counts(pd.read_csv(csv, usecols=[col])[col]), csv.name
        except (OSError, ValueError):
            continue
    flagged = flagged_mask(issues)
    counts = pd.DataFrame({"decision": ["flagged as suspect", "not flagged"],
                           "count": [int(flagged.sum()), int((~flagged).sum())]})
    return counts, f"{ISSUES} (no decision column found)"
