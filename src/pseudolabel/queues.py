"""Review queues over a LabelStore, and the predictions and suggestions that feed them.

Three queues say what a person should look at first:

* ``suspects``: cleaning suggestions (``record_suggestions``), most suspicious first.
* ``audit``: accepted pseudo labels: the least confident ones, then a seeded random sample per
  class, so a person can estimate how good the machine labels are.
* ``active``: unlabeled items the latest model is least sure of (least confidence, smallest
  margin or highest entropy of ``record_predictions``), to label by hand.

``all`` lists every item. Every queue is a DataFrame with the columns of ``QUEUE_COLUMNS``:
the current label and its source, the machine's ``suggestion`` and ``confidence``, a queue
``score``, a ``reason``, and ``reviewed``: a human decision was recorded after the queue's
entry was made (after the suggestion, the pseudo label or the prediction), so the membership
of a queue stays stable while a person works through it.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from pseudolabel.exceptions import InputError
from pseudolabel.store import _EFFECTIVE, LabelStore, _column, _now

__all__ = ["QUEUES", "QUEUE_COLUMNS", "record_predictions", "record_suggestions", "predictions",
           "suspect_queue", "audit_queue", "active_queue", "all_queue", "queue"]

QUEUES = ("suspects", "audit", "active", "all")
QUEUE_COLUMNS = ["item_id", "key", "label", "source", "suggestion", "confidence", "score", "reason",
                 "baseline", "human_event", "reviewed"]
STRATEGIES = ("least_confidence", "margin", "entropy")


def _as_list(items) -> list:
    return list(items.tolist() if isinstance(items, np.ndarray) else items)


def record_predictions(store: LabelStore, items: Sequence, proba, run_id: str, *,
                       model_id: str | None = None, keep_proba: bool = True) -> int:
    """Record a model's class probabilities for items (feeds the active-learning queue).

    Stores the predicted class, its confidence, the margin between the two best classes and the
    entropy, and the whole row (float32) when ``keep_proba``. Returns the number of rows.

    Examples
    --------
    >>> store.record_predictions(pool_keys, model.predict_proba(X_pool), run_id)  # doctest: +SKIP
    """
    p = np.asarray(proba, dtype=np.float64)
    items = _as_list(items)
    if p.ndim != 2:
        raise InputError(f"proba must be 2-D (n_items, n_classes), got shape {p.shape}; "
                         "pass predict_proba's output.")
    if len(items) != len(p):
        raise InputError(f"items and proba must be the same length, but items is length {len(items)} "
                         f"and proba is length {len(p)}; pass one row per item.")
    if not np.all(np.isfinite(p)) or (p.size and p.min() < 0):
        raise InputError("proba holds NaN, infinity or negative values; pass probabilities.")
    n_classes = len(store.classes)
    if n_classes and p.shape[1] != n_classes:
        raise InputError(f"proba has {p.shape[1]} columns but {store.path.name} knows {n_classes} "
                         "classes; pass one column per class, in class order.")
    ids = store.item_ids(items)
    srt = np.sort(p, axis=1)
    conf = srt[:, -1]
    margin = srt[:, -1] - srt[:, -2] if p.shape[1] > 1 else srt[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=1)
    pred = p.argmax(axis=1)
    n = len(p)
    blobs = [row.astype(np.float32).tobytes() for row in p] if keep_proba else [None] * n
    now = _now()
    with store._write() as cur:
        store._register_runs(cur, [run_id])
        last = cur.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
        cur.executemany(
            "INSERT INTO predictions(item_id, run_id, model_id, kind, predicted, confidence, margin, "
            "entropy, proba, after_event, created_at) VALUES (?, ?, ?, 'proba', ?, ?, ?, ?, ?, ?, ?)",
            zip(ids.tolist(), [run_id] * n, [model_id] * n, pred.tolist(), conf.tolist(),
                margin.tolist(), entropy.tolist(), blobs, [last] * n, [now] * n))
    return n


def record_suggestions(store: LabelStore, items: Sequence, given, suggested, score, run_id: str, *,
                       confidence=None, model_id: str | None = None) -> int:
    """Record label-cleaning suggestions (the suspects queue): the given label, the suggested
    label and a score where higher means more suspicious, one per item.

    This writes no label event: applying a fix is ``store.add_labels(..., source="corrected")``.

    Examples
    --------
    >>> store.record_suggestions(keys, given, suggested, score, run_id, confidence=p_max)  # doctest: +SKIP
    """
    from pseudolabel._validation import check_labels

    items = _as_list(items)
    n = len(items)
    giv = check_labels(given, name="given")
    sug = check_labels(suggested, name="suggested")
    sc = np.asarray(score, dtype=np.float64).reshape(-1)
    conf = _column(confidence, n, "confidence")
    for name, arr in (("given", giv), ("suggested", sug), ("score", sc)):
        if len(arr) != n:
            raise InputError(f"items and {name} must be the same length, but items is length {n} and "
                             f"{name} is length {len(arr)}; pass one value per item.")
    if not np.all(np.isfinite(sc)):
        raise InputError("score holds NaN or infinity; pass a finite suspicion score per item.")
    store._check_labels(np.concatenate([giv, sug]), allow_none=True)
    ids = store.item_ids(items)
    now = _now()
    with store._write() as cur:
        store._register_runs(cur, [run_id])
        last = cur.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
        cur.executemany(
            "INSERT INTO predictions(item_id, run_id, model_id, kind, predicted, confidence, given, "
            "score, after_event, created_at) VALUES (?, ?, ?, 'suspect', ?, ?, ?, ?, ?, ?)",
            [(int(ids[i]), run_id, model_id, int(sug[i]), None if conf[i] is None else float(conf[i]),
              int(giv[i]), float(sc[i]), last, now) for i in range(n)])
    return n


def predictions(store: LabelStore, kind: str = "proba", run_id: str | None = None, *,
                with_proba: bool = False) -> pd.DataFrame:
    """The latest prediction per item of one run (default: the latest run that recorded
    ``kind``), with the item key. ``kind`` is 'proba' (record_predictions) or 'suspect'
    (record_suggestions). Empty when there is none.

    Examples
    --------
    >>> predictions(store, "suspect").sort_values("score", ascending=False).head()  # doctest: +SKIP
    """
    if kind not in ("proba", "suspect"):
        raise InputError(f"kind must be 'proba' or 'suspect', got {kind!r}.")
    cols = ("p.item_id, i.key, p.run_id, p.model_id, p.predicted, p.confidence, p.margin, p.entropy, "
            "p.given, p.score, p.after_event, p.created_at" + (", p.proba" if with_proba else ""))
    if run_id is None:
        row = store._rows("SELECT run_id FROM predictions WHERE kind = ? ORDER BY id DESC LIMIT 1", (kind,))
        run_id = row[0][0] if row else None
    df = store._query(
        f"SELECT {cols} FROM predictions p JOIN items i ON i.id = p.item_id "
        "WHERE p.id IN (SELECT MAX(id) FROM predictions WHERE kind = ? AND run_id = ? GROUP BY item_id) "
        "ORDER BY p.item_id", (kind, run_id))
    if with_proba:
        df["proba"] = [None if b is None else np.frombuffer(b, dtype=np.float32) for b in df["proba"]]
    return df


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
    """Cleaning suggestions of one run (default: the latest), most suspicious first.

    Examples
    --------
    >>> suspect_queue(store).head(20)   # doctest: +SKIP
    """
    sug = predictions(store, "suspect", run_id)
    df = _current(store).merge(
        sug[["item_id", "predicted", "confidence", "score", "given", "after_event", "run_id"]],
        on="item_id", how="inner")
    df = df.rename(columns={"predicted": "suggestion", "after_event": "baseline"})
    df = df.sort_values(["score", "item_id"], ascending=[False, True], kind="stable")
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
    extra, params = ("AND e.run_id = ?", [run_id]) if run_id is not None else ("", [])
    # The latest machine-or-given event of each item: its pseudo label stays found (and the item
    # in the queue) after a person overrides it.
    pseudo = store._query(
        f"WITH eff AS ({_EFFECTIVE.format(where='')}), m AS (SELECT eff.*, ROW_NUMBER() OVER "
        "(PARTITION BY item_id ORDER BY id DESC) AS rn FROM eff WHERE source <> 'human') "
        "SELECT item_id, id AS baseline, label AS suggestion, confidence, run_id FROM m AS e "
        f"WHERE rn = 1 AND source = 'pseudo' {extra} ORDER BY item_id", params)
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
