"""The clean job: data -> out-of-fold probabilities -> ranked suspects -> fixed labels, in a run directory.

The out-of-fold pass is the slow part, so it runs fold by fold and checkpoints each fold's
probabilities (``fold-K.joblib``): a killed run continues with ``resume=True`` from the next fold.
With ``noise`` set it is a simulation: labels are corrupted on purpose (:func:`inject_noise`), and
the run measures how well it found them and what cleaning does to test accuracy.

Files written: ``config.json``, ``history.jsonl`` (one record per fold, then a summary record),
``issues.csv``, ``grid.png``, ``labels.csv``, ``labels.db`` (or ``store``), and for an image folder
``manifest.csv``. User files are only ever read.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from threadpoolctl import threadpool_limits

from pseudolabel.callbacks import EpochProgress, say as _say
from pseudolabel.datasets import Dataset, load_dataset
from pseudolabel.exceptions import InputError
from pseudolabel.imagegrid import suspect_grid
from pseudolabel.issues import ErrorEstimate, estimate_label_errors, fix_labels
from pseudolabel.jobs import outputs
# The passes and the data live in clean_passes.py and clean_data.py; their public names stay importable here.
from pseudolabel.jobs.clean_data import HOLDOUT, CleanData, digest, prepare_data  # noqa: F401
from pseudolabel.jobs.clean_passes import (AUTO_SECOND_PASS, build_estimator, combine_passes,  # noqa: F401
                                           fold_splits, later_pass_labels, n_passes, oof_by_fold, oof_passes,
                                           pass_config, workers)
from pseudolabel.jobs.config import (NOISE_KINDS, CleanConfig, check_data,  # noqa: F401  (NOISE_KINDS: public here)
                                     make_model, pick_table_model)
from pseudolabel.jobs.context import JobContext
from pseudolabel.jobs.recipes import CLEAN_DEFAULTS as DEFAULTS
from pseudolabel.parentwatch import exit_with_parent
from pseudolabel.runs import RunDirectory, atomic_write
from pseudolabel.store import queues

STORE_FILE = "labels.db"


def fit_and_score(config: dict, X, y, X_test, y_test, callbacks=None) -> float:
    """Train the run's model on (X, y), rows with y == -1 left out, and score it on the test set."""
    keep = np.asarray(y) >= 0
    config = {**config, "epochs": config.get("eval_epochs") or config["epochs"]}
    clf = build_estimator(config, callbacks).fit(X[keep], np.asarray(y)[keep])
    return float(np.mean(clf.predict(X_test) == y_test))


def _fit_and_score_in_worker(*args) -> float:
    exit_with_parent()  # a worker ends when the run is killed
    return fit_and_score(*args)


def check_config(config: Mapping) -> CleanConfig:
    """Fill the recipe's defaults and check every value; raises InputError naming the bad one."""
    return CleanConfig.coerce(config)


# ------------------------------------------------------------------------------- results

@dataclass
class CleanResult:
    run: RunDirectory
    issues: pd.DataFrame
    labels: pd.DataFrame
    summary: dict
    store: Path
    run_id: str
    files: dict
    seconds: float


def detection_scores(flagged: np.ndarray, noisy: np.ndarray) -> dict:
    """Precision, recall and F1 of flagged samples against the mask of injected noise."""
    tp = int(np.sum(flagged & noisy))
    precision = tp / int(flagged.sum()) if flagged.any() else 0.0
    recall = tp / int(noisy.sum()) if noisy.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _write_csv(path: Path, frame: pd.DataFrame) -> Path:
    buf = io.StringIO()
    frame.to_csv(buf, index=False, float_format="%.6f")
    atomic_write(path, buf.getvalue())
    return path


def _labels_frame(data: CleanData, proba, classes, new, record) -> pd.DataFrame:
    """One row per checked item: item, given, label (-1 = dropped), source, confidence, action, and
    the class names of the given label and the label (given_class, class_name)."""
    n = len(data.y)
    action = np.full(n, "none", dtype=object)
    action[record["item"].to_numpy()] = record["action"].to_numpy()
    col = np.searchsorted(classes, np.clip(new, classes[0], None))
    confidence = np.where(new >= 0, proba[np.arange(n), col], np.nan)
    return pd.DataFrame({
        "item": data.ds.items, "given": data.y, "label": new,
        "source": np.where(action == "relabel", "corrected", "given"),
        "confidence": confidence, "action": action,
        "given_class": class_names(data.ds, data.y), "class_name": class_names(data.ds, new),
    })


def class_names(ds: Dataset, labels) -> np.ndarray:
    """The class name of each label ("" for -1): what labels.csv and issues.csv show beside the codes."""
    labels = np.asarray(labels, dtype=np.int64)
    names = np.asarray(ds.classes, dtype=object)
    return np.where(labels >= 0, names[np.clip(labels, 0, len(names) - 1)], "")


def _manifest_frame(data: CleanData, issues: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """For an image folder: path (relative to the folder), given, suggested (class names), score,
    decision (relabel | drop | review | keep: flagged, not confident enough | ok: not flagged)."""
    names = np.asarray(data.ds.classes, dtype=object)
    rows = issues["item"].to_numpy()
    action = labels["action"].to_numpy()[rows]
    decision = np.where(action == "none", "ok", action)
    return pd.DataFrame({
        "path": [data.ds.items[i] for i in rows], "given": names[issues["given"].to_numpy()],
        "suggested": names[issues["predicted"].to_numpy()], "score": issues["score"].to_numpy(),
        "decision": decision,
    })


def _record_store(store, data: CleanData, config: dict, issues, labels, record) -> int:
    """Given labels, corrected events for relabeled items, suggestions for every flagged one.
    Written as differences against what the store holds for this run, so a resume adds nothing twice."""
    run_id = config["run_id"]
    recorder = outputs.StoreRecorder(store, data.ds, run_id, job="clean", config=config)
    recorder.record_given(data.y)
    ids = recorder.ids
    model_id = f"{run_id}/out-of-fold"
    fixed = labels.index[labels["source"] == "corrected"].to_numpy()
    if len(fixed):
        current = store.current_labels(items=ids[fixed]).set_index("item_id").loc[ids[fixed]]
        done = ((current["source"] == "corrected") & (current["run_id"] == run_id)
                & (current["label"].to_numpy() == labels["label"].to_numpy()[fixed])).to_numpy()
        todo = fixed[~done]
        if len(todo):
            reason = record.set_index("item").loc[todo, "reason"].tolist()
            # The confidence of a correction is the suggestion's (the ranking's p_max for the new
            # label), so the review page shows one number for one suggestion.
            by_item = issues.set_index("item")
            suggested = by_item.loc[todo, "predicted"].to_numpy() == labels["label"].to_numpy()[todo]
            confidence = np.where(suggested, by_item.loc[todo, "p_max"].to_numpy(),
                                  labels["confidence"].to_numpy()[todo])
            store.add_labels(ids[todo], labels["label"].to_numpy()[todo], "corrected",
                             confidence=np.clip(confidence, 0.0, 1.0),
                             run_id=run_id, model_id=model_id, note=reason)
    flagged = issues[issues["is_issue"]]
    if len(flagged) and queues.predictions(store, "suspect", run_id).empty:
        rows = flagged["item"].to_numpy()
        store.record_suggestions(ids[rows], flagged["given"].to_numpy(), flagged["predicted"].to_numpy(),
                                 flagged["score"].to_numpy(), run_id,
                                 confidence=np.clip(flagged["p_max"].to_numpy(), 0.0, 1.0), model_id=model_id)
    return len(fixed)


def _evaluate(run: RunDirectory, config: dict, data: CleanData, new: np.ndarray, say) -> dict:
    """Test accuracy of the run's model trained on noisy, cleaned and true labels (cached per label set)."""
    cache = run.load_checkpoint("eval.joblib") or {}
    wanted = {name: (y, digest(y)) for name, y in (("noisy", data.y), ("cleaned", new), ("true", data.y_true))}
    todo = {}
    for name, (y, key) in wanted.items():
        if key not in cache and key not in todo.values():
            todo[name] = key
    n_workers = workers(config, len(todo))
    for name in todo:
        say(f"training on the {name} labels ({int(np.sum(wanted[name][0] >= 0))} samples) for test accuracy")
    if n_workers > 1:
        accs = Parallel(n_jobs=n_workers, max_nbytes=None)(
            delayed(_fit_and_score_in_worker)(config, data.X, wanted[name][0], data.X_test, data.y_test)
            for name in todo)
    else:
        accs = (fit_and_score(config, data.X, wanted[name][0], data.X_test, data.y_test,
                              [EpochProgress(f"  {name} labels ", every=10.0, round=None, say=say)]) for name in todo)
    for (name, key), acc in zip(todo.items(), accs):
        cache[key] = acc
        run.save_checkpoint(cache, "eval.joblib")
    out = {name: cache[key] for name, (_, key) in wanted.items()}
    for name, acc in out.items():
        say(f"test accuracy after training on the {name} labels: {acc:.4f}")
    return out


def _check_store_classes(store, ds: Dataset) -> None:
    known = list(store.classes)
    if known and known != list(ds.classes):
        def short(v):
            return "[" + ", ".join(map(repr, v[:5])) + (", ...]" if len(v) > 5 else "]")

        raise InputError(f"{store.path} names the classes {short(known)} but data {ds.name!r} has "
                         f"{short(list(ds.classes))}; pass the store built from this data, or a new --store.")


def run_clean(config: Mapping, out: str | Path, *, resume: bool = False, say: Callable[[str], None] = _say,
              dataset: Dataset | None = None, cluster=None) -> CleanResult:
    """Run (or resume) label cleaning as ``config`` says, writing everything into ``out``.

    Parameters
    ----------
    config : CleanConfig or dict
        ``data`` (mnist, digits or a path) and any of :data:`DEFAULTS`' keys; ``store`` a label
        store path (default ``OUT/labels.db``).
    out : path
        The run directory: created (it must not hold a run), or reopened with ``resume=True``,
        where the saved config wins (options that differ are refused in one line, except
        ``device``, ``jobs``, ``threads`` and ``cluster``) and finished folds are loaded, not redone.
    say : callable
        Receives progress lines.
    dataset : Dataset, optional
        Data already loaded (tests, notebooks); ``config['data']`` is then only recorded.
    cluster : pseudolabel.cluster.Cluster, optional
        A started cluster to train the folds on, used and left running; else ``config['cluster']``
        (local, auto, ray://HOST:PORT) is joined for this run, or, when None, folds train here.

    Examples
    --------
    >>> res = run_clean({"data": "digits", "noise": 0.1, "folds": 3}, "runs/clean")  # doctest: +SKIP
    >>> res.summary["detection"]["f1"]  # doctest: +SKIP
    0.97
    """
    t_start = time.perf_counter()
    config = CleanConfig.resume(out, config, say) if resume else CleanConfig.coerce(config)
    ds = dataset if dataset is not None else load_dataset(config.data, image_size=config.image_size,
                                                          skip_bad=config.skip_bad_images,
                                                          label_column=config.label_column,
                                                          text_column=config.text_column)
    config = pick_table_model(config, ds.y, ds.X, say)
    check_data(config.model_name, config.data_kind, ds.X)  # before anything is written
    data = prepare_data(config, ds)
    splits = fold_splits(data.y, config.folds, config.seed, say)  # a class too small stops here
    # One thread per process by default: OpenMP threads that spin against any other load made a
    # digits run 4x slower on a busy 2-core machine; --jobs gives parallelism by processes.
    # (make_model loads torch's OpenMP runtime first, so the limit reaches it.)
    make_model(config.model, config.seed, name=config.model_name)
    limits = threadpool_limits(limits=config.threads)
    try:
        with contextlib.ExitStack() as stack, JobContext() as ctx:
            if cluster is None and config.cluster:  # joined before anything is written
                from pseudolabel.cluster import Cluster  # Ray: only for --cluster

                cluster = stack.enter_context(Cluster(config.cluster))
            store = None
            if config.store and not resume:
                config = config.replace(store=str(Path(config.store).expanduser().resolve()))
            if config.store:  # opened and checked before a new run directory exists
                store = ctx.open_store(config.store)
                _check_store_classes(store, data.ds)
            if not resume:
                config = config.replace(run_id=config.run_id or outputs.new_run_id("clean"))
            run = ctx.attach(RunDirectory.create(out, job="clean", config=config.to_dict(), resume=resume))
            store = store or ctx.open_store(run.path / STORE_FILE)
            return _clean(config, ds, data, splits, run, store, say, t_start, cluster)
    finally:
        limits.restore_original_limits()


def _clean(config: CleanConfig, ds: Dataset, data: CleanData, splits, run: RunDirectory, store, say,
           t_start: float, cluster=None) -> CleanResult:
    for note in data.notes:
        say(note)
    what = (f"{len(data.y)} labels, {int(data.noisy.sum())} of them corrupted on purpose "
            f"({config.noise_kind} noise {config.noise:g})" if data.noisy is not None else f"{len(data.y)} labels")
    say(f"cleaning {ds.name or config.data}: {what}; {config.folds} folds, method {config.method}")
    proba, classes, issues = oof_passes(run, config, data, splits, say, t_start, cluster)
    t_oof = time.perf_counter() - t_start

    estimate = estimate_label_errors(data.y, proba, classes=classes, random_state=config.seed)
    say(estimate.line())
    new, record = fix_labels(data.y, proba, threshold=config.threshold, policy=config.policy,
                             issues=issues, classes=classes, return_record=True)
    labels = _labels_frame(data, proba, classes, new, record)
    rows = issues["item"].to_numpy()
    table = issues.assign(key=[data.ds.items[i] for i in rows])
    if data.noisy is not None:
        table["is_noisy"] = data.noisy[rows]
    table["given_class"] = class_names(data.ds, table["given"].to_numpy())
    table["predicted_class"] = class_names(data.ds, table["predicted"].to_numpy())
    table = table[["item", "key"] + [c for c in table.columns if c not in ("item", "key")]]
    files = {"issues": _write_csv(run.path / "issues.csv", table),
             "labels": _write_csv(run.path / "labels.csv", labels)}
    if config.data_kind == "images":  # a table's rows and texts have no picture to draw
        files["grid"] = suspect_grid(data.images, issues, run.path / "grid.png", n=min(25, len(issues)),
                                     class_names=data.ds.classes)
    if ds.root is not None:
        files["manifest"] = _write_csv(run.path / "manifest.csv", _manifest_frame(data, issues, labels))
    n_fixed = _record_store(store, data, config, issues, labels, record)
    files["store"] = store.path

    flagged = np.zeros(len(data.y), dtype=bool)
    flagged[rows[issues["is_issue"].to_numpy()]] = True
    actions = labels["action"].value_counts().to_dict()
    summary = {
        "record": "summary", "n_samples": len(data.y), "n_flagged": int(flagged.sum()),
        "n_relabeled": n_fixed, "n_dropped": int(actions.get("drop", 0)),
        "n_review": int(actions.get("review", 0)), "n_kept": int(actions.get("keep", 0)),
        "oof_accuracy_given": float(np.mean(classes[proba.argmax(1)] == data.y)), "oof_seconds": t_oof,
        "estimated_wrong": dataclasses.asdict(estimate),
    }
    if data.noisy is not None:
        kept = new >= 0
        summary.update({
            "n_noisy": int(data.noisy.sum()), "detection": detection_scores(flagged, data.noisy),
            "oof_accuracy_true": float(np.mean(classes[proba.argmax(1)] == data.y_true)),
            "labels_correct_before": float(np.mean(data.y == data.y_true)),
            "labels_correct_after": float(np.mean(new[kept] == data.y_true[kept])) if kept.any() else 0.0,
        })
        summary["test_accuracy"] = _evaluate(run, config, data, new, say)
    summary["seconds"] = time.perf_counter() - t_start
    run.append_history(summary)
    run.write_history_csv([r for r in run.read_history() if r.get("record") == "fold"])
    run.set_status("finished", n_flagged=summary["n_flagged"])
    return CleanResult(run, table, labels, summary, store.path, config.run_id, files, summary["seconds"])


def report_lines(result: CleanResult) -> list[str]:
    """What the CLI prints: counts and files; in a simulation the last two lines are
    ``detection precision P recall R f1 F`` and ``test accuracy noisy A cleaned B true C``."""
    s, f = result.summary, result.files
    acted = {"relabel": f"{s['n_relabeled']} relabeled", "drop": f"{s['n_dropped']} dropped",
             "prune": f"{s['n_relabeled']} relabeled, {s['n_dropped']} dropped (unsure)",
             "review": f"{s['n_review']} to review"}[result.run.config.get("policy", "relabel")]
    est = s.get("estimated_wrong")
    lines = [f"checked {s['n_samples']} labels: {s['n_flagged']} flagged as likely wrong; {acted}"
             + (f", {s['n_kept']} kept (prediction below the threshold)" if s["n_kept"] else "")]
    if est:
        lines.append(ErrorEstimate(**est).line())
    lines.append(f"suspects: {f['issues']} (grid of up to 25 disagreements, most likely wrong first: "
                 f"{f['grid']})" if "grid" in f else f"suspects: {f['issues']} (most likely wrong first)")
    lines.append(f"labels: {f['labels']}; label store: {f['store']} (open it with: pseudolabel review {f['store']})")
    if "manifest" in f:
        lines.append(f"manifest of decisions: {f['manifest']} (no image was moved, renamed or deleted)")
    if "detection" in s:
        lines.append(f"labels correct: {s['labels_correct_before']:.4f} before, {s['labels_correct_after']:.4f} after")
        d, t = s["detection"], s["test_accuracy"]
        lines.append(f"detection precision {d['precision']:.4f} recall {d['recall']:.4f} f1 {d['f1']:.4f}")
        lines.append(f"test accuracy noisy {t['noisy']:.4f} cleaned {t['cleaned']:.4f} true {t['true']:.4f}")
    return lines
