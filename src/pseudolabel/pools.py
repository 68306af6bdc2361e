"""Unlabeled pools larger than memory: read in chunks, never whole.

A :class:`Pool` is a numbered list of images that lives on disk: a memory-mapped ``.npy`` array
of shape (N, H, W) or (N, H, W, C) (:class:`ArrayPool`), an image folder of any size
(:class:`FolderPool`), or a CSV / Parquet manifest of image paths (:class:`ManifestPool`). Each
has a length, the id of every item (``ids``) and a chunk iterator that yields ``(ids, images)``
of at most ``chunk_size`` items. What a job keeps of a pool is its ids and, per item, a predicted
label and a confidence; the images are read chunk by chunk, so peak memory stays flat as the pool
grows. A pool is a small picklable description (a path and its item list), so a Ray worker opens
the same chunks on another machine that sees the same files (:mod:`pseudolabel.cluster`).

Examples
--------
>>> pool = open_pool("pool.npy")                     # doctest: +SKIP
>>> len(pool), pool.ids(0, 2)                        # doctest: +SKIP
(1000000, ['pool/0', 'pool/1'])
>>> for chunk in pool.chunks(4096):                  # doctest: +SKIP
...     proba = model.predict_proba(chunk.X)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from pseudolabel.exceptions import DataError, InputError
from pseudolabel.imagefolder import IMAGE_EXTENSIONS, read_images

__all__ = ["Pool", "ArrayPool", "FolderPool", "ManifestPool", "PoolChunk", "open_pool", "DEFAULT_CHUNK_SIZE"]

# 4096 MNIST-sized images are 3 MiB of uint8 and ~25 MiB as float32 inside the model's batches:
# large enough that a chunk's fixed costs (a Parquet part, a Ray task) vanish, small enough that
# chunks of 224x224 RGB images (600 MiB) still fit; lower it for large images.
DEFAULT_CHUNK_SIZE = 4096
_MANIFEST_PATH_COLUMNS = ("path", "file", "location")


@dataclass
class PoolChunk:
    """One chunk of a pool: its number, its first row, its item ids and its images."""

    index: int
    start: int
    ids: list
    X: np.ndarray


class Pool:
    """Images on disk, read a chunk at a time. Subclasses set ``kind`` and ``source`` and
    implement ``__len__``, ``ids`` and ``read``."""

    kind = ""
    source = ""

    def __len__(self) -> int:
        raise NotImplementedError

    def ids(self, start: int = 0, stop: int | None = None) -> list:
        """The item ids of rows ``start:stop``."""
        raise NotImplementedError

    def read(self, start: int, stop: int) -> np.ndarray:
        """The images of rows ``start:stop`` as one array (uint8 for images on disk)."""
        raise NotImplementedError

    def take(self, rows: Sequence[int]) -> np.ndarray:
        """The images of the given rows (in the order given), read in sorted order."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return self.read(0, 0)
        order = np.argsort(rows, kind="stable")
        got = self._take_sorted(rows[order])
        out = np.empty_like(got)
        out[order] = got
        return out

    def _take_sorted(self, rows: np.ndarray) -> np.ndarray:
        return np.stack([self.read(int(r), int(r) + 1)[0] for r in rows])

    def n_chunks(self, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
        return -(-len(self) // _check_chunk_size(chunk_size))

    def chunk_bounds(self, chunk_size: int = DEFAULT_CHUNK_SIZE) -> list[tuple[int, int, int]]:
        """(index, start, stop) of every chunk."""
        n, size = len(self), _check_chunk_size(chunk_size)
        return [(k, s, min(s + size, n)) for k, s in enumerate(range(0, n, size))]

    def chunk(self, index: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> PoolChunk:
        """Chunk number ``index`` (0-based)."""
        size = _check_chunk_size(chunk_size)
        start = index * size
        stop = min(start + size, len(self))
        if index < 0 or start >= len(self):
            raise InputError(f"chunk {index} is outside the {self.n_chunks(size)} chunks of {self.source}.")
        return PoolChunk(index, start, self.ids(start, stop), self.read(start, stop))

    def chunks(self, chunk_size: int = DEFAULT_CHUNK_SIZE, *, skip: Sequence[int] = ()) -> Iterator[PoolChunk]:
        """Every chunk in order, except those in ``skip`` (e.g. chunks scored by a killed job)."""
        skip = set(int(k) for k in skip)
        for k, start, stop in self.chunk_bounds(chunk_size):
            if k not in skip:
                yield PoolChunk(k, start, self.ids(start, stop), self.read(start, stop))

    def describe(self) -> dict:
        """What identifies the pool (kept in a run's config, compared on resume)."""
        return {"kind": self.kind, "source": self.source, "n": len(self)}


def _check_chunk_size(chunk_size) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise InputError(f"The 'chunk_size' of a pool must be an int >= 1. Got {chunk_size!r} instead.")
    return int(chunk_size)


class ArrayPool(Pool):
    """A ``.npy`` array of images, memory-mapped (``np.load(mmap_mode='r')``): item ``i`` is
    ``STEM/i``. Chunks are read from the file at the rows' offset into a fresh array rather than
    through the mapping: pages read through a mapping count in the process's resident memory until
    the kernel takes them back, so a job that went through a 1M-item pool would look 784 MB larger.

    Examples
    --------
    >>> pool = ArrayPool("pool.npy")    # doctest: +SKIP
    """

    kind = "npy"

    def __init__(self, path) -> None:
        self.path = Path(path).expanduser()
        self.source = str(self.path.resolve())
        if not self.path.is_file():
            raise DataError(f"no pool file at {self.path}; check the path.")
        self._array = None
        arr = self.array
        if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] not in (1, 3, 4)):
            raise InputError(f"{self.path.name} holds an array of shape {arr.shape}, but a pool is images: "
                             "(N, H, W) or (N, H, W, C) with C in 1, 3, 4; reshape it and save it again.")
        if arr.dtype.kind not in "uif":
            raise InputError(f"{self.path.name} holds {arr.dtype} values; a pool holds numeric images (uint8).")
        if not arr.flags.c_contiguous:
            raise InputError(f"{self.path.name} is saved in Fortran order; save it with "
                             "numpy.save(path, numpy.ascontiguousarray(x)).")
        self.n = int(arr.shape[0])
        self.prefix = self.path.stem
        self.row_shape, self.dtype, self.offset = tuple(arr.shape[1:]), arr.dtype, int(arr.offset)
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * arr.dtype.itemsize

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            try:
                self._array = np.load(self.path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise DataError(f"{self.path} cannot be read as a .npy array ({exc}); save the pool with "
                                "numpy.save (an .npz cannot be memory-mapped).") from None
        return self._array

    def __getstate__(self):  # pickles as its path: a worker maps the file itself
        state = self.__dict__.copy()
        state["_array"] = None
        return state

    def __len__(self) -> int:
        return self.n

    def ids(self, start: int = 0, stop: int | None = None) -> list:
        stop = self.n if stop is None else min(stop, self.n)
        return [f"{self.prefix}/{i}" for i in range(start, stop)]

    def read(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(0, int(start)), min(int(stop), self.n)
        out = np.empty((max(0, stop - start), *self.row_shape), dtype=self.dtype)
        if len(out):
            with open(self.path, "rb") as fh:
                fh.seek(self.offset + start * self.row_bytes)
                got = fh.readinto(memoryview(out).cast("B"))
            if got != out.nbytes:
                raise DataError(f"{self.path} ended early (read {got} of {out.nbytes} bytes at row {start}); "
                                "the file is truncated: write it again.")
        return out

    def _take_sorted(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), *self.row_shape), dtype=self.dtype)
        view = memoryview(out).cast("B")
        with open(self.path, "rb") as fh:
            for i, r in enumerate(rows.tolist()):
                fh.seek(self.offset + r * self.row_bytes)
                fh.readinto(view[i * self.row_bytes:(i + 1) * self.row_bytes])
        return out


class _PathPool(Pool):
    """Images in files: ``paths`` (absolute), item ids ``keys``; decoded at one size and mode
    (fixed by the first image unless ``image_size`` is given), so every chunk agrees."""

    def __init__(self, keys: list, paths: list, image_size=None) -> None:
        if not paths:
            raise DataError(f"{self.source} lists no image files; pass a folder or manifest with images.")
        self.keys, self.paths = keys, paths
        first = read_images(paths[:1], size=image_size)
        self.size = tuple(first.shape[1:3])
        self.mode = "RGB" if first.ndim == 4 else "L"

    def __len__(self) -> int:
        return len(self.paths)

    def ids(self, start: int = 0, stop: int | None = None) -> list:
        return self.keys[start:stop]

    def read(self, start: int, stop: int) -> np.ndarray:
        return read_images(self.paths[start:stop], size=self.size, mode=self.mode)

    def _take_sorted(self, rows: np.ndarray) -> np.ndarray:
        return read_images([self.paths[r] for r in rows.tolist()], size=self.size, mode=self.mode)


class FolderPool(_PathPool):
    """Every image file under a folder (any depth, sorted by relative path, hidden files and
    folders skipped); an item's id is its path relative to the folder.

    Examples
    --------
    >>> pool = FolderPool("scans/", image_size=(64, 64))   # doctest: +SKIP
    """

    kind = "folder"

    def __init__(self, path, image_size=None, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> None:
        root = Path(path).expanduser()
        self.source = str(root.resolve())
        if not root.is_dir():
            raise DataError(f"no image folder at {root}; check the path.")
        ext = tuple(e.lower() for e in extensions)
        keys = []
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            rel = os.path.relpath(folder, root)
            keys += [f if rel == "." else f"{rel}/{f}".replace(os.sep, "/")
                     for f in files if not f.startswith(".") and f.lower().endswith(ext)]
        keys.sort()
        super().__init__(keys, [str(root / k) for k in keys], image_size)


class ManifestPool(_PathPool):
    """The images a CSV or Parquet manifest lists in its ``path`` column (or ``file`` or
    ``location``), relative to the manifest's folder unless absolute; an item's id is its ``id``
    or ``key`` column when there is one, else its path as written. Only those columns are read.

    Examples
    --------
    >>> pool = ManifestPool("pool.parquet")   # doctest: +SKIP
    """

    kind = "manifest"

    def __init__(self, path, image_size=None) -> None:
        path = Path(path).expanduser()
        self.source = str(path.resolve())
        if not path.is_file():
            raise DataError(f"no manifest at {path}; check the path.")
        columns = _manifest_columns(path)
        col = next((c for c in _MANIFEST_PATH_COLUMNS if c in columns), None)
        if col is None:
            raise InputError(f"{path.name} has columns {', '.join(map(str, columns))} but a pool manifest needs "
                             "a 'path' column of image files; rename its column.")
        id_col = next((c for c in ("id", "key") if c in columns), None)
        frame = _read_manifest(path, [col] + ([id_col] if id_col else []))
        written = [str(p) for p in frame[col].tolist()]
        if any(p in ("", "nan", "None") for p in written):
            raise InputError(f"{path.name} has empty paths in its {col!r} column; fill or drop those rows.")
        keys = [str(k) for k in frame[id_col].tolist()] if id_col else written
        if len(set(keys)) != len(keys):
            raise InputError(f"{path.name} lists an item twice; give each row its own {id_col or col}.")
        root = path.parent
        super().__init__(keys, [p if os.path.isabs(p) else str(root / p) for p in written], image_size)


def _manifest_columns(path: Path) -> list:
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq  # pyarrow: an optional extra, only for Parquet manifests

        return list(pq.read_schema(path).names)
    import pandas as pd

    return list(pd.read_csv(path, nrows=0).columns)


def _read_manifest(path: Path, columns: list):
    import pandas as pd

    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path, columns=columns)
        return pd.read_csv(path, usecols=columns, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} cannot be read as a manifest ({exc}); check the file.") from None


def open_pool(source, *, image_size=None) -> Pool:
    """The pool at ``source``: a ``.npy`` file (memory-mapped), an image folder, or a ``.csv`` /
    ``.parquet`` manifest of image paths. ``image_size`` (height, width) decodes image files at
    that size (default: the first image's).

    Examples
    --------
    >>> open_pool("pool.npy").describe()["n"]   # doctest: +SKIP
    1000000
    """
    if isinstance(source, Pool):
        return source
    path = Path(str(source)).expanduser()
    suffix = path.suffix.lower()
    if path.is_dir():
        return FolderPool(path, image_size=image_size)
    if suffix == ".npy":
        return ArrayPool(path)
    if suffix in (".csv", ".parquet"):
        return ManifestPool(path, image_size=image_size)
    if not path.exists():
        raise DataError(f"no pool at {source}; pass a .npy file, an image folder or a .csv/.parquet manifest.")
    raise InputError(f"--pool {source} is neither a .npy file, an image folder nor a .csv/.parquet manifest; "
                     "convert it (numpy.save for arrays).")
