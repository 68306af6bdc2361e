"""LabelStore: every label event in one SQLite file, with where it came from.

How the current label is derived is told in :mod:`pseudolabel.store`. This class is the store's
edge: reads through named methods or ``query`` / ``rows`` (read-only SQL), writes through named
methods or ``with store.transaction() as tx``. Nothing outside the package writes SQL.

Concurrency: WAL mode, a busy timeout, and every write in ``BEGIN IMMEDIATE``, so a running job
and the review page can append at once without losing an event. A write that fails (full disk,
read-only file, a lock held past the timeout) is rolled back whole and is one StoreError line.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from pseudolabel._validation import check_labels as as_labels
from pseudolabel.exceptions import InputError
from pseudolabel.store import io, predictions, queues
from pseudolabel.store.connection import StoreFile
from pseudolabel.store.schema import _CURRENT, _EFFECTIVE, _now
from pseudolabel.store.transaction import _column, check_labels

__all__ = ["LabelStore", "SOURCES"]

SOURCES = ("given", "human", "pseudo", "corrected")
_DISCARDABLE = ("pseudo", "corrected")
_CHUNK = 900  # stays under SQLite's bound-parameter limit on old builds


def new_run_id(job: str) -> str:
    """A run id that sorts by time and does not collide: ``selftrain-20240101T120000-1a2b3c``."""
    return f"{job}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


class LabelStore(StoreFile):
    """All labels of a data set as an append-only log of events in SQLite.

    Parameters
    ----------
    path : str or Path
        The database file, e.g. ``runs/st/labels.db``.
    create : bool, default True
        Create the file when it does not exist; with False a missing file is a StoreError.
    readonly : bool, optional
        True opens the store for reading only (SQLite ``mode=ro``; nothing is migrated or
        written). The default opens it read-only when ``create`` is False and the file or its
        folder cannot be written (a read-only mount, ``chmod 444``); with ``create`` True such a
        store is a StoreError at once. On a read-only store every write is a one-line StoreError:
        "labels.db is read-only (the file or its folder cannot be written); ...".

    Examples
    --------
    >>> store = LabelStore(tmp_path / "labels.db")                       # doctest: +SKIP
    >>> store.set_classes([str(d) for d in range(10)])                   # doctest: +SKIP
    >>> store.add_items(["train/0", "train/1"], ["x_train:0", "x_train:1"])  # doctest: +SKIP
    >>> store.add_labels(["train/0"], [5], source="given")               # doctest: +SKIP
    >>> store.current_labels()[["key", "label", "source"]]               # doctest: +SKIP
    >>> LabelStore("/mnt/archive/labels.db", readonly=True).history("train/0")  # doctest: +SKIP
    """

    # Opening, verify, query / rows, transaction, meta: see StoreFile.

    # ---------------------------------------------------------------- items and classes
    def add_items(self, keys: Sequence[str], locations: Sequence[str] | None = None,
                  split: str | Sequence[str] = "train") -> np.ndarray:
        """Add items (idempotent) and return their ids, in the order of ``keys``.

        Parameters
        ----------
        keys : sequence of str
            Stable item names, e.g. ``"train/17"`` or a file path relative to the image root.
        locations : sequence of str, optional
            Where the data lives: ``"x_train:17"`` (array name and index in an npz) or a file path
            relative to the image folder. Defaults to the keys.
        split : str or sequence of str, default "train"

        Examples
        --------
        >>> ids = store.add_items([f"train/{i}" for i in range(3)],
        ...                       [f"x_train:{i}" for i in range(3)])   # doctest: +SKIP
        """
        keys = [str(k) for k in keys]
        n = len(keys)
        locs = keys if locations is None else [None if v is None else str(v) for v in locations]
        if len(locs) != n:
            raise InputError(f"keys and locations must be the same length, but keys is length {n} and "
                             f"locations is length {len(locs)}; pass one location per item.")
        splits = [str(s) for s in _column(split, n, "split")]
        if len(set(keys)) != n:
            dup = pd.Series(keys)[pd.Series(keys).duplicated()].iloc[0]
            raise InputError(f"item keys must be unique, but {dup!r} appears twice; give each item its own key.")
        with self._write() as cur:
            cur.executemany("INSERT INTO items(key, location, split) VALUES (?, ?, ?) "
                            "ON CONFLICT(key) DO NOTHING", zip(keys, locs, splits))
            found = self._lookup(cur, keys)
            for k, loc in zip(keys, locs):
                if found[k][1] != loc:
                    raise InputError(f"item {k!r} is already in {self.path.name} at {found[k][1]!r}, not "
                                     f"{loc!r}; use a new key or the recorded location.")
        return np.array([found[k][0] for k in keys], dtype=np.int64)

    def _lookup(self, cur, keys: Sequence[str]) -> dict[str, tuple[int, str]]:
        if len(keys) > 20 * _CHUNK:  # one scan beats many IN lists
            wanted = set(keys)
            return {k: (iid, loc) for k, iid, loc in cur.execute("SELECT key, id, location FROM items")
                    if k in wanted}
        out: dict[str, tuple[int, str]] = {}
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i:i + _CHUNK]
            q = f"SELECT key, id, location FROM items WHERE key IN ({','.join('?' * len(chunk))})"
            out.update({k: (iid, loc) for k, iid, loc in cur.execute(q, chunk)})
        return out

    def item_ids(self, keys_or_ids: Iterable) -> np.ndarray:
        """Resolve item keys (str) or ids (int) to ids; an unknown one is an InputError."""
        items = list(keys_or_ids.tolist() if isinstance(keys_or_ids, np.ndarray) else keys_or_ids)
        if not items:
            return np.zeros(0, dtype=np.int64)
        if all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in items):
            ids = [int(k) for k in items]
            known = set()
            with self._lock:
                for i in range(0, len(ids), _CHUNK):
                    chunk = sorted(set(ids[i:i + _CHUNK]))
                    q = f"SELECT id FROM items WHERE id IN ({','.join('?' * len(chunk))})"
                    known.update(r[0] for r in self._conn.execute(q, chunk))
            missing = [k for k in ids if k not in known]
            what = "item id"
        else:
            keys = [str(k) for k in items]
            with self._lock:
                found = self._lookup(self._conn, sorted(set(keys)))
            missing = [k for k in keys if k not in found]
            ids = [found[k][0] for k in keys] if not missing else []
            what = "item key"
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise InputError(f"unknown {what} {missing[0]!r}{more} in {self.path.name}; "
                             "add the items first with LabelStore.add_items.")
        return np.asarray(ids, dtype=np.int64)

    def items(self, split: str | None = None) -> pd.DataFrame:
        """All items: item_id, key, location, split."""
        where, params = ("WHERE split = ?", (split,)) if split is not None else ("", ())
        return self._query(f"SELECT id AS item_id, key, location, split FROM items {where} ORDER BY id", params)

    def location(self, item) -> str | None:
        """Where the data of one item (an id or a key) lives; None when the store has no such item."""
        column = "id" if isinstance(item, (int, np.integer)) and not isinstance(item, bool) else "key"
        value = int(item) if column == "id" else str(item)
        row = self._rows(f"SELECT location FROM items WHERE {column} = ?", (value,))
        return row[0][0] if row else None

    def set_classes(self, names: Sequence[str]) -> None:
        """Name the classes: label ``i`` is ``names[i]``. Labels outside them are refused after this.

        Examples
        --------
        >>> store.set_classes(["cat", "dog"])   # doctest: +SKIP
        """
        names = [str(n) for n in names]
        if not names:
            raise InputError("set_classes needs at least one class name; pass e.g. ['0', '1', ...].")
        with self._write() as cur:
            top = cur.execute("SELECT MAX(label) FROM events").fetchone()[0]
            if top is not None and top >= len(names):
                raise InputError(f"{self.path.name} already holds the label {top} but only {len(names)} "
                                 "class names were given; pass a name for every label in use.")
            cur.execute("DELETE FROM classes")
            cur.executemany("INSERT INTO classes(idx, name) VALUES (?, ?)", enumerate(names))

    @property
    def classes(self) -> list[str]:
        """Class names by label index (empty until set_classes)."""
        return [r[0] for r in self._rows("SELECT name FROM classes ORDER BY idx")]

    def max_label(self) -> int | None:
        """The largest label any event holds (None when there is no event), e.g. to name classes."""
        top = self._rows("SELECT MAX(label) FROM events")[0][0]
        return None if top is None else int(top)

    # ---------------------------------------------------------------- runs
    def begin_run(self, job: str, config: dict | None = None, run_id: str | None = None) -> str:
        """Record a run (a job invocation) and return its id, to tag the events it writes.

        Examples
        --------
        >>> run_id = store.begin_run("selftrain", {"threshold": 0.99})   # doctest: +SKIP
        """
        run_id = run_id or new_run_id(job)
        text = json.dumps(config or {}, sort_keys=True, default=str)
        with self._write() as cur:
            cur.execute("INSERT INTO runs(run_id, job, created_at, config) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT(run_id) DO UPDATE SET job = excluded.job, config = excluded.config",
                        (run_id, job, _now(), text))
        return run_id

    def runs(self) -> pd.DataFrame:
        """All runs: run_id, job, created_at, config (a dict)."""
        df = self._query("SELECT run_id, job, created_at, config FROM runs ORDER BY created_at, rowid")
        df["config"] = [json.loads(c) if isinstance(c, str) and c else {} for c in df["config"]]
        return df

    # ---------------------------------------------------------------- label events
    def add_labels(self, items: Sequence, labels: Sequence[int], source: str, *,
                   confidence=None, round=None, run_id: str | None = None,
                   model_id: str | None = None, who: str | None = None, note=None) -> int:
        """Append one label event per item, in one transaction; return how many were written.

        Parameters
        ----------
        items : sequence of str or int
            Item keys, or item ids as add_items returned them.
        labels : sequence of int
            Class indices. ``-1`` means "no label": skipped for given/pseudo/corrected (scikit-learn's
            unlabeled marker, so ``y`` can be passed whole); for ``human`` it records a person's
            decision that the item has no valid class.
        source : {"given", "human", "pseudo", "corrected"}
        confidence, round, note : scalar or one per item, optional
        run_id, model_id, who : str, optional

        Examples
        --------
        >>> store.add_labels(["train/5", "train/9"], [3, 7], "pseudo", confidence=[0.99, 0.995],
        ...                  round=1, run_id=run_id)   # doctest: +SKIP
        2
        """
        if source not in SOURCES:
            raise InputError(f"source must be one of {', '.join(SOURCES)}, got {source!r}; "
                             "undo and discard have their own methods.")
        lab = as_labels(labels, name="labels")
        items = list(items.tolist() if isinstance(items, np.ndarray) else items)
        if len(items) != len(lab):
            raise InputError(f"items and labels must be the same length, but items is length {len(items)} "
                             f"and labels is length {len(lab)}; pass one label per item.")
        n = len(lab)
        conf = _column(confidence, n, "confidence")
        rounds = _column(round, n, "round")
        notes = _column(note, n, "note")
        conf_arr = np.array([np.nan if c is None else c for c in conf], dtype=float)
        finite = conf_arr[~np.isnan(conf_arr)]
        if finite.size and (finite.min() < 0 or finite.max() > 1):
            raise InputError(f"confidence must be in [0, 1], found {finite[(finite < 0) | (finite > 1)][0]!r}; "
                             "pass probabilities.")
        keep = np.ones(n, dtype=bool) if source == "human" else lab != -1
        check_labels(lab[keep], self._rows("SELECT COUNT(*) FROM classes")[0][0], self.path)
        ids = self.item_ids(items) if n else np.zeros(0, dtype=np.int64)
        now = _now()
        ids_l, lab_l, conf_l = ids.tolist(), lab.tolist(), conf_arr.tolist()
        rows = [
            (ids_l[i], lab_l[i], source, None if conf_l[i] != conf_l[i] else conf_l[i],  # NaN -> NULL
             None if rounds[i] is None else int(rounds[i]),
             run_id, model_id, who, now, None if notes[i] is None else str(notes[i]))
            for i in np.flatnonzero(keep).tolist()
        ]
        if not rows:
            return 0
        with self.transaction() as tx:
            return tx.add_events(rows)

    def current_labels(self, split: str | None = None, items: Sequence | None = None) -> pd.DataFrame:
        """The current label of every item, derived from its events (see :mod:`pseudolabel.store`).

        Returns a DataFrame with one row per item, in item order: item_id, key, location, split,
        label (-1 where none), source (None where none), confidence, round, run_id, model_id, who,
        created_at, event_id, human_event (id of the latest effective human event, or NaN).

        Examples
        --------
        >>> cur = store.current_labels(split="train")   # doctest: +SKIP
        >>> y = cur["label"].to_numpy()                  # doctest: +SKIP
        """
        where, params, eff_where = [], [], ""
        if split is not None:
            where.append("i.split = ?")
            params.append(split)
        if items is not None:
            ids = [int(i) for i in self.item_ids(items)] or [-1]
            marks = ",".join("?" * len(ids))
            # Narrow the event scan too: a single item's state must not cost a full table scan.
            eff_where = f"AND e.item_id IN ({marks})"
            where.append(f"i.id IN ({marks})")
            params = ids + params + ids
        sql = _CURRENT.format(effective=_EFFECTIVE.format(where=eff_where),
                              where=("WHERE " + " AND ".join(where)) if where else "")
        df = self._query(sql, params)
        df["label"] = df["label"].astype(np.int64)
        return df

    def events(self, run_id: str | None = None, source: str | Sequence[str] | None = None, *,
               items: Sequence | None = None, latest: bool = False) -> pd.DataFrame:
        """The effective label events (not undone, not discarded; no undo markers), oldest first:
        event_id, item_id, label, source, confidence, round, run_id, model_id, who, created_at, note.

        ``run_id``, ``source`` (one or several) and ``items`` narrow them; ``latest`` keeps the
        latest of each item among those.

        Examples
        --------
        >>> store.events(run_id, "pseudo")[["item_id", "label"]]                  # doctest: +SKIP
        >>> store.events(source=("given", "pseudo", "corrected"), latest=True)   # doctest: +SKIP
        """
        where, params = "", []
        if run_id is not None:
            where, params = "AND e.run_id = ?", [run_id]
        if source is not None:
            sources = [source] if isinstance(source, str) else list(source)
            bad = [s for s in sources if s not in SOURCES]
            if bad or not sources:
                raise InputError(f"source must be one or more of {', '.join(SOURCES)}, got {source!r}.")
            where += f" AND e.source IN ({','.join('?' * len(sources))})"
            params += sources
        if items is not None:
            ids = [int(i) for i in self.item_ids(items)] or [-1]
            where += f" AND e.item_id IN ({','.join('?' * len(ids))})"
            params += ids
        sql = _EFFECTIVE.format(where=where)
        if latest:
            sql = (f"SELECT * FROM (SELECT x.*, ROW_NUMBER() OVER (PARTITION BY item_id ORDER BY id DESC) "
                   f"AS rn FROM ({sql}) AS x) WHERE rn = 1")
        return self._query("SELECT id AS event_id, item_id, label, source, confidence, round, run_id, "
                           f"model_id, who, created_at, note FROM ({sql}) ORDER BY id", params)

    def history(self, item) -> list[dict[str, Any]]:
        """Every event of one item, oldest first, each with a ``status``: current, superseded,
        undone, discarded, or undo (the undo marker itself).

        Examples
        --------
        >>> [(e["source"], e["label"], e["status"]) for e in store.history("train/5")]  # doctest: +SKIP
        """
        iid = int(self.item_ids([item])[0])
        with self._lock:
            res = self._conn.execute("SELECT * FROM events WHERE item_id = ? ORDER BY id", (iid,))
            cols = [c[0] for c in res.description]
            events = [dict(zip(cols, r)) for r in res.fetchall()]
        effective = set(self.events(items=[iid])["event_id"].tolist())
        undone = {e["undoes"] for e in events if e["undoes"] is not None}
        cur = self.current_labels(items=[iid])["event_id"].iloc[0]
        for rec in events:
            eid = rec["id"]
            rec["status"] = ("undo" if rec["source"] == "undo" else "undone" if eid in undone
                             else "discarded" if eid not in effective
                             else "current" if eid == cur else "superseded")
        return events

    def undo(self, who: str | None = None, note: str | None = None) -> dict[str, Any] | None:
        """Undo the latest effective human decision (of ``who`` when given) and return it.

        The decision stays in the log; an ``undo`` event points at it. Returns None when there is
        nothing to undo. Undo events themselves are not undone: press undo again to go further back.

        Examples
        --------
        >>> store.undo(who="ana")["label"]   # doctest: +SKIP
        """
        extra, params = ("AND e.who = ?", (who,)) if who is not None else ("", ())
        with self._write() as cur:
            row = cur.execute(f"SELECT id, item_id FROM ({_EFFECTIVE.format(where=extra)}) "
                              "WHERE source = 'human' ORDER BY id DESC LIMIT 1", params).fetchone()
            if row is None:
                return None
            cur.execute("INSERT INTO events(item_id, label, source, who, created_at, note, undoes) "
                        "VALUES (?, -1, 'undo', ?, ?, ?, ?)", (row[1], who, _now(), note, row[0]))
            res = cur.execute("SELECT e.*, i.key FROM events e JOIN items i ON i.id = e.item_id "
                              "WHERE e.id = ?", (row[0],))
            cols = [c[0] for c in res.description]
            return dict(zip(cols, res.fetchone()))

    def discard(self, source: str = "pseudo", run_id: str | None = None, *,
                who: str | None = None, note: str | None = None) -> int:
        """Hide the machine labels of ``source`` (of one run, or all) written so far; return how
        many effective events were hidden. Nothing is deleted, and given and human labels are never
        touched, so a run can be redone after more human labels arrive.

        Examples
        --------
        >>> store.discard("pseudo")   # doctest: +SKIP
        5120
        """
        if source not in _DISCARDABLE:
            raise InputError(f"discard removes machine labels only ({', '.join(_DISCARDABLE)}), got "
                             f"{source!r}; given and human labels are kept, undo a human decision instead.")
        extra, params = "AND e.source = ?", [source]
        if run_id is not None:
            extra += " AND e.run_id = ?"
            params.append(run_id)
        with self._write() as cur:
            count = cur.execute(f"SELECT COUNT(*) FROM ({_EFFECTIVE.format(where=extra)})", params).fetchone()[0]
            last = cur.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
            cur.execute("INSERT INTO discards(source, run_id, last_event_id, who, created_at, note) "
                        "VALUES (?, ?, ?, ?, ?, ?)", (source, run_id, last, who, _now(), note))
        return int(count)

    def counts(self) -> dict[str, int]:
        """Number of items per current source (``none`` for unlabeled), e.g. for a summary line."""
        cur = self.current_labels()
        return {str(k): int(v) for k, v in cur["source"].fillna("none").value_counts().items()}

    # ---------------------------------------------------------------- predictions, queues, files
    def record_predictions(self, items: Sequence, proba, run_id: str, *,
                           model_id: str | None = None, keep_proba: bool = True) -> int:
        """Record class probabilities (active learning); see :func:`pseudolabel.store.record_predictions`."""
        return predictions.record_predictions(self, items, proba, run_id, model_id=model_id,
                                              keep_proba=keep_proba)

    def record_suggestions(self, items: Sequence, given, suggested, score, run_id: str, *,
                           confidence=None, model_id: str | None = None) -> int:
        """Record cleaning suggestions (suspects); see :func:`pseudolabel.store.record_suggestions`."""
        return predictions.record_suggestions(self, items, given, suggested, score, run_id,
                                              confidence=confidence, model_id=model_id)

    def predictions(self, kind: str = "proba", run_id: str | None = None, *,
                    with_proba: bool = False) -> pd.DataFrame:
        """The latest prediction per item of one run; see :func:`pseudolabel.store.predictions`."""
        return predictions.predictions(self, kind, run_id, with_proba=with_proba)

    def queue(self, name: str, **options) -> pd.DataFrame:
        """A review queue: 'suspects', 'audit', 'active' or 'all'; see :func:`pseudolabel.store.queue`."""
        return queues.queue(self, name, **options)

    def export(self, path: str | Path, format: str = "csv", *, split: str | None = None,
               labeled_only: bool = True) -> Path:
        """Write the current labels to ``path`` and return it; see :func:`pseudolabel.store.io.export_labels`.

        Examples
        --------
        >>> store.export("labels.csv")   # doctest: +SKIP
        """
        return io.export_labels(self, path, format, split=split, labeled_only=labeled_only)

    def import_labels_csv(self, path: str | Path, source: str = "human", *, who: str | None = None,
                          note: str | None = None) -> int:
        """Append labels from a CSV (key and label columns); see :func:`pseudolabel.store.io.import_labels_csv`.

        Examples
        --------
        >>> store.import_labels_csv("relabeled.csv", who="ana")   # doctest: +SKIP
        """
        return io.import_labels_csv(self, path, source, who=who, note=note)
