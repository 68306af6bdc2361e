"""What a job leaves in its run directory besides history: labels with provenance, the model, tables,
and the label events it records in a :class:`~pseudolabel.store.LabelStore` (``labels.db``)."""
from __future__ import annotations

import io
import sqlite3
import sys
from contextlib import contextmanager
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.utils import _safe_indexing

from pseudolabel.datasets import Dataset
from pseudolabel.exceptions import InputError, StoreError
from pseudolabel.runs import RunDirectory, atomic_write
from pseudolabel.store import LabelStore, new_run_id  # noqa: F401  (new_run_id: the jobs' name for it)

START_LABELS = "start_labels.csv"


def labels_frame(ds: Dataset, transduction: np.ndarray, labeled_iter: np.ndarray,
                 confidence: np.ndarray, given_source: np.ndarray | None = None) -> pd.DataFrame:
    """One row per item: item, label (-1 = none), class name, source (given | human | pseudo | none),
    round, confidence. ``given_source`` names the source of each round-0 label (default: given)."""
    first = "given" if given_source is None else np.asarray(given_source, dtype=object)
    source = np.where(labeled_iter == 0, first, np.where(labeled_iter > 0, "pseudo", "none"))
    names = np.asarray(ds.classes, dtype=object)
    return pd.DataFrame({
        "item": ds.items,
        "label": transduction,
        "class_name": np.where(transduction >= 0, names[np.clip(transduction, 0, len(names) - 1)], ""),
        "source": source,
        "round": np.where(labeled_iter >= 0, labeled_iter, -1),
        "confidence": confidence,
    })


def write_labels(run: RunDirectory, ds: Dataset, st, given_source: np.ndarray | None = None) -> pd.DataFrame:
    frame = labels_frame(ds, st.transduction_, st.labeled_iter_, st.label_confidence_, given_source)
    buf = io.StringIO()
    frame.to_csv(buf, index=False, float_format="%.6f")
    atomic_write(run.path / "labels.csv", buf.getvalue())
    return frame


def write_model(run: RunDirectory, estimator) -> None:
    buf = io.BytesIO()
    joblib.dump(estimator, buf)
    atomic_write(run.path / "model.joblib", buf.getvalue())


_COLUMNS = [
    ("round", "round", "{}"), ("threshold", "threshold", "{:.3f}"), ("n_labeled", "labeled", "{}"),
    ("n_added", "added", "{}"), ("added_accuracy", "added acc", "{:.4f}"),
    ("train_label_accuracy", "train labels ok", "{:.4f}"), ("high_conf_accuracy", "high-conf acc", "{:.4f}"),
    ("low_conf_accuracy", "low-conf acc", "{:.4f}"), ("test_accuracy", "test acc", "{:.4f}"),
    ("seconds", "seconds", "{:.1f}"),
]


def format_round_table(history: list[dict]) -> str:
    cols = [c for c in _COLUMNS if any(r.get(c[0]) is not None for r in history)]
    rows = [[c[1] for c in cols]]
    for r in history:
        rows.append(["-" if r.get(k) is None else fmt.format(r[k]) for k, _, fmt in cols])
    widths = [max(len(row[i]) for row in rows) for i in range(len(cols))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in rows)


def print_round_table(history: list[dict], file=None) -> None:
    print(format_round_table(history), file=file or sys.stdout, flush=True)


# ------------------------------------------------------------------------------------ label store

def legacy_run_id(job: str, directory: str, created_at: str) -> str:
    """The id of a run saved before run ids were: its job, directory name and start time."""
    return f"{job}-{directory}-{created_at}"


def register_dataset(store: LabelStore, ds: Dataset) -> np.ndarray:
    """Record the data set's classes, its items with their locations, and where the images are
    (the ``images`` meta value the review page reads); return the item ids in ``ds.items`` order."""
    known = store.classes
    if not known:
        store.set_classes(ds.classes)
    elif list(known) != list(ds.classes):
        raise InputError(f"{store.path} names the classes {_short(known)} but the data has {_short(ds.classes)}; "
                         "pass the data set the store was built from, or a new --store.")
    ids = store.add_items(ds.items, ds.locations, split="train")
    if ds.source is not None:
        store.set_meta("images", ds.source)
    return ids


def _short(values, n: int = 5) -> str:
    values = list(values)
    return "[" + ", ".join(map(repr, values[:n])) + (", ...]" if len(values) > n else "]")


def check_store_matches(store: LabelStore, ds: Dataset) -> bool:
    """True when the store holds the items of ``ds`` (by key), False when it holds none yet;
    an InputError when it holds others."""
    keys = store.items(split="train")["key"].tolist()
    if not keys:
        return False
    mine, theirs = set(ds.items), set(keys)
    if mine != theirs:
        extra = sorted(theirs - mine)
        missing = sorted(mine - theirs)
        example = (f"{extra[0]!r} is in the store but not in the data" if extra
                   else f"{missing[0]!r} is in the data but not in the store")
        raise InputError(f"{store.path} holds {len(theirs)} items but data {ds.name or 'set'} has {len(mine)} "
                         f"and they differ ({example}); pass the data set the store was built from.")
    return True


def labels_from_store(store: LabelStore, ds: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The labels a redone run starts from: the current given and human labels of the store
    (pseudo and corrected labels are ignored, everything else is unlabeled).

    Returns ``rows`` (the rows of ``ds`` to train on: items a person rejected with label -1 are
    left out), ``y`` (-1 = unlabeled) and ``source`` ("given", "human" or "") for those rows.
    """
    check_store_matches(store, ds)
    if list(store.classes) != list(ds.classes):
        raise InputError(f"{store.path} names the classes {_short(store.classes)} but the data has "
                         f"{_short(ds.classes)}; pass the data set the store was built from.")
    cur = store.current_labels(split="train").set_index("key").loc[list(ds.items)]
    source = cur["source"].fillna("").to_numpy(dtype=object)
    label = cur["label"].to_numpy(dtype=np.int64)
    trusted = np.isin(source, ["given", "human"])
    rejected = (source == "human") & (label < 0)
    rows = np.flatnonzero(~rejected)
    y = np.where(trusted & (label >= 0), label, -1)[rows]
    return rows, y, np.where(y >= 0, source[rows], "")


def write_start_labels(run: RunDirectory, items, y: np.ndarray, source: np.ndarray) -> None:
    """Keep what a run started from (so a resume starts from the same labels)."""
    frame = pd.DataFrame({"key": list(items), "label": y, "source": source})
    atomic_write(run.path / START_LABELS, frame.to_csv(index=False))


def read_start_labels(run: RunDirectory) -> pd.DataFrame | None:
    path = run.path / START_LABELS
    if not path.is_file():
        return None
    return pd.read_csv(path, dtype={"key": str, "label": np.int64, "source": str}, keep_default_na=False)


class StoreRecorder:
    """Writes a run's labels into a LabelStore as they are made.

    The given labels are written once (round 0), each finished round's pseudo labels as they are
    taken, and the model's predictions of the pool that stays unlabeled at the end (for the
    active-learning queue). Writes are diffed against what the store already holds for the run,
    so a resumed run never records a round twice. When a round drops labels it had taken (relabel
    mode), the run's earlier pseudo events are discarded and its current ones recorded again,
    so the store's current labels always equal the run's.

    Examples
    --------
    >>> rec = StoreRecorder(store, ds, "selftrain-1")          # doctest: +SKIP
    >>> rec.record_given(y_partial); rec.record_pseudo(st)     # doctest: +SKIP
    """

    def __init__(self, store: LabelStore, ds: Dataset, run_id: str, *, job: str = "selftrain",
                 config: dict | None = None) -> None:
        self.store, self.ds, self.run_id = store, ds, run_id
        store.begin_run(job, config, run_id=run_id)
        self.ids = register_dataset(store, ds)
        self._row = {int(i): r for r, i in enumerate(self.ids)}
        self.recorded = self._recorded("pseudo")

    def _recorded(self, source: str) -> np.ndarray:
        """The label of the latest effective ``source`` event of this run, per row (-1 = none)."""
        out = np.full(len(self.ids), -1, dtype=np.int64)
        events = self.store.events(self.run_id, source)
        for item_id, label in zip(events["item_id"].tolist(), events["label"].tolist()):
            r = self._row.get(int(item_id))
            if r is not None:
                out[r] = label
        return out

    def model_id(self, round_: int) -> str:
        return f"{self.run_id}/round-{int(round_)}"

    def record_given(self, y: np.ndarray) -> int:
        """Record the labels the run starts from as ``given`` events of round 0 (once)."""
        y = np.asarray(y, dtype=np.int64)
        todo = (y >= 0) & (self._recorded("given") != y)
        if not todo.any():
            return 0
        return self.store.add_labels(self.ids[todo], y[todo], "given", round=0, run_id=self.run_id)

    def record_pseudo(self, transduction: np.ndarray, labeled_iter: np.ndarray, confidence: np.ndarray,
                      round_: int | None = None) -> int:
        """Bring the run's pseudo events up to date with the loop's state; return the events written."""
        want = np.where(labeled_iter > 0, transduction, -1).astype(np.int64)
        written = 0
        dropped = (self.recorded >= 0) & (want < 0)
        if dropped.any():
            note = f"round {round_} dropped {int(dropped.sum())} labels" if round_ is not None else None
            self.store.discard("pseudo", self.run_id, who=None, note=note)
            self.recorded[:] = -1
        new = (want >= 0) & (want != self.recorded)
        conf = np.clip(np.asarray(confidence, dtype=float), 0.0, 1.0)  # float32 softmax can pass 1 by an ulp
        for r in np.unique(labeled_iter[new]):
            part = new & (labeled_iter == r)
            written += self.store.add_labels(self.ids[part], want[part], "pseudo", confidence=conf[part],
                                             round=int(r), run_id=self.run_id, model_id=self.model_id(r))
            self.recorded[part] = want[part]
        return written

    def record_predictions(self, estimator, X, rows: np.ndarray, round_: int) -> int:
        """Record the estimator's class probabilities for ``rows`` (the pool left unlabeled), once:
        a resumed run whose model recorded them already (one transaction, so all or none) adds none."""
        if len(rows) == 0:
            return 0
        done = self.store.predictions("proba", self.run_id)
        if len(done) and (done["model_id"] == self.model_id(round_)).any():
            return 0
        proba = estimator.predict_proba(_safe_indexing(X, rows))
        full = np.zeros((len(rows), len(self.ds.classes)))
        full[:, np.asarray(estimator.classes_, dtype=np.int64)] = proba
        return self.store.record_predictions(self.ids[rows], full, self.run_id, model_id=self.model_id(round_))


def open_store(path: str | Path) -> LabelStore:
    """Open (or create) the label store a job writes to."""
    return LabelStore(Path(path).expanduser())


@contextmanager
def store_errors(path: str | Path):
    """Turn SQLite's complaint about a store damaged past its first page, which shows only when a
    query reaches the bad part, into one StoreError line. Every write is one transaction, so a
    failed one leaves the file as it was."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} cannot be read as a label store ({exc}); restore it from a backup "
                         "or pass a new path.") from None
