"""The label store: every label event in one SQLite file, with where it came from.

The store keeps items (where the data lives), an append-only log of label events, runs, model
predictions and cleaning suggestions (for the review queues, :mod:`pseudolabel.store.queues`).

* :mod:`~pseudolabel.store.labelstore`: :class:`LabelStore`, the edge: named reads and writes,
  ``query`` / ``rows`` (read-only SQL), ``transaction()``, ``verify()``.
* :mod:`~pseudolabel.store.schema`: named migrations and the SQL of the current label.
* :mod:`~pseudolabel.store.connection`: opening, migrating and checking the file.
* :mod:`~pseudolabel.store.transaction`: the writes of one transaction.
* :mod:`~pseudolabel.store.predictions`, :mod:`~pseudolabel.store.queues`: what feeds the review
  queues, and the queues; :mod:`~pseudolabel.store.io`: export and import of label files.

Nothing outside this package writes SQL or uses a private name of the store.

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
"""
from __future__ import annotations

from pseudolabel.store.labelstore import SOURCES, LabelStore, new_run_id
from pseudolabel.store.predictions import predictions, record_predictions, record_suggestions
from pseudolabel.store.queues import (
    QUEUE_COLUMNS, QUEUES, STRATEGIES, active_queue, all_queue, audit_queue, queue, suspect_queue,
)
from pseudolabel.store.schema import MIGRATIONS, SCHEMA_VERSION, apply_migrations
from pseudolabel.store.transaction import Transaction

__all__ = ["LabelStore", "new_run_id", "Transaction", "SCHEMA_VERSION", "MIGRATIONS", "SOURCES", "apply_migrations",
           "record_predictions", "record_suggestions", "predictions", "QUEUES", "QUEUE_COLUMNS",
           "STRATEGIES", "suspect_queue", "audit_queue", "active_queue", "all_queue", "queue"]
