"""Label files in and out of a label store: export the current labels (CSV, Parquet, an
image-folder manifest) and import a CSV of labels as events."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pseudolabel.exceptions import DataError, InputError

if TYPE_CHECKING:  # the store imports this module; no import back at run time
    from pseudolabel.store.labelstore import LabelStore

__all__ = ["export_labels", "import_labels_csv"]


def export_labels(store: LabelStore, path: str | Path, format: str = "csv", *, split: str | None = None,
                  labeled_only: bool = True) -> Path:
    """Write the current labels to ``path`` and return it.

    ``csv`` and ``parquet`` hold key, location, split, label, class, source, confidence,
    round, run_id, model_id, who, created_at. ``folder`` writes an image-folder manifest CSV
    (path, label as the class name, source, class), as :func:`pseudolabel.datasets.load_image_folder`
    reads it, and never moves, renames or deletes a file.

    Examples
    --------
    >>> store.export("labels.csv")   # doctest: +SKIP
    """
    if format not in ("csv", "parquet", "folder"):
        raise InputError(f"format must be 'csv', 'parquet' or 'folder', got {format!r}.")
    df = store.current_labels(split=split)
    if labeled_only:
        df = df[df["label"] >= 0]
    names = store.classes
    df = df.assign(**{"class": [names[v] if 0 <= v < len(names) else (str(v) if v >= 0 else "")
                                for v in df["label"]]})
    path = Path(path)
    if not path.parent.is_dir():
        raise DataError(f"the folder of {path} does not exist; create {path.parent} first.")
    if format == "folder":
        # load_image_folder reads a manifest's label as a class name, as in the folder names.
        df = df.assign(label=df["class"]).rename(columns={"location": "path"})
        df[["path", "label", "source", "class"]].to_csv(path, index=False)
        return path
    out = df[["key", "location", "split", "label", "class", "source", "confidence", "round",
              "run_id", "model_id", "who", "created_at"]].reset_index(drop=True)
    out["round"] = out["round"].astype("Int64")
    if format == "csv":
        out.to_csv(path, index=False)
    else:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise InputError("writing Parquet needs pyarrow; install it with "
                             "pip install 'pseudolabel[parquet]'.") from None
        out.to_parquet(path, index=False)
    return path


def import_labels_csv(store: LabelStore, path: str | Path, source: str = "human", *,
                      who: str | None = None, note: str | None = None) -> int:
    """Append labels from a CSV with columns ``key`` (or ``item`` or ``path``) and ``label``
    (a class index or a class name); empty labels are skipped. Returns the number written.

    Examples
    --------
    >>> store.import_labels_csv("relabeled.csv", who="ana")   # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no CSV file at {path}; check the path.")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    key_col = next((c for c in ("key", "item", "path") if c in df.columns), None)
    if key_col is None or "label" not in df.columns:
        raise InputError(f"{path.name} has columns {', '.join(df.columns)} but needs 'key' (or 'item' "
                         "or 'path') and 'label'; rename its columns.")
    df = df[df["label"].str.strip() != ""]
    by_name = {n: i for i, n in enumerate(store.classes)}
    labels = []
    for raw in df["label"].str.strip():
        if raw in by_name:
            labels.append(by_name[raw])
        else:
            try:
                labels.append(int(float(raw)) if float(raw).is_integer() else None)
            except ValueError:
                labels.append(None)
            if labels[-1] is None:
                raise InputError(f"{path.name} holds the label {raw!r}, which is neither a class index nor "
                                 f"a class name of {store.path.name}; fix that row.")
    return store.add_labels(df[key_col].tolist(), np.asarray(labels, dtype=np.int64), source,
                            who=who, note=note)
