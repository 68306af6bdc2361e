"""What every job does around its work, once: open and check the label store before any training,
turn SQLite's complaints into one line, mark a run that fails as failed, and close what it opened.

Examples
--------
>>> with JobContext() as ctx:                        # doctest: +SKIP
...     store = ctx.open_store("runs/st/labels.db")  # checked whole: a damaged store stops here
...     run = ctx.attach(RunDirectory.create(...))   # from here a failure marks the run failed
...     ...                                          # training
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from pseudolabel.exceptions import StoreError
from pseudolabel.runs import RunDirectory
from pseudolabel.store import LabelStore


def store_error(path, exc: BaseException) -> StoreError:
    """SQLite's error about ``path`` as one line that names the fix."""
    return StoreError(f"{path} cannot be read as a label store ({exc}); restore it from a backup "
                      "or pass a new --store.")


class JobContext:
    """A job's store and run directory, and what happens to them when the job fails.

    ``open_store`` opens (or creates) the label store and reads it whole (``LabelStore.verify``),
    so a store damaged past its first page, or a SQLite file of other data, is refused in one line
    before any training. Any SQLite error later becomes the same one-line ``StoreError``. An
    exception inside the ``with`` block marks the attached run ``failed`` (``interrupted`` for
    Ctrl-C) with the error, so ``status.json`` never stays at "running"; the store is closed.
    """

    def __init__(self) -> None:
        self.store: LabelStore | None = None
        self.store_path: Path | None = None
        self.run: RunDirectory | None = None

    def open_store(self, path) -> LabelStore:
        self.store_path = Path(path).expanduser()
        try:
            store = LabelStore(self.store_path)
            try:
                store.verify()
            except BaseException:
                store.close()
                raise
        except sqlite3.DatabaseError as exc:
            raise store_error(self.store_path, exc) from None
        self.store = store
        return store

    def attach(self, run: RunDirectory) -> RunDirectory:
        self.run = run
        return run

    def __enter__(self) -> "JobContext":
        return self

    def __exit__(self, kind, exc, tb) -> None:
        try:
            if exc is not None and isinstance(exc, sqlite3.DatabaseError):
                mapped = store_error(self.store_path, exc)
                self._mark_failed(mapped)
                raise mapped from None
            if exc is not None:
                self._mark_failed(exc)
        finally:
            if self.store is not None:
                self.store.close()
                self.store = None

    def _mark_failed(self, exc: BaseException) -> None:
        if self.run is None or not (self.run.path / "config.json").is_file():
            return
        state = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        self.run.set_status(state, error=f"{type(exc).__name__}: {exc}"[:500])
