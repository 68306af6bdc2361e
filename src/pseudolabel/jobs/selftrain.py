"""The selftrain job: data -> SelfTraining -> a run directory (config, history, labels, model).

Resumable: after every round the SelfTraining state is checkpointed; ``resume=True`` reloads it,
drops history records after it, and continues with the same seed to the same result.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
from sklearn.utils import _safe_indexing

from pseudolabel.callbacks import Callback, EpochProgress, say as _say
from pseudolabel.datasets import Dataset, load_dataset, read_images
from pseudolabel.exceptions import InputError
from pseudolabel.jobs import outputs
from pseudolabel.jobs.config import SelfTrainConfig, check_data, pick_table_model
from pseudolabel.jobs.context import JobContext
# The recipes by name live in jobs/recipes.py; their names stay importable from here.
from pseudolabel.jobs.recipes import DEFAULTS, FRONTIER, FULL_LABELS, RECIPES, SEED_PROTOCOL  # noqa: F401
from pseudolabel.runs import RunDirectory

STORE_FILE = "labels.db"
__all__ = ["run_selftrain", "build_selftraining", "hide_labels", "SelfTrainResult", "EpochProgress", "RECIPES",
           "DEFAULTS", "FRONTIER", "FULL_LABELS", "SEED_PROTOCOL"]


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


def hold_out(ds: Dataset, share: float, seed: int, say=_say) -> Dataset:
    """A table's or texts' data set with ``share`` of each class's given labels moved to the test
    split, when it has none: the rounds' test accuracy is then measured on labels the model never
    trains on (never on invented ones). One label per class always stays for training; the rows
    are the same on every resume (seeded). The held-out rows are left out of the run's outputs."""
    if ds.X_test is not None or not share:
        return ds
    rng = np.random.default_rng(seed)
    parts = []
    for c in np.unique(ds.y[ds.y >= 0]):
        rows = np.flatnonzero(ds.y == c)
        n_hold = min(len(rows) - 1, int(np.floor(share * len(rows) + 0.5)))
        if n_hold > 0:
            parts.append(rng.choice(rows, n_hold, replace=False))
    if not parts:
        say(f"note: too few labels to hold out {share:.0%} of them; no accuracy is measured")
        return ds
    test = np.sort(np.concatenate(parts))
    keep = np.setdiff1d(np.arange(len(ds)), test)
    say(f"note: no test split: {len(test)} of the {int((ds.y >= 0).sum())} given labels ({share:.0%} of each class) "
        "are held out, never trained on; the test accuracy below is measured on them (--holdout 0: train on all)")
    return dataclasses.replace(_subset(ds, keep), X_test=_safe_indexing(ds.X, test), y_test=ds.y[test],
                               items_test=[ds.items[i] for i in test])


# What a picked round puts back into SelfTraining besides its model.
PICKED_STATE = ("transduction_", "labeled_iter_", "label_confidence_")


def validation_rows(y: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(rows kept for training, validation rows): ``share`` of each class's given labels (y >= 0),
    at least one label per class left to train on, the same rows for the same seed; None when no
    class can spare a label."""
    rng = np.random.default_rng([seed, 7])
    parts = []
    for c in np.unique(y[y >= 0]):
        rows = np.flatnonzero(y == c)
        n_val = min(len(rows) - 1, int(np.floor(share * len(rows) + 0.5)))
        if n_val > 0:
            parts.append(rng.choice(rows, n_val, replace=False))
    if not parts:
        return None
    val = np.sort(np.concatenate(parts))
    return np.setdiff1d(np.arange(len(y)), val), val


def build_selftraining(config: Mapping, progress: EpochProgress | None = None):
    """The SelfTraining of ``config`` (a :class:`SelfTrainConfig`, or a dict: a recipe's keys and
    options, resolved and checked), with ``progress`` printing each epoch."""
    return SelfTrainConfig.coerce(config).selftraining([progress] if progress else None)


@dataclass
class SelfTrainResult:
    run: RunDirectory
    history: list
    test_accuracy: float | None
    termination: str
    seconds: float
    store: Path | None = None
    run_id: str | None = None


def _partial_labels(ds: Dataset, config: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels the loop starts from, and the hidden true labels when this is an experiment."""
    y = ds.y
    n_labeled = config.get("labeled")
    n_given = int((y != -1).sum())
    if n_labeled is not None and n_labeled > n_given:
        raise InputError(f"--labeled {n_labeled} is more than the {n_given} labeled samples of data "
                         f"{ds.name or config.get('data')!r}; pass at most {n_given}.")
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


def run_selftrain(config: Mapping, out: str | Path, *, resume: bool = False,
                  say: Callable[[str], None] = _say, dataset: Dataset | None = None) -> SelfTrainResult:
    """Run (or resume) self-training as ``config`` says, writing everything into ``out``.

    ``config`` is a :class:`~pseudolabel.jobs.config.SelfTrainConfig` or a dict of options:
    ``data`` (mnist | digits | PATH), ``labeled``, ``seed``, ``recipe`` (a name of
    :data:`RECIPES`, default "default"; its values fill what the dict leaves out), any recipe key
    (``threshold``, ``max_iter``, ``epochs``, ...) and optionally ``store``: a label store to
    record into instead of ``out/labels.db``. A store that already holds the data set's items is
    where the run starts from: its current given and human labels, everything else unlabeled
    (redo a run after a person labeled more: ``pseudolabel store discard DB --source pseudo``,
    then this). With ``resume=True`` the config saved in ``out`` wins: options that differ from
    it are refused in one line, except ``device`` (applied, with a note). Every run records its
    classes, items, given labels, each round's pseudo labels and the final model's predictions of
    the unlabeled pool into the store, and ``labels.csv`` into ``out``. Returns the run, its
    history and the final test accuracy (None without a test split).

    Examples
    --------
    >>> run_selftrain({"data": "digits", "labeled": 100, "max_iter": 2}, "runs/st")   # doctest: +SKIP
    >>> run_selftrain({"data": "mnist", "labeled": 1000, "recipe": "frontier"}, "runs/f")  # doctest: +SKIP
    """
    # On resume the saved config, checked against the options before the run is touched.
    config = SelfTrainConfig.resume(out, config, say) if resume else SelfTrainConfig.coerce(config)
    ds = dataset if dataset is not None else load_dataset(config.data, image_size=config.image_size,
                                                          skip_bad=config.skip_bad_images,
                                                          label_column=config.label_column,
                                                          text_column=config.text_column)
    config = pick_table_model(config, ds.y, ds.X, say)
    check_data(config.model_name, config.data_kind, ds.X)  # before anything is written
    if config.data_kind != "images":
        ds = hold_out(ds, config.holdout, config.seed, say)
    elif ds.X.dtype == object:  # image files: decode once, before a run directory exists, so a
        # corrupt image stops the run with nothing written and no round decodes the folder again
        ds = dataclasses.replace(ds, X=read_images(list(ds.X), size=ds.image_size, notes=ds.notes))
    for note in ds.notes:
        say(f"note: {note}")
    with JobContext() as ctx:
        if resume:
            run = ctx.attach(RunDirectory.create(out, job="selftrain", config={}, resume=True))
            if config.run_id is None:  # runs from before run ids were saved
                config = config.replace(run_id=outputs.legacy_run_id("selftrain", run.path.name,
                                                                     run.config.get("created_at", "")))
            store = ctx.open_store(config.store or run.path / STORE_FILE)
            rows, y_partial, y_true, given_source = _start(ds, config, store, run, say)
        else:
            store = None
            if config.store:  # opened and checked before the run directory exists
                config = config.replace(store=str(Path(config.store).expanduser().resolve()))
                store = ctx.open_store(config.store)
            rows, y_partial, y_true, given_source = _start(ds, config, store, None, say)
            config = config.replace(run_id=config.run_id or outputs.new_run_id("selftrain"),
                                    start="data" if given_source is None else "store")
            run = ctx.attach(RunDirectory.create(out, job="selftrain", config=config.to_dict()))
            if given_source is not None:
                outputs.write_start_labels(run, [ds.items[i] for i in rows], y_partial, given_source)
            store = store or ctx.open_store(run.path / STORE_FILE)
        ds = _subset(ds, rows)
        val = None
        if config.validation:
            split = validation_rows(y_partial, config.validation, config.seed)
            if split is None:
                say(f"note: too few labels to set {config.validation:.0%} aside; the last round is kept")
            else:
                keep, val_rows = split
                val = (_safe_indexing(ds.X, val_rows), y_partial[val_rows])
                say(f"note: {len(val_rows)} of the {int((y_partial >= 0).sum())} given labels are set aside "
                    "to pick the round (never trained on, not in the store)")
                ds, y_partial = _subset(ds, keep), y_partial[keep]
                y_true = None if y_true is None else y_true[keep]
                given_source = None if given_source is None else given_source[keep]
        recorder = outputs.StoreRecorder(store, ds, config.run_id, job="selftrain", config=config.to_dict())
        if given_source is None:
            recorder.record_given(y_partial)
        return _fit_and_record(config, ds, run, recorder, y_partial, y_true, given_source, resume, say, val)


class RoundRecorder(Callback):
    """After each round: its labels into the store, its record into history, a checkpoint, a line.

    Into the store before the checkpoint: a kill in between redoes the round, and the recorder
    (diffing against the store) writes nothing twice."""

    def __init__(self, run: RunDirectory, recorder, say, t_start: float, val=None):
        self.run, self.recorder, self.say, self.t_start = run, recorder, say, t_start
        self.val, self.best = val, None

    def on_round_end(self, st, record: dict) -> None:
        record = {**record, "elapsed_s": time.perf_counter() - self.t_start}
        if self.val is not None:  # score the round on the labels set aside; a tie goes to the later round
            record["val_accuracy"] = float(np.mean(st.estimator_.predict(self.val[0]) == self.val[1]))
            if self.best is None or record["val_accuracy"] >= self.best["val_accuracy"]:
                self.best = {"round": record["round"], "val_accuracy": record["val_accuracy"],
                             "estimator_": copy.deepcopy(st.estimator_),
                             **{k: getattr(st, k).copy() for k in PICKED_STATE}}
        self.recorder.record_pseudo(st.transduction_, st.labeled_iter_, st.label_confidence_, record["round"])
        self.run.append_history(record)
        self.run.save_checkpoint(st.get_state())
        acc = record.get("test_accuracy")
        self.say(f"round {record['round']}: {record['n_labeled']} labeled (+{record['n_added']})"
                 + (f", validation {record['val_accuracy']:.4f}" if "val_accuracy" in record else "")
                 + (f", test accuracy {acc:.4f}" if acc is not None else ""))

    def pick(self, st, history: list, say) -> int | None:
        """Put the best-scoring round's model and labels into ``st``; returns its round (None:
        nothing set aside, or the last round is the best). A resumed run picks among the rounds
        since the resume (the models of earlier ones are not kept)."""
        if self.best is None or not history or self.best["round"] == history[-1]["round"]:
            return None
        for key in ("estimator_",) + PICKED_STATE:
            setattr(st, key, self.best[key])
        last = history[-1].get("val_accuracy")
        say(f"keeping round {self.best['round']}: validation {self.best['val_accuracy']:.4f}"
            + (f" (the last round {last:.4f})" if last is not None else ""))
        return self.best["round"]


def _fit_and_record(config: SelfTrainConfig, ds, run, recorder, y_partial, y_true, given_source, resume,
                    say, val=None) -> SelfTrainResult:
    t_start = time.perf_counter()
    progress = EpochProgress(say=say)
    st = config.selftraining([progress])
    rounds = RoundRecorder(run, recorder, say, t_start, val)
    st.callback = [rounds, progress]

    state = run.load_checkpoint() if resume else None
    if resume:
        finished = run.read_history()[: len(state["history_"])] if state else []
        run.rewrite_history(finished)  # rounds logged after the last checkpoint are redone
        if state:
            state["estimator_"].callbacks = [progress]
        progress.round = len(finished)
        say(f"resuming {run.path} after round {finished[-1]['round']}" if finished else f"restarting {run.path}")

    eval_set = (ds.X_test, ds.y_test) if ds.X_test is not None else None
    say(f"self-training on {ds.name}: {int((y_partial != -1).sum())} labeled, {int((y_partial == -1).sum())} unlabeled")
    st.fit(ds.X, y_partial, eval_set=eval_set, y_true=y_true, resume=state)
    if getattr(st, "confident_share_", None) is not None:  # criterion auto, for a model other than the CNN
        share = f"{st.confident_share_:.0%} of the pool above 0.75 in round 1"
        say(f"selection: scikit-learn's threshold 0.75 ({share}: the model is confident)"
            if st.criterion_ == "threshold" else
            f"selection: adaptive ({share}; confidences calibrated on the given labels"
            f"{'' if st.temperature_ is None else f', temperature {st.temperature_:.2f}'}; docs/selftraining.md)")
    history = run.read_history()
    picked = rounds.pick(st, history, say)
    st.picked_round_ = history[-1]["round"] if picked is None and history else picked

    recorder.record_pseudo(st.transduction_, st.labeled_iter_, st.label_confidence_)
    pool = np.flatnonzero(st.transduction_ == -1)
    recorder.record_predictions(st.estimator_, ds.X, pool, st.picked_round_ if picked is not None else st.n_iter_)
    run.write_history_csv(history)
    outputs.write_labels(run, ds, st, given_source)
    outputs.write_model(run, st.estimator_)
    final = next((r for r in history if r["round"] == picked), history[-1]) if history else {}
    test_acc = final.get("test_accuracy")
    run.set_status("finished", termination=st.termination_condition_, test_accuracy=test_acc)
    outputs.print_round_table(history)
    store = recorder.store.path
    say(f"label store {store}: run {recorder.run_id}, {int((st.labeled_iter_ == 0).sum())} starting labels, "
        f"{int((st.labeled_iter_ > 0).sum())} pseudo labels, {len(pool)} predictions to review; "
        f"open it with: pseudolabel review {store}")
    return SelfTrainResult(run, history, test_acc, st.termination_condition_, time.perf_counter() - t_start,
                           store=store, run_id=recorder.run_id)
