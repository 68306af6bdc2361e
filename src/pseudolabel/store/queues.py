"""Review queues over a label store: what a person should look at first.

* ``suspects``: cleaning suggestions (``record_suggestions``): disagreements first, most
  suspicious first.
* ``audit``: accepted pseudo labels: the least confident ones, then a seeded random sample per
  class, so a person can estimate how good the machine labels are.
* ``active``: unlabeled items the latest model is least sure of (least confidence, smallest
  margin or highest entropy of ``record_predictions``), to label by hand.

``all`` lists every item. Every queue is a DataFrame with the columns of ``QUEUE_COLUMNS``:
the current label and its source, the machine's ``suggestion`` and ``confidence``, a queue
``score``, a ``reason``, and ``reviewed``: a human decision was recorded after the queue's
entry was made (after the suggestion, the pseudo label or the prediction), so the membership
of a queue stays stable while a person works through it.

Queues only read, through the store's public methods.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pseudolabel.exceptions import InputError
from pseudolabel.store.predictions import predictions

if TYPE_CHECKING:  # the store imports this module; no import back at run time
    from pseudolabel.store.labelstore import LabelStore

__all__ = ["QUEUES", "QUEUE_COLUMNS", "STRATEGIES", "suspect_queue", "audit_queue", "active_queue",
           "all_queue", "queue"]

QUEUES = ("suspects", "audit", "active", "all")
QUEUE_COLUMNS = ["item_id", "key", "label", "source", "suggestion", "confidence", "score", "reason",
                 "baseline", "human_event", "reviewed"]
STRATEGIES = ("least_confidence", "margin", "entropy")


def _finish(df: pd.DataFrame, reason) -> pd.DataFrame:
    """Fill the common columns and mark what a person has decided since the entry was made."""
    df = df.copy()
    df["reason"] = reason if isinstance(reason, str) else list(reason)
    for col in ("suggestion", "confidence", "score", "baseline", "human_event"):
        if col not in df:
            df[col] = np.nan
    df["suggestion"] = pd.to_numeric(df["suggestion"]).fillna(-1).astype(np.int64)
    df["baseline"] = pd.to_numeric(df["baseline"]).fillna(0).astype(np.int64)
    df["reviewed"] = df["human_event"].notna() & (df["human_event"].fillna(0) > df["baseline"])
    return df[QUEUE_COLUMNS + [c for c in df.columns if c not in QUEUE_COLUMNS]].reset_index(drop=True)


def _current(store: LabelStore, split: str | None = None) -> pd.DataFrame:
    return store.current_labels(split=split)[["item_id", "key", "label", "source", "human_event"]]


def suspect_queue(store: LabelStore, run_id: str | None = None) -> pd.DataFrame:
    """Cleaning suggestions of one run (default: the latest), most likely wrong first.

    Disagreements (the suggestion differs from the label given when it was made) come first, as
    in the clean job's ``grid.png``; within each group, by ``score`` descending (higher is more
    suspicious), then ``confidence`` descending, then ``item_id``.

    Examples
    --------
    >>> suspect_queue(store).head(20)   # doctest: +SKIP
    """
    sug = predictions(store, "suspect", run_id)
    df = _current(store).merge(
        sug[["item_id", "predicted", "confidence", "score", "given", "after_event", "run_id"]],
        on="item_id", how="inner")
    df = df.rename(columns={"predicted": "suggestion", "after_event": "baseline"})
    agrees = (pd.to_numeric(df["suggestion"]) == pd.to_numeric(df["given"])).to_numpy()
    df = (df.assign(_agrees=agrees, _conf=pd.to_numeric(df["confidence"]).fillna(-np.inf))
          .sort_values(["_agrees", "score", "_conf", "item_id"], ascending=[True, False, False, True],
                       kind="stable")
          .drop(columns=["_agrees", "_conf"]))
    return _finish(df, "suspect")


def audit_queue(store: LabelStore, per_class: int = 5, least_confident: int = 20,
                run_id: str | None = None, random_state: int | None = 0) -> pd.DataFrame:
    """Accepted pseudo labels to audit: the ``least_confident`` ones first, then a random
    sample of ``per_class`` per class (seeded, so the same store gives the same queue).

    An item stays in the queue after a person reviewed it (``reviewed`` is then True).

    Examples
    --------
    >>> audit_queue(store, per_class=10, random_state=0)   # doctest: +SKIP
    """
    # The latest machine-or-given event of each item: its pseudo label stays found (and the item
    # in the queue) after a person overrides it.
    latest = store.events(source=("given", "pseudo", "corrected"), latest=True)
    keep = latest["source"] == "pseudo"
    if run_id is not None:
        keep &= latest["run_id"] == run_id
    pseudo = (latest[keep].sort_values("item_id", kind="stable")
              .rename(columns={"event_id": "baseline", "label": "suggestion"})
              [["item_id", "baseline", "suggestion", "confidence", "run_id"]])
    df = _current(store).merge(pseudo, on="item_id", how="inner")
    conf = df["confidence"].fillna(np.inf)
    low = df.assign(_c=conf).sort_values(["_c", "item_id"], kind="stable").head(max(0, least_confident))
    rest = df[~df["item_id"].isin(low["item_id"])]
    rng = np.random.default_rng(random_state)
    picks = []
    for cls in sorted(rest["suggestion"].unique()):
        members = rest[rest["suggestion"] == cls].sort_values("item_id")
        take = rng.choice(len(members), size=min(per_class, len(members)), replace=False)
        picks.append(members.iloc[np.sort(take)])
    sample = pd.concat(picks) if picks else rest.iloc[:0]
    out = pd.concat([low.drop(columns="_c"), sample])
    out["score"] = 1.0 - out["confidence"]
    return _finish(out, ["least_confident"] * len(low) + ["random"] * len(sample))


def active_queue(store: LabelStore, strategy: str = "least_confidence", run_id: str | None = None,
                 limit: int | None = None, split: str | None = None) -> pd.DataFrame:
    """Unlabeled items the latest model (or run ``run_id``) is least sure of, to label by hand.

    ``strategy``: 'least_confidence' (lowest top probability), 'margin' (smallest gap between the
    two best classes) or 'entropy' (highest). Items labeled by a person since the prediction stay
    in the queue as reviewed; items that got a machine label since then leave it.

    Examples
    --------
    >>> active_queue(store, "margin", limit=100)   # doctest: +SKIP
    """
    if strategy not in STRATEGIES:
        raise InputError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}.")
    pred = predictions(store, "proba", run_id)
    df = _current(store, split).merge(
        pred[["item_id", "predicted", "confidence", "margin", "entropy", "after_event", "run_id"]],
        on="item_id", how="inner").rename(columns={"predicted": "suggestion", "after_event": "baseline"})
    by_person = df["human_event"].notna() & (df["human_event"].fillna(0) > df["baseline"])
    df = df[(df["label"] == -1) | by_person]
    # Higher score = ask a person first.
    df["score"] = {"least_confidence": 1.0 - df["confidence"], "margin": 1.0 - df["margin"],
                   "entropy": df["entropy"]}[strategy]
    df = df.sort_values(["score", "item_id"], ascending=[False, True], kind="stable")
    if limit is not None:
        df = df.head(int(limit))
    return _finish(df, strategy)


def all_queue(store: LabelStore, split: str | None = None) -> pd.DataFrame:
    """Every item in item order, with the latest model's prediction as the suggestion."""
    df = _current(store, split)
    pred = predictions(store, "proba")
    df = df.merge(pred[["item_id", "predicted", "confidence"]], on="item_id", how="left")
    df = df.rename(columns={"predicted": "suggestion"})
    return _finish(df, "all")


def queue(store: LabelStore, name: str, *, cls: int | None = None, **options) -> pd.DataFrame:
    """The queue ``name`` ('suspects', 'audit', 'active', 'all'), optionally only class ``cls``:
    items whose current label is ``cls``, or whose suggestion is ``cls`` when unlabeled.

    Examples
    --------
    >>> queue(store, "suspects", cls=3)   # doctest: +SKIP
    """
    makers = {"suspects": suspect_queue, "audit": audit_queue, "active": active_queue, "all": all_queue}
    if name not in makers:
        raise InputError(f"queue must be one of {', '.join(QUEUES)}, got {name!r}.")
    df = makers[name](store, **options)
    if cls is not None:
        shown = np.where(df["label"] >= 0, df["label"], df["suggestion"])
        df = df[shown == int(cls)].reset_index(drop=True)
    return df
