"""Image folders in fastai's layout (class = parent folder name), CSV manifests, and fast image decoding.

:mod:`pseudolabel.datasets` re-exports :func:`load_image_folder` and :func:`read_images`; this module
does not import it (the :class:`~pseudolabel.dataset.Dataset` both build lives in :mod:`pseudolabel.dataset`).
"""
from __future__ import annotations

import csv
import numbers
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from pseudolabel.dataset import Dataset
from pseudolabel.exceptions import DataError, InputError, one_line

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
UNLABELED_FOLDERS = ("unlabeled", "_unlabeled")


def _class_order(names: Iterable[str]) -> list:
    names = set(names)
    if all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)  # "10" after "9"
    return sorted(names)


def _read_manifest(manifest: Path, root: Path, found: dict) -> dict:
    """Relative posix path -> class name or None (unlabeled), from a CSV with columns path,label."""
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in reader.fieldnames or []]
            reader.fieldnames = columns
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"cannot read manifest {manifest}: {one_line(err)}; save it as UTF-8 CSV.") from None
    if "path" not in columns or "label" not in columns:
        raise DataError(
            f"manifest {manifest} has columns {columns}, expected 'path' and 'label'; "
            "add a header row 'path,label' (an empty label marks an unlabeled image)."
        )
    labels = {}
    for line, row in enumerate(rows, start=2):
        given = Path((row.get("path") or "").strip())
        if given.is_absolute():
            try:
                given = given.resolve().relative_to(root)
            except ValueError:
                given = Path("..")  # reported below as outside the folder
        rel = Path(os.path.normpath(given)).as_posix()  # "./a.png" and "b/../a.png" are "a.png"
        if rel not in found and (rel in ("", ".") or rel.startswith("..") or not (root / rel).is_file()):
            raise DataError(
                f"manifest {manifest} line {line}: {row.get('path')!r} is not a file under {root}; "
                "give paths relative to the image folder."
            )
        if rel in labels:
            raise DataError(f"manifest {manifest} lists {rel} twice (line {line}); keep one row per image.")
        label = (row.get("label") or "").strip()
        labels[rel] = label or None
    return labels


def load_image_folder(path, *, manifest=None, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> Dataset:
    """List the images of a folder in fastai's layout: ``PATH/<class>/<image>``.

    An image's class is the name of its parent folder. Images directly in ``PATH``, or in a folder
    named ``unlabeled`` or ``_unlabeled``, are unlabeled (-1). A CSV ``manifest`` with columns
    ``path`` (relative to ``PATH``) and ``label`` overrides the folder's labels; an empty label
    marks an image unlabeled. Hidden files and folders are skipped. Classes are sorted, numerically
    when every name is an integer.

    Parameters
    ----------
    path : str or Path
        The image folder.
    manifest : str or Path, optional
        The CSV manifest.
    extensions : sequence of str
        File endings counted as images (case-insensitive).

    Returns
    -------
    Dataset
        ``X`` is an object array of absolute paths (decode with :func:`read_images`), ``items``
        the paths relative to ``PATH`` in posix form, ``root`` the resolved folder.

    Examples
    --------
    >>> ds = load_image_folder("pets")  # doctest: +SKIP
    >>> ds.classes, ds.items[0], ds.y[0]  # doctest: +SKIP
    (['cat', 'dog'], 'cat/001.png', 0)
    """
    given = Path(path).expanduser()
    hint = f"expected {given}/<class>/<image>.png (one folder per class; images directly in {given} are unlabeled)"
    if not given.is_dir():
        what = "is a file, not a folder" if given.exists() else "does not exist"
        raise DataError(f"image folder {given} {what}; {hint}.")
    root = given.resolve()
    endings = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    labels = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        parent = Path(folder)
        unlabeled = parent == root or parent.name.lower() in UNLABELED_FOLDERS
        for f in files:
            if not f.startswith(".") and f.lower().endswith(endings):
                labels[(parent / f).relative_to(root).as_posix()] = None if unlabeled else parent.name
    if manifest is not None:
        manifest = Path(manifest).expanduser()
        if not manifest.is_absolute() and not manifest.exists() and (root / manifest).is_file():
            manifest = root / manifest  # a manifest named relative to the image folder
        labels.update(_read_manifest(manifest, root, labels))
    if not labels:
        raise DataError(f"no images found in {given} (extensions {', '.join(endings)}); {hint}.")
    items = sorted(labels)
    classes = _class_order(c for c in labels.values() if c is not None)
    index = {c: k for k, c in enumerate(classes)}
    y = np.array([-1 if labels[i] is None else index[labels[i]] for i in items], dtype=np.int64)
    X = np.empty(len(items), dtype=object)
    X[:] = [str(root / i) for i in items]
    return Dataset(X=X, y=y, items=items, classes=classes, name=root.name, root=root,
                   source=str(root), locations=list(items))


_GREY_MODES = {"1", "L", "LA", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"}
_MODE_ALIASES = {"l": "L", "grey": "L", "gray": "L", "rgb": "RGB"}


def _open_image(p: str, mode: str, size: tuple | None) -> tuple[np.ndarray, bool]:
    """Decode one file as mode, resized to size (h, w); also say whether the file itself is grey."""
    with Image.open(p) as img:
        grey = img.mode in _GREY_MODES
        h, w = size or (img.height, img.width)
        if img.format == "JPEG":
            img.draft(mode, (w, h))  # the JPEG decoder downscales by 2, 4 or 8 for free
        if img.mode.startswith("I;16"):
            img = Image.fromarray((np.asarray(img, dtype=np.uint16) >> 8).astype(np.uint8))
        if img.mode != mode:
            img = img.convert(mode)
        if img.size != (w, h):
            img = img.resize((w, h), Image.BILINEAR, reducing_gap=3.0)
        return np.asarray(img), grey


def _image_error(p, err: BaseException) -> DataError:
    return DataError(f"cannot read image {p}: {one_line(err)}; remove or replace it.")


def _decode(p: str, mode: str, size: tuple | None) -> tuple[np.ndarray, bool]:
    try:
        return _open_image(p, mode, size)
    except Exception as err:  # OSError, UnidentifiedImageError, DecompressionBombError, SyntaxError ...
        raise _image_error(p, err) from None


def read_images(paths, size=None, mode: str | None = None, *, n_threads: int | None = None) -> np.ndarray:
    """Decode image files into one uint8 array: (n, H, W) for grey, (n, H, W, 3) for RGB.

    Parameters
    ----------
    paths : sequence of str or Path
        The files, e.g. ``Dataset.X`` of :func:`load_image_folder`.
    size : int or (int, int), optional
        (height, width) every image is resized to (bilinear); default the size of the first image.
    mode : {None, 'L', 'RGB'}, optional
        'L' (grey) or 'RGB'; None gives grey when every image is grey, else RGB (palette images
        count as colour). Alpha channels are dropped. Pass it for batches that must agree.
    n_threads : int, optional
        Decoding threads (Pillow decodes without holding the GIL); default several for large
        images and one for small ones, where threads cost more than they save.

    Raises
    ------
    DataError
        Naming the first file that cannot be read.

    Examples
    --------
    >>> read_images(load_image_folder("pets").X[:16], size=(64, 64)).shape  # doctest: +SKIP
    (16, 64, 64, 3)
    """
    paths = [str(p) for p in (paths.tolist() if isinstance(paths, np.ndarray) else paths)]
    if mode is not None:
        mode = _MODE_ALIASES.get(str(mode).lower(), mode)
        if mode not in ("L", "RGB"):
            raise InputError(f"mode must be None, 'L' (grey) or 'RGB', got {mode!r}; pass one of those.")
    if size is not None:
        size = (size, size) if isinstance(size, numbers.Integral) else tuple(size)
        if len(size) != 2 or not all(isinstance(s, numbers.Integral) and s > 0 for s in size):
            raise InputError(f"size must be None, an int or (height, width) of positive ints, got {size!r}.")
        size = (int(size[0]), int(size[1]))
    if not paths:
        return np.empty((0, *(size or (0, 0))) + ((3,) if mode == "RGB" else ()), dtype=np.uint8)
    # The first image fixes the size and, when mode is None, a first guess of the mode; one pass
    # then decodes every file once, and colour files met in a grey pass are redone as RGB.
    first, first_grey = _decode(paths[0], mode or "RGB", size)
    target = mode or ("L" if first_grey else "RGB")
    if target == "L" and first.ndim == 3:
        first = _decode(paths[0], "L", size)[0]
    size = first.shape[:2]
    out = np.empty((len(paths), *first.shape), dtype=np.uint8)
    out[0] = first
    colour = []

    def work(i: int) -> None:
        out[i], grey = _decode(paths[i], target, size)
        if mode is None and not grey and target == "L":
            colour.append(i)  # list.append is atomic under the GIL

    big = size[0] * size[1] >= 256 * 256
    threads = n_threads if n_threads is not None else (min(8, os.cpu_count() or 1) if big else 1)
    if threads <= 1 or len(paths) < 8:
        for i in range(1, len(paths)):
            work(i)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, range(1, len(paths))))  # list() re-raises the first error in order
    if colour:
        out = np.repeat(out[..., None], 3, axis=-1)  # grey to RGB is the same value in each channel
        for i in colour:
            out[i] = _decode(paths[i], "RGB", size)[0]
    return out


# ------------------------------------------------------------------------------------------ dispatch
