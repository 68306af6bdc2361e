"""LabelStore: every label event in one SQLite file, with where it came from.

The store keeps items (where the data lives), an append-only log of label events, runs, model
predictions and cleaning suggestions (for the review queues, see :mod:`pseudolabel.queues`).

How the current label of an item is derived
-------------------------------------------
Events are never updated or deleted (triggers refuse it). An event is *effective* unless

* it was undone: an ``undo`` event points at it through ``undoes`` (``LabelStore.undo`` undoes the
  latest effective human decision), or
* it was discarded: a row of the ``discards`` table hides every ``pseudo`` (or ``corrected``) event
  written up to that moment, optionally of one run only. Discarding is one row, not one per
  event, and later events (a redone run) stay visible. ``given`` and ``human`` labels cannot be
  discarded.

The current label is the latest effective event, except that a person outranks the machines: the
latest effective ``human`` event wins over any later ``given``, ``pseudo`` or ``corrected`` one, so
re-running a job never overrides a reviewed item. Undo the human decision to let the machine labels
show again. Label ``-1`` means "no label"; a person may record it to reject an item.

Concurrency: WAL mode, a busy timeout, and every write in ``BEGIN IMMEDIATE``, so a running job
and the review page can append at once without losing an event.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from pseudolabel._store_schema import (  # noqa: F401  (MIGRATIONS, apply_migrations: re-exported)
    _CURRENT, _EFFECTIVE, MIGRATIONS, SCHEMA_VERSION, _now, apply_migrations,
)
from pseudolabel.exceptions import DataError, InputError, StoreError

__all__ = ["LabelStore", "SCHEMA_VERSION", "SOURCES"]

SOURCES = ("given", "human", "pseudo", "corrected")
_DISCARDABLE = ("pseudo", "corrected")
_SQLITE_HEADER = b"SQLite format 3\x00"
_CHUNK = 900  # stays under SQLite's bound-parameter limit on old builds


def _column(value, n: int, name: str) -> list:
    """Broadcast a scalar or a length-n sequence to a list of Python values (None for missing)."""
    if value is None or np.isscalar(value):
        return [value] * n
    arr = np.asarray(value, dtype=object)
    if arr.ndim != 1 or len(arr) != n:
        raise InputError(f"{name} must be a scalar or hold one value per item ({n}), "
                         f"got shape {np.shape(value)}; pass one {name} per label.")
    return arr.tolist()


class LabelStore:
    """All labels of a data set as an append-only log of events in SQLite.

    Parameters
    ----------
    path : str or Path
        The database file, e.g. ``runs/st/labels.db``.
    create : bool, default True
        Create the file when it does not exist; with False a missing file is a StoreError.

    Examples
    --------
    >>> store = LabelStore(tmp_path / "labels.db")                       # doctest: +SKIP
    >>> store.set_classes([str(d) for d in range(10)])                   # doctest: +SKIP
    >>> store.add_items(["train/0", "train/1"], ["x_train:0", "x_train:1"])  # doctest: +SKIP
    >>> store.add_labels(["train/0"], [5], source="given")               # doctest: +SKIP
    >>> store.current_labels()[["key", "label", "source"]]               # doctest: +SKIP
    """

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._conn = self._open(create)
        try:
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    # ---------------------------------------------------------------- opening and migrations
    def _open(self, create: bool) -> sqlite3.Connection:
        p = self.path
        if p.is_dir():
            raise StoreError(f"{p} is a directory, not a label store; pass a file path such as {p / 'labels.db'}.")
        if not p.exists():
            if not create:
                raise StoreError(f"no label store at {p}; check the path or run a job that writes one.")
            if not p.parent.is_dir():
                raise StoreError(f"the folder of {p} does not exist; create {p.parent} first.")
        elif p.stat().st_size > 0:
            with open(p, "rb") as fh:
                head = fh.read(len(_SQLITE_HEADER))
            # Check before SQLite touches the file, so a corrupt or foreign file is never rewritten.
            if head != _SQLITE_HEADER:
                raise StoreError(f"{p} is not a SQLite database (corrupt or another kind of file); "
                                 "it was left untouched: restore it from a backup or pass a new path.")
        # check_same_thread=False: the review page calls from a thread pool; self._lock serializes.
        conn = sqlite3.connect(str(p), timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"{p} cannot be read as a SQLite database ({exc}); it was left untouched: "
                             "restore it from a backup or pass a new path.") from None
        return conn

    def _schema_version(self) -> int:
        tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" not in tables:
            if tables:
                raise StoreError(
                    f"{self.path} is a SQLite database but not a pseudolabel label store "
                    f"(tables: {', '.join(sorted(tables)[:5])}); it was left untouched: pass a new path.")
            return 0
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _migrate(self) -> None:
        try:
            version = self._schema_version()
            self._check_version(version)
            if version < SCHEMA_VERSION:
                apply_migrations(self._conn, SCHEMA_VERSION)
            # WAL after the checks: switching it writes to the file.
            self._conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} cannot be read as a label store ({exc}); it was left "
                             "untouched: restore it from a backup or pass a new path.") from None

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path.name} has schema version {version} but this pseudolabel knows "
                             f"up to {SCHEMA_VERSION}; upgrade pseudolabel.")

    # ---------------------------------------------------------------- plumbing
    def close(self) -> None:
        """Close the connection (the file stays)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "LabelStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LabelStore({str(self.path)!r})"

    @contextmanager
    def _write(self):
        """One write transaction: BEGIN IMMEDIATE takes the write lock at once, so two processes
        queue up (busy_timeout) instead of failing half-way."""
        with self._lock:
            cur = self._conn.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:  # locked past busy_timeout, read-only file
                raise StoreError(f"{self.path.name} refuses a write ({exc}); close the other program "
                                 "writing to it, or check that the file is writable.") from None
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")

    def _query(self, sql: str, params: Sequence = ()) -> pd.DataFrame:
        with self._lock:
            cur = self._conn.execute(sql, params)
            cols = [c[0] for c in cur.description]
            return pd.DataFrame.from_records(cur.fetchall(), columns=cols)

    def _rows(self, sql: str, params: Sequence = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    @property
    def schema_version(self) -> int:
        """The schema version of the file (equals SCHEMA_VERSION once opened)."""
        with self._lock:
            return self._schema_version()

    def migrations(self) -> list[str]:
        """Names of the applied migrations, in the order they were applied."""
        return [r[0] for r in self._rows("SELECT name FROM migrations ORDER BY version")]

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        """A value of the meta table, e.g. ``images`` (where the review page finds the images)."""
        row = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        return row[0][0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        """Set a meta value; ``schema_version`` is the store's own business."""
        if key == "schema_version":
            raise InputError("schema_version is set by the migrations; choose another key.")
        with self._write() as cur:
            cur.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                        "SET value = excluded.value", (key, str(value)))

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

    def _check_labels(self, labels: np.ndarray, allow_none: bool) -> None:
        n_classes = self._rows("SELECT COUNT(*) FROM classes")[0][0]
        low = -1 if allow_none else 0
        bad = labels < low
        if n_classes:
            bad |= labels >= n_classes
        if bad.any():
            value = int(labels[bad][0])
            known = f"0..{n_classes - 1}" if n_classes else "labels >= 0"
            raise InputError(f"label {value} is outside the known classes ({known}) of {self.path.name}; "
                             "pass a known class index or extend the classes with set_classes.")

    # ---------------------------------------------------------------- runs
    def begin_run(self, job: str, config: dict | None = None, run_id: str | None = None) -> str:
        """Record a run (a job invocation) and return its id, to tag the events it writes.

        Examples
        --------
        >>> run_id = store.begin_run("selftrain", {"threshold": 0.99})   # doctest: +SKIP
        """
        run_id = run_id or f"{job}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
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

    @staticmethod
    def _register_runs(cur, run_ids: Iterable) -> None:
        # Events may name a run nobody began (e.g. a script's own id); register it so the
        # foreign key holds and the run shows up in runs().
        cur.executemany("INSERT INTO runs(run_id, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                        [(r, _now()) for r in set(run_ids) if r is not None])

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
        from pseudolabel._validation import check_labels

        lab = check_labels(labels, name="labels")
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
        self._check_labels(lab[keep], allow_none=True)
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
        with self._write() as cur:
            self._register_runs(cur, [run_id])
            cur.executemany(
                "INSERT INTO events(item_id, label, source, confidence, round, run_id, model_id, who, "
                "created_at, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    def current_labels(self, split: str | None = None, items: Sequence | None = None) -> pd.DataFrame:
        """The current label of every item, derived from its events (see the module docstring).

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
            ids = [int(i) for i in self.item_ids(items)]
            if not ids:
                ids = [-1]
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
        effective = {r[0] for r in self._rows(_EFFECTIVE.format(where="AND e.item_id = ?"), (iid,))}
        undone = {r[0] for r in self._rows(
            "SELECT undoes FROM events WHERE item_id = ? AND undoes IS NOT NULL", (iid,))}
        cur = self.current_labels(items=[iid])["event_id"].iloc[0]
        out = []
        for rec in events:
            eid = rec["id"]
            rec["status"] = ("undo" if rec["source"] == "undo" else "undone" if eid in undone
                             else "discarded" if eid not in effective
                             else "current" if eid == cur else "superseded")
            out.append(rec)
        return out

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

    # ---------------------------------------------------------------- predictions and suggestions
    # Written here so jobs find them on the store; the queues module holds the code and reads them.
    def record_predictions(self, items: Sequence, proba, run_id: str, *,
                           model_id: str | None = None, keep_proba: bool = True) -> int:
        """Record class probabilities (active learning); see :func:`pseudolabel.queues.record_predictions`."""
        from pseudolabel import queues

        return queues.record_predictions(self, items, proba, run_id, model_id=model_id, keep_proba=keep_proba)

    def record_suggestions(self, items: Sequence, given, suggested, score, run_id: str, *,
                           confidence=None, model_id: str | None = None) -> int:
        """Record cleaning suggestions (suspects); see :func:`pseudolabel.queues.record_suggestions`."""
        from pseudolabel import queues

        return queues.record_suggestions(self, items, given, suggested, score, run_id,
                                         confidence=confidence, model_id=model_id)

    def queue(self, name: str, **options) -> pd.DataFrame:
        """A review queue: 'suspects', 'audit', 'active' or 'all'; see :mod:`pseudolabel.queues`."""
        from pseudolabel import queues

        return queues.queue(self, name, **options)

    # ---------------------------------------------------------------- export and import
    def export(self, path: str | Path, format: str = "csv", *, split: str | None = None,
               labeled_only: bool = True) -> Path:
        """Write the current labels to ``path`` and return it.

        ``csv`` and ``parquet`` hold key, location, split, label, class, source, confidence,
        round, run_id, model_id, who, created_at. ``folder`` writes an image-folder manifest CSV
        (path, label as the class name, source, class), as :func:`pseudolabel.datasets.load_image_folder`
        reads it, and never moves, renames or deletes a file.

        Examples
        --------
        >>> store.export("labels.csv")   # doctest: +SKIP
        """
        if format not in ("csv", "parquet", "folder"):
            raise InputError(f"format must be 'csv', 'parquet' or 'folder', got {format!r}.")
        df = self.current_labels(split=split)
        if labeled_only:
            df = df[df["label"] >= 0]
        names = self.classes
        df = df.assign(**{"class": [names[v] if 0 <= v < len(names) else (str(v) if v >= 0 else "")
                                    for v in df["label"]]})
        path = Path(path)
        if not path.parent.is_dir():
            raise DataError(f"the folder of {path} does not exist; create {path.parent} first.")
        if format == "folder":
            # load_image_folder reads a manifest's label as a class name, as in the folder names.
            df = df.assign(label=df["class"]).rename(columns={"location": "path"})
            df[["path", "label", "source", "class"]].to_csv(path, index=False)
            return path
        out = df[["key", "location", "split", "label", "class", "source", "confidence", "round",
                  "run_id", "model_id", "who", "created_at"]].reset_index(drop=True)
        out["round"] = out["round"].astype("Int64")
        if format == "csv":
            out.to_csv(path, index=False)
        else:
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise InputError("writing Parquet needs pyarrow; install it with "
                                 "pip install 'pseudolabel[parquet]'.") from None
            out.to_parquet(path, index=False)
        return path

    def import_labels_csv(self, path: str | Path, source: str = "human", *, who: str | None = None,
                          note: str | None = None) -> int:
        """Append labels from a CSV with columns ``key`` (or ``item`` or ``path``) and ``label``
        (a class index or a class name); empty labels are skipped. Returns the number written.

        Examples
        --------
        >>> store.import_labels_csv("relabeled.csv", who="ana")   # doctest: +SKIP
        """
        path = Path(path)
        if not path.is_file():
            raise DataError(f"no CSV file at {path}; check the path.")
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        key_col = next((c for c in ("key", "item", "path") if c in df.columns), None)
        if key_col is None or "label" not in df.columns:
            raise InputError(f"{path.name} has columns {', '.join(df.columns)} but needs 'key' (or 'item' "
                             "or 'path') and 'label'; rename its columns.")
        df = df[df["label"].str.strip() != ""]
        by_name = {n: i for i, n in enumerate(self.classes)}
        labels = []
        for raw in df["label"].str.strip():
            if raw in by_name:
                labels.append(by_name[raw])
            else:
                try:
                    labels.append(int(float(raw)) if float(raw).is_integer() else None)
                except ValueError:
                    labels.append(None)
                if labels[-1] is None:
                    raise InputError(f"{path.name} holds the label {raw!r}, which is neither a class index nor "
                                     f"a class name of {self.path.name}; fix that row.")
        return self.add_labels(df[key_col].tolist(), np.asarray(labels, dtype=np.int64), source,
                               who=who, note=note)
