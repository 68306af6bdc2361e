"""Model predictions and cleaning suggestions in a label store: what feeds the review queues.

Written in one transaction each (``store.transaction()``), read with ``store.query``; they are
never label events: applying a suggestion is ``store.add_labels(..., source="corrected")``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from pseudolabel._validation import check_labels
from pseudolabel.exceptions import InputError
from pseudolabel.store.transaction import _column

if TYPE_CHECKING:  # the store imports this module; no import back at run time
    from pseudolabel.store.labelstore import LabelStore

__all__ = ["record_predictions", "record_suggestions", "predictions"]


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
    blobs = [row.astype(np.float32).tobytes() for row in p] if keep_proba else None
    with store.transaction() as tx:
        return tx.add_predictions("proba", ids, run_id, model_id=model_id, predicted=p.argmax(axis=1),
                                  confidence=conf, margin=margin, entropy=entropy, proba=blobs)


def record_suggestions(store: LabelStore, items: Sequence, given, suggested, score, run_id: str, *,
                       confidence=None, model_id: str | None = None) -> int:
    """Record label-cleaning suggestions (the suspects queue): the given label, the suggested
    label and a score where higher means more suspicious, one per item.

    This writes no label event: applying a fix is ``store.add_labels(..., source="corrected")``.

    Examples
    --------
    >>> store.record_suggestions(keys, given, suggested, score, run_id, confidence=p_max)  # doctest: +SKIP
    """
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
    ids = store.item_ids(items)
    with store.transaction() as tx:
        tx.check_labels(np.concatenate([giv, sug]), allow_none=True)
        return tx.add_predictions("suspect", ids, run_id, model_id=model_id, predicted=sug,
                                  confidence=conf, given=giv, score=sc)


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
        row = store.rows("SELECT run_id FROM predictions WHERE kind = ? ORDER BY id DESC LIMIT 1", (kind,))
        run_id = row[0][0] if row else None
    df = store.query(
        f"SELECT {cols} FROM predictions p JOIN items i ON i.id = p.item_id "
        "WHERE p.id IN (SELECT MAX(id) FROM predictions WHERE kind = ? AND run_id = ? GROUP BY item_id) "
        "ORDER BY p.item_id", (kind, run_id))
    if with_proba:
        df["proba"] = [None if b is None else np.frombuffer(b, dtype=np.float32) for b in df["proba"]]
    return df
