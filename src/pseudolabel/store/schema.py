"""The label store's schema: named migrations, applied in order, the tables a store must hold,
and the SQL that derives the current label of an item from its append-only events (see
:mod:`pseudolabel.store`). Private to the package: nothing outside ``pseudolabel.store`` uses it."""
from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "TABLES", "apply_migrations"]

# Named migrations, applied in order, each in one transaction together with its record.
# Never edit a released migration: append a new one.
MIGRATIONS: list[tuple[str, list[str]]] = [
    ("0001_items_events_runs", [
        """CREATE TABLE items (
            id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, location TEXT,
            split TEXT NOT NULL DEFAULT 'train')""",
        "CREATE TABLE classes (idx INTEGER PRIMARY KEY CHECK (idx >= 0), name TEXT NOT NULL)",
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY, job TEXT, created_at TEXT NOT NULL, config TEXT)",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            item_id INTEGER NOT NULL REFERENCES items(id),
            label INTEGER NOT NULL CHECK (label >= -1),
            source TEXT NOT NULL CHECK (source IN ('given', 'human', 'pseudo', 'corrected', 'undo')),
            confidence REAL CHECK (confidence IS NULL OR (confidence >= 0 AND confidence <= 1)),
            round INTEGER, run_id TEXT REFERENCES runs(run_id), model_id TEXT, who TEXT,
            created_at TEXT NOT NULL, note TEXT,
            undoes INTEGER REFERENCES events(id),
            CHECK ((source = 'undo') = (undoes IS NOT NULL)))""",
        "CREATE INDEX events_item ON events(item_id, id)",
        "CREATE UNIQUE INDEX events_undoes ON events(undoes) WHERE undoes IS NOT NULL",
        """CREATE TRIGGER events_no_update BEFORE UPDATE ON events
           BEGIN SELECT RAISE(ABORT, 'label events are append-only'); END""",
        """CREATE TRIGGER events_no_delete BEFORE DELETE ON events
           BEGIN SELECT RAISE(ABORT, 'label events are append-only'); END""",
    ]),
    ("0002_predictions_discards", [
        # kind 'proba': a model's prediction (active learning); kind 'suspect': a cleaning
        # suggestion (given label, suggested label, score, higher = more suspicious).
        # after_event: the last event id when recorded, so a queue knows what was reviewed since.
        """CREATE TABLE predictions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            item_id INTEGER NOT NULL REFERENCES items(id),
            run_id TEXT NOT NULL REFERENCES runs(run_id), model_id TEXT,
            kind TEXT NOT NULL CHECK (kind IN ('proba', 'suspect')),
            predicted INTEGER, confidence REAL, margin REAL, entropy REAL,
            given INTEGER, score REAL, proba BLOB,
            after_event INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL)""",
        "CREATE INDEX predictions_kind_run ON predictions(kind, run_id, item_id)",
        """CREATE TABLE discards (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            source TEXT NOT NULL CHECK (source IN ('pseudo', 'corrected')),
            run_id TEXT, last_event_id INTEGER NOT NULL, who TEXT, created_at TEXT NOT NULL,
            note TEXT)""",
    ]),
    # Stores of a million events (pools larger than memory, issue #15): the audit queue's least
    # confident pseudo labels walk (source, confidence) instead of sorting every event; a run's
    # events (StoreRecorder's diff, discard) and the latest event per item by source read an index.
    ("0003_queue_indexes", [
        "CREATE INDEX events_source_confidence ON events(source, confidence)",
        "CREATE INDEX events_run_source ON events(run_id, source)",
        "CREATE INDEX events_item_source ON events(item_id, source, id)",
    ]),
]
SCHEMA_VERSION = len(MIGRATIONS)
# The tables a store of SCHEMA_VERSION holds (meta and migrations come with every migration).
TABLES = ("meta", "migrations", "items", "classes", "runs", "events", "predictions", "discards")

# Events that count: not undo markers, not undone, not hidden by a discard. {where} narrows it.
_EFFECTIVE = """
    SELECT e.* FROM events AS e
    WHERE e.source <> 'undo' {where}
      AND NOT EXISTS (SELECT 1 FROM events AS u WHERE u.undoes = e.id)
      AND NOT EXISTS (SELECT 1 FROM discards AS d WHERE d.source = e.source
                      AND e.id <= d.last_event_id AND (d.run_id IS NULL OR d.run_id = e.run_id))
"""

# The current event: the latest effective human one, else the latest effective one.
_CURRENT = """
WITH eff AS ({effective}),
pick AS (SELECT item_id, COALESCE(MAX(id) FILTER (WHERE source = 'human'), MAX(id)) AS event_id,
                MAX(id) FILTER (WHERE source = 'human') AS human_event
         FROM eff GROUP BY item_id)
SELECT i.id AS item_id, i.key, i.location, i.split, COALESCE(e.label, -1) AS label, e.source,
       e.confidence, e.round, e.run_id, e.model_id, e.who, e.created_at, e.id AS event_id,
       p.human_event
FROM items AS i
LEFT JOIN pick AS p ON p.item_id = i.id
LEFT JOIN events AS e ON e.id = p.event_id
{where}
ORDER BY i.id
"""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def apply_migrations(conn: sqlite3.Connection, upto: int = SCHEMA_VERSION, begin=None) -> list[str]:
    """Apply the pending migrations up to version ``upto``, each in its own transaction together
    with its record in the ``migrations`` table; return the names applied. Safe when two
    processes open a new store at once: the version is re-read under the write lock. ``begin``
    starts the write transaction (default: a plain BEGIN IMMEDIATE)."""
    applied = []
    for version, (name, statements) in enumerate(MIGRATIONS[:upto], start=1):
        if begin is None:
            conn.execute("BEGIN IMMEDIATE")
        else:
            begin()
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            conn.execute("CREATE TABLE IF NOT EXISTS migrations (version INTEGER PRIMARY KEY, "
                         "name TEXT NOT NULL UNIQUE, applied_at TEXT NOT NULL)")
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if (int(row[0]) if row else 0) >= version:
                conn.execute("COMMIT")
                continue
            for stmt in statements:
                conn.execute(stmt)
            conn.execute("INSERT INTO migrations(version, name, applied_at) VALUES (?, ?, ?)",
                         (version, name, _now()))
            conn.execute("INSERT INTO meta(key, value) VALUES ('schema_version', ?) ON CONFLICT(key) "
                         "DO UPDATE SET value = excluded.value", (str(version),))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        applied.append(name)
    return applied
