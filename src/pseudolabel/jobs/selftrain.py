"""The selftrain job: data -> SelfTraining -> a run directory (config, history, labels, model).

Resumable: after every round the SelfTraining state is checkpointed; ``resume=True`` reloads it,
drops history records after it, and continues with the same seed to the same result.
"""
from __future__ import annotations

import dataclasses
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from sklearn.utils import _safe_indexing

from pseudolabel.datasets import Dataset, load_dataset
from pseudolabel.exceptions import InputError, StoreError
from pseudolabel.runs import RunDirectory
from pseudolabel.selection import check_schedule

STORE_FILE = "labels.db"

# The default recipe: a strided batch-norm CNN (arch "auto": the pooled one for images under 16x16)
# with batch augmentation whose predictions come from an exponential moving average of its weights,
# warm-started from round to round (two epochs, at least 600 optimizer steps each), every round relabels the whole pool so early mistakes are not
# frozen in, and the given labels stay half of the training rows so easy pseudo-labels do not drown
# them. Chosen on a development split of the training set (bench/explore_recipes.py; the choices and
# what they bought are in docs/benchmarks.md), never on test labels.
DEFAULTS = dict(
    threshold=0.99, max_iter=4, arch="auto", epochs=2, min_steps=600, batch_size=128, lr=3e-3,
    augment="affine", ema=0.999, warm_start=True, relabel=True, class_quota=None, given_share=0.5,
    device="auto",
)
# With every label given there is nothing to pseudo-label: the frontier recipe's student network
# (below), trained on all labels for 20 epochs (bench/bench_frontier.py's all-labels row). On the
# development split (bench/explore_recipes.py --labeled 50000, test set unread) 20 epochs scored
# 99.41 % against 12 epochs' 99.32 %; 20 epochs take about 10 minutes on 2 cores.
FULL_LABELS = dict(max_iter=0, arch="fast", epochs=20)
# The case study's protocol: its CNN, Adam 1e-3, batch 64, 10 epochs from scratch each round.
SEED_PROTOCOL = dict(
    threshold=0.99, max_iter=10, arch="seed", epochs=10, min_steps=0, batch_size=64, lr=1e-3,
    augment=None, warm_start=False, relabel=False, class_quota=None, optimizer="adam", weight_decay=0.0,
    channels_last=False, given_share=None, ema=None, device="auto",
)

# The default recipe's rounds, then a student: the pooled network ("fast", more accurate than the
# strided one and twice as slow) trained from scratch for 6 epochs on the last round's labels. The
# idea: with 1000 labels the rounds' pseudo-labels were 99.8 % right while the strided model scored
# about 98 % on the development split. Measured (bench/bench_frontier.py, docs/benchmarks.md): the
# student moved MNIST test accuracy by +0.18, -0.02 and -0.05 points over 3 seeds at 1000 labels
# for 300-420 s more, so the default recipe stays the recommended one; this is kept to build on.
FRONTIER = {**DEFAULTS, "final_epochs": 6, "final_arch": "fast"}
# Recipes by name (`pseudolabel selftrain --recipe NAME`).
RECIPES = {"default": DEFAULTS, "seed": SEED_PROTOCOL, "frontier": FRONTIER}


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class EpochProgress:
    """Prints one progress line per epoch (a class, not a lambda, so checkpoints can pickle it)."""

    def __init__(self, prefix: str = ""):
        self.prefix = prefix
        self.round = 0

    def __call__(self, est, rec: dict) -> None:
        used = f" unlabeled used {rec['unlabeled_used']:.3f}" if "unlabeled_used" in rec else ""
        _say(
            f"{self.prefix}round {self.round} epoch {rec['epoch']}/{rec['epochs']} loss {rec['loss']:.4f} "
            f"train acc {rec['train_accuracy']:.4f}{used} {rec['samples_per_s']:.0f} samples/s"
        )


def hide_labels(y: np.ndarray, n_labeled: int, seed: int) -> np.ndarray:
    """Keep ``n_labeled`` labels, stratified by class and at least one per class, hide the rest (-1)."""
    classes, counts = np.unique(y, return_counts=True)
    if n_labeled < len(classes):
        raise InputError(
            f"--labeled {n_labeled} is fewer than the {len(classes)} classes; keep at least one label per class."
        )
    if n_labeled >= len(y):
        return y.copy()
    rng = np.random.default_rng(seed)
    # Largest-remainder allocation proportional to class sizes, one per class at least.
    share = counts / counts.sum() * n_labeled
    quota = np.maximum(np.floor(share).astype(int), 1)
    order = np.argsort(-(share - np.floor(share)))
    i = 0
    while quota.sum() < n_labeled:
        quota[order[i % len(order)]] += 1
        i += 1
    while quota.sum() > n_labeled:
        quota[np.argmax(quota)] -= 1
    keep = np.concatenate([rng.choice(np.flatnonzero(y == c), q, replace=False) for c, q in zip(classes, quota)])
    out = np.full_like(y, -1)
    out[keep] = y[keep]
    return out


def build_selftraining(config: dict, progress: EpochProgress | None = None):
    from pseudolabel.models import ConvNetClassifier
    from pseudolabel.selftrain import SelfTraining

    clf_keys = ("arch", "epochs", "min_steps", "batch_size", "lr", "augment", "warm_start", "device",
                "optimizer", "weight_decay", "channels_last", "ema", "semi", "unlabeled_ratio", "semi_threshold",
                "semi_weight")
    kw = {k: config[k] for k in clf_keys if k in config}
    clf = ConvNetClassifier(random_state=config["seed"], callbacks=[progress] if progress else None, **kw)
    final = None
    if config.get("final_epochs"):  # a student trained from scratch on the last round's labels
        final = ConvNetClassifier(
            random_state=config["seed"] + 1, callbacks=[progress] if progress else None,
            **{**kw, "arch": config.get("final_arch") or kw.get("arch", "auto"), "epochs": config["final_epochs"],
               "min_steps": 0, "warm_start": False})
    return SelfTraining(
        clf, threshold=config["threshold"], max_iter=config["max_iter"], relabel=config["relabel"],
        class_quota=config.get("class_quota"), given_share=config.get("given_share"), final_estimator=final,
    )


@dataclass
class SelfTrainResult:
    run: RunDirectory
    history: list
    test_accuracy: float | None
    termination: str
    seconds: float
    store: Path | None = None
    run_id: str | None = None


def _check_config(config: dict) -> None:
    check_schedule(config["threshold"])
    if config["max_iter"] is not None and config["max_iter"] < 0:
        raise InputError(f"--max-iter must be >= 0, got {config['max_iter']}.")


def _partial_labels(ds: Dataset, config: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels the loop starts from, and the hidden true labels when this is an experiment."""
    y = ds.y
    n_labeled = config.get("labeled")
    if (y == -1).any():  # the data has its own unlabeled part: use its labels as given
        if n_labeled is not None and n_labeled < int((y != -1).sum()):
            idx = np.flatnonzero(y != -1)
            sub = hide_labels(y[idx], n_labeled, config["seed"])
            y = y.copy()
            y[idx] = sub
        return y, None
    if n_labeled is None:
        raise InputError("every sample has a label; pass --labeled N to keep N of them and hide the rest.")
    return hide_labels(y, n_labeled, config["seed"]), y


def _subset(ds: Dataset, rows: np.ndarray) -> Dataset:
    """The data set restricted to ``rows`` (items a person rejected are left out of a redone run)."""
    if len(rows) == len(ds):
        return ds
    return dataclasses.replace(
        ds, X=_safe_indexing(ds.X, rows), y=ds.y[rows], items=[ds.items[i] for i in rows],
        locations=None if ds.locations is None else [ds.locations[i] for i in rows])


def _rows_of(ds: Dataset, keys) -> np.ndarray:
    index = {k: i for i, k in enumerate(ds.items)}
    missing = [k for k in keys if k not in index]
    if missing:
        raise InputError(f"the run started from item {missing[0]!r}, which data {ds.name or 'set'} lacks; "
                         "resume with the data set the run was started with.")
    return np.array([index[k] for k in keys], dtype=np.int64)


def _start(ds: Dataset, config: dict, store, run: RunDirectory | None, say) -> tuple:
    """The rows to train on, their starting labels, the hidden true labels (experiments) and the
    source of each starting label (None: all given)."""
    from pseudolabel.jobs import outputs

    saved = outputs.read_start_labels(run) if run is not None else None
    if saved is not None:  # a resumed redo starts from the labels it first started from
        rows = _rows_of(ds, saved["key"].tolist())
        y, source = saved["label"].to_numpy(np.int64), saved["source"].to_numpy(object)
    elif run is None and store is not None and outputs.check_store_matches(store, ds):
        rows, y, source = outputs.labels_from_store(store, ds)
        if config.get("labeled") is not None:
            say(f"--labeled {config['labeled']} is ignored: the run starts from the labels in {store.path}")
        n_human = int(np.sum(source == "human"))
        say(f"starting from {store.path}: {int((y >= 0).sum())} labels ({n_human} by a person), "
            "pseudo and corrected labels ignored")
    else:
        y, y_true = _partial_labels(ds, config)
        return np.arange(len(ds)), y, y_true, None
    truth = ds.y[rows]
    return rows, y, (truth if (truth >= 0).all() else None), source


def run_selftrain(config: dict, out: str | Path, *, resume: bool = False,
                  say: Callable[[str], None] = _say, dataset: Dataset | None = None) -> SelfTrainResult:
    """Run (or resume) self-training as ``config`` says, writing everything into ``out``.

    ``config`` holds ``data`` (mnist | digits | PATH), ``labeled``, ``seed``, the recipe keys of
    :data:`DEFAULTS` and optionally ``store``: a label store to record into instead of
    ``out/labels.db``. A store that already holds the data set's items is where the run starts
    from: its current given and human labels, everything else unlabeled (redo a run after a
    person labeled more: ``pseudolabel store discard DB --source pseudo``, then this).
    Every run records its classes, items, given labels, each round's pseudo labels and the final
    model's predictions of the unlabeled pool into the store, and ``labels.csv`` into ``out``.
    Returns the run, its history and the final test accuracy (None without a test split).

    Examples
    --------
    >>> run_selftrain({"data": "digits", "labeled": 100, "max_iter": 2}, "runs/st")   # doctest: +SKIP
    """
    from pseudolabel.jobs import outputs

    config = {**DEFAULTS, **config}
    _check_config(config)
    ds = dataset if dataset is not None else load_dataset(config["data"])
    if ds.X.dtype == object:  # image files: decode once, before a run directory exists, so a
        # corrupt image stops the run with nothing written and no round decodes the folder again
        from pseudolabel.datasets import read_images

        ds = dataclasses.replace(ds, X=read_images(list(ds.X)))
    store = None
    try:
        if resume:
            run = RunDirectory.create(out, job="selftrain", config=config, resume=resume)
            config = {**config, **run.config}
            config.setdefault("run_id", f"selftrain-{run.path.name}-{config.get('created_at', '')}")
            store = outputs.open_store(config.get("store") or run.path / STORE_FILE)
            rows, y_partial, y_true, given_source = _start(ds, config, store, run, say)
        else:
            if config.get("store"):
                config["store"] = str(Path(config["store"]).expanduser().resolve())
                # Opened before the run directory exists: a corrupt or too new store stops here.
                store = outputs.open_store(config["store"])
            rows, y_partial, y_true, given_source = _start(ds, config, store, None, say)
            config["run_id"] = config.get("run_id") or outputs.new_run_id("selftrain")
            config["start"] = "data" if given_source is None else "store"
            run = RunDirectory.create(out, job="selftrain", config=config, resume=resume)
            if given_source is not None:
                outputs.write_start_labels(run, [ds.items[i] for i in rows], y_partial, given_source)
            store = store or outputs.open_store(run.path / STORE_FILE)
        ds = _subset(ds, rows)
        recorder = outputs.StoreRecorder(store, ds, config["run_id"], job="selftrain", config=config)
        if given_source is None:
            recorder.record_given(y_partial)
        return _fit_and_record(config, ds, run, recorder, y_partial, y_true, given_source, resume, say)
    except sqlite3.DatabaseError as exc:  # damage past the first page shows only when a query reaches it
        raise StoreError(f"{store.path if store is not None else config.get('store')} cannot be read as a label "
                         f"store ({exc}); restore it from a backup or pass a new --store.") from None
    finally:
        if store is not None:
            store.close()


def _fit_and_record(config, ds, run, recorder, y_partial, y_true, given_source, resume, say) -> SelfTrainResult:
    from pseudolabel.jobs.outputs import print_round_table, write_labels, write_model

    t_start = time.perf_counter()
    progress = EpochProgress()
    st = build_selftraining(config, progress)

    state = run.load_checkpoint() if resume else None
    if resume:
        finished = run.read_history()[: len(state["history_"])] if state else []
        run.rewrite_history(finished)  # rounds logged after the last checkpoint are redone
        if state:
            state["estimator_"].callbacks = [progress]
        progress.round = len(finished)
        say(f"resuming {run.path} after round {finished[-1]['round']}" if finished else f"restarting {run.path}")

    def on_round(est, record):
        record = {**record, "elapsed_s": time.perf_counter() - t_start}
        # Into the store before the checkpoint: a kill in between redoes the round, and the
        # recorder (diffing against the store) writes nothing twice.
        recorder.record_pseudo(est.transduction_, est.labeled_iter_, est.label_confidence_, record["round"])
        run.append_history(record)
        run.save_checkpoint(est.get_state())
        progress.round = record["round"] + 1
        for cb in getattr(est.estimator_, "callbacks", None) or ():
            if isinstance(cb, EpochProgress):  # fit cloned the estimator, and its callbacks with it
                cb.round = progress.round
        acc = record.get("test_accuracy")
        say(f"round {record['round']}: {record['n_labeled']} labeled (+{record['n_added']})"
            + (f", test accuracy {acc:.4f}" if acc is not None else ""))

    st.callback = on_round
    eval_set = (ds.X_test, ds.y_test) if ds.X_test is not None else None
    say(f"self-training on {ds.name}: {int((y_partial != -1).sum())} labeled, {int((y_partial == -1).sum())} unlabeled")
    try:
        st.fit(ds.X, y_partial, eval_set=eval_set, y_true=y_true, resume=state)
    except BaseException as exc:  # finished rounds stay; the status says why the rest did not run
        run.set_status("failed" if not isinstance(exc, KeyboardInterrupt) else "interrupted",
                       error=f"{type(exc).__name__}: {exc}"[:500])
        raise

    recorder.record_pseudo(st.transduction_, st.labeled_iter_, st.label_confidence_)
    pool = np.flatnonzero(st.transduction_ == -1)
    recorder.record_predictions(st.estimator_, ds.X, pool, st.n_iter_)
    history = run.read_history()
    run.write_history_csv(history)
    write_labels(run, ds, st, given_source)
    write_model(run, st.estimator_)
    test_acc = history[-1].get("test_accuracy") if history else None
    run.set_status("finished", termination=st.termination_condition_, test_accuracy=test_acc)
    print_round_table(history)
    store = recorder.store.path
    say(f"label store {store}: run {recorder.run_id}, {int((st.labeled_iter_ == 0).sum())} starting labels, "
        f"{int((st.labeled_iter_ > 0).sum())} pseudo labels, {len(pool)} predictions to review; "
        f"open it with: pseudolabel review {store}")
    return SelfTrainResult(run, history, test_acc, st.termination_condition_, time.perf_counter() - t_start,
                           store=store, run_id=recorder.run_id)
