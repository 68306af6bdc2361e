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


# A pseudo event that counts (not undone, not discarded) and is the latest counting given, pseudo
# or corrected event of its item: an accepted pseudo label, found again after a person overrode it.
# Each condition is an index lookup (events_undoes, events_item_source), so the least confident
# few of a million events come from events_source_confidence without reading the rest.
_AUDITABLE = """
SELECT e.id AS baseline, e.item_id, e.label AS suggestion, e.confidence, e.run_id FROM events AS e
WHERE e.source = 'pseudo' {where}
  AND NOT EXISTS (SELECT 1 FROM events AS u WHERE u.undoes = e.id)
  AND NOT EXISTS (SELECT 1 FROM discards AS d WHERE d.source = e.source AND e.id <= d.last_event_id
                  AND (d.run_id IS NULL OR d.run_id = e.run_id))
  AND NOT EXISTS (SELECT 1 FROM events AS l WHERE l.item_id = e.item_id AND l.id > e.id
                  AND l.source IN ('given', 'pseudo', 'corrected')
                  AND NOT EXISTS (SELECT 1 FROM events AS u2 WHERE u2.undoes = l.id)
                  AND NOT EXISTS (SELECT 1 FROM discards AS d2 WHERE d2.source = l.source
                                  AND l.id <= d2.last_event_id AND (d2.run_id IS NULL OR d2.run_id = l.run_id)))
"""


# The same set, for all of them at once: the latest counting machine-or-given event per item from
# the (item_id, source, id) index, kept when it is a pseudo one.
_AUDITABLE_ALL = """
SELECT e.id AS baseline, e.item_id, e.label AS suggestion, e.confidence, e.run_id FROM events AS e
JOIN (SELECT x.item_id, MAX(x.id) AS id FROM events AS x
      WHERE x.source IN ('given', 'pseudo', 'corrected')
        AND NOT EXISTS (SELECT 1 FROM events AS u WHERE u.undoes = x.id)
        AND NOT EXISTS (SELECT 1 FROM discards AS d WHERE d.source = x.source AND x.id <= d.last_event_id
                        AND (d.run_id IS NULL OR d.run_id = x.run_id))
      GROUP BY x.item_id) AS m ON m.id = e.id
WHERE e.source = 'pseudo' {where}
ORDER BY e.item_id
"""


def _least_confident_pseudo(store: LabelStore, n: int, run_id: str | None) -> pd.DataFrame:
    """The ``n`` accepted pseudo labels of lowest confidence (then item id; no confidence last)."""
    run, params = ("AND e.run_id = ?", [run_id]) if run_id is not None else ("", [])
    if n <= 0:
        return store.query(_AUDITABLE.format(where="AND 0") + " LIMIT 0")
    low = store.query(_AUDITABLE.format(where="AND e.confidence IS NOT NULL " + run)
                      + " ORDER BY e.confidence, e.item_id LIMIT ?", params + [n])
    if len(low) < n:
        rest = store.query(_AUDITABLE.format(where="AND e.confidence IS NULL " + run)
                           + " ORDER BY e.item_id LIMIT ?", params + [n - len(low)])
        low = pd.concat([low, rest], ignore_index=True) if len(rest) else low
    return low


def audit_queue(store: LabelStore, per_class: int = 5, least_confident: int = 20,
                run_id: str | None = None, random_state: int | None = 0) -> pd.DataFrame:
    """Accepted pseudo labels to audit: the ``least_confident`` ones first, then a random
    sample of ``per_class`` per class (seeded, so the same store gives the same queue).

    An item stays in the queue after a person reviewed it (``reviewed`` is then True). The least
    confident come from an index (a store of a million pseudo labels answers in milliseconds);
    the per-class sample reads the item and label of every accepted pseudo label once.

    Examples
    --------
    >>> audit_queue(store, per_class=10, random_state=0)   # doctest: +SKIP
    """
    low = _least_confident_pseudo(store, max(0, least_confident), run_id)
    picks = []
    if per_class > 0:
        run, params = ("AND e.run_id = ?", [run_id]) if run_id is not None else ("", [])
        rest = store.query(_AUDITABLE_ALL.format(where=run), params)
        rest = rest[~rest["item_id"].isin(low["item_id"])]
        rng = np.random.default_rng(random_state)
        for cls in sorted(rest["suggestion"].unique()):
            members = rest[rest["suggestion"] == cls]
            take = rng.choice(len(members), size=min(per_class, len(members)), replace=False)
            picks.append(members.iloc[np.sort(take)])
    sample = pd.concat(picks) if picks else low.iloc[:0]
    chosen = pd.concat([low, sample], ignore_index=True)
    current = (_current_of(store, chosen["item_id"].tolist()) if len(chosen)
               else _current(store).iloc[:0])
    out = chosen.merge(current, on="item_id", how="inner")  # keeps the order of chosen
    out["confidence"] = pd.to_numeric(out["confidence"]).astype(float)  # no confidence: NaN, not None
    out["score"] = 1.0 - out["confidence"]
    return _finish(out, ["least_confident"] * len(low) + ["random"] * len(sample))


def _current_of(store: LabelStore, item_ids: list) -> pd.DataFrame:
    """The current label of a few items (their events only, not the whole store)."""
    return store.current_labels(items=[int(i) for i in item_ids])[["item_id", "key", "label", "source",
                                                                    "human_event"]]


def active_queue(store: LabelStore, strategy: str = "least_confidence", run_id: str | None = None,
                 limit: int | None = None, split: str | None = None, diverse: int = 0) -> pd.DataFrame:
    """Unlabeled items the latest model (or run ``run_id``) is least sure of, to label by hand.

    ``strategy``: 'least_confidence' (lowest top probability), 'margin' (smallest gap between the
    two best classes) or 'entropy' (highest). Items labeled by a person since the prediction stay
    in the queue as reviewed; items that got a machine label since then leave it.

    ``diverse=k`` (k > 0) makes the first k items uncertain *and* spread over the data, so that a
    batch of labels does not spend itself on one confusing corner: from the 5k most uncertain
    items, k are picked by greedy k-center over the stored probability vectors (each next pick is
    the candidate farthest from those picked, ties to the more uncertain), in pick order
    (``reason`` 'diverse'); the other items follow by uncertainty. Without stored vectors
    (``record_predictions(keep_proba=False)``) the picks go round robin over the predicted class.

    Examples
    --------
    >>> active_queue(store, "margin", limit=100)   # doctest: +SKIP
    >>> active_queue(store, diverse=50).head(50)    # doctest: +SKIP
    """
    if strategy not in STRATEGIES:
        raise InputError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}.")
    if isinstance(diverse, bool) or not isinstance(diverse, (int, np.integer)) or diverse < 0:
        raise InputError(f"diverse must be a whole number >= 0 (items to spread), got {diverse!r}.")
    pred = predictions(store, "proba", run_id, with_proba=bool(diverse))
    df = _current(store, split).merge(
        pred[["item_id", "predicted", "confidence", "margin", "entropy", "after_event", "run_id"]],
        on="item_id", how="inner").rename(columns={"predicted": "suggestion", "after_event": "baseline"})
    by_person = df["human_event"].notna() & (df["human_event"].fillna(0) > df["baseline"])
    df = df[(df["label"] == -1) | by_person]
    # Higher score = ask a person first.
    df["score"] = {"least_confidence": 1.0 - df["confidence"], "margin": 1.0 - df["margin"],
                   "entropy": df["entropy"]}[strategy]
    df = df.sort_values(["score", "item_id"], ascending=[False, True], kind="stable")
    reason = [strategy] * len(df)
    if diverse:
        proba = dict(zip(pred["item_id"].tolist(), pred["proba"].tolist()))
        order = _spread(df, proba, int(diverse))
        df = df.iloc[order]
        reason = ["diverse"] * min(int(diverse), len(df)) + [strategy] * max(0, len(df) - int(diverse))
    if limit is not None:
        df = df.head(int(limit))
        reason = reason[:len(df)]
    return _finish(df, reason)


def _spread(df: pd.DataFrame, proba: dict, k: int) -> list[int]:
    """Row positions of ``df`` (sorted most uncertain first): k diverse picks among the first 5k,
    then the rest in their order (see :func:`active_queue`)."""
    pool = min(len(df), 5 * k)
    ids = df["item_id"].tolist()[:pool]
    vectors = [proba.get(i) for i in ids]
    if pool and all(v is not None for v in vectors) and len({len(v) for v in vectors}) == 1:
        x = np.stack(vectors).astype(np.float64)
        picked = [0]  # the most uncertain item starts
        dist = np.linalg.norm(x - x[0], axis=1)
        while len(picked) < min(k, pool):
            dist[picked] = -1.0
            nxt = int(np.argmax(dist))  # argmax takes the first (= most uncertain) of ties
            picked.append(nxt)
            dist = np.minimum(dist, np.linalg.norm(x - x[nxt], axis=1))
    else:  # round robin over the predicted class, each class's items most uncertain first
        groups: dict = {}
        for pos, cls in enumerate(df["suggestion"].tolist()[:pool]):
            groups.setdefault(cls, []).append(pos)
        queues_ = list(groups.values())
        picked = []
        while len(picked) < min(k, pool):
            for q in queues_:
                if q and len(picked) < k:
                    picked.append(q.pop(0))
    chosen = set(picked)
    return picked + [p for p in range(len(df)) if p not in chosen]


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
