"""The :class:`Dataset` every loader returns.

A module of its own so that :mod:`pseudolabel.datasets` (MNIST, digits, arrays, noise) and
:mod:`pseudolabel.imagefolder` (image folders) can both build one without importing each other.
Import it from :mod:`pseudolabel.datasets`, which re-exports it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Dataset"]


@dataclass
class Dataset:
    """Samples, labels (-1 = unlabeled), stable item ids and class names, as the loaders return them.

    ``X`` holds images, (n, H, W) or (n, H, W, C), or for image folders a 1-D object array of
    absolute file paths (decode them with :func:`pseudolabel.datasets.read_images`). ``classes[k]``
    names label ``k``. ``X_test``/``y_test`` are a held-out split where the source has one (MNIST,
    digits), else None. ``source`` names where the images can be read again (an .npz file, an image
    folder or ``"digits"``; None for IDX files) and ``locations`` where each training sample lives
    in it (``"x_train:17"``, a relative path), so a label store's review page can show the images.
    ``notes`` are one-line remarks of the loader a job prints (folders ignored, files skipped, ...);
    ``image_size`` is the (height, width) an image folder's files are to be decoded at, when declared
    (pass it on as ``read_images(ds.X, size=ds.image_size)``; None: read_images' default).

    Examples
    --------
    >>> from pseudolabel.datasets import load_digits
    >>> ds = load_digits()
    >>> ds.X.shape[1:], ds.classes[:3], ds.items[0]
    ((8, 8), ['0', '1', '2'], 'train/0')
    """

    X: np.ndarray
    y: np.ndarray
    items: list[str]
    classes: list[str]
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    name: str = ""
    root: Path | None = None
    items_test: list[str] | None = None
    source: str | None = None
    locations: list[str] | None = None
    notes: list[str] = field(default_factory=list)
    image_size: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.y)
