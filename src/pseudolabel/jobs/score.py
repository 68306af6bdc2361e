"""The score job: a run's saved model over a pool of any size, chunk by chunk, into one Parquet file.

``run_score({"run": "runs/st", "pool": "pool.npy"}, "scores.parquet")`` reads ``runs/st/model.joblib``
(what a selftrain run saves, :func:`pseudolabel.jobs.outputs.write_model`) and the class names of
the run's label store, then scores the pool (:mod:`pseudolabel.pools`) ``chunk_size`` images at a
time, locally or on a Ray cluster (:mod:`pseudolabel.cluster`). Only one chunk's images and scores
are in memory at once, so peak memory does not grow with the pool.

Each chunk's scores are written as a part of its own as soon as they are made, into the run
directory ``OUT.parts/`` (config.json, status.json, ``chunk-NNNNNN.parquet``); when every chunk is
there they are copied, in order, into ``OUT``: columns ``item``, ``label`` (the class name),
``confidence``, and with ``proba`` one ``p_<class>`` column per class. A killed or failed job
continues with ``resume=True`` (``--resume``): the parts on disk are kept and never recomputed.
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping

import joblib
import numpy as np

from pseudolabel.callbacks import say as _say
from pseudolabel.exceptions import DataError, InputError, RunDirectoryError
from pseudolabel.jobs.config import ScoreConfig
from pseudolabel.jobs.context import JobContext
from pseudolabel.pools import Pool, open_pool
from pseudolabel.runs import CONFIG, RunDirectory
from pseudolabel.store import LabelStore

__all__ = ["run_score", "ScoreResult", "load_run_model", "parts_dir", "score_pool_locally"]

MODEL_FILE = "model.joblib"
PARTS = ".parts"
_PART = "chunk-{:06d}.parquet"


@dataclass
class ScoreResult:
    path: Path
    n_items: int
    n_chunks: int
    n_scored: int  # chunks scored by this call (the rest were on disk from a killed run)
    seconds: float


def parts_dir(out) -> Path:
    """Where the score job keeps the parts of ``out`` (and its config and status)."""
    out = Path(out)
    return out.with_name(out.name + PARTS)


def load_run_model(run) -> tuple[object, list]:
    """The fitted model a run saved (``RUN/model.joblib``) and the name of each of its classes
    (from the run's label store; the class index as text when there is none)."""
    path = Path(run).expanduser()
    if not (path / MODEL_FILE).is_file():
        what = "no run directory" if not path.is_dir() else f"no {MODEL_FILE} (the run did not finish)"
        raise RunDirectoryError(f"{path} holds {what}; pass the directory of a finished selftrain run.")
    try:
        model = joblib.load(path / MODEL_FILE)
    except Exception as exc:  # a model pickled by another version, a damaged file
        raise RunDirectoryError(f"cannot load {path / MODEL_FILE}: {type(exc).__name__}: {exc}; "
                                "train the run again with this version.") from None
    if not hasattr(model, "predict_proba") or not hasattr(model, "classes_"):
        raise RunDirectoryError(f"{path / MODEL_FILE} holds a {type(model).__name__}, not a fitted classifier.")
    names = _class_names(path)
    classes = [int(c) for c in np.asarray(model.classes_).tolist()]
    shown = [names[c] if 0 <= c < len(names) else str(c) for c in classes]
    return model, shown


def _class_names(run: Path) -> list:
    try:
        config = RunDirectory(run).config if (run / CONFIG).is_file() else {}
    except RunDirectoryError:
        config = {}
    store = Path(config.get("store") or run / "labels.db")
    if not store.is_file():
        return []
    store_file = LabelStore(store, create=False, readonly=True)
    try:
        return list(store_file.classes)
    finally:
        store_file.close()


def score_pool_locally(model, pool: Pool, bounds) -> Iterator[dict]:
    """The chunks ``bounds`` scored in this process, one after another (see Cluster.score_chunks)."""
    for k, start, stop in bounds:
        proba = np.asarray(model.predict_proba(pool.read(start, stop)), dtype=np.float64)
        yield {"chunk": k, "start": start, "pred": proba.argmax(axis=1), "conf": proba.max(axis=1),
               "proba": proba}


def _done_chunks(folder: Path, n_chunks: int) -> set:
    done = set()
    for p in folder.glob("chunk-*.parquet"):
        try:
            k = int(p.stem.split("-")[1])
        except (IndexError, ValueError):
            continue
        if 0 <= k < n_chunks:
            done.add(k)
    return done


def _write_part(folder: Path, pool: Pool, part: dict, names: list, with_proba: bool) -> None:
    import pyarrow as pa  # pyarrow: the Parquet extra, only for the score job
    import pyarrow.parquet as pq

    n = len(part["pred"])
    cols = {"item": pa.array(pool.ids(part["start"], part["start"] + n), pa.string()),
            "label": pa.array(np.asarray(names, dtype=object)[part["pred"]].tolist(), pa.string()),
            "confidence": pa.array(np.asarray(part["conf"], dtype=np.float64))}
    if with_proba:
        proba = np.asarray(part["proba"], dtype=np.float32)
        cols.update({f"p_{name}": pa.array(proba[:, j]) for j, name in enumerate(names)})
    target = folder / _PART.format(part["chunk"])
    tmp = target.with_name(f".{target.name}.tmp")
    pq.write_table(pa.table(cols), tmp)
    os.replace(tmp, target)  # a part is on disk whole or not at all


def _merge_parts(folder: Path, n_chunks: int, out: Path) -> None:
    """The parts, in chunk order, into ``out``, one part in memory at a time."""
    import pyarrow.parquet as pq  # pyarrow: the Parquet extra, only for the score job

    tmp = out.with_name(f".{out.name}.tmp")
    writer = None
    try:
        for k in range(n_chunks):
            table = pq.read_table(folder / _PART.format(k))
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
        if writer is not None:
            writer.close()
            writer = None
        os.replace(tmp, out)
    finally:
        if writer is not None:
            writer.close()
        if tmp.exists():
            tmp.unlink()


def run_score(config: Mapping, out, *, resume: bool = False, say: Callable[[str], None] = _say,
              cluster=None) -> ScoreResult:
    """Score the pool ``config["pool"]`` with the model of run ``config["run"]`` into ``out``.

    ``config`` is a :class:`~pseudolabel.jobs.config.ScoreConfig` or a dict of its options:
    ``run``, ``pool`` (.npy, image folder, .csv/.parquet manifest), ``chunk_size``, ``proba``,
    ``cluster`` (local, auto, ray://HOST:PORT; None: this process) and ``workers``. ``cluster``
    may also be a started :class:`pseudolabel.cluster.Cluster`, used and left running. With
    ``resume=True`` the chunks on disk in ``OUT.parts/`` are kept and the rest scored.

    Examples
    --------
    >>> run_score({"run": "runs/st", "pool": "pool.npy"}, "scores.parquet")      # doctest: +SKIP
    >>> run_score({"run": "runs/st", "pool": "pool.npy", "cluster": "local"}, "s.parquet")  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    out = Path(out).expanduser()
    folder = parts_dir(out)
    given = config
    config = ScoreConfig.resume(folder, given, say) if resume else ScoreConfig.coerce(given)
    if not resume and out.exists():
        raise InputError(f"{out} exists already; choose another --out or delete it.")
    if not out.parent.is_dir():
        raise DataError(f"the folder of {out} does not exist; create {out.parent} first.")
    try:
        import pyarrow  # noqa: F401  (checked before anything is written)
    except ImportError:
        raise InputError("the score job writes Parquet, which needs pyarrow; install it with "
                         "pip install 'pseudolabel[parquet]'.") from None
    model, names = load_run_model(config.run)
    if config.model.get("device") not in (None, "auto") and hasattr(model, "set_params"):
        model.set_params(device=config.model["device"])
    pool = open_pool(config.pool, image_size=config.image_size)
    if resume:
        saved = RunDirectory(folder).config
        if saved.get("pool_items") != len(pool):
            raise InputError(f"{folder} scored a pool of {saved.get('pool_items')} items but {config.pool} has "
                             f"{len(pool)}; resume with the same pool or start a new --out.")
    if not len(pool):
        raise InputError(f"the pool {config.pool} holds no items; pass a pool with images.")
    if len(pool):
        model.predict_proba(pool.read(0, 1))  # a pool the model cannot read stops here, nothing written
    bounds = pool.chunk_bounds(config.chunk_size)
    with contextlib.ExitStack() as stack:
        remote = cluster
        if remote is None and config.cluster:
            from pseudolabel.cluster import Cluster  # Ray: only for --cluster

            remote = stack.enter_context(Cluster(config.cluster))  # joined before anything is written
        with JobContext() as ctx:
            run = ctx.attach(RunDirectory.create(
                folder, job="score", resume=resume,
                config={**config.to_dict(), "pool_items": len(pool), "pool_kind": pool.kind, "classes": names}))
            done = _done_chunks(folder, len(bounds))
            todo = [b for b in bounds if b[0] not in done]
            where = "this process" if remote is None else f"Ray ({remote.address})"
            say(f"scoring {len(pool)} items of {config.pool} in {len(bounds)} chunks of {config.chunk_size} on {where}"
                + (f"; {len(done)} chunks on disk already" if done else ""))
            parts = (score_pool_locally(model, pool, todo) if remote is None else
                     remote.score_chunks(model, pool, todo, with_proba=config.proba, concurrency=config.workers))
            step = max(1, len(todo) // 10)
            for i, part in enumerate(parts, 1):
                _write_part(folder, pool, part, names, config.proba)
                if i % step == 0 or i == len(todo):
                    say(f"scored {len(done) + i}/{len(bounds)} chunks ({time.perf_counter() - t0:.0f} s)")
            _merge_parts(folder, len(bounds), out)
            run.set_status("finished", items=len(pool), chunks=len(bounds), output=str(out))
    say(f"wrote {out}: {len(pool)} items")
    return ScoreResult(out, len(pool), len(bounds), len(todo), time.perf_counter() - t0)
