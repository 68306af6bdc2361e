"""What a job leaves in its run directory besides history: labels with provenance, the model, tables."""
from __future__ import annotations

import io
import sys

import numpy as np
import pandas as pd

from pseudolabel.datasets import Dataset
from pseudolabel.runs import RunDirectory, atomic_write


def labels_frame(ds: Dataset, transduction: np.ndarray, labeled_iter: np.ndarray,
                 confidence: np.ndarray) -> pd.DataFrame:
    """One row per item: item, label (-1 = none), class name, source (given | pseudo | none), round, confidence."""
    source = np.where(labeled_iter == 0, "given", np.where(labeled_iter > 0, "pseudo", "none"))
    names = np.asarray(ds.classes, dtype=object)
    return pd.DataFrame({
        "item": ds.items,
        "label": transduction,
        "class_name": np.where(transduction >= 0, names[np.clip(transduction, 0, len(names) - 1)], ""),
        "source": source,
        "round": np.where(labeled_iter >= 0, labeled_iter, -1),
        "confidence": confidence,
    })


def write_labels(run: RunDirectory, ds: Dataset, st) -> pd.DataFrame:
    frame = labels_frame(ds, st.transduction_, st.labeled_iter_, st.label_confidence_)
    buf = io.StringIO()
    frame.to_csv(buf, index=False, float_format="%.6f")
    atomic_write(run.path / "labels.csv", buf.getvalue())
    return frame


def write_model(run: RunDirectory, estimator) -> None:
    import joblib

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
