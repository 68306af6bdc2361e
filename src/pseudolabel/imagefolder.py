"""Image folders in fastai's layout (class = parent folder name), CSV manifests, and fast image decoding.

:mod:`pseudolabel.datasets` re-exports :func:`load_image_folder` and :func:`read_images`; this module
does not import it (the :class:`~pseudolabel.dataset.Dataset` both build lives in :mod:`pseudolabel.dataset`).
"""
from __future__ import annotations

import csv
import numbers
import os
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from pseudolabel.dataset import Dataset
from pseudolabel.exceptions import DataError, InputError, one_line

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
UNLABELED_FOLDERS = ("unlabeled", "_unlabeled")
#: Folders that are never classes (besides hidden ones, whose names start with "."): what archivers,
#: Python and NAS boxes leave behind.
IGNORED_FOLDERS = ("__MACOSX", "__pycache__", "@eaDir", "$RECYCLE.BIN", "System Volume Information")
_SHOWN = 3  # names shown in a note before "..."
SKIP_HINT = "skip_bad=True (CLI: --skip-bad-images)"


def _few(names: Sequence[str]) -> str:
    """The first few names, then how many more."""
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def _ignored_folder(name: str) -> bool:
    return name.startswith(".") or name in IGNORED_FOLDERS


def _check_size(size, name: str = "size") -> tuple[int, int] | None:
    """None, or (height, width) as two positive ints from an int or a pair; InputError otherwise."""
    if size is None:
        return None
    pair = (size, size) if isinstance(size, numbers.Integral) else size
    try:
        pair = tuple(pair)
    except TypeError:
        pair = (size,)
    if len(pair) != 2 or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0
                                 for s in pair):
        raise InputError(f"{name} must be None, an int or (height, width) of positive ints, got {size!r}; "
                         "e.g. (64, 64).")
    return int(pair[0]), int(pair[1])


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
    labels, missing = {}, []
    for line, row in enumerate(rows, start=2):
        given = Path((row.get("path") or "").strip())
        if given.is_absolute():
            try:
                given = given.resolve().relative_to(root)
            except ValueError:
                given = Path("..")  # reported below as outside the folder
        rel = Path(os.path.normpath(given)).as_posix()  # "./a.png" and "b/../a.png" are "a.png"
        if rel not in found and (rel in ("", ".") or rel.startswith("..") or not (root / rel).is_file()):
            missing.append((line, row.get("path")))
            continue
        if rel in labels:
            raise DataError(f"manifest {manifest} lists {rel} twice (line {line}); keep one row per image.")
        label = (row.get("label") or "").strip()
        labels[rel] = label or None
    if missing:
        (line, first), n = missing[0], len(missing)
        raise DataError(
            f"manifest {manifest} names {n} of {len(rows)} file(s) that are not under {root}, the first "
            f"{first!r} on line {line}; give paths relative to the image folder, or remove those rows."
        )
    return labels


def _unreadable(path: str) -> str | None:
    """Why an image file cannot be decoded, or None when it can (JPEGs are checked at 1/8 scale)."""
    try:
        with Image.open(path) as img:
            if img.format == "JPEG":
                img.draft("L", (1, 1))  # decodes every byte of the scan, at the cheapest scale
            img.load()
    except Exception as err:  # OSError, UnidentifiedImageError, DecompressionBombError, SyntaxError ...
        return one_line(one_line(err).replace(repr(path), "").replace(path, ""))  # the note names the file
    return None


def _find_unreadable(paths: Sequence[str]) -> list:
    """(index, reason) of each file that cannot be decoded, in order."""
    threads = min(8, os.cpu_count() or 1) if len(paths) >= 64 else 1
    if threads > 1:
        with ThreadPoolExecutor(threads) as pool:
            reasons = list(pool.map(_unreadable, paths))
    else:
        reasons = [_unreadable(p) for p in paths]
    return [(i, r) for i, r in enumerate(reasons) if r is not None]


def load_image_folder(path, *, manifest=None, extensions: Sequence[str] = IMAGE_EXTENSIONS,
                      image_size=None, skip_bad: bool = False) -> Dataset:
    """List the images of a folder in fastai's layout: ``PATH/<class>/<image>``.

    An image's class is the name of its parent folder. Images directly in ``PATH``, or in a folder
    named ``unlabeled`` or ``_unlabeled``, are unlabeled (-1). A CSV ``manifest`` with columns
    ``path`` (relative to ``PATH``) and ``label`` overrides the folder's labels; an empty label
    marks an image unlabeled. Classes are sorted, numerically when every name is an integer.

    What is not an image of the data set, and what the loader does with it:

    - hidden files (``.DS_Store``, ``._x.png``): skipped silently;
    - files without an image ending (``notes.txt``): skipped, with a note naming the first few;
    - hidden folders (``.git``) and system folders (:data:`IGNORED_FOLDERS`, e.g. ``__MACOSX``):
      never classes, not searched, with a note naming them;
    - a manifest row naming no file: refused, naming the first such row and how many there are;
    - a file that cannot be decoded (truncated, not really an image): by default refused when the
      images are decoded (:func:`read_images`, naming the file); with ``skip_bad=True`` every
      file is decoded once here, and unreadable ones are left out with a note naming the first few.

    Notes go into ``Dataset.notes``, one line each, for the caller to print.

    Parameters
    ----------
    path : str or Path
        The image folder.
    manifest : str or Path, optional
        The CSV manifest.
    extensions : sequence of str
        File endings counted as images (case-insensitive).
    image_size : int or (int, int), optional
        The (height, width) the images are to be decoded at, kept as ``Dataset.image_size`` for
        ``read_images(ds.X, size=ds.image_size)``; default None: read_images' default (one size
        every image has, else the most common one, see :func:`read_images`).
    skip_bad : bool, default False
        Decode every image now and leave out the ones that cannot be read, instead of refusing them
        later. Costs one extra pass over the files.

    Returns
    -------
    Dataset
        ``X`` is an object array of absolute paths (decode with :func:`read_images`), ``items``
        the paths relative to ``PATH`` in posix form, ``root`` the resolved folder.

    Raises
    ------
    DataError
        When the folder or the manifest's files are missing, no images are found, or (with
        ``skip_bad``) none of them can be read.

    Examples
    --------
    >>> ds = load_image_folder("pets")  # doctest: +SKIP
    >>> ds.classes, ds.items[0], ds.y[0]  # doctest: +SKIP
    (['cat', 'dog'], 'cat/001.png', 0)
    """
    given = Path(path).expanduser()
    hint = f"expected {given}/<class>/<image>.png (one folder per class; images directly in {given} are unlabeled)"
    image_size = _check_size(image_size, "image_size")
    if not given.is_dir():
        what = "is a file, not a folder" if given.exists() else "does not exist"
        raise DataError(f"image folder {given} {what}; {hint}.")
    root = given.resolve()
    endings = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    manifest_path = None
    if manifest is not None:
        manifest_path = Path(manifest).expanduser()
        if not manifest_path.is_absolute() and not manifest_path.exists() and (root / manifest_path).is_file():
            manifest_path = root / manifest_path  # a manifest named relative to the image folder
    manifest_file = None if manifest_path is None else manifest_path.resolve()
    labels, ignored, other = {}, [], []
    for folder, dirs, files in os.walk(root):
        parent = Path(folder)
        ignored += [(parent / d).relative_to(root).as_posix() for d in sorted(dirs) if _ignored_folder(d)]
        dirs[:] = sorted(d for d in dirs if not _ignored_folder(d))
        unlabeled = parent == root or parent.name.lower() in UNLABELED_FOLDERS
        for f in sorted(files):
            if f.startswith("."):
                continue
            rel = (parent / f).relative_to(root).as_posix()
            if f.lower().endswith(endings):
                labels[rel] = None if unlabeled else parent.name
            elif parent / f != manifest_file:
                other.append(rel)
    notes = []
    if ignored:
        notes.append(f"ignored {len(ignored)} hidden or system folder(s) in {given}, not classes: {_few(ignored)}")
    if manifest_path is not None:
        labels.update(_read_manifest(manifest_path, root, labels))
        other = [o for o in other if o not in labels]
    if other:
        notes.append(f"skipped {len(other)} file(s) in {given} that are not images by their ending: "
                     f"{_few(other)}; pass extensions= to count other endings as images")
    if not labels:
        raise DataError(f"no images found in {given} (extensions {', '.join(endings)}); {hint}.")
    items = sorted(labels)
    if skip_bad:
        bad = _find_unreadable([str(root / i) for i in items])
        if len(bad) == len(items):
            raise DataError(f"none of the {len(items)} images in {given} can be read (first {items[0]}: "
                            f"{bad[0][1]}); check that the folder holds image files.")
        if bad:
            shown = [f"{items[i]} ({reason})" for i, reason in bad]
            notes.append(f"skipped {len(bad)} of {len(items)} images in {given} that cannot be read: "
                         f"{_few(shown)}; remove or replace them to use them")
            dropped = {i for i, _ in bad}
            items = [it for i, it in enumerate(items) if i not in dropped]
    classes = _class_order(labels[i] for i in items if labels[i] is not None)
    index = {c: k for k, c in enumerate(classes)}
    y = np.array([-1 if labels[i] is None else index[labels[i]] for i in items], dtype=np.int64)
    X = np.empty(len(items), dtype=object)
    X[:] = [str(root / i) for i in items]
    return Dataset(X=X, y=y, items=items, classes=classes, name=root.name, root=root,
                   source=str(root), locations=list(items), notes=notes, image_size=image_size)


_GREY_MODES = {"1", "L", "LA", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"}
_MODE_ALIASES = {"l": "L", "grey": "L", "gray": "L", "rgb": "RGB"}


def _open_image(p: str, mode: str, size: tuple | None) -> tuple[np.ndarray, bool, tuple[int, int]]:
    """Decode one file as mode, resized to size (h, w); also say whether the file itself is grey,
    and its own (height, width)."""
    with Image.open(p) as img:
        grey = img.mode in _GREY_MODES
        native = (img.height, img.width)
        h, w = size or native
        if img.format == "JPEG":
            img.draft(mode, (w, h))  # the JPEG decoder downscales by 2, 4 or 8 for free
        if img.mode.startswith("I;16"):
            img = Image.fromarray((np.asarray(img, dtype=np.uint16) >> 8).astype(np.uint8))
        if img.mode != mode:
            img = img.convert(mode)
        if img.size != (w, h):
            img = img.resize((w, h), Image.BILINEAR, reducing_gap=3.0)
        return np.asarray(img), grey, native


def _image_error(p, err: BaseException) -> DataError:
    return DataError(f"cannot read image {p}: {one_line(err)}; load the folder with {SKIP_HINT} to leave "
                     "such files out, or remove or replace it.")


def _common_size(sizes: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], str | None]:
    """The size to resize to when none is given, and a one-line report when some images differ.

    The size every image has; else the most common one when at least half the images share it
    (ties: the larger); else the median height and width."""
    counts = Counter(sizes)
    if len(counts) == 1:
        return sizes[0], None
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], -kv[0][0] * kv[0][1], kv[0]))
    (best, n_best) = ranked[0]
    if 2 * n_best >= len(sizes):
        size, why = best, "the most common size"
    else:
        hs, ws = zip(*sizes)
        size, why = (int(np.median(hs)), int(np.median(ws))), "the median height and width"
    off = len(sizes) - counts.get(size, 0)
    others = [f"{h}x{w} ({n})" for (h, w), n in ranked if (h, w) != size]
    report = (f"{off} of {len(sizes)} images are not {size[0]}x{size[1]} (height x width; {why}; others: "
              f"{_few(others)}) and were resized to it; pass size=(H, W) (image_size=, CLI --image-size) "
              "to choose the size")
    return size, report


def _decode(p: str, mode: str, size: tuple | None) -> tuple[np.ndarray, bool, tuple[int, int]]:
    try:
        return _open_image(p, mode, size)
    except Exception as err:  # OSError, UnidentifiedImageError, DecompressionBombError, SyntaxError ...
        raise _image_error(p, err) from None


def read_images(paths, size=None, mode: str | None = None, *, n_threads: int | None = None,
                notes: list | None = None) -> np.ndarray:
    """Decode image files into one uint8 array: (n, H, W) for grey, (n, H, W, 3) for RGB.

    Images of another size than ``size`` are resized to it. Without ``size``: the size every image
    has; when sizes differ, the most common size if at least half the images share it (ties: the
    larger), else the median height and width (never "the first file's size"), with a one-line
    report of what was resized. (The files are decoded at the first one's size, right whenever
    all agree; a second pass decodes them again when the size chosen is another.)

    Parameters
    ----------
    paths : sequence of str or Path
        The files, e.g. ``Dataset.X`` of :func:`load_image_folder`.
    size : int or (int, int), optional
        (height, width) every image is resized to (bilinear); default as above.
    mode : {None, 'L', 'RGB'}, optional
        'L' (grey) or 'RGB'; None gives grey when every image is grey, else RGB (palette images
        count as colour). Alpha channels are dropped. Pass it for batches that must agree.
    n_threads : int, optional
        Decoding threads (Pillow decodes without holding the GIL); default several for large
        images and one for small ones, where threads cost more than they save.
    notes : list, optional
        Receives the one-line report when images of several sizes were resized to a common one;
        without it the report is a ``UserWarning``.

    Raises
    ------
    DataError
        Naming the first file that cannot be read (it never skips one: the array has one image per
        path; to leave unreadable files out, load the folder with ``skip_bad=True``).

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
    size = _check_size(size)
    if not paths:
        return np.empty((0, *(size or (0, 0))) + ((3,) if mode == "RGB" else ()), dtype=np.uint8)
    asked = size
    # The first image gives a first size (checked below) and, when mode is None, a first guess of
    # the mode; one pass then decodes every file once, and colour files met in a grey pass are
    # redone as RGB.
    first, first_grey, native = _decode(paths[0], mode or "RGB", size)
    natives = [native] * len(paths)
    target = mode or ("L" if first_grey else "RGB")
    if target == "L" and first.ndim == 3:
        first = _decode(paths[0], "L", size)[0]
    size = first.shape[:2]
    out = np.empty((len(paths), *first.shape), dtype=np.uint8)
    out[0] = first
    colour = []

    def work(i: int) -> None:
        out[i], grey, natives[i] = _decode(paths[i], target, size)
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
    if asked is None and len(set(natives)) > 1:  # files of several sizes: never "the first one's"
        common, report = _common_size(natives)
        if common != tuple(size):
            final_mode = "RGB" if out.ndim == 4 else "L"
            del out
            out = read_images(paths, size=common, mode=final_mode, n_threads=n_threads)
        if notes is not None:
            notes.append(report)
        else:
            warnings.warn(report, UserWarning, stacklevel=2)
    return out


# ------------------------------------------------------------------------------------------ dispatch
