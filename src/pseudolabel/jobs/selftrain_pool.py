"""Self-training with an unlabeled pool larger than memory (``pseudolabel selftrain --pool SOURCE``).

The labeled images come from ``--data`` (its labeled rows, after ``--labeled``; its own unlabeled
rows are left out) and stay in memory; the unlabeled ones are the pool (:mod:`pseudolabel.pools`),
read a chunk at a time. What stays in memory per pool item is its label (int16), its confidence
(float32) and the round it was taken in (int16): 8 bytes, 8 MB for a million items.

Each round:

1. the model is trained on the given labels plus the accepted pseudo labels, read back from the
   pool by row (sorted reads). When more than ``pool_cap`` (default :data:`POOL_CAP`, 50,000)
   pseudo labels are accepted, a seeded random sample of ``pool_cap`` of them is read instead, so
   a round's training set, and memory, stay bounded however large the pool; the given labels are
   repeated up to ``given_share`` of the rows, as :class:`~pseudolabel.selftrain.SelfTraining` does;
2. the pool is scored chunk by chunk, here or on a Ray cluster (``--cluster``); a chunk's rows
   pass :func:`pseudolabel.selection.select_by_threshold` with the round's threshold
   (:func:`pseudolabel.selection.threshold_for_round`); with ``relabel`` (the default recipe's)
   every round relabels the whole pool, else a label once taken is kept;
3. the round's pseudo labels go into the label store in bulk (one transaction per 200,000
   events), its record into history.jsonl, and a checkpoint (model and the three arrays) is saved,
   so ``--resume`` continues after the last finished round.

Before round 0, ``--data``'s items and given labels go into the store (``given`` events of round 0,
split ``train``), as the in-memory selftrain job records them; the pool's items are split ``pool``.

At the end the pool's scores (item, label, confidence, round) are written to ``pool_labels.parquet``
chunk by chunk, and the model to ``model.joblib``. ``class_quota`` and ``--semi`` need every row's
probabilities at once and are refused with a pool.
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Mapping

import numpy as np

from pseudolabel.callbacks import EpochProgress, say as _say
from pseudolabel.datasets import load_dataset, read_images
from pseudolabel.exceptions import InputError
from pseudolabel.jobs import outputs
from pseudolabel.jobs.config import SelfTrainConfig, make_model
from pseudolabel.jobs.context import JobContext
from pseudolabel.jobs.score import score_pool_locally
from pseudolabel.pools import DEFAULT_CHUNK_SIZE, open_pool
from pseudolabel.runs import RunDirectory
from pseudolabel.selection import select_by_threshold, threshold_for_round

__all__ = ["run_selftrain_pool", "POOL_CAP"]

POOL_CAP = 50_000
POOL_LABELS = "pool_labels.parquet"
_EVENTS_PER_TRANSACTION = 200_000


def _given_labels(y: np.ndarray, labeled: int | None, seed: int) -> np.ndarray:
    """The labels of ``--data`` a pool run starts from: all it has, or ``labeled`` of them
    (stratified, as the selftrain job keeps them: :func:`pseudolabel.jobs.selftrain.hide_labels`)."""
    from pseudolabel.jobs.selftrain import hide_labels  # jobs.selftrain imports this module lazily too

    have = np.flatnonzero(y >= 0)
    if labeled is None or labeled >= len(have):
        return y
    out = np.full_like(y, -1)
    out[have] = hide_labels(y[have], labeled, seed)
    return out


def _training_rows(label: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    accepted = np.flatnonzero(label >= 0)
    if len(accepted) > cap:
        accepted = np.sort(rng.choice(accepted, cap, replace=False))
    return accepted


def _with_given(X_given, y_given, X_pseudo, y_pseudo, given_share):
    """The round's training set; the given rows repeated until they are ``given_share`` of it."""
    reps = 1
    if given_share is not None and len(y_pseudo):
        reps = max(1, int(np.ceil(given_share * len(y_pseudo) / ((1 - given_share) * max(len(y_given), 1)))))
    X = np.concatenate([X_given] * reps + ([X_pseudo] if len(y_pseudo) else []))
    y = np.concatenate([y_given] * reps + ([y_pseudo] if len(y_pseudo) else []))
    return X, y


class _PoolRecorder:
    """The pool's items and each round's pseudo labels in the label store, in bulk."""

    def __init__(self, store, pool, run_id: str, classes, chunk_size: int) -> None:
        self.store, self.run_id = store, run_id
        ids = []
        for start in range(0, len(pool), _EVENTS_PER_TRANSACTION):
            keys = pool.ids(start, start + _EVENTS_PER_TRANSACTION)
            ids.append(store.add_items(keys, [f"{pool.source}:{k}" for k in keys], split="pool"))
        self.ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        self.recorded = np.full(len(pool), -1, dtype=np.int16)
        events = store.events(run_id, "pseudo")
        if len(events):  # a resumed run: what it recorded already
            row = {int(i): r for r, i in enumerate(self.ids.tolist())}
            for item_id, lab in zip(events["item_id"].tolist(), events["label"].tolist()):
                if int(item_id) in row:
                    self.recorded[row[int(item_id)]] = lab

    def record(self, label, conf, round_of, round_: int) -> int:
        dropped = (self.recorded >= 0) & (label < 0)
        if dropped.any():
            self.store.discard("pseudo", self.run_id, note=f"round {round_} dropped {int(dropped.sum())} pool labels")
            self.recorded[:] = -1
        new = np.flatnonzero((label >= 0) & (label != self.recorded))
        written = 0
        for s in range(0, len(new), _EVENTS_PER_TRANSACTION):
            rows = new[s:s + _EVENTS_PER_TRANSACTION]
            written += self.store.add_labels(self.ids[rows], label[rows].astype(np.int64), "pseudo",
                                             confidence=np.clip(conf[rows].astype(float), 0.0, 1.0),
                                             round=round_of[rows].astype(np.int64), run_id=self.run_id,
                                             model_id=f"{self.run_id}/round-{round_}")
            self.recorded[rows] = label[rows]
        return written


def _write_pool_labels(run: RunDirectory, pool, label, conf, round_of, names, chunk_size: int) -> None:
    import pyarrow as pa  # pyarrow: the Parquet extra, only for pool runs
    import pyarrow.parquet as pq

    names = np.asarray(list(names) + [""], dtype=object)  # -1 -> ""
    tmp = run.path / f".{POOL_LABELS}.tmp"
    with pq.ParquetWriter(tmp, pa.schema([("item", pa.string()), ("label", pa.string()),
                                          ("confidence", pa.float32()), ("round", pa.int16())])) as writer:
        for _, start, stop in pool.chunk_bounds(chunk_size):
            sl = slice(start, stop)
            writer.write_table(pa.table({"item": pool.ids(start, stop), "label": names[label[sl]].tolist(),
                                         "confidence": conf[sl], "round": round_of[sl]}))
    tmp.replace(run.path / POOL_LABELS)


def run_selftrain_pool(config: Mapping, out, *, resume: bool = False, say: Callable[[str], None] = _say,
                       cluster=None):
    """Self-train on ``config["data"]``'s labels and the pool ``config["pool"]`` (see the module
    docstring); ``config`` as for :func:`pseudolabel.jobs.selftrain.run_selftrain` plus ``pool``,
    ``pool_cap``, ``chunk_size``, ``cluster`` and ``workers``. Returns the run's history.

    Examples
    --------
    >>> run_selftrain_pool({"data": "mnist", "labeled": 1000, "pool": "pool.npy"}, "runs/big")  # doctest: +SKIP
    """
    from pseudolabel.jobs.selftrain import SelfTrainResult  # jobs.selftrain imports this module lazily too

    config = SelfTrainConfig.resume(out, config, say) if resume else SelfTrainConfig.coerce(config)
    extra = config.extra
    cap = extra.get("pool_cap") or POOL_CAP
    chunk_size = extra.get("chunk_size") or DEFAULT_CHUNK_SIZE
    for name, value in (("pool-cap", cap), ("chunk-size", chunk_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"--{name} must be an int >= 1. Got {value!r} instead.")
    if config.class_quota is not None or config.model.get("semi"):
        raise InputError("--pool cannot be combined with a class quota or --semi (they need every row's "
                         "probabilities at once); leave those out or train without --pool.")
    ds = load_dataset(config.data, image_size=config.image_size, skip_bad=config.skip_bad_images)
    y_partial = _given_labels(ds.y, config.labeled, config.seed)
    given = np.flatnonzero(y_partial >= 0)
    X_given = ds.X[given] if ds.X.dtype != object else read_images(list(ds.X[given]), size=ds.image_size)
    y_given = y_partial[given]
    pool = open_pool(extra["pool"], image_size=config.image_size or tuple(X_given.shape[1:3]))
    say(f"self-training on {ds.name}: {len(y_given)} labeled, a pool of {len(pool)} from {extra['pool']}")
    t_start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        remote = cluster
        if remote is None and extra.get("cluster"):
            from pseudolabel.cluster import Cluster  # Ray: only for --cluster

            remote = stack.enter_context(Cluster(extra["cluster"]))
        with JobContext() as ctx:
            if resume:
                run = ctx.attach(RunDirectory.create(out, job="selftrain", config={}, resume=True))
            else:
                config = config.replace(run_id=config.run_id or outputs.new_run_id("selftrain"), start="data")
                run = ctx.attach(RunDirectory.create(out, job="selftrain", config={
                    **config.to_dict(), "pool_items": len(pool)}))
            store = ctx.open_store(config.store or run.path / "labels.db")
            # --data's items and its given labels (round 0), as the in-memory selftrain job records
            # them: diffed against the store, so a resumed run writes them once.
            outputs.StoreRecorder(store, ds, config.run_id, job="selftrain",
                                  config=config.to_dict()).record_given(y_partial)
            recorder = _PoolRecorder(store, pool, config.run_id, ds.classes, chunk_size)
            progress = EpochProgress(say=say)
            state = run.load_checkpoint() if resume else None
            if state:
                model, label, conf, round_of, done = (state["model"], state["label"], state["conf"],
                                                      state["round_of"], state["round"])
                model.callbacks = [progress]
                run.rewrite_history(run.read_history()[:done + 1])
                say(f"resuming {run.path} after round {done}")
            else:
                model = make_model(config.model, config.seed, [progress])
                label = np.full(len(pool), -1, dtype=np.int16)
                conf = np.zeros(len(pool), dtype=np.float32)
                round_of = np.full(len(pool), -1, dtype=np.int16)
                done = -1
                run.rewrite_history([])
            for round_ in range(done + 1, config.max_iter + 1):
                t0 = time.perf_counter()
                progress.round = round_
                rows = _training_rows(label, cap, np.random.default_rng(config.seed + round_))
                X, y = _with_given(X_given, y_given, pool.take(rows), label[rows].astype(np.int64),
                                   config.given_share)
                model.fit(X, y)
                del X, y
                if round_ == config.max_iter:  # the last fit: nothing more to label
                    n_added, threshold = 0, None
                else:
                    # None (a model that is not a torch network): SelfTraining's plain threshold.
                    threshold = threshold_for_round(0.95 if config.threshold is None else config.threshold,
                                                    round_ + 1)
                    before = int((label >= 0).sum())
                    bounds = pool.chunk_bounds(chunk_size)
                    parts = (score_pool_locally(model, pool, bounds) if remote is None else
                             remote.score_chunks(model, pool, bounds, with_proba=True, concurrency=extra.get("workers")))
                    classes = np.asarray(model.classes_, dtype=np.int64)
                    for part in parts:
                        sl = slice(part["start"], part["start"] + len(part["pred"]))
                        take = select_by_threshold(part["proba"], threshold)
                        pred = classes[part["pred"]].astype(np.int16)
                        conf[sl] = part["conf"]
                        if config.relabel:
                            was = label[sl].copy()
                            label[sl] = np.where(take, pred, -1)
                            round_of[sl] = np.where(take & (was != label[sl]), round_ + 1,
                                                    np.where(take, round_of[sl], -1))
                        else:
                            new = take & (label[sl] < 0)
                            label[sl] = np.where(new, pred, label[sl])
                            round_of[sl] = np.where(new, round_ + 1, round_of[sl])
                    n_added = int((label >= 0).sum()) - before
                    recorder.record(label, conf, round_of, round_ + 1)
                record = {"round": round_, "threshold": threshold, "n_labeled": int(len(y_given) + (label >= 0).sum()),
                          "n_pseudo": int((label >= 0).sum()), "n_added": n_added, "n_trained_pseudo": int(len(rows)),
                          "seconds": time.perf_counter() - t0, "elapsed_s": time.perf_counter() - t_start}
                run.append_history(record)
                run.save_checkpoint({"model": model, "label": label, "conf": conf, "round_of": round_of,
                                     "round": round_})
                say(f"round {round_}: trained on {len(y_given)} given + {len(rows)} pseudo labels; "
                    f"{record['n_pseudo']} of {len(pool)} pool items labeled (+{n_added})")
            _write_pool_labels(run, pool, label, conf, round_of, ds.classes, chunk_size)
            outputs.write_model(run, model)
            history = run.read_history()
            run.write_history_csv(history)
            run.set_status("finished", termination="max_iter", test_accuracy=None)
            say(f"label store {store.path}: run {config.run_id}, {int((label >= 0).sum())} pool pseudo labels; "
                f"scores in {run.path / POOL_LABELS}")
    return SelfTrainResult(run, history, None, "max_iter", time.perf_counter() - t_start, store=store.path,
                           run_id=config.run_id)
