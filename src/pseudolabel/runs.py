"""A run directory: config.json, history.jsonl appended each round, history.csv, checkpoints, status;
a sweep's directory also holds sweep.json and one run directory per cell under cells/.

Writes are atomic (temporary file, then rename) so a killed run never leaves a half-written file,
and an existing run is never overwritten: continuing one takes ``resume=True``.
"""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from pseudolabel.exceptions import RunDirectoryError

CONFIG = "config.json"
HISTORY = "history.jsonl"
HISTORY_CSV = "history.csv"
CHECKPOINT = "checkpoint.joblib"
STATUS = "status.json"
SWEEP_FILE = "sweep.json"  # a sweep's grid: its settings and cells
CELLS = "cells"  # a sweep's folder of cell run directories, one per cell name


def now_iso() -> str:
    """The time now in UTC, ISO 8601 to the second: ``'2024-05-01T12:00:00+00:00'``."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def jsonable(obj: Any):
    """numpy scalars and arrays, Paths and NaN to plain JSON values.

    Examples
    --------
    >>> jsonable({"a": np.float32(0.5), "b": np.arange(2), "c": float("nan"), "d": Path("x")})
    {'a': 0.5, 'b': [0, 1], 'c': None, 'd': 'x'}
    """
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write a file so that readers see the old or the new content, never a torn one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunDirectory:
    """One run of a job (selftrain, clean, sweep cell) in one directory.

    Examples
    --------
    >>> import tempfile
    >>> run = RunDirectory.create(tempfile.mkdtemp() + "/run", job="selftrain", config={"seed": 0})
    >>> run.append_history({"round": 0, "test_accuracy": 0.9}); run.read_history()[0]["round"]
    0
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    # -- creation -----------------------------------------------------------------------------
    @classmethod
    def create(cls, path, *, job: str, config: dict, resume: bool = False) -> "RunDirectory":
        """Start a run in ``path``, or with ``resume=True`` reopen the run there.

        A directory that holds anything else, or a run when ``resume`` is False, is refused, so
        earlier results are never overwritten.
        """
        run = cls(path)
        p = run.path
        if p.exists() and not p.is_dir():
            raise RunDirectoryError(f"{p} is a file, not a run directory; choose another --out.")
        has_run = (p / CONFIG).is_file()
        if resume:
            if not has_run:
                raise RunDirectoryError(f"{p} holds no run to resume (no {CONFIG}); start one without --resume.")
            saved = run.config
            if saved.get("job") != job:
                raise RunDirectoryError(
                    f"{p} holds a '{saved.get('job')}' run, not '{job}'; resume it with 'pseudolabel {saved.get('job')}'."
                )
            run.set_status("running", resumed_at=now_iso())
            return run
        if has_run:
            raise RunDirectoryError(
                f"{p} holds a run already; pass --resume to continue it or choose a new --out."
            )
        if p.exists() and any(p.iterdir()):
            raise RunDirectoryError(f"{p} is not empty; choose a new or empty --out directory.")
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirectoryError(f"cannot create run directory {p}: {exc.strerror}; choose another --out.") from exc
        full = {"job": job, "created_at": now_iso(), **config}
        atomic_write(p / CONFIG, json.dumps(jsonable(full), indent=2))
        run.set_status("running")
        return run

    @property
    def config(self) -> dict:
        try:
            return json.loads((self.path / CONFIG).read_text())
        except (OSError, ValueError) as exc:
            raise RunDirectoryError(f"cannot read {self.path / CONFIG}: {exc}; the run directory is damaged.") from exc

    # -- status -------------------------------------------------------------------------------
    def set_status(self, state: str, **extra) -> None:
        status = self.status
        status.update({"state": state, "updated_at": now_iso(), **extra})
        atomic_write(self.path / STATUS, json.dumps(jsonable(status), indent=2))

    @property
    def status(self) -> dict:
        try:
            return json.loads((self.path / STATUS).read_text())
        except (OSError, ValueError):
            return {}

    # -- history ------------------------------------------------------------------------------
    def append_history(self, record: dict) -> None:
        """Append one record as a JSON line, flushed to disk before returning."""
        line = json.dumps(jsonable(record)) + "\n"
        with open(self.path / HISTORY, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def read_history(self) -> list[dict]:
        """The records of finished rounds; a torn last line (a kill mid-write) is ignored."""
        path = self.path / HISTORY
        if not path.exists():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                break
        return out

    def rewrite_history(self, records: list[dict]) -> None:
        """Replace history.jsonl, e.g. to drop rounds after the checkpoint a run resumes from."""
        atomic_write(self.path / HISTORY, "".join(json.dumps(jsonable(r)) + "\n" for r in records))

    def write_history_csv(self, records: list[dict] | None = None) -> Path:
        records = self.read_history() if records is None else records
        cols: list[str] = []
        for r in records:
            cols += [k for k in r if k not in cols]
        lines = [cols] + [["" if r.get(c) is None else r.get(c) for c in cols] for r in records]
        buf = io.StringIO()
        csv.writer(buf).writerows(lines)
        atomic_write(self.path / HISTORY_CSV, buf.getvalue())
        return self.path / HISTORY_CSV

    # -- files and checkpoints ----------------------------------------------------------------
    def write_json(self, name: str, obj) -> Path:
        atomic_write(self.path / name, json.dumps(jsonable(obj), indent=2))
        return self.path / name

    def read_json(self, name: str):
        """The JSON file ``name`` of the run, e.g. a sweep's :data:`SWEEP_FILE`; RunDirectoryError when
        it is missing or damaged."""
        path = self.path / name
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise RunDirectoryError(f"cannot read {path}: {exc}; is {self.path} the right run directory?") from exc

    def save_checkpoint(self, state: dict, name: str = CHECKPOINT) -> None:
        buf = io.BytesIO()
        joblib.dump(state, buf)
        atomic_write(self.path / name, buf.getvalue())

    def load_checkpoint(self, name: str = CHECKPOINT) -> dict | None:
        path = self.path / name
        if not path.exists():
            return None
        try:
            return joblib.load(path)
        except Exception as exc:  # a checkpoint from another version or a damaged file
            raise RunDirectoryError(
                f"cannot load checkpoint {path}: {type(exc).__name__}; delete it to restart the run from scratch."
            ) from exc
