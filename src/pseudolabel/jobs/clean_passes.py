"""The clean job's out-of-fold passes: each fold checkpointed as it finishes, later passes trained
on the labels the pass before fixed, ranked once per pass."""
from __future__ import annotations

import time
import warnings
from typing import Mapping

import numpy as np
import pandas as pd
from sklearn.utils.validation import has_fit_parameter

from pseudolabel.callbacks import Callback, EpochProgress, say as _say
from pseudolabel.crossval import fold_splits as _crossval_splits, out_of_fold_proba
from pseudolabel.exceptions import RunDirectoryError
from pseudolabel.issues import fix_labels, rank_label_issues
from pseudolabel.jobs.clean_data import CleanData, digest
from pseudolabel.jobs.config import CleanConfig, make_model
from pseudolabel.runs import RunDirectory

# passes="auto" runs a second out-of-fold pass when the first flags at least this share of the labels.
AUTO_SECOND_PASS = 0.2


def pass_config(config: Mapping, pass_no: int) -> CleanConfig:
    """The config whose CNN trains the folds of pass ``pass_no``: from pass 2 on, ``later_epochs``
    and ``later_augment`` (when set; "none" turns augmentation off) replace ``epochs`` and ``augment``."""
    return CleanConfig.coerce(config).pass_config(pass_no)


def build_estimator(config: Mapping, callbacks=None):
    """The ConvNetClassifier a clean run trains in every fold (and for the test-accuracy models);
    ``config`` a :class:`CleanConfig` or a dict of its options."""
    config = CleanConfig.coerce(config)
    return make_model(config.model, config.seed, callbacks, name=config.model_name)


def fold_splits(y: np.ndarray, folds: int, seed: int, say=_say) -> list:
    """The stratified folds of :func:`pseudolabel.out_of_fold_proba`, the same for every resume;
    a class with fewer samples than folds lowers the folds, said as a note."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        splits = _crossval_splits(y, folds, seed)
    for w in caught:
        say(f"note: {w.message}")
    return splits


def workers(config: Mapping, n_tasks: int) -> int:
    return max(1, min(int(config.get("jobs") or 1), n_tasks))


# Of the time left, the share the folds of a pass may plan on: the rest is for predicting, ranking,
# fixing and writing (and, with passes="auto", part of it for a second pass).
BUDGET_SHARE = 0.8


def fold_budget(config: Mapping, t_start: float, n_workers: int, n_todo: int) -> float | None:
    """Seconds each fold's model may train for, from the job's ``budget`` (None: no budget): the
    time left times :data:`BUDGET_SHARE`, over the waves of ``n_workers`` folds at a time."""
    budget = config.get("budget")
    if not budget or not n_todo:
        return None
    left = float(budget) - (time.perf_counter() - t_start)
    waves = -(-n_todo // max(n_workers, 1))
    return max(1.0, left * BUDGET_SHARE / waves)


class FoldCheckpoint(Callback):
    """Each finished fold of a pass: its probabilities into ``[passN-]fold-K.joblib``, its record
    into the history, one line; before a fold trains here, a line and the epoch printer's prefix."""

    def __init__(self, run: RunDirectory, data: CleanData, labels_key: str, pass_no: int, records: dict,
                 t_start: float, say, progress: EpochProgress | None):
        self.run, self.data, self.labels_key, self.pass_no = run, data, labels_key, pass_no
        self.records, self.t_start, self.say, self.progress = records, t_start, say, progress
        self.prefix = "" if pass_no == 1 else f"pass{pass_no}-"
        self.tag = "" if pass_no == 1 else f"pass {pass_no} "

    def on_fold_begin(self, k: int, n_folds: int, info: dict) -> None:
        self.say(f"{self.tag}fold {k + 1}/{n_folds}: training on {info['n_train']} samples, "
                 f"predicting {info['n_test']}")
        if self.progress is not None:  # the estimator is cloned after this: the clone names the fold
            self.progress.prefix = f"  {self.tag}fold {k + 1}/{n_folds} "

    def on_fold_end(self, k: int, n_folds: int, info: dict) -> None:
        test, fold_proba, data = info["test"], info["proba"], self.data
        classes = np.unique(data.y)
        predicted = classes[np.argmax(fold_proba, axis=1)]
        record = {"record": "fold", "pass": self.pass_no, "fold": k, "n_train": info["n_train"],
                  "n_test": info["n_test"], "accuracy_given": float(np.mean(predicted == data.y[test])),
                  "seconds": info["seconds"]}
        for key in ("validation_accuracy", "epochs", "best_epoch"):
            if key in info:
                record[key] = info[key]
        if data.y_true is not None:
            record["accuracy_true"] = float(np.mean(predicted == data.y_true[test]))
        record["elapsed_s"] = time.perf_counter() - self.t_start
        self.run.save_checkpoint({"fold": k, "test": test, "proba": fold_proba, "labels": self.labels_key,
                                  "record": record}, f"{self.prefix}fold-{k}.joblib")
        self.run.append_history(record)
        self.records[k] = record
        acc = f", {record['accuracy_true']:.4f} against the true labels" if "accuracy_true" in record else ""
        val = (f"; validation {record['validation_accuracy']:.4f} (epoch {record['best_epoch']} of "
               f"{record['epochs']})" if "validation_accuracy" in record else "")
        self.say(f"{self.tag}fold {k + 1}/{n_folds}: held-out accuracy {record['accuracy_given']:.4f} against the "
                 f"given labels{acc}{val}, {info['seconds']:.1f} s")


def oof_by_fold(run: RunDirectory, config: Mapping, data: CleanData, splits: list, say=_say,
                t_start: float | None = None, *, labels: np.ndarray | None = None, pass_no: int = 1,
                earlier: list | tuple = (), weights: np.ndarray | None = None, cluster=None):
    """Out-of-fold probabilities, one checkpointed fold at a time. Returns (proba, classes).

    The folds are trained by :func:`pseudolabel.out_of_fold_proba` (the one fold loop), given the
    folds a killed run finished already and a :class:`FoldCheckpoint`. With ``config['jobs'] > 1``
    folds train in that many worker processes with one torch thread each (joblib's default); on a
    CPU that beats one process whose OpenMP threads spin whenever anything else runs.
    ``labels`` (default: the given ones) are what the folds train on; a later pass trains on the
    labels the pass before fixed (``pass_no`` > 1, checkpoints ``pass2-fold-K.joblib``), and its
    history records follow ``earlier`` (the records of the passes before). ``weights``, when
    given, weigh each training row's loss (how much its label is trusted). ``cluster``, a started
    :class:`pseudolabel.cluster.Cluster`, trains the folds as Ray tasks instead (one CPU and one
    torch thread each); each is checkpointed here as it comes back, in fold order.
    """
    t_start = time.perf_counter() if t_start is None else t_start
    y = data.y if labels is None else labels
    classes = np.unique(data.y)  # the given classes: a later pass's labels may have lost one
    n_folds = len(splits)
    labels_key = digest(y) if weights is None else digest(y, weights)
    prefix = "" if pass_no == 1 else f"pass{pass_no}-"
    tag = "" if pass_no == 1 else f"pass {pass_no} "
    done, records = {}, {}
    for k, (train, test) in enumerate(splits):
        name = f"{prefix}fold-{k}.joblib"
        saved = run.load_checkpoint(name)
        if saved is None:
            continue
        if saved.get("labels") != labels_key or not np.array_equal(saved["test"], test):
            raise RunDirectoryError(f"{run.path / name} was made from other labels or folds than this run's; "
                                    "resume with the data the run started with, or delete the fold files.")
        done[k] = saved["proba"]
        records[k] = saved["record"]
        say(f"{tag}fold {k + 1}/{n_folds}: loaded from {name}")
    todo = [k for k in range(n_folds) if k not in done]
    # The history holds exactly the finished folds (a summary of an earlier attempt is redone).
    run.rewrite_history(list(earlier) + [records[k] for k in sorted(records)])
    n_workers = workers(config, len(todo)) if cluster is None else max(1, min(cluster.n_cpus, len(todo)))
    if cluster is not None and todo:
        say(f"{tag}training folds {', '.join(str(k + 1) for k in todo)} of {n_folds} as Ray tasks on "
            f"{cluster.address} ({cluster.n_cpus} CPUs)")
    elif n_workers > 1:
        say(f"{tag}training folds {', '.join(str(k + 1) for k in todo)} of {n_folds}, {n_workers} at a time")
    # An epoch printer only where the folds train in this process: a Ray task's would print nowhere.
    progress = EpochProgress(every=10.0, round=None, say=say) if n_workers == 1 and cluster is None else None
    estimator = build_estimator(config, [progress] if progress else None)
    per_fit = fold_budget(config, t_start, n_workers, len(todo))
    if per_fit is not None and "budget" in estimator.get_params():
        estimator.set_params(budget=per_fit)
        say(f"{tag}budget: {per_fit:.0f} s per fold")
    if weights is not None and not has_fit_parameter(estimator, "sample_weight"):
        say(f"note: {type(estimator).__name__}.fit takes no sample_weight: pass {pass_no} trains unweighted")
        weights = None
    saver = FoldCheckpoint(run, data, labels_key, pass_no, records, t_start, say, progress)
    proba = out_of_fold_proba(estimator, data.X, y, cv=splits, n_jobs=n_workers, sample_weight=weights,
                              callbacks=[saver], done=done, classes=classes,
                              executor=None if cluster is None else cluster.fold_executor())
    # fold order, whatever order they finished in
    run.rewrite_history(list(earlier) + [records[k] for k in range(n_folds)])
    return proba, classes


def rank(config: Mapping, labels: np.ndarray, proba: np.ndarray, classes=None) -> pd.DataFrame:
    """The suspects of ``labels`` under ``proba`` by the run's method (once per pass)."""
    return rank_label_issues(labels, proba, method=config["method"], classes=classes)


def n_passes(config: Mapping, issues: pd.DataFrame) -> int:
    """How many out-of-fold passes to run, decided after the first one from its ``issues``.

    ``passes="auto"``: a second pass when the first one flags at least ``AUTO_SECOND_PASS`` of
    the labels (the run's method and counts, no true labels needed). At 10 % noise on MNIST one
    pass met every target within 10 minutes; at 40 % the first pass's models learned from so
    many wrong labels that a second pass on the fixed labels took correct labels from 98.43 % to
    98.79 % (a development noise draw, bench/explore_posterior.py; docs/benchmarks.md).
    """
    if config["passes"] != "auto":
        return int(config["passes"])
    return 2 if issues["is_issue"].mean() >= AUTO_SECOND_PASS else 1


def later_pass_labels(config: Mapping, labels: np.ndarray, proba: np.ndarray, classes=None, *,
                      issues: pd.DataFrame | None = None):
    """The labels a later pass trains on, and their weights (None unless ``later_weighted``).

    The labels are the relabel policy's (the run's method and threshold; ``issues``, the ranking
    of ``proba``, is computed when not given); each one's weight is the probability the run's
    method gives it (the posterior by default), so a label the evidence barely favours moves the
    model less than a sure one. On a development noise draw (MNIST, 40 %, seed 1;
    bench/explore_posterior.py --second-pass weighted) this took the second pass's held-out
    accuracy against the true labels from 98.54 % to 98.64 % and labels correct after fixing from
    98.86 % to 98.91 %.
    """
    if issues is None:
        issues = rank(config, labels, proba, classes)
    fixed = fix_labels(labels, proba, threshold=config["threshold"], policy="relabel", issues=issues,
                       classes=classes)
    if not config.get("later_weighted"):
        return fixed, None
    issues = issues.sort_values("item")
    weights = np.where(fixed == issues["predicted"].to_numpy(), issues["p_max"].to_numpy(),
                       issues["p_given"].to_numpy())
    return fixed, np.clip(weights, 1e-6, 1.0)


def combine_passes(config: Mapping, probas: list) -> np.ndarray:
    """The probabilities ranked after several passes: their mean with ``average_passes`` (the
    default), else the last pass's. Each pass's models err on partly different images: on the
    development draw the mean of passes 1 and 2 took labels correct after fixing from 98.91 % to
    98.98 % (bench/explore_posterior.py)."""
    return np.mean(probas, axis=0) if config.get("average_passes") else probas[-1]


def oof_passes(run: RunDirectory, config: CleanConfig, data: CleanData, splits: list, say=_say,
               t_start: float | None = None, cluster=None):
    """Out-of-fold probabilities after the passes ``n_passes`` asks for. Returns (proba, classes,
    issues): ``issues`` ranks ``proba`` against the given labels, computed once per pass.

    Pass 1 trains on the given labels. Each later pass relabels what the pass before flagged (the
    run's method and threshold) and trains the folds again on those cleaner labels: a model taught
    by 10 % or 40 % wrong labels is itself less accurate, and its mistakes cap what it can find.
    Later passes train with their own recipe (:func:`pass_config`) and, with ``later_weighted``,
    weigh each label by its posterior (:func:`later_pass_labels`). What is ranked against the
    given labels is the mean of every pass's probabilities (``average_passes``) or the last's.
    ``cluster`` (a started :class:`pseudolabel.cluster.Cluster`) trains every pass's folds as Ray tasks.
    """
    proba, classes = oof_by_fold(run, config, data, splits, say, t_start, cluster=cluster)
    issues = rank(config, data.y, proba, classes)
    total = n_passes(config, issues)
    if config["passes"] == "auto":
        say(f"passes auto: {total} (the first pass flagged {'at least' if total > 1 else 'under'} "
            f"{AUTO_SECOND_PASS:.0%} of the labels)")
    passes = [proba]
    for pass_no in range(2, total + 1):
        fixed, weights = later_pass_labels(config, data.y, proba, classes, issues=issues)
        later = config.pass_config(pass_no)
        say(f"pass {pass_no}/{total}: training the folds again on the labels pass {pass_no - 1} "
            f"fixed ({int(np.sum(fixed != data.y))} changed); {later['epochs']} epochs, "
            f"augmentation {later['augment'] or 'none'}" + (", each label weighted by its posterior"
                                                            if weights is not None else ""))
        earlier = [r for r in run.read_history() if r.get("record") == "fold" and r.get("pass", 1) < pass_no]
        last, classes = oof_by_fold(run, later, data, splits, say, t_start, labels=fixed, pass_no=pass_no,
                                    earlier=earlier, weights=weights, cluster=cluster)
        passes.append(last)
        proba = combine_passes(config, passes)
        issues = rank(config, data.y, proba, classes)
    return proba, classes, issues


