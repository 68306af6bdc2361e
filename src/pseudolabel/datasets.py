"""Datasets: MNIST (local file, cache or checked download), scikit-learn's digits, image folders in
fastai's layout with an optional CSV manifest, a user's .npz arrays, and label noise for experiments.

Every loader returns a :class:`Dataset`: images or file paths in ``X``, integer labels in ``y`` with
-1 for unlabeled samples, a stable id per sample in ``items`` and the class names in ``classes``.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import numbers
import os
import struct
import tempfile
import urllib.request
import zlib
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import sklearn.datasets
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state

from pseudolabel._validation import check_labels
from pseudolabel.dataset import Dataset
from pseudolabel.exceptions import DataError, InputError, one_line
from pseudolabel.imagefolder import (  # noqa: F401  (re-exported: the public path of image folders)
    IGNORED_FOLDERS, IMAGE_EXTENSIONS, UNLABELED_FOLDERS, load_image_folder, read_images,
)
from pseudolabel.tabular import TABLE_SUFFIXES, load_table

__all__ = [
    "Dataset", "load_mnist", "read_idx", "load_digits", "load_image_folder", "read_images",
    "load_arrays", "load_dataset", "inject_noise", "MNIST_MIRRORS", "MNIST_SHA256",
]

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
#: sha256 of the four canonical MNIST files, as the mirrors serve them (gzip-compressed IDX).
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaaefb259924204aec",
}
# Which array each file holds, in the order of MNIST_SHA256.
_MNIST_PARTS = dict(zip(("x_train", "y_train", "x_test", "y_test"), MNIST_SHA256))
_DOWNLOAD_TIMEOUT_S = 60
_CHUNK = 1 << 16


def _array_items(prefix: str, n: int) -> list:
    return [f"{prefix}/{i}" for i in range(n)]


def _numbered_classes(*ys) -> list:
    top = max((int(y.max()) for y in ys if y is not None and y.size), default=-1)
    return [str(k) for k in range(top + 1)]


# ---------------------------------------------------------------------------------------- IDX / MNIST

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path) -> np.ndarray:
    """Read an IDX file (the format of the original MNIST files), gzip-compressed or raw.

    Parameters
    ----------
    path : str or Path
        The file. Compression is detected from its first bytes, not its name.

    Returns
    -------
    numpy.ndarray
        The array in native byte order, shaped as the header says.

    Raises
    ------
    DataError
        When the file is missing, truncated, or not IDX.

    Examples
    --------
    >>> x = read_idx("train-images-idx3-ubyte.gz")  # doctest: +SKIP
    >>> x.shape, x.dtype  # doctest: +SKIP
    ((60000, 28, 28), dtype('uint8'))
    """
    path = Path(path)
    fix = "delete it and download it again, or point PSEUDOLABEL_DATA at a good copy"
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise DataError(f"IDX file {path} does not exist; check the path.") from None
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"cannot read IDX file {path}: {one_line(err)}; {fix}.") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'}); {fix}.")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"IDX file {path} has a truncated header ({len(raw)} bytes); {fix}.")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(
            f"IDX file {path} holds {len(raw)} bytes but its header (shape {dims}) needs {expected}; "
            f"the file is truncated or corrupt: {fix}."
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _idx_candidates(gz_name: str) -> list:
    raw = gz_name[:-3]
    # Raw copies are also seen as "train-images.idx3-ubyte" (the name some archives unpack to).
    return [gz_name, raw, raw.replace("-idx", ".idx")]


def _mnist_in(folder: Path) -> Path | dict | None:
    """The MNIST source in a folder: mnist.npz, or a dict part -> IDX file, or None."""
    if (folder / "mnist.npz").is_file():
        return folder / "mnist.npz"
    found = {}
    for part, gz_name in _MNIST_PARTS.items():
        hit = next((folder / c for c in _idx_candidates(gz_name) if (folder / c).is_file()), None)
        if hit is None:
            return None
        found[part] = hit
    return found


def npz_error(path, err: BaseException) -> DataError:
    """The one-line DataError for an .npz (or .npy) file NumPy cannot load or read an array of."""
    kind = Path(path).suffix.lower() or ".npz"
    if isinstance(err, FileNotFoundError):
        return DataError(f"{path} does not exist; check the path.")
    if isinstance(err, (PermissionError, IsADirectoryError)):
        return DataError(f"cannot read {path}: {one_line(err)}; check the path and its permissions.")
    if isinstance(err, ValueError) and "Object arrays" in str(err):  # not "file containing pickled data"
        return DataError(f"{path} holds object (pickled) arrays, which are never loaded; "
                         "save plain numeric arrays with numpy.savez.")
    return DataError(f"{path} is truncated or not a {kind} ({one_line(err)}); re-create it with "
                     f"{'numpy.save' if kind == '.npy' else 'numpy.savez'}.")


def _read_npz(path: Path, keys: Iterable[str] | None = None) -> dict:
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as err:  # zipfile.BadZipFile, ValueError (pickles), EOFError, OSError ...
        raise npz_error(path, err) from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise DataError(f"{path} holds a single array (.npy format), not an .npz of named arrays; "
                        "save it with numpy.savez(path, X=..., y=...).")
    try:
        with data:
            arrays = {k: data[k] for k in data.files}  # a cut member fails here: bad CRC, EOF
    except Exception as err:
        raise npz_error(path, err) from None
    missing = [k for k in (keys or ()) if k not in arrays]
    if missing:
        raise DataError(
            f"{path} lacks the array(s) {', '.join(missing)} (it holds {', '.join(arrays) or 'none'}); "
            f"save it with numpy.savez(path, {'=..., '.join(keys)}=...)."
        )
    return arrays


def _check_samples(x: np.ndarray, name: str, where) -> None:
    """Refuse images that are not numeric, have no sample axis, or hold NaN/inf (counting the rows)."""
    if x.dtype.kind not in "biuf":
        raise DataError(f"{name} in {where} has dtype {x.dtype}, expected numbers (images as uint8 or floats); "
                        "save numeric arrays.")
    if x.ndim < 2:
        raise DataError(f"{name} in {where} has shape {x.shape}, one number per sample; expected images "
                        "(n, H, W) or rows of features (n, d): save one row per sample.")
    if x.shape[0] == 0:
        raise DataError(f"{name} in {where} holds no samples (shape {x.shape}); save at least one.")
    if x.dtype.kind != "f":
        return
    bad = np.zeros(len(x), dtype=bool)
    flat = x.reshape(len(x), -1)
    for start in range(0, len(x), 4096):  # blocks: no second array the size of x
        bad[start:start + 4096] = ~np.isfinite(flat[start:start + 4096]).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        shown = ", ".join(str(i) for i in rows[:5]) + (", ..." if len(rows) > 5 else "")
        raise DataError(
            f"{name} in {where} holds NaN or infinity in {len(rows)} of {len(x)} samples (rows {shown}); "
            "drop or impute those rows and save the file again."
        )


def _mnist_dataset(source, where: str) -> Dataset:
    if isinstance(source, Path):
        parts = _read_npz(source, _MNIST_PARTS)
    else:
        parts = {part: read_idx(p) for part, p in source.items()}
    for split in ("train", "test"):
        x, y = parts[f"x_{split}"], parts[f"y_{split}"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(
                f"MNIST in {where} is inconsistent: x_{split} has shape {x.shape} and y_{split} {y.shape}, "
                "expected (n, 28, 28) images and n labels; replace the files with good copies."
            )
        _check_samples(x, f"x_{split}", where)
    y_train, y_test = parts["y_train"].astype(np.int64), parts["y_test"].astype(np.int64)
    return Dataset(
        X=parts["x_train"], y=y_train, items=_array_items("train", len(y_train)),
        classes=_numbered_classes(y_train, y_test), X_test=parts["x_test"], y_test=y_test,
        name="mnist", items_test=_array_items("test", len(y_test)),
        source=str(source.resolve()) if isinstance(source, Path) else None,
        locations=[f"x_train:{i}" for i in range(len(y_train))],
    )


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pseudolabel"


def _download(url: str, dest: Path, sha256: str, progress: Callable | None) -> None:
    """Fetch url to dest through a temporary file in dest's folder, checking sha256 before the
    atomic rename, so an interrupted or corrupt download never looks like a good file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as resp:
            total = resp.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            done = 0
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(dest.name, done, total)
        if digest.hexdigest() != sha256.lower():
            raise _ChecksumError(f"sha256 {digest.hexdigest()}, expected {sha256}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class _ChecksumError(Exception):
    pass


def _download_mnist(folder: Path, mirrors: Sequence[str], sha256: dict, progress) -> dict:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as err:
        raise DataError(
            f"cannot write MNIST into the cache folder {folder}: {one_line(err)}; "
            "pass cache_dir= (or set XDG_CACHE_HOME) to a writable folder."
        ) from None
    for gz_name in _MNIST_PARTS.values():
        dest = folder / gz_name
        if dest.is_file():
            continue
        failures, checksum = [], False
        for base in mirrors:
            url = base.rstrip("/") + "/" + gz_name
            try:
                _download(url, dest, sha256[gz_name], progress)
                break
            except _ChecksumError as err:
                failures.append(f"{url}: {err}")
                checksum = True
            except (OSError, http.client.HTTPException, ValueError) as err:  # URLError is an OSError
                failures.append(f"{url}: {one_line(err)}")
        else:
            raise DataError(
                f"could not download {gz_name} into {folder} "
                f"({'bad checksum, the partial file was deleted' if checksum else 'every mirror failed'}: "
                f"{'; '.join(failures) or 'no mirrors given'}); check your connection and retry, or fetch "
                "the four MNIST IDX files by hand and set PSEUDOLABEL_DATA to their folder."
            )
    return _mnist_in(folder)


def load_mnist(path=None, *, cache_dir=None, download: bool = True, mirrors: Sequence[str] | None = None,
               sha256: dict | None = None, progress: Callable | None = None) -> Dataset:
    """Load MNIST from a local file, the cache, or the public mirrors (checked by sha256).

    The places, in order: ``path``; ``$PSEUDOLABEL_DATA``; the cache folder
    (``$XDG_CACHE_HOME/pseudolabel/mnist`` or ``~/.cache/pseudolabel/mnist``); a download of the four
    original IDX files into that cache. A file must be an .npz with ``x_train, y_train, x_test,
    y_test``; a folder must hold ``mnist.npz`` or the four IDX files (``.gz`` or raw).

    Parameters
    ----------
    path : str or Path, optional
        A file or folder as above. When given it must hold MNIST: there is no fall-back.
    cache_dir : str or Path, optional
        Overrides the cache folder (MNIST goes into its ``mnist`` sub-folder).
    download : bool, default True
        Whether to download when MNIST is nowhere local.
    mirrors : sequence of str, optional
        Base URLs tried in order for each file; default :data:`MNIST_MIRRORS`.
    sha256 : dict, optional
        File name -> expected sha256, overriding :data:`MNIST_SHA256` (for mirrors of other copies).
    progress : callable, optional
        Called as ``progress(file_name, bytes_done, bytes_total_or_None)`` while downloading.

    Returns
    -------
    Dataset
        The 60,000 training images (uint8, 28x28) with all labels in ``X``/``y``, the 10,000 test
        images in ``X_test``/``y_test``, classes ``'0'`` to ``'9'``.

    Examples
    --------
    >>> ds = load_mnist("../shared/data/mnist.npz")  # doctest: +SKIP
    >>> ds.X.shape, ds.X_test.shape  # doctest: +SKIP
    ((60000, 28, 28), (10000, 28, 28))
    """
    fix = "set PSEUDOLABEL_DATA to a folder holding mnist.npz or the four MNIST IDX files, or pass path="

    def look(place: Path):
        if place.is_file():
            return place
        return _mnist_in(place) if place.is_dir() else None

    if path is not None:
        place = Path(path).expanduser()
        source = look(place)
        if source is None:
            what = "does not exist" if not place.exists() else "holds neither mnist.npz nor the four IDX files"
            raise DataError(f"MNIST path {place} {what}; {fix}.")
        return _mnist_dataset(source, str(place))
    looked = []
    env = os.environ.get("PSEUDOLABEL_DATA")
    if env:
        place = Path(env).expanduser()
        source = look(place)
        if source is not None:
            return _mnist_dataset(source, str(place))
        looked.append(f"PSEUDOLABEL_DATA={place}")
    else:
        looked.append("PSEUDOLABEL_DATA (not set)")
    folder = Path(cache_dir).expanduser() if cache_dir is not None else _default_cache_dir()
    folder = folder / "mnist"
    source = _mnist_in(folder) if folder.is_dir() else None
    if source is not None:
        return _mnist_dataset(source, str(folder))
    looked.append(str(folder))
    if not download:
        raise DataError(f"MNIST not found (looked in {', '.join(looked)}) and download=False; {fix}.")
    checks = {**MNIST_SHA256, **(sha256 or {})}
    source = _download_mnist(folder, list(MNIST_MIRRORS if mirrors is None else mirrors), checks, progress)
    return _mnist_dataset(source, str(folder))


# ---------------------------------------------------------------------------------- digits / arrays

def load_digits() -> Dataset:
    """scikit-learn's bundled 8x8 digits, split 75/25 (stratified, ``random_state=0``).

    Returns
    -------
    Dataset
        (n, 8, 8) float32 images with values 0 to 16; all training labels given.

    Examples
    --------
    >>> ds = load_digits()
    >>> len(ds), len(ds.y_test), ds.X.dtype
    (1347, 450, dtype('float32'))
    """
    bunch = sklearn.datasets.load_digits()
    images, target = bunch.images.astype(np.float32), bunch.target.astype(np.int64)
    # Split the row numbers along: a sample's location is its row in the bundled images.
    X, X_test, y, y_test, rows, _ = train_test_split(images, target, np.arange(len(target)), test_size=0.25,
                                                     stratify=target, random_state=0)
    return Dataset(
        X=X, y=y, items=_array_items("train", len(y)), classes=[str(k) for k in range(10)],
        X_test=X_test, y_test=y_test, name="digits", items_test=_array_items("test", len(y_test)),
        source="digits", locations=[f"x:{i}" for i in rows],
    )


def _pick(arrays: dict, names: Sequence[str]):
    return next((arrays[n] for n in names if n in arrays), None)


def load_arrays(path) -> Dataset:
    """Load a user's .npz: images under ``X``, ``x`` or ``x_train``; labels under ``y`` or ``y_train``
    (optional, -1 = unlabeled; all unlabeled when absent); optional ``x_test``/``y_test``, ``items``
    (one string id per sample) and ``classes`` (one name per label).

    Everything is checked here, images first, before any training: a truncated or foreign file,
    images that are not numeric, have no sample axis (1-D) or hold NaN/inf (the rows are counted),
    labels that are not integers >= -1 (test labels >= 0), and lengths that disagree are each
    refused with one line (:class:`~pseudolabel.exceptions.DataError`).

    Examples
    --------
    >>> np.savez("mine.npz", X=np.zeros((4, 8, 8)), y=[0, 1, -1, -1])  # doctest: +SKIP
    >>> load_arrays("mine.npz").y.tolist()  # doctest: +SKIP
    [0, 1, -1, -1]
    """
    path = Path(path).expanduser()
    arrays = _read_npz(path)
    x_name = next((n for n in ("X", "x", "x_train", "X_train") if n in arrays), None)
    X = None if x_name is None else arrays[x_name]
    if X is None:
        raise DataError(
            f"{path} holds no images (arrays: {', '.join(arrays) or 'none'}); "
            "save them as X (and labels as y, -1 for unlabeled) with numpy.savez."
        )
    _check_samples(X, x_name, path)
    X_test, y_test = _pick(arrays, ("x_test", "X_test")), _pick(arrays, ("y_test",))
    if X_test is not None:
        _check_samples(X_test, "x_test", path)
        if X_test.shape[1:] != X.shape[1:]:
            raise DataError(f"{path}: x_test holds samples of shape {X_test.shape[1:]} but {x_name} of shape "
                            f"{X.shape[1:]}; save test images of the training images' shape.")
    if (X_test is None) != (y_test is None):
        has, lacks = ("x_test", "y_test") if y_test is None else ("y_test", "x_test")
        raise DataError(f"{path} holds {has} but no {lacks}; save both (a test split needs its labels) or neither.")
    y = _pick(arrays, ("y", "y_train"))
    y = np.full(len(X), -1, np.int64) if y is None else y
    try:
        y = check_labels(y, name=f"y in {path}")
        y_test = None if y_test is None else check_labels(y_test, name=f"y_test in {path}", allow_unlabeled=False)
    except InputError as err:
        raise DataError(str(err)) from None
    for xs, ys, x_is, y_is in ((X, y, x_name, "y"), (X_test, y_test, "x_test", "y_test")):
        if xs is not None and len(xs) != len(ys):
            raise DataError(
                f"{path}: {x_is} has {len(xs)} samples but {y_is} has {len(ys)}; "
                "save one label per sample (-1 for unlabeled)."
            )
    items = [str(s) for s in arrays["items"]] if "items" in arrays else _array_items("train", len(y))
    if len(items) != len(y) or len(set(items)) != len(items):
        raise DataError(f"{path}: 'items' must be {len(y)} distinct ids, one per sample; fix or drop it.")
    classes = [str(c) for c in arrays["classes"]] if "classes" in arrays else _numbered_classes(y, y_test)
    top = max(int(y.max()) if y.size else -1, int(y_test.max()) if y_test is not None and y_test.size else -1)
    if top >= len(classes):
        raise DataError(f"{path}: label {top} has no name in 'classes' ({len(classes)} names); add the names.")
    return Dataset(
        X=X, y=y, items=items, classes=classes, X_test=X_test, y_test=y_test, name=path.stem,
        items_test=None if y_test is None else _array_items("test", len(y_test)),
        source=str(path.resolve()), locations=[f"{x_name}:{i}" for i in range(len(y))],
    )


def load_dataset(spec, *, image_size=None, skip_bad: bool = False, label_column: str | None = None,
                 text_column: str | None = None) -> Dataset:
    """Load what a ``--data`` option names: ``"mnist"``, ``"digits"``, a folder (MNIST files or
    images), an .npz of arrays, or a CSV manifest (its folder is the image folder).

    With ``label_column`` a .csv or .parquet file is a table (or, with ``text_column``, texts):
    :func:`pseudolabel.tabular.load_table`.

    ``image_size`` and ``skip_bad`` are passed to :func:`load_image_folder` for an image folder or
    manifest. ``skip_bad`` means nothing for arrays (there are no files to skip); ``image_size``
    is refused for them (resize arrays before saving them).

    Examples
    --------
    >>> load_dataset("digits").name
    'digits'
    """
    text = str(spec).strip()
    path = Path(text).expanduser()
    if label_column is not None or text_column is not None:
        if path.suffix.lower() not in TABLE_SUFFIXES:
            raise InputError(f"--label-column and --text-column name columns of a .csv or .parquet table, and "
                             f"data {text!r} is not one; pass a table, or leave those options out.")
        if label_column is None:
            raise InputError("--text-column needs --label-column: name the column of labels too.")
        if image_size is not None or skip_bad:
            raise InputError("--image-size and --skip-bad-images apply to images, not to a table; drop them.")
        return load_table(path, label_column, text_column=text_column)
    if path.suffix.lower() in (".parquet", ".pq") and path.is_file():
        raise InputError(f"data {text!r} is a table; pass --label-column COLUMN to say which column holds the "
                         "labels (and --text-column for a column of texts).")
    arrays = (text.lower() in ("mnist", "digits") or (path.is_file() and path.suffix.lower() == ".npz")
              or (path.is_dir() and _mnist_in(path) is not None))
    if image_size is not None and arrays:
        raise InputError(f"image_size (--image-size) applies to image folders, not to {text!r}; "
                         "drop it, or resize the arrays before saving them.")
    if text.lower() == "mnist":
        return load_mnist()
    if text.lower() == "digits":
        return load_digits()
    if path.is_dir():
        if _mnist_in(path) is not None:
            return load_mnist(path)
        return load_image_folder(path, image_size=image_size, skip_bad=skip_bad)
    if path.is_file() and path.suffix.lower() == ".npz":
        return load_arrays(path)
    if path.is_file() and path.suffix.lower() == ".csv":
        try:
            return load_image_folder(path.parent, manifest=path, image_size=image_size, skip_bad=skip_bad)
        except DataError as err:
            if "expected 'path' and 'label'" not in str(err):
                raise
            raise DataError(f"{err} Or, for a table of features or texts, pass --label-column COLUMN.") from None
    found = "does not exist" if not path.exists() else "is neither a folder, an .npz nor a .csv file"
    raise InputError(
        f"data {text!r} {found}; pass 'mnist', 'digits', a folder of images (PATH/<class>/<image>.png), "
        "a folder with mnist.npz or the MNIST IDX files, an .npz with X and y, or a CSV manifest."
    )


# --------------------------------------------------------------------------------------------- noise

def inject_noise(y, rate: float | None, *, kind="symmetric", random_state=None,
                 n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Corrupt labels on purpose, for experiments with label cleaning.

    Parameters
    ----------
    y : array-like of int
        True labels, all >= 0. Never modified.
    rate : float in [0, 1]
        Share of samples whose label changes: exactly ``round(rate * n)`` of them, chosen uniformly.
        Ignored (and may be None) when ``kind`` is a matrix.
    kind : 'symmetric', 'pairs' or array of shape (K, K)
        'symmetric': a chosen sample gets a label drawn uniformly from the other classes.
        'pairs': class c becomes (c + 1) % K. A row-stochastic matrix T: every sample is redrawn
        from row T[true label] (T[i, j] = P(noisy = j | true = i)), so the diagonal decides how many
        stay and ``rate`` plays no part.
    random_state : int, RandomState or None
        Seed for reproducible noise.
    n_classes : int, optional
        K; default ``max(y) + 1`` (or the matrix size).

    Returns
    -------
    y_noisy : ndarray of int64
    mask : ndarray of bool
        True where ``y_noisy != y``.

    Examples
    --------
    >>> y_noisy, mask = inject_noise([0, 1, 2, 3] * 25, 0.1, random_state=0)
    >>> int(mask.sum()), bool(((y_noisy != [0, 1, 2, 3] * 25) == mask).all())
    (10, True)
    """
    y = check_labels(y, allow_unlabeled=False)
    top = int(y.max()) + 1 if y.size else 0
    matrix = None
    try:
        if not isinstance(kind, str):
            matrix = np.asarray(kind, dtype=float)
        elif kind not in ("symmetric", "pairs"):
            raise ValueError
    except (TypeError, ValueError):
        raise InputError(f"kind must be 'symmetric', 'pairs' or a KxK transition matrix, got {kind!r}.") from None
    if n_classes is not None:
        if isinstance(n_classes, bool) or not isinstance(n_classes, numbers.Integral) or n_classes < top:
            raise InputError(f"n_classes must be an int >= {top} (the largest label + 1), got {n_classes!r}.")
        k = int(n_classes)
    else:
        k = max(top, matrix.shape[0] if matrix is not None and matrix.ndim == 2 else 0)
    rng = check_random_state(random_state)
    y_noisy = y.copy()
    if matrix is not None:
        if matrix.shape != (k, k):
            raise InputError(
                f"the transition matrix must be {k}x{k} (one row and column per class), got shape "
                f"{matrix.shape}; pass T[i, j] = P(noisy = j | true = i) for every class."
            )
        sums = matrix.sum(axis=1)
        if not np.all(np.isfinite(matrix)) or matrix.min() < 0 or not np.allclose(sums, 1.0, atol=1e-6):
            raise InputError(
                f"the transition matrix must hold probabilities >= 0 with rows summing to 1, "
                f"got row sums {np.round(sums, 4).tolist()}; normalise each row."
            )
        cum = np.cumsum(matrix, axis=1)
        cum /= cum[:, -1:]  # the last edge exactly 1, so rounding never picks a zero-probability class
        draws = rng.random_sample(len(y))
        for c in np.unique(y):  # per class, not an (n, K) table: memory stays O(n)
            rows = y == c
            y_noisy[rows] = np.searchsorted(cum[c], draws[rows], side="right")
        return y_noisy, y_noisy != y
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0.0 <= float(rate) <= 1.0:
        raise InputError(f"rate must be a float in [0, 1], got {rate!r}; e.g. rate=0.1 flips 10 % of labels.")
    if k < 2:
        raise InputError(f"label noise needs at least 2 classes, got {k}; pass n_classes or more classes.")
    n_flip = int(round(float(rate) * len(y)))
    chosen = rng.choice(len(y), size=n_flip, replace=False)
    if kind == "pairs":
        y_noisy[chosen] = (y[chosen] + 1) % k
    else:
        y_noisy[chosen] = (y[chosen] + rng.randint(1, k, size=n_flip)) % k
    return y_noisy, y_noisy != y

