"""Hooks into training: one base class with do-nothing methods (skorch's ``callbacks/base.py``).

A progress printer, a checkpointer and a store recorder are small subclasses that override the
hooks they need, instead of three ad hoc callables with three signatures:

- ``on_epoch_end(estimator, record)``: after each epoch of a torch model (``ConvNetClassifier``);
  ``record`` has ``epoch``, ``epochs``, ``loss``, ``train_accuracy``, ``samples_per_s``.
- ``on_round_end(selftraining, record)``: after each round of :class:`pseudolabel.SelfTraining`
  (round 0, the supervised fit, included); ``record`` is the round's ``history_`` entry.
- ``on_fold_end(fold, n_folds, record)``: after each fold of
  :func:`pseudolabel.out_of_fold_proba`, in fold order; ``record`` has ``fold``, ``n_train``,
  ``n_test``, ``accuracy`` and ``seconds`` (and ``test`` and ``proba``, the held-out rows and
  their probabilities); ``on_fold_begin`` before a fold trains in the calling process.

Plain callables are still accepted where a callback list is (``ConvNetClassifier(callbacks=)``
calls them as ``cb(estimator, record)`` after each epoch; ``SelfTraining(callback=)`` as
``cb(selftraining, record)`` after each round), so code written against the old hooks runs.
No torch here: scikit-learn users import this too.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Callable, Iterable

__all__ = ["Callback", "EpochProgress", "notify", "say"]

class Callback:
    """Base class of training hooks; every method does nothing unless overridden."""

    def on_epoch_end(self, estimator, record: dict) -> None:
        """After each epoch of a model's fit."""

    def on_round_end(self, selftraining, record: dict) -> None:
        """After each self-training round."""

    def on_fold_begin(self, fold: int, n_folds: int, record: dict) -> None:
        """Before a fold trains in this process (``record``: ``fold``, ``n_train``, ``n_test``)."""

    def on_fold_end(self, fold: int, n_folds: int, record: dict) -> None:
        """After each out-of-fold fold, in fold order."""


def notify(callbacks: Iterable | Callable | None, hook: str, *args: Any, plain: bool | None = None) -> None:
    """Call ``hook`` on every callback. A plain callable (not a Callback) is called with ``args``
    when ``plain`` is True; None means: for the epoch hook only (a model's ``callbacks``)."""
    plain = hook == "on_epoch_end" if plain is None else plain
    if callbacks is None:
        return
    if isinstance(callbacks, Callback) or callable(callbacks):
        callbacks = (callbacks,)
    for cb in callbacks:
        if isinstance(cb, Callback):
            getattr(cb, hook)(*args)
        elif plain and callable(cb):
            cb(*args)


def say(msg: str) -> None:
    """Progress lines go to stderr, so stdout keeps only a command's results."""
    print(msg, file=sys.stderr, flush=True)


class EpochProgress(Callback):
    """One progress line per epoch: ``[prefix][round R ]epoch E/N loss L train acc A S samples/s``.

    ``every`` (seconds) thins the lines: the last epoch always prints, any other only after that
    much silence, so a long fold shows life and a quick one prints one line; None prints each.
    ``round`` (self-training) is set by the job as rounds end; None leaves it out (folds).
    """

    def __init__(self, prefix: str = "", *, every: float | None = None, round: int | None = 0,
                 say: Callable[[str], None] = say):
        self.prefix = prefix
        self.every = every
        self.round = round
        self.say = say
        self._last = time.perf_counter()

    def __setstate__(self, state: dict) -> None:
        # Checkpoints pickled before this class had `every` and `say` (jobs.selftrain.EpochProgress).
        self.__dict__.update({"every": None, "say": say, "_last": 0.0, "round": 0, "prefix": ""})
        self.__dict__.update(state)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("say", None)  # a bound printer or lambda need not pickle (checkpoints)
        return state

    def __deepcopy__(self, memo) -> "EpochProgress":
        # clone() deep-copies a model's callbacks: the copy keeps printing where the job said.
        copy = type(self).__new__(type(self))
        copy.__dict__.update(self.__dict__)
        return copy

    def on_epoch_end(self, estimator, record: dict) -> None:
        now = time.perf_counter()
        if self.every is not None and record["epoch"] != record["epochs"] and now - self._last < self.every:
            return
        self._last = now
        where = "" if self.round is None else f"round {self.round} "
        used = f" unlabeled used {record['unlabeled_used']:.3f}" if "unlabeled_used" in record else ""
        self.say(f"{self.prefix}{where}epoch {record['epoch']}/{record['epochs']} loss {record['loss']:.4f} "
                 f"train acc {record['train_accuracy']:.4f}{used} {record['samples_per_s']:.0f} samples/s")

    def on_round_end(self, selftraining, record: dict) -> None:
        if self.round is not None:
            self.round = record["round"] + 1

    # A Callback that is also callable, for code that calls callbacks as cb(est, record).
    __call__ = on_epoch_end
