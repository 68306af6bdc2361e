"""The sweep job: a grid of self-training runs (labeled size x threshold x seed x mode), resumable.

Every cell of the grid is an ordinary selftrain run directory under ``OUT/cells/<name>/``, so any
cell can be inspected, reported or resumed on its own. Re-running the same sweep continues it:
finished cells (``status.json`` says ``finished``) are skipped and never touched, a cell that was
killed or failed is resumed from its last checkpoint, and missing cells are started. Cells run in
parallel through joblib; each worker then uses one torch thread so workers do not fight for cores.

Layout of ``OUT``::

    config.json    job "sweep" and the settings every cell shares (data, max_iter, recipe)
    status.json    running | finished | failed, with counts
    sweep.json     the grid: axes and one entry per cell (name, labeled, threshold, seed, mode)
    cells/<name>/  one selftrain run directory per cell
    logs/<name>.log  what each cell printed (epochs, rounds)
    table.csv, table.md, rounds.csv, plots/*.png, report.html   written by pseudolabel.report

Threshold axis syntax: ``,`` separates the values of the axis, ``>`` separates the rounds of one
schedule: ``0.9,0.95,0.99>0.95`` is three cells per labeled size and seed, the last one using 0.99
in round 1 and 0.95 from round 2 on (a schedule's last value repeats).
"""
from __future__ import annotations

import contextlib
import json
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from joblib import Parallel, delayed

from pseudolabel.callbacks import say as _say
from pseudolabel.datasets import load_dataset
from pseudolabel.exceptions import InputError, PseudolabelError, RunDirectoryError
from pseudolabel.jobs.config import SelfTrainConfig
from pseudolabel.jobs.recipes import RECIPES
from pseudolabel.jobs.selftrain import hold_out, run_selftrain
from pseudolabel.report import write_report
from pseudolabel.parentwatch import exit_with_parent
from pseudolabel.runs import CELLS, CONFIG, SWEEP_FILE, RunDirectory, jsonable, now_iso
from pseudolabel.selection import check_schedule
from pseudolabel.tables import mode_of, threshold_label

LOGS = "logs"
AXES = ("labeled", "threshold", "seed", "mode")
# Keys a cell may hold with other values than the sweep asks for: where it runs, its own ids and
# paths. Every other setting a cell must share with its sweep; resuming with other values would
# mix two experiments in one table.
_CELL_FREE = ("device", "run_id", "start", "store", "recipe", "sweep_cell", "sweep_reference")


# Set per cell (by its axes and mode), so not among the settings the cells share.
_PER_CELL = ("labeled", "threshold", "seed", "relabel", "class_quota", "run_id", "start")
# Job settings a sweep records only when set.
_UNSET_IF_NONE = ("store", "final_epochs", "final_arch")


# ------------------------------------------------------------------------------------- the axes

def parse_threshold_axis(text: str) -> list:
    """Parse a threshold axis: ``,`` between cells, ``>`` between the rounds of one schedule.

    Returns one entry per cell: a float, or a list of floats (one per round, the last repeats).

    Examples
    --------
    >>> parse_threshold_axis("0.9,0.99>0.95")
    [0.9, [0.99, 0.95]]
    """
    values = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            steps = [float(s) for s in part.split(">")]
        except ValueError:
            raise InputError(
                f"threshold {part!r} is not a number or a schedule like 0.99>0.95; "
                "give values in [0, 1) separated by commas, e.g. 0.9,0.95,0.99>0.95."
            ) from None
        value = steps[0] if len(steps) == 1 else steps
        try:
            check_schedule(value)
        except PseudolabelError:
            bad = next(s for s in steps if not 0.0 <= s < 1.0)
            where = f" in the schedule {part!r}" if len(steps) > 1 else ""
            raise InputError(
                f"threshold {bad!r}{where} is outside [0, 1); give confidences such as 0.9,0.95,0.99."
            ) from None
        values.append(value)
    if not values:
        raise InputError(f"the threshold axis {text!r} is empty; give at least one value, e.g. 0.95 or 0.9,0.99.")
    return values


def parse_int_axis(text: str, name: str, minimum: int = 1) -> list[int]:
    """Parse ``"100,1000"`` into ``[100, 1000]`` (duplicates dropped, order kept).

    Examples
    --------
    >>> parse_int_axis("100, 1000,100", "labeled")
    [100, 1000]
    """
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            raise InputError(f"--{name} value {part!r} is not a whole number; give e.g. 100,1000.") from None
        if value < minimum:
            raise InputError(f"--{name} value {value} is below {minimum}; give numbers >= {minimum}.")
        if value not in out:
            out.append(value)
    if not out:
        raise InputError(f"--{name} {text!r} is empty; give at least one number, e.g. 100,1000.")
    return out


def parse_mode(text: str) -> dict:
    """A selection mode: ``keep`` (a pseudo-label once taken is kept, as the case study),
    ``relabel`` (every round relabels the whole pool), either with ``+quota=N`` (at most N new
    labels per class and round).

    Examples
    --------
    >>> parse_mode("relabel+quota=50")
    {'relabel': True, 'class_quota': 50}
    """
    parts = [p.strip() for p in str(text).split("+")]
    base, extras = parts[0], parts[1:]
    if base not in ("keep", "relabel"):
        raise InputError(
            f"mode {text!r} is unknown; give keep or relabel, optionally with +quota=N (e.g. relabel+quota=50)."
        )
    out = {"relabel": base == "relabel", "class_quota": None}
    for extra in extras:
        key, _, value = extra.partition("=")
        if key != "quota" or not value.isdigit() or int(value) < 1:
            raise InputError(f"mode part {extra!r} in {text!r} is unknown; the only option is +quota=N with N >= 1.")
        out["class_quota"] = int(value)
    return out


def parse_modes(text: str) -> list[str]:
    """Parse ``"keep,relabel"``, checking each mode (see :func:`parse_mode`)."""
    modes = []
    for part in str(text).split(","):
        part = part.strip()
        if part:
            parse_mode(part)
            if part not in modes:
                modes.append(part)
    if not modes:
        raise InputError(f"--modes {text!r} is empty; give keep, relabel or both (keep,relabel).")
    return modes


# ------------------------------------------------------------------------------------- the grid

@dataclass(frozen=True)
class SweepCell:
    """One run of the grid. ``reference`` cells train on every label (max_iter 0): the table's
    all-labels row."""

    name: str
    labeled: int | None
    threshold: float | tuple
    seed: int
    mode: str
    reference: bool = False

    def config(self, settings: dict, n_all: int) -> dict:
        cfg = {**settings, "seed": self.seed, "sweep_cell": self.name, "sweep_reference": self.reference}
        cfg.update(parse_mode(self.mode))
        if self.reference:
            cfg.update(labeled=n_all, max_iter=0, threshold=0.99)
        else:
            cfg.update(labeled=self.labeled,
                       threshold=list(self.threshold) if isinstance(self.threshold, tuple) else self.threshold)
        return cfg


def _cell_name(labeled, threshold, seed: int, mode: str) -> str:
    # '>' and '=' are legal on Linux but awkward in shells and illegal on Windows.
    t = threshold_label(threshold).replace(">", "-")
    return f"n{labeled}_t{t}_{mode.replace('+', '-').replace('=', '')}_s{seed}"


def sweep_grid(labeled: Sequence[int], thresholds: Sequence, seeds: Sequence[int], modes: Sequence[str],
               *, reference: bool = True) -> list[SweepCell]:
    """Every cell of labeled x threshold x mode x seed, then one all-labels reference per seed.

    Examples
    --------
    >>> [c.name for c in sweep_grid([100], [0.9, [0.99, 0.95]], [0], ["relabel"])]
    ['n100_t0.9_relabel_s0', 'n100_t0.99-0.95_relabel_s0', 'all_s0']
    """
    if not (labeled and thresholds and seeds and modes):
        empty = [n for n, v in zip(("labeled", "threshold", "seeds", "modes"), (labeled, thresholds, seeds, modes))
                 if not v]
        raise InputError(f"the sweep grid is empty (no {', '.join(empty)}); give at least one value on every axis.")
    cells = []
    for n in labeled:
        for mode in modes:
            for t in thresholds:
                t = tuple(float(v) for v in t) if isinstance(t, (list, tuple)) else float(t)
                for s in seeds:
                    cells.append(SweepCell(_cell_name(n, t, s, mode), int(n), t, int(s), mode))
    if reference:
        cells += [SweepCell(f"all_s{s}", None, 0.99, int(s), modes[0], reference=True) for s in seeds]
    return cells


def _cell_from_json(d: dict) -> SweepCell:
    t = d["threshold"]
    return SweepCell(d["name"], d["labeled"], tuple(t) if isinstance(t, list) else t, d["seed"], d["mode"],
                     d.get("reference", False))


def read_sweep(path: str | Path) -> tuple[dict, list[SweepCell]]:
    """The settings and cells of the sweep in ``path`` (its config.json and sweep.json)."""
    path = Path(path)
    try:
        grid = json.loads((path / SWEEP_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise RunDirectoryError(f"cannot read {path / SWEEP_FILE}: {exc}; is {path} a sweep directory?") from exc
    return RunDirectory(path).config, [_cell_from_json(c) for c in grid.get("cells", [])]


# ------------------------------------------------------------------------------------ running

@dataclass
class CellOutcome:
    name: str
    state: str  # finished | skipped | failed
    test_accuracy: float | None = None
    seconds: float = 0.0
    message: str = ""


@dataclass
class SweepResult:
    run: RunDirectory
    cells: list
    outcomes: list
    report: Path | None


def cell_state(path: Path) -> str:
    """``new`` (no run yet), ``finished``, or the saved state of an unfinished run (running = killed)."""
    if not (path / CONFIG).is_file():
        return "new"
    return RunDirectory(path).status.get("state", "running")


def _check_cell_matches(path: Path, wanted: dict) -> None:
    saved = RunDirectory(path).config
    for key in sorted((set(wanted) & set(saved)) - set(_CELL_FREE)):
        if jsonable(saved[key]) != jsonable(wanted[key]):
            raise RunDirectoryError(
                f"cell {path} was run with {key}={saved[key]!r}, but this sweep asks for {wanted[key]!r}; "
                "delete that cell directory or choose a new --out."
            )


def _run_cell(cfg: dict, path: Path, resume: bool, dataset, log: Path, threads: int | None) -> CellOutcome:
    """Run or resume one cell with its output in ``log``; a failure becomes an outcome, not a crash."""
    if threads:  # a worker process: one torch thread, and it ends when the sweep is killed
        import torch  # torch is optional: only to keep parallel workers at one thread each

        torch.set_num_threads(threads)
        exit_with_parent()
    name = path.name
    t0 = time.perf_counter()
    with open(log, "a", encoding="utf-8") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        where = f" in a worker with {threads} torch thread(s)" if threads else ""
        print(f"--- {now_iso()} {'resuming' if resume else 'starting'} {name}{where}", flush=True)
        try:
            with warnings.catch_warnings():
                # The all-labels reference has no unlabeled samples on purpose.
                warnings.filterwarnings("ignore", message="y contains no unlabeled samples")
                result = run_selftrain(cfg, path, resume=resume, say=lambda m: print(m, flush=True),
                                       dataset=dataset)
        except Exception as exc:  # one broken cell must not stop the others
            message = " ".join(str(exc).split()) or type(exc).__name__
            print(f"failed: {type(exc).__name__}: {message}", flush=True)
            if (path / CONFIG).is_file():
                RunDirectory(path).set_status("failed", error=message)
            return CellOutcome(name, "failed", None, time.perf_counter() - t0, message)
    return CellOutcome(name, "finished", result.test_accuracy, time.perf_counter() - t0)


def _open_sweep(out: Path, settings: dict, resume: bool) -> RunDirectory:
    if not resume:
        return RunDirectory.create(out, job="sweep", config=settings)
    saved = RunDirectory(out).config
    if saved.get("job") == "sweep":  # another job's directory: RunDirectory.create says which
        saved = {k: v for k, v in saved.items() if k not in ("job", "created_at")}
        wanted = jsonable(settings)
        # The device is where a sweep runs, not what it measures: it may change between sessions.
        for key in sorted((set(saved) & set(wanted)) - {"device"}):
            if saved.get(key) != wanted.get(key):
                raise RunDirectoryError(
                    f"{out} holds a sweep with {key}={saved.get(key)!r}, not {wanted.get(key)!r}; "
                    "pass the same settings to continue it, or choose a new --out."
                )
    return RunDirectory.create(out, job="sweep", config=settings, resume=True)


def _cells_on_ray(cluster, todo: list, ds, out: Path):
    """The cells ``todo`` as Ray tasks (one CPU and one torch thread each), outcomes as they finish.
    Every node must see ``out`` at the same path (a shared file system): cells write there."""
    from pseudolabel.cluster import Cluster  # Ray: only for --cluster

    with contextlib.ExitStack() as stack:
        if not isinstance(cluster, Cluster):
            cluster = stack.enter_context(Cluster(cluster))
        yield from cluster.map_tasks(_run_cell, [(cfg, path, resume_cell, ds, out / LOGS / f"{path.name}.log", 1)
                                                 for cfg, path, resume_cell in todo],
                                     ordered=False, what="sweep cell")


def run_sweep(config: dict, out: str | Path, *, n_jobs: int = 1, say: Callable[[str], None] = _say,
              dataset=None, report: bool = True, cluster=None) -> SweepResult:
    """Run (or continue) the grid of self-training runs that ``config`` describes, in ``out``.

    Parameters
    ----------
    config : dict
        The axes ``labeled`` (list of int), ``threshold`` (list of floats or per-round lists),
        ``seeds`` (list of int), ``modes`` (list of mode strings, see :func:`parse_mode`; default
        the recipe's), ``reference`` (bool, default True: one all-labels run per seed), and the
        settings every cell shares: ``data`` and the recipe keys of
        :data:`pseudolabel.jobs.selftrain.DEFAULTS` (``max_iter``, ``epochs``, ...).
    out : path
        The sweep directory. If it holds this sweep already, the sweep continues: finished cells
        are skipped, unfinished ones resumed; the grid may grow (new axis values), the shared
        settings may not change.
    n_jobs : int, default=1
        Cells run at once (joblib; -1 = one per core). Each parallel worker uses one torch thread.
    dataset : pseudolabel.datasets.Dataset, optional
        Already loaded data (else ``config["data"]`` is loaded once here).
    report : bool, default=True
        Write the table, plots and report.html into ``out`` at the end.
    cluster : str or pseudolabel.cluster.Cluster, optional
        Run the cells as Ray tasks instead of ``n_jobs`` workers: ``local``, ``auto``,
        ``ray://HOST:PORT`` (every node must see ``out`` at the same path), or a started Cluster.

    Returns
    -------
    SweepResult
        The sweep's run directory, its cells, one outcome per cell and the report's path.

    Raises
    ------
    InputError
        On an empty grid or bad values, before anything is written.
    PseudolabelError
        After the report is written, when some cells failed (run the same sweep again to retry them).

    Examples
    --------
    >>> run_sweep({"data": "digits", "labeled": [60], "threshold": [0.9, 0.99], "seeds": [0],
    ...            "max_iter": 1, "epochs": 1}, "runs/sweep")  # doctest: +SKIP
    """
    out = Path(out)
    config = dict(config)
    labeled = [int(v) for v in config.pop("labeled", None) or []]
    thresholds = list(config.pop("threshold", None) or [])
    seeds = [int(v) for v in config.pop("seeds", None) or []]
    modes = config.pop("modes", None)
    reference = bool(config.pop("reference", True))
    given = {k: v for k, v in config.items() if v is not None}
    # The settings every cell shares: the recipe with the options, checked once (the threshold
    # is each cell's, checked below).
    settings = {k: v for k, v in SelfTrainConfig.build({**given, "threshold": 0.99}).to_dict().items()
                if k not in _PER_CELL and not (k in _UNSET_IF_NONE and v is None)}
    if (out / CONFIG).is_file():  # continuing: what the saved sweep settled and this call leaves open wins
        saved = RunDirectory(out).config
        if saved.get("job") == "sweep":
            settings.update({k: v for k, v in saved.items() if k not in given and k in settings})
    modes = list(modes or [mode_of({**RECIPES[settings.get("recipe", "default")], **given})])
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
        raise InputError(f"--jobs must be a positive number or -1 (one per core), got {n_jobs!r}.")
    for m in modes:
        parse_mode(m)
    for t in thresholds:
        try:
            check_schedule(t)
        except PseudolabelError:
            raise InputError(f"threshold {t!r} is outside [0, 1); give confidences such as 0.9,0.95,0.99.") from None
    cells = sweep_grid(labeled, thresholds, seeds, modes, reference=reference)

    if "data" not in settings:
        if dataset is None:
            raise InputError("the sweep config has no 'data'; pass data='mnist', 'digits' or a path.")
        settings["data"] = dataset.name
    ds = dataset if dataset is not None else load_dataset(settings["data"], image_size=settings.get("image_size"),
                                                          skip_bad=bool(settings.get("skip_bad_images")),
                                                          label_column=settings.get("label_column"),
                                                          text_column=settings.get("text_column"))
    n_classes = len(set(int(v) for v in ds.y if v != -1))
    n_given = int((ds.y != -1).sum())
    if settings.get("label_column") is not None:  # a table: each cell holds out the same number of labels
        n_given = int((hold_out(ds, settings.get("holdout", 0.2), 0, say=lambda _: None).y != -1).sum())
    for n in labeled:
        if n < n_classes:
            raise InputError(f"--labeled {n} is fewer than the {n_classes} classes; keep at least one label per class.")
        if n >= n_given:
            raise InputError(
                f"--labeled {n} is not fewer than the {n_given} labeled samples of {ds.name or settings['data']}; "
                "pick smaller sizes (the all-labels reference row is run anyway)."
            )

    if settings.get("label_column") is not None and settings.get("text_column") is None \
            and settings.get("model_name") is None:
        # One model for every cell of a table's grid, settled by its largest labeled size.
        from pseudolabel.models.registry import default_model  # torch is loaded lazily

        missing = ds.X.dtype.kind == "f" and bool(np.isnan(ds.X).any())
        settings["model_name"] = default_model("table", n_labels=max(labeled), missing=missing)
        say(f"model: {settings['model_name']}, the default for a table with up to {max(labeled)} labels per cell "
            "(--model to choose another)")

    # Everything is checked: from here on files are written.
    resume = (out / CONFIG).is_file()
    sweep = _open_sweep(out, settings, resume)
    if resume:
        _, old = read_sweep(out) if (out / SWEEP_FILE).is_file() else ({}, [])
        names = {c.name for c in cells}
        cells = [c for c in old if c.name not in names] + cells
    (out / CELLS).mkdir(exist_ok=True)
    (out / LOGS).mkdir(exist_ok=True)
    grid = [c for c in cells if not c.reference]

    def axis(name):  # the values of one axis over every cell, first-seen order
        return list(dict.fromkeys(getattr(c, name) for c in grid))

    sweep.write_json(SWEEP_FILE, {
        "axes": {"labeled": axis("labeled"), "threshold": axis("threshold"), "seed": axis("seed"),
                 "mode": axis("mode"), "reference": any(c.reference for c in cells)},
        "cells": [{**asdict(c), "path": f"{CELLS}/{c.name}"} for c in cells],
    })

    outcomes, todo = [], []
    for c in cells:
        path = out / CELLS / c.name
        cfg = c.config(settings, n_given)
        state = cell_state(path)
        if state == "finished":
            outcomes.append(CellOutcome(c.name, "skipped"))
            continue
        if state != "new":
            _check_cell_matches(path, cfg)
        todo.append((cfg, path, state != "new"))
    done = len(outcomes)
    say(f"sweep {out}: {len(cells)} cells, {done} finished already, {len(todo)} to run"
        + (f" ({n_jobs} at a time)" if n_jobs != 1 and todo else ""))
    sweep.set_status("running", cells=len(cells), finished=done)

    threads = 1 if n_jobs != 1 else None
    # Sequential runs share the loaded data; loky workers get its arrays memory-mapped by joblib.
    tasks = (delayed(_run_cell)(cfg, path, resume_cell, ds, out / LOGS / f"{path.name}.log", threads)
             for cfg, path, resume_cell in todo)
    if todo:
        results = (_cells_on_ray(cluster, todo, ds, out) if cluster is not None
                   else Parallel(n_jobs=n_jobs, return_as="generator_unordered")(tasks))
        for i, outcome in enumerate(results, 1):
            outcomes.append(outcome)
            what = (f"test accuracy {outcome.test_accuracy:.4f}" if outcome.test_accuracy is not None
                    else outcome.message if outcome.state == "failed" else "done")
            say(f"[{done + i}/{len(cells)}] {outcome.name}: {outcome.state}, {what} ({outcome.seconds:.0f} s)")

    failed = [o for o in outcomes if o.state == "failed"]
    report_path = None
    if report:
        try:
            report_path = write_report([out], out=out)
            say(f"report: {report_path}")
        except PseudolabelError as exc:  # e.g. every cell failed: the cells' error matters more
            say(f"no report: {exc}")
    if failed:
        sweep.set_status("failed", cells=len(cells), finished=len(cells) - len(failed),
                         failed=[o.name for o in failed])
        first = failed[0]
        raise PseudolabelError(
            f"{len(failed)} of {len(cells)} cells failed (first: {first.name}: {first.message}); "
            f"see {out / LOGS}/<cell>.log, fix the cause and run the same sweep again to retry them."
        )
    sweep.set_status("finished", cells=len(cells), finished=len(cells))
    return SweepResult(sweep, cells, outcomes, report_path)
