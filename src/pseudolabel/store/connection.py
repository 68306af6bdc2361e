"""A label store's SQLite file: opening, migrating, checking, and the plumbing of reads and writes.

Every failure is one StoreError line that names the file and the fix, and a file that is not a
label store is never written to: its header and tables are checked before any migration.
:class:`StoreFile` is the base of :class:`~pseudolabel.store.LabelStore`: the connection, its lock,
read-only SQL (``query``, ``rows``), the write transaction, ``verify`` and the meta table.
"""
from __future__ import annotations

import re
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import pandas as pd

from pseudolabel.exceptions import InputError, StoreError
from pseudolabel.store.schema import SCHEMA_VERSION, TABLES, apply_migrations
from pseudolabel.store.transaction import Transaction

__all__ = ["StoreFile", "open_connection", "migrate", "verify"]

_SQLITE_HEADER = b"SQLite format 3\x00"


def open_connection(path: Path, create: bool) -> sqlite3.Connection:
    """A connection to ``path`` (autocommit; writes take BEGIN IMMEDIATE), after checking that
    the file is a SQLite database whose first page reads."""
    p = path
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
    # check_same_thread=False: the review page calls from a thread pool; the store's lock serializes.
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


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not r[0].startswith("sqlite_")}


def _not_a_store(path: Path, tables: set[str], missing: str) -> StoreError:
    shown = ", ".join(sorted(tables)[:6]) + (", ..." if len(tables) > 6 else "")
    return StoreError(f"{path.name} is not a label store (it has tables {shown}; no {missing!r}); "
                      "pass a label store made by pseudolabel or a new path.")


def schema_version(conn: sqlite3.Connection, path: Path) -> int:
    """The schema version recorded in the file; 0 for an empty database. A database holding
    other tables and no ``meta`` is refused before anything is written to it."""
    tables = _tables(conn)
    if "meta" not in tables:
        if tables:
            raise _not_a_store(path, tables, "meta")
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a newer or foreign file, apply the pending migrations, switch to WAL."""
    try:
        version = schema_version(conn, path)
        if version > SCHEMA_VERSION:
            raise StoreError(f"{path.name} has schema version {version} but this pseudolabel knows "
                             f"up to {SCHEMA_VERSION}; upgrade pseudolabel.")
        if version < SCHEMA_VERSION:
            apply_migrations(conn, SCHEMA_VERSION)
        _check_tables(conn, path)
        # WAL after the checks: switching it writes to the file.
        conn.execute("PRAGMA journal_mode = WAL")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} cannot be read as a label store ({exc}); it was left "
                         "untouched: restore it from a backup or pass a new path.") from None


def _check_tables(conn: sqlite3.Connection, path: Path) -> None:
    tables = _tables(conn)
    missing = [t for t in TABLES if t not in tables]
    if missing:
        raise _not_a_store(path, tables, missing[0])


def verify(conn: sqlite3.Connection, path: Path) -> None:
    """Read every page (``PRAGMA quick_check``) and check the tables; a StoreError line otherwise."""
    try:
        problems = [r[0] for r in conn.execute("PRAGMA quick_check(5)").fetchall()]
    except sqlite3.DatabaseError as exc:
        problems = [str(exc)]
    if problems != ["ok"]:
        first = " ".join(str(problems[0]).split())
        more = f" and {len(problems) - 1} more problems" if len(problems) > 1 else ""
        raise StoreError(f"{path.name} is damaged ({first}{more}); restore it from a backup or pass "
                         "a new --store.")
    try:
        _check_tables(conn, path)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path.name} is damaged ({exc}); restore it from a backup or pass a new --store.") from None


# What a read may do: query and rows refuse anything else when SQLite prepares the statement.
_READ_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
                           sqlite3.SQLITE_RECURSIVE})
_FIRST_WORD = re.compile(r"(?:\s+|--[^\n]*|/\*.*?\*/)*([A-Za-z]*)", re.S)


def _read_only(action: int, *_) -> int:
    return sqlite3.SQLITE_OK if action in _READ_ACTIONS else sqlite3.SQLITE_DENY


class StoreFile:
    """The SQLite file of a label store and the plumbing of its reads and writes (see the module)."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._conn = open_connection(self.path, create)
        try:
            migrate(self._conn, self.path)
        except BaseException:
            self._conn.close()
            raise

    # ---------------------------------------------------------------- plumbing
    def close(self) -> None:
        """Close the connection (the file stays)."""
        with self._lock:
            self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def verify(self) -> None:
        """Check the whole file before a long job relies on it: every page reads (SQLite's
        ``PRAGMA quick_check``) and every table of a label store is there. Raises a one-line
        StoreError otherwise.

        Examples
        --------
        >>> LabelStore("runs/st/labels.db", create=False).verify()   # doctest: +SKIP
        """
        with self._lock:
            verify(self._conn, self.path)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction: BEGIN IMMEDIATE takes the write lock at once, so two processes
        queue up (busy_timeout) instead of failing half-way."""
        with self._lock:
            if self._conn.in_transaction:
                raise StoreError(f"a write to {self.path.name} is already open; finish the "
                                 "'with store.transaction()' block before writing again.")
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

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One write transaction: committed at the end of the block, rolled back on an exception.

        Examples
        --------
        >>> with store.transaction() as tx:                                # doctest: +SKIP
        ...     tx.add_predictions("proba", ids, run_id, predicted=pred, confidence=conf)
        """
        with self._write() as cur:
            yield Transaction(cur, self.path)

    def _query(self, sql: str, params: Sequence = ()) -> pd.DataFrame:
        with self._lock:
            cur = self._conn.execute(sql, params)
            cols = [c[0] for c in cur.description]
            return pd.DataFrame.from_records(cur.fetchall(), columns=cols)

    def _rows(self, sql: str, params: Sequence = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _read(self, sql: str, params: Sequence) -> tuple[list[str], list[tuple]]:
        first = _FIRST_WORD.match(sql).group(1).upper()
        if first not in ("SELECT", "WITH", "VALUES"):
            raise InputError(f"query and rows of {self.path.name} only read (SELECT or WITH), got "
                             f"{first or 'no statement'!r}; write through the store's methods.")
        with self._lock:
            self._conn.set_authorizer(_read_only)
            try:
                cur = self._conn.execute(sql, params)
                return [c[0] for c in cur.description], cur.fetchall()
            except (sqlite3.Error, sqlite3.Warning) as exc:
                if "not authorized" in str(exc):
                    raise InputError(f"query and rows of {self.path.name} only read, but the statement "
                                     "writes or changes settings; write through the store's methods.") from None
                raise InputError(f"{self.path.name} cannot run the query ({exc}); fix the SQL.") from None
            finally:
                self._conn.set_authorizer(None)

    def query(self, sql: str, params: Sequence = ()) -> pd.DataFrame:
        """Run one read-only statement (SELECT or WITH) and return its rows as a DataFrame.

        Anything that would write, attach or change a setting is an InputError.

        Examples
        --------
        >>> store.query("SELECT source, COUNT(*) AS n FROM events GROUP BY source")   # doctest: +SKIP
        """
        cols, rows = self._read(sql, params)
        return pd.DataFrame.from_records(rows, columns=cols)

    def rows(self, sql: str, params: Sequence = ()) -> list[tuple]:
        """Like :meth:`query`, as a list of tuples."""
        return self._read(sql, params)[1]

    @property
    def schema_version(self) -> int:
        """The schema version of the file (equals SCHEMA_VERSION once opened)."""
        with self._lock:
            return schema_version(self._conn, self.path)

    def migrations(self) -> list[str]:
        """Names of the applied migrations, in the order they were applied."""
        return [r[0] for r in self._rows("SELECT name FROM migrations ORDER BY version")]

    def revision(self) -> tuple[int, int, int, int]:
        """Moves with every label, prediction, discard or item written by any process: the latest
        event, prediction and discard ids and the item count. A key for caches of queues."""
        return tuple(self._rows(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM events), (SELECT COALESCE(MAX(id), 0) FROM predictions), "
            "(SELECT COALESCE(MAX(id), 0) FROM discards), (SELECT COUNT(*) FROM items)")[0])

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
