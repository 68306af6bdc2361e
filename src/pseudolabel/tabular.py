"""Tables and texts: a CSV or Parquet file with a label column becomes a :class:`Dataset`.

``load_table(path, label_column)`` reads every row; an empty label cell is an unlabeled sample
(-1). Class names are the label column's values as strings (``"class_a"``, ``"spam"``; a column
of numbers keeps them as written: ``"1"``, ``"2"``), sorted, so label ``k`` is ``classes[k]``
everywhere: the store's classes table, labels.csv, issues.csv, exports and the report.

What ``X`` holds:

- **table** (no ``text_column``): the feature columns (default: every column but the label, the
  text and the ``id`` column) as a float64 matrix. Numbers and booleans are used as they are; a
  missing number stays NaN (HistGradientBoosting and random forests take NaN, the job refuses it
  in one line for models that cannot). A column of strings is **one-hot encoded**, one 0/1
  column per value (``colour=red``), with a missing cell all zeros: unlike ordinal codes it
  imposes no order that a linear model would read into the values. A string column with more
  than :data:`MAX_LEVELS` distinct values (an id, a name, free text) is left out with a note;
  pass it as ``text_column`` to learn from it.
- **text** (``text_column`` given): a 1-D object array of the column's strings (a missing cell is
  the empty string), for a text model such as ``tfidf-logreg``.

The record's other fields: ``items`` are the ``id`` column's values (as strings; they must be
distinct) or ``row:N``, ``locations`` are ``row:N`` (N the 0-based data row), ``source`` the
file's absolute path, ``name`` its stem. There is no test split: the jobs hold out or cross-
validate given labels to measure accuracy.

Examples
--------
>>> ds = load_table("reviews.csv", "sentiment", text_column="text")   # doctest: +SKIP
>>> ds.classes, ds.X[0], ds.items[0], ds.locations[0]                  # doctest: +SKIP
(['negative', 'positive'], 'Great value.', 'row:0', 'row:0')
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from pseudolabel.dataset import Dataset
from pseudolabel.exceptions import DataError, InputError, one_line

__all__ = ["load_table", "TABLE_SUFFIXES", "MAX_LEVELS", "ID_COLUMN"]

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
# A string column with more distinct values than this is not one-hot encoded (left out, with a note).
MAX_LEVELS = 50
ID_COLUMN = "id"
# Cells of a numeric feature column read as missing (NaN), besides empty ones: what R and
# spreadsheets write for a missing number. Labels are never read this way: "NA" may be a class.
NA_TOKENS = ("na", "n/a", "nan", "null", "none")


def _columns(frame: pd.DataFrame, n: int = 12) -> str:
    names = [str(c) for c in frame.columns]
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "") or "none"


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        what = "does not exist" if not path.exists() else "is not a file"
        raise DataError(f"table {path} {what}; check the path.")
    try:
        if path.suffix.lower() == ".csv":
            # Strings as written: a label column of numbers keeps "1" (not 1.0), ids keep leading zeros.
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        return pd.read_parquet(path)
    except ImportError as exc:  # parquet without pyarrow
        raise DataError(f"cannot read {path}: {one_line(exc)}; pip install pyarrow.") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"table {path} is empty (no header, no rows); write a header row and one row per sample."
                        ) from None
    except Exception as exc:  # ParserError, ArrowInvalid, UnicodeDecodeError, OSError ...
        raise DataError(f"cannot read {path} as a {path.suffix.lower()[1:]} table ({one_line(exc)}); "
                        "check that it is a well-formed file.") from None


def _blank(values: pd.Series) -> np.ndarray:
    """True where a cell is empty: NaN/None, or a string of only whitespace."""
    text = values.astype("string")
    return (values.isna() | text.str.strip().eq("").fillna(True)).to_numpy(dtype=bool)


def _as_numbers(values: pd.Series) -> pd.Series | None:
    """The column as float64 when every non-empty cell is a number (or a boolean), else None."""
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return values.astype("float64")
    text = values.astype("string").str.strip()
    lowered = text.str.lower()
    blank = _blank(values) | lowered.isin(NA_TOKENS).fillna(False).to_numpy(dtype=bool)
    if lowered[~blank].isin(["true", "false"]).all() and (~blank).any():
        return lowered.map({"true": 1.0, "false": 0.0}).where(~blank).astype("float64")
    numbers = pd.to_numeric(text.where(~blank), errors="coerce")
    if numbers[~blank].notna().all():
        return numbers.astype("float64")
    return None


def _labels(frame: pd.DataFrame, column: str, path: Path) -> tuple[np.ndarray, list[str]]:
    values = frame[column]
    blank = _blank(values)
    names = values.astype("string").str.strip()
    if pd.api.types.is_float_dtype(values):  # parquet floats: 1.0 -> "1"
        whole = values.dropna()
        if (whole == whole.round()).all():
            names = values.astype("Int64").astype("string")
    classes = sorted(set(names[~blank].tolist()))
    if len(classes) < 2:
        found = f"only the class {classes[0]!r}" if classes else "no labels (every cell is empty)"
        raise InputError(f"label column {column!r} of {path} holds {found}; cleaning and self-training need "
                         "labeled rows of at least 2 classes.")
    codes = np.full(len(frame), -1, dtype=np.int64)
    codes[~blank] = np.searchsorted(np.asarray(classes, dtype=object), names[~blank].to_numpy(dtype=object))
    return codes, classes


def _items(frame: pd.DataFrame, path: Path) -> list[str]:
    if ID_COLUMN not in frame.columns:
        return [f"row:{i}" for i in range(len(frame))]
    ids = frame[ID_COLUMN]
    if _blank(ids).any():
        row = int(np.flatnonzero(_blank(ids))[0])
        raise DataError(f"column {ID_COLUMN!r} of {path} is empty in row {row}; give every row an id, or rename "
                        "the column to number the rows instead.")
    items = ids.astype("string").str.strip().tolist()
    if len(set(items)) != len(items):
        dup = pd.Series(items)[pd.Series(items).duplicated()].iloc[0]
        raise DataError(f"column {ID_COLUMN!r} of {path} holds the id {dup!r} more than once; ids must be distinct.")
    return items


def _features(frame: pd.DataFrame, columns: Sequence[str], notes: list) -> np.ndarray:
    parts = []
    for col in columns:
        values = frame[col]
        numbers = _as_numbers(values)
        if numbers is not None:
            parts.append(numbers.to_numpy(dtype=np.float64)[:, None])
            continue
        blank = _blank(values)
        text = values.astype("string").str.strip()
        levels = sorted(set(text[~blank].tolist()))
        if len(levels) > MAX_LEVELS:
            notes.append(f"column {col!r} holds {len(levels)} distinct strings (more than {MAX_LEVELS}) and is left "
                         "out of the features; pass it as --text-column to learn from it")
            continue
        hot = np.zeros((len(frame), len(levels)), dtype=np.float64)
        idx = np.searchsorted(np.asarray(levels, dtype=object), text[~blank].to_numpy(dtype=object))
        hot[np.flatnonzero(~blank), idx] = 1.0
        parts.append(hot)
        notes.append(f"column {col!r} is one-hot encoded ({len(levels)} values)")
    if not parts:
        return np.zeros((len(frame), 0))
    return np.hstack(parts)


def load_table(path, label_column: str, text_column: str | None = None,
               feature_columns: Sequence[str] | None = None) -> Dataset:
    """Read a CSV or Parquet file with a label column as a :class:`Dataset` (see the module's text).

    Parameters
    ----------
    path : str or Path
        A ``.csv`` (comma-separated, a header row) or ``.parquet`` file.
    label_column : str
        The column of class names; an empty cell is an unlabeled row.
    text_column : str, optional
        A column of texts: ``X`` is then that column (1-D, strings), for a text model.
    feature_columns : sequence of str, optional
        The columns of a table's ``X`` (default: all but the label, text and ``id`` columns).

    Raises
    ------
    DataError
        A file that is missing, unreadable, empty, or has bad ids.
    InputError
        A label, text or feature column that does not exist (the columns are listed), a text
        column of numbers, fewer than 2 classes among the labels, no feature column.

    Examples
    --------
    >>> ds = load_table("wine.csv", "target")            # doctest: +SKIP
    >>> ds.classes, ds.X.shape, ds.locations[:2]         # doctest: +SKIP
    (['class_a', 'class_b', 'class_c'], (178, 13), ['row:0', 'row:1'])
    """
    path = Path(path).expanduser().resolve()
    frame = _read(path)
    frame.columns = [str(c) for c in frame.columns]
    wanted = [("label", label_column), ("text", text_column)] + [("feature", c) for c in feature_columns or ()]
    for what, col in wanted:
        if col is not None and col not in frame.columns:
            flag = {"label": " (--label-column)", "text": " (--text-column)"}.get(what, "")
            raise InputError(f"{path.name} has no {what} column {col!r}{flag}; its columns are: {_columns(frame)}.")
    if len(frame) == 0:
        raise DataError(f"table {path} has a header but no rows; add one row per sample.")
    y, classes = _labels(frame, label_column, path)
    items = _items(frame, path)
    notes: list[str] = []
    if text_column is not None:
        if text_column == label_column:
            raise InputError(f"--text-column and --label-column are both {text_column!r}; the texts and their "
                             "labels must be two columns.")
        texts = frame[text_column]
        if _as_numbers(texts) is not None and not _blank(texts).all():
            raise InputError(f"text column {text_column!r} of {path.name} holds numbers, not text; pass the column "
                             "of texts, or leave --text-column out to use the columns as numeric features.")
        X = texts.astype("string").fillna("").to_numpy(dtype=object)
        X = np.array([str(v) for v in X], dtype=object)
    else:
        if feature_columns is None:
            feature_columns = [c for c in frame.columns if c not in (label_column, ID_COLUMN)]
        X = _features(frame, list(feature_columns), notes)
        if X.shape[1] == 0:
            raise InputError(f"{path.name} has no feature column besides the labels ({_columns(frame)}); add "
                             "feature columns, or pass a column of texts as --text-column.")
    return Dataset(X=X, y=y, items=items, classes=classes, name=path.stem, source=str(path),
                   locations=[f"row:{i}" for i in range(len(frame))], notes=notes)
