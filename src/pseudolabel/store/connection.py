"""A label store's SQLite file: opening, migrating, checking, and the plumbing of reads and writes.

Every failure is one StoreError line that names the file and the fix, and a file that is not a
label store is never written to: its header and tables are checked before any migration.
:class:`StoreFile` is the base of :class:`~pseudolabel.store.LabelStore`: the connection, its lock,
read-only SQL (``query``, ``rows``), the write transaction, ``verify`` and the meta table.

Read-only stores: a store whose file or folder cannot be written (a read-only mount, ``chmod 444``
file, ``chmod 555`` folder), or one opened with ``readonly=True``, is opened with SQLite's
``mode=ro`` and never migrated nor switched to WAL; every read works and every write is the one
line of :func:`readonly_error`. A WAL store in a folder where its ``-shm`` cannot be created is
opened ``immutable`` (safe: nobody can write it there either) unless it holds an unmerged ``-wal``.

Failed writes: every write is one ``BEGIN IMMEDIATE`` transaction, rolled back on any error, so a
full disk (SQLITE_FULL), a read-only file or a lock held past the busy timeout leaves the store as
it was, and is one StoreError line (:func:`write_error`).
"""
from __future__ import annotations

import os
import random
import re
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import pandas as pd

from pseudolabel.exceptions import InputError, StoreError
from pseudolabel.store.schema import SCHEMA_VERSION, TABLES, apply_migrations
from pseudolabel.store.transaction import Transaction

__all__ = ["StoreFile", "open_connection", "migrate", "verify", "writable", "readonly_error", "write_error"]

_SQLITE_HEADER = b"SQLite format 3\x00"
BUSY_TIMEOUT_S = 30.0
# Primary SQLite result codes (extended codes carry them in the low byte).
_BUSY, _LOCKED, _READONLY, _IOERR, _FULL, _CANTOPEN = 5, 6, 8, 10, 13, 14


def writable(path: Path) -> bool:
    """Whether SQLite can write the store at ``path``: the file (when it exists) and its folder,
    where the -wal and -shm files live. ``os.access`` also answers False on a read-only mount,
    for root too."""
    if path.exists() and not os.access(path, os.W_OK):
        return False
    return os.access(path.parent, os.W_OK | os.X_OK)


def readonly_error(path: Path) -> StoreError:
    """The one line for a write to a store that cannot be written."""
    return StoreError(f"{path.name} is read-only (the file or its folder cannot be written); copy it "
                      "somewhere writable or fix the permissions.")


def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF
    text = str(exc)
    for marker, value in (("database or disk is full", _FULL), ("readonly database", _READONLY),
                          ("database is locked", _BUSY), ("disk I/O error", _IOERR)):
        if marker in text:
            return value
    return None


def write_error(path: Path, exc: BaseException) -> StoreError | None:
    """The one StoreError line for a write SQLite refused for a reason outside the store (full
    disk, read-only file, a lock held too long, an I/O error); None for any other error. The
    transaction was rolled back, so the message says the store is unchanged."""
    code = _code(exc)
    reason = " ".join(str(exc).split())
    if code == _FULL:
        return StoreError(f"{path.name} cannot grow: the disk is full ({reason}); the write was rolled "
                          f"back and the store is intact: free space where {path.parent} lives, then "
                          "run it again.")
    if code == _READONLY:
        return readonly_error(path)
    if code in (_BUSY, _LOCKED):
        return StoreError(f"{path.name} stayed locked by another writer for {BUSY_TIMEOUT_S:.0f} s "
                          f"({reason}); nothing was written: stop the other program writing to it, "
                          "then run it again.")
    if code in (_IOERR, _CANTOPEN):
        return StoreError(f"{path.name} could not be written ({reason}); the write was rolled back: check "
                          f"that the disk of {path.parent} is present, writable and not full, then run it again.")
    return None


def _ro_uri(path: Path, immutable: bool) -> str:
    return path.resolve().as_uri() + ("?mode=ro&immutable=1" if immutable else "?mode=ro")


def _connect(target: str, uri: bool) -> sqlite3.Connection:
    # check_same_thread=False: the review page calls from a thread pool; the store's lock serializes.
    conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False,
                           uri=uri)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA foreign_keys = ON")
    # Up to 64 MiB of pages (SQLite's default is 2 MiB): a bulk insert of a million events keeps
    # its indexes' hot pages in memory (bench/bench_scale.py: 7.0 s -> 5.0 s for 300k events).
    try:
        conn.execute("PRAGMA cache_size = -65536")
    except sqlite3.OperationalError:
        pass  # a file that cannot be opened yet: the caller's first read says why, in one line
    return conn


def _open_readonly(p: Path) -> sqlite3.Connection:
    """``mode=ro``; for a WAL file whose -shm cannot be made or used (read-only folder or mount),
    ``immutable``, which needs no -shm: safe, since nobody can write the store there either (a
    writer needs the -wal and -shm too), as long as no -wal holds changes not yet merged into the
    file. A store another user is writing, with its -shm there, opens plain ``mode=ro``."""
    conn = _connect(_ro_uri(p, immutable=False), uri=True)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError as exc:
        conn.close()
        # CANTOPEN (read-only mount), READONLY_DIRECTORY or READONLY_CANTINIT (a folder or -shm
        # this user cannot write): the -shm cannot be made or used.
        if _code(exc) not in (_CANTOPEN, _READONLY):
            raise
    wal = p.with_name(p.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise StoreError(f"{p.name} is read-only and its {wal.name} holds changes not yet merged into "
                         "it; copy the store with its -wal and -shm files somewhere writable and open "
                         "it there once.")
    return _connect(_ro_uri(p, immutable=True), uri=True)


def open_connection(path: Path, create: bool, readonly: bool = False) -> sqlite3.Connection:
    """A connection to ``path`` (autocommit; writes take BEGIN IMMEDIATE), after checking that
    the file is a SQLite database whose first page reads. ``readonly`` opens it with SQLite's
    ``mode=ro`` (the file must exist); otherwise a file or folder that cannot be written is the
    read-only StoreError, before SQLite touches anything."""
    p = path
    if p.is_dir():
        raise StoreError(f"{p} is a directory, not a label store; pass a file path such as {p / 'labels.db'}.")
    if not p.exists():
        if not create or readonly:
            raise StoreError(f"no label store at {p}; check the path or run a job that writes one.")
        if not p.parent.is_dir():
            raise StoreError(f"the folder of {p} does not exist; create {p.parent} first.")
        if not writable(p):
            raise StoreError(f"cannot create {p.name}: its folder {p.parent} cannot be written; pass a "
                             "path in a writable folder or fix the permissions.")
    elif not readonly and not writable(p):
        raise readonly_error(p)
    elif p.stat().st_size > 0:
        with open(p, "rb") as fh:
            head = fh.read(len(_SQLITE_HEADER))
        # Check before SQLite touches the file, so a corrupt or foreign file is never rewritten.
        if head != _SQLITE_HEADER:
            raise StoreError(f"{p} is not a SQLite database (corrupt or another kind of file); "
                             "it was left untouched: restore it from a backup or pass a new path.")
    conn = None
    try:
        if readonly:
            conn = _open_readonly(p)
        else:
            conn = _connect(str(p), uri=False)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        if conn is not None:
            conn.close()
        if _code(exc) in (_BUSY, _LOCKED, _READONLY, _FULL, _IOERR):
            raise write_error(p, exc) from None
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


def migrate(conn: sqlite3.Connection, path: Path, readonly: bool = False) -> None:
    """Refuse a newer or foreign file, apply the pending migrations, switch to WAL. A read-only
    store is only checked: one that needs a migration is refused, since migrating writes."""
    try:
        version = schema_version(conn, path)
        if version > SCHEMA_VERSION:
            raise StoreError(f"{path.name} has schema version {version} but this pseudolabel knows "
                             f"up to {SCHEMA_VERSION}; upgrade pseudolabel.")
        if version < SCHEMA_VERSION:
            if readonly and version == 0:
                raise StoreError(f"{path.name} is empty, not a label store; pass a label store made by "
                                 "pseudolabel.")
            if readonly:
                raise StoreError(f"{path.name} has schema version {version} and needs upgrading to "
                                 f"{SCHEMA_VERSION}, which writes, but it is read-only (the file or its "
                                 "folder cannot be written); copy it somewhere writable or fix the permissions.")
            apply_migrations(conn, SCHEMA_VERSION, begin=lambda: begin_immediate(conn))
        _check_tables(conn, path)
        # WAL after the checks: switching it writes to the file (not again once it is WAL).
        if not readonly:
            _switch_to_wal(conn)
    except sqlite3.DatabaseError as exc:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the connection is closed next, which drops the transaction
        err = write_error(path, exc)
        if err is not None:
            raise err from None
        raise StoreError(f"{path} cannot be read as a label store ({exc}); it was left "
                         "untouched: restore it from a backup or pass a new path.") from None


def retry_busy(conn: sqlite3.Connection, attempt) -> None:
    """Call ``attempt()`` until it returns True, for up to BUSY_TIMEOUT_S while the file is busy.
    SQLite's own busy handler sleeps ever longer (up to 100 ms) between tries, so a process writing
    in a loop keeps the lock and a waiting one (the review page, a writer opening the store)
    starves; trying again every 0.5-2 ms lets the writers take turns."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        while True:
            try:
                if attempt():
                    return
            except sqlite3.OperationalError as exc:
                if _code(exc) not in (_BUSY, _LOCKED) or time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise sqlite3.OperationalError("database is locked")
            time.sleep(random.uniform(0.0005, 0.002))
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")


def begin_immediate(conn: sqlite3.Connection, cur=None) -> None:
    """BEGIN IMMEDIATE, taking turns with other writers (see :func:`retry_busy`)."""
    run = (cur or conn).execute
    retry_busy(conn, lambda: run("BEGIN IMMEDIATE") is not None)


def _switch_to_wal(conn: sqlite3.Connection) -> None:
    """Put the file in WAL mode. Switching needs the file to itself: SQLite answers "busy", or
    leaves the mode as it was, while another process opens or writes the new store."""
    def attempt() -> bool:
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
            return True
        return conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() == "wal"

    retry_busy(conn, attempt)


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

    def __init__(self, path: str | Path, *, create: bool = True, readonly: bool | None = None) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        if readonly is None:
            # An existing store that cannot be written still opens for reading when it was only
            # asked for (create=False: the review page and the store commands).
            readonly = not create and self.path.is_file() and not writable(self.path)
        self._readonly = bool(readonly)
        self._conn = open_connection(self.path, create, self._readonly)
        try:
            migrate(self._conn, self.path, self._readonly)
        except BaseException:
            self._conn.close()
            raise

    @property
    def readonly(self) -> bool:
        """True when the store was opened read-only: reads work, every write is a StoreError."""
        return self._readonly

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
        take turns (:meth:`_begin`) instead of failing half-way; any error rolls it all back."""
        with self._lock:
            if self._readonly:
                raise readonly_error(self.path)
            if self._conn.in_transaction:
                raise StoreError(f"a write to {self.path.name} is already open; finish the "
                                 "'with store.transaction()' block before writing again.")
            cur = self._conn.cursor()
            try:
                self._begin(cur)
            except sqlite3.DatabaseError as exc:  # locked past the timeout, read-only file, full disk
                raise (write_error(self.path, exc) or exc) from None
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException as exc:
                self._rollback()
                err = write_error(self.path, exc) if isinstance(exc, sqlite3.DatabaseError) else None
                if err is not None:
                    raise err from None
                raise

    def _begin(self, cur: sqlite3.Cursor) -> None:
        """BEGIN IMMEDIATE, waiting up to BUSY_TIMEOUT_S for another writer, taking turns."""
        begin_immediate(self._conn, cur)

    def _rollback(self) -> None:
        """Roll the open transaction back; SQLite may have done so already (a full disk)."""
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # nothing was committed: SQLite drops the transaction when the connection closes

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
