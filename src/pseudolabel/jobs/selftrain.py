"""The selftrain job: data -> SelfTraining -> a run directory (config, history, labels, model).

Resumable: after every round the SelfTraining state is checkpointed; ``resume=True`` reloads it,
drops history records after it, and continues with the same seed to the same result.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from pseudolabel.datasets import Dataset, load_dataset
from pseudolabel.exceptions import InputError
from pseudolabel.runs import RunDirectory
from pseudolabel.selection import check_schedule

# The default recipe: a batch-norm CNN with batch augmentation, warm-started from round to round,
# and every round relabels the whole pool so early mistakes are not frozen in.
DEFAULTS = dict(
    threshold=0.99, max_iter=5, arch="fast", epochs=2, min_steps=600, batch_size=128, lr=3e-3,
    augment="affine", warm_start=True, relabel=True, class_quota=None, device="auto",
)
# The case study's protocol: its CNN, Adam 1e-3, batch 64, 10 epochs from scratch each round.
SEED_PROTOCOL = dict(
    threshold=0.99, max_iter=10, arch="seed", epochs=10, min_steps=0, batch_size=64, lr=1e-3,
    augment=None, warm_start=False, relabel=False, class_quota=None, optimizer="adam", weight_decay=0.0,
    device="auto",
)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class EpochProgress:
    """Prints one progress line per epoch (a class, not a lambda, so checkpoints can pickle it)."""

    def __init__(self, prefix: str = ""):
        self.prefix = prefix
        self.round = 0

    def __call__(self, est, rec: dict) -> None:
        _say(
            f"{self.prefix}round {self.round} epoch {rec['epoch']}/{rec['epochs']} loss {rec['loss']:.4f} "
            f"train acc {rec['train_accuracy']:.4f} {rec['samples_per_s']:.0f} samples/s"
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
                "optimizer", "weight_decay")
    clf = ConvNetClassifier(
        random_state=config["seed"], callbacks=[progress] if progress else None,
        **{k: config[k] for k in clf_keys if k in config},
    )
    return SelfTraining(
        clf, threshold=config["threshold"], max_iter=config["max_iter"], relabel=config["relabel"],
        class_quota=config.get("class_quota"),
    )


@dataclass
class SelfTrainResult:
    run: RunDirectory
    history: list
    test_accuracy: float | None
    termination: str
    seconds: float


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


def run_selftrain(config: dict, out: str | Path, *, resume: bool = False,
                  say: Callable[[str], None] = _say, dataset: Dataset | None = None) -> SelfTrainResult:
    """Run (or resume) self-training as ``config`` says, writing everything into ``out``.

    ``config`` holds ``data`` (mnist | digits | PATH), ``labeled``, ``seed`` and the recipe keys of
    :data:`DEFAULTS`. Returns the run, its history and the final test accuracy (None without a test split).
    """
    from pseudolabel.jobs.outputs import print_round_table, write_labels, write_model

    config = {**DEFAULTS, **config}
    _check_config(config)
    ds = dataset if dataset is not None else load_dataset(config["data"])
    y_partial, y_true = _partial_labels(ds, config)
    run = RunDirectory.create(out, job="selftrain", config=config, resume=resume)
    if resume:
        config = {**config, **run.config}
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
        run.append_history(record)
        run.save_checkpoint(est.get_state())
        progress.round = record["round"] + 1
        acc = record.get("test_accuracy")
        say(f"round {record['round']}: {record['n_labeled']} labeled (+{record['n_added']})"
            + (f", test accuracy {acc:.4f}" if acc is not None else ""))

    st.callback = on_round
    eval_set = (ds.X_test, ds.y_test) if ds.X_test is not None else None
    say(f"self-training on {ds.name}: {int((y_partial != -1).sum())} labeled, {int((y_partial == -1).sum())} unlabeled")
    st.fit(ds.X, y_partial, eval_set=eval_set, y_true=y_true, resume=state)

    history = run.read_history()
    run.write_history_csv(history)
    write_labels(run, ds, st)
    write_model(run, st.estimator_)
    test_acc = history[-1].get("test_accuracy") if history else None
    run.set_status("finished", termination=st.termination_condition_, test_accuracy=test_acc)
    print_round_table(history)
    return SelfTrainResult(run, history, test_acc, st.termination_condition_, time.perf_counter() - t_start)
