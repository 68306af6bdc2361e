"""The write side of a label store: one transaction and the writes made in it.

``with store.transaction() as tx:`` takes SQLite's write lock at once (``BEGIN IMMEDIATE``), so
two processes queue up instead of failing half-way, and commits at the end of the block (rolls
back on an exception). The object it gives writes rows of the store's own tables through named
operations; nothing outside :mod:`pseudolabel.store` writes SQL.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from pseudolabel.exceptions import InputError
from pseudolabel.store.schema import _now

__all__ = ["Transaction"]


def _column(value, n: int, name: str) -> list:
    """Broadcast a scalar or a length-n sequence to a list of Python values (None for missing)."""
    if value is None or np.isscalar(value):
        return [value] * n
    arr = np.asarray(value, dtype=object)
    if arr.ndim != 1 or len(arr) != n:
        raise InputError(f"{name} must be a scalar or hold one value per item ({n}), "
                         f"got shape {np.shape(value)}; pass one {name} per label.")
    return arr.tolist()


def _floats(value, n: int, name: str) -> list:
    """A column of floats or None (NaN is stored as NULL)."""
    return [None if v is None or v != v else float(v) for v in _column(value, n, name)]


def _ints(value, n: int, name: str) -> list:
    return [None if v is None else int(v) for v in _column(value, n, name)]


def check_labels(labels, n_classes: int, path: Path, allow_none: bool = True) -> None:
    """An InputError when a label is below -1 (0 without ``allow_none``) or past ``n_classes``."""
    labels = np.asarray(labels)
    bad = labels < (-1 if allow_none else 0)
    if n_classes:
        bad |= labels >= n_classes
    if bad.any():
        value = int(labels[bad][0])
        known = f"0..{n_classes - 1}" if n_classes else "labels >= 0"
        raise InputError(f"label {value} is outside the known classes ({known}) of {path.name}; "
                         "pass a known class index or extend the classes with set_classes.")


class Transaction:
    """The writes of one open transaction of a :class:`~pseudolabel.store.LabelStore`.

    Examples
    --------
    >>> with store.transaction() as tx:                                    # doctest: +SKIP
    ...     tx.check_labels(suggested)
    ...     tx.add_predictions("suspect", ids, run_id, predicted=suggested, given=given, score=score)
    """

    def __init__(self, cursor: sqlite3.Cursor, path: Path) -> None:
        self._cur, self.path = cursor, path

    def register_runs(self, run_ids: Iterable) -> None:
        """Record runs nobody began (e.g. a script's own id), so the foreign key holds and the run
        shows up in ``runs()``; known runs stay as they are."""
        self._cur.executemany("INSERT INTO runs(run_id, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                              [(r, _now()) for r in set(run_ids) if r is not None])

    def last_event_id(self) -> int:
        """The id of the latest label event (0 when there is none)."""
        return int(self._cur.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])

    def n_classes(self) -> int:
        """How many classes are named (0 before set_classes)."""
        return int(self._cur.execute("SELECT COUNT(*) FROM classes").fetchone()[0])

    def check_labels(self, labels: np.ndarray, allow_none: bool = True) -> None:
        """An InputError when a label is below -1 (0 without ``allow_none``) or past the classes."""
        check_labels(labels, self.n_classes(), self.path, allow_none=allow_none)

    def add_events(self, rows: Sequence[tuple]) -> int:
        """Append label events: rows of (item_id, label, source, confidence, round, run_id,
        model_id, who, created_at, note), validated by the caller (see LabelStore.add_labels)."""
        self.register_runs(r[5] for r in rows)
        self._cur.executemany(
            "INSERT INTO events(item_id, label, source, confidence, round, run_id, model_id, who, "
            "created_at, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    def add_predictions(self, kind: str, item_ids: Sequence[int], run_id: str, *,
                        model_id: str | None = None, predicted=None, confidence=None, margin=None,
                        entropy=None, given=None, score=None, proba: Sequence[bytes | None] | None = None) -> int:
        """Append one prediction row per item: ``kind`` 'proba' (a model's probabilities, for active
        learning) or 'suspect' (a cleaning suggestion). Each column is a scalar or one value per
        item; ``after_event`` is the latest event id now, so a queue knows what was reviewed since."""
        if kind not in ("proba", "suspect"):
            raise InputError(f"kind must be 'proba' or 'suspect', got {kind!r}.")
        ids = [int(i) for i in item_ids]
        n = len(ids)
        self.register_runs([run_id])
        last, now = self.last_event_id(), _now()
        blobs = [None] * n if proba is None else list(proba)
        if len(blobs) != n:
            raise InputError(f"proba must hold one row per item ({n}), got {len(blobs)}.")
        cols = zip(ids, [run_id] * n, [model_id] * n, [kind] * n, _ints(predicted, n, "predicted"),
                   _floats(confidence, n, "confidence"), _floats(margin, n, "margin"),
                   _floats(entropy, n, "entropy"), _ints(given, n, "given"), _floats(score, n, "score"),
                   blobs, [last] * n, [now] * n)
        self._cur.executemany(
            "INSERT INTO predictions(item_id, run_id, model_id, kind, predicted, confidence, margin, "
            "entropy, given, score, proba, after_event, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", cols)
        return n
