"""Item content that is not an image, for the review page: a row of a table (a text item is a row
whose long string cell is its text).

Contract with the table loaders: a table or text data set's items have the store's source (the
``images`` meta value) = the absolute path of a ``.csv`` or ``.parquet`` file, and location
``row:N``, N the 0-based data row (the header is not a row). The page never takes a path from a
URL: the file comes from the store, the row from the item's stored location.
"""
from __future__ import annotations

import math
import re
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from pseudolabel.exceptions import DataError

__all__ = ["TableRows", "TABLE_SUFFIXES", "LONG_TEXT", "is_table"]

TABLE_SUFFIXES = (".csv", ".parquet")
#: A string cell longer than this is shown as a paragraph: the item's text.
LONG_TEXT = 40
_MAX_CELL = 20_000  # characters of one cell sent to the page; the rest is cut with a note
_ROW = re.compile(r"row:([0-9]{1,12})")


def is_table(spec) -> bool:
    """Whether ``spec`` names a table file (``.csv`` / ``.parquet``) rather than images."""
    return isinstance(spec, (str, Path)) and Path(spec).suffix.lower() in TABLE_SUFFIXES


def _cell(value):
    """One cell as JSON: numbers as numbers, missing as None, anything else as text."""
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else str(value)
    if isinstance(value, pd.Timestamp) and pd.isna(value):
        return None
    text = str(value)
    return text if len(text) <= _MAX_CELL else text[:_MAX_CELL] + f" [... {len(text) - _MAX_CELL} more characters]"


class TableRows:
    """Rows of one ``.csv`` or ``.parquet`` file, read once (pandas) and kept; a location is
    ``row:N``. The file is read again when its size or modification time changes.

    Examples
    --------
    >>> rows = TableRows("/data/reviews.csv")            # doctest: +SKIP
    >>> rows.row("row:3")["columns"][0]                  # doctest: +SKIP
    {'name': 'text', 'value': 'Great phone, battery lasts two days ...', 'text': True}
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not is_table(self.path):
            raise DataError(f"{path} is not a .csv or .parquet file; pass the table the store was built from.")
        self._frame: pd.DataFrame | None = None
        self._stamp: tuple | None = None
        self._lock = threading.Lock()

    def frame(self) -> pd.DataFrame:
        """The whole table (cached)."""
        try:
            st = self.path.stat()
        except OSError:
            raise DataError(f"table {self.path} no longer exists; restore it or start the review page "
                            "with --images PATH.") from None
        stamp = (st.st_size, st.st_mtime_ns)
        with self._lock:
            if self._frame is None or self._stamp != stamp:
                try:
                    if self.path.suffix.lower() == ".parquet":
                        frame = pd.read_parquet(self.path)
                    else:
                        frame = pd.read_csv(self.path, dtype_backend="numpy_nullable")
                except Exception as exc:  # ParserError, ArrowInvalid, UnicodeDecodeError, missing engine
                    raise DataError(f"table {self.path} cannot be read ({' '.join(str(exc).split())[:120]}); "
                                    "repair or replace the file.") from None
                self._frame, self._stamp = frame, stamp
            return self._frame

    def row(self, location: str) -> dict:
        """The row at ``location`` (``row:N``) as ``{"row": N, "columns": [{"name", "value",
        "text"}]}``; ``text`` marks a string cell longer than :data:`LONG_TEXT` characters."""
        m = _ROW.fullmatch(str(location))
        if m is None:
            raise DataError(f"location {str(location)[:60]!r} is not row:N for the table {self.path.name}; "
                            "the store's items must be rows of that table.")
        frame = self.frame()
        n = int(m.group(1))
        if n >= len(frame):
            raise DataError(f"location {location!r} is outside {self.path.name} ({len(frame)} rows); "
                            "pass the table the store was built from.")
        values = frame.iloc[n]
        columns = []
        for name, value in zip(frame.columns, values.tolist()):
            v = None if value is pd.NA else _cell(value)
            columns.append({"name": str(name), "value": v, "text": isinstance(v, str) and len(v) > LONG_TEXT})
        return {"row": n, "columns": columns}
