"""Image sources for the review page: an item's stored location -> PNG bytes.

The page never takes a path from a URL: it looks the item up in the store by id and asks the
image source for that item's ``location``. A folder source also refuses any location that
resolves outside its root, so a crafted store cannot read other files either.
"""
from __future__ import annotations

import io
import math
import threading
from pathlib import Path
from typing import Mapping

import numpy as np
import sklearn.datasets
from PIL import Image, UnidentifiedImageError

from pseudolabel.datasets import npz_error
from pseudolabel.exceptions import DataError, InputError

__all__ = ["ImageSource", "ArrayImages", "FolderImages", "open_image_source", "render_png"]

MIN_SIDE = 112  # small images (8x8 digits, 28x28 MNIST) are upscaled to at least this, pixel-sharp
MAX_SIDE = 192  # large photos are shrunk to this for the grid
#: (min_side, max_side) of the zoomed view: small images upscaled sharp, photos at a readable size.
LARGE = (448, 768)


def render_png(image, min_side: int = MIN_SIDE, max_side: int = MAX_SIDE) -> bytes:
    """Encode one image array (H, W), (H, W, C), (C, H, W) or a flat square as PNG bytes.

    Small images are upscaled by a whole factor with nearest-neighbour, so pixels stay sharp.

    Examples
    --------
    >>> png = render_png(np.zeros((28, 28), dtype=np.uint8))   # a 112 x 112 PNG
    """
    a = np.asarray(image)
    a = np.squeeze(a)
    if a.ndim == 1 and math.isqrt(a.size) ** 2 == a.size:
        side = math.isqrt(a.size)
        a = a.reshape(side, side)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # channels first, as torch keeps them
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise DataError(f"cannot show an image of shape {np.shape(image)}; expected (H, W), (H, W, 3) "
                        "or (3, H, W).")
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        finite = a[np.isfinite(a)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        # [0, 1] floats are intensities; anything else (e.g. digits' 0..16) is stretched to 0..255.
        if lo >= 0 and hi <= 1:
            lo, hi = 0.0, 1.0
        a = np.nan_to_num((a - lo) / ((hi - lo) or 1.0) * 255.0)
        a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    img = Image.fromarray(a)
    h, w = a.shape[:2]
    if max(h, w) < min_side:
        f = math.ceil(min_side / max(h, w))
        img = img.resize((w * f, h * f), Image.NEAREST)
    elif max(h, w) > max_side:
        img.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


class ImageSource:
    """Maps an item location to PNG bytes; subclasses implement ``_load``. PNGs are cached."""

    def __init__(self) -> None:
        self._cache: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def png(self, location: str, large: bool = False) -> bytes:
        """PNG bytes of the image at ``location`` (``large``: for the zoomed view, :data:`LARGE`);
        DataError when it cannot be found or read."""
        key = (location, large)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        data = self._load(str(location), *(LARGE if large else (MIN_SIDE, MAX_SIDE)))
        with self._lock:
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = data
        return data

    def _load(self, location: str, min_side: int, max_side: int) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError


class ArrayImages(ImageSource):
    """Images in arrays: an ``.npz``/``.npy`` file or a mapping of name -> array.

    A location is ``"NAME:INDEX"`` (e.g. ``"x_train:17"``) or a bare ``"INDEX"`` into the default
    array (``x_train``, ``x`` or ``images`` when present, else the only one).

    Examples
    --------
    >>> src = ArrayImages({"x_train": np.zeros((2, 28, 28), np.uint8)})
    >>> len(src.png("x_train:1")) > 0
    True
    """

    def __init__(self, arrays: Mapping[str, np.ndarray] | str | Path) -> None:
        super().__init__()
        self._file = None
        if isinstance(arrays, (str, Path)):
            path = Path(arrays)
            if not path.is_file():
                raise DataError(f"no image array file at {path}; pass an .npz or .npy file.")
            try:
                loaded = np.load(path, allow_pickle=False)
            except Exception as exc:  # zipfile.BadZipFile (a truncated .npz), ValueError, EOFError ...
                raise npz_error(path, exc) from None
            if isinstance(loaded, np.ndarray):
                self._arrays: dict[str, np.ndarray] = {"x": loaded}
                self._names = ["x"]
            else:
                self._file = loaded  # arrays load on first use: an npz may hold several big ones
                self._arrays = {}
                self._names = list(loaded.files)
            self.where = str(path)
        else:
            self._arrays = {str(k): np.asarray(v) for k, v in arrays.items()}
            self._names = list(self._arrays)
            self.where = "arrays"
        if not self._names:
            raise DataError(f"{self.where} holds no arrays; pass the file that holds the images.")
        self._default = next((n for n in ("x_train", "x", "images", "X") if n in self._names), self._names[0])

    def _array(self, name: str) -> np.ndarray:
        with self._lock:
            if name not in self._arrays:
                if self._file is None or name not in self._names:
                    raise DataError(f"{self.where} has no array {name!r} (it has {', '.join(self._names)}); "
                                    "check the item locations or pass the right --images file.")
                try:
                    self._arrays[name] = self._file[name]
                except Exception as exc:  # a member cut short: bad CRC-32, EOF
                    raise npz_error(self.where, exc) from None
            return self._arrays[name]

    def _load(self, location: str, min_side: int = MIN_SIDE, max_side: int = MAX_SIDE) -> bytes:
        name, _, index = location.rpartition(":")
        try:
            i = int(index)
        except ValueError:
            raise DataError(f"location {location!r} is not NAME:INDEX for an array image source; "
                            "pass the image folder instead of an array file.") from None
        arr = self._array(name or self._default)
        if not 0 <= i < len(arr):
            raise DataError(f"location {location!r} is outside {name or self._default} "
                            f"(length {len(arr)}) in {self.where}; pass the array file the store was built from.")
        return render_png(arr[i], min_side, max_side)


class FolderImages(ImageSource):
    """Image files under ``root``; a location is a path relative to ``root``.

    Examples
    --------
    >>> src = FolderImages("data/pets")      # doctest: +SKIP
    >>> src.png("cat/001.jpg")               # doctest: +SKIP
    """

    def __init__(self, root: str | Path) -> None:
        super().__init__()
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise DataError(f"no image folder at {root}; pass the folder the store's paths are relative to.")

    def _load(self, location: str, min_side: int = MIN_SIDE, max_side: int = MAX_SIDE) -> bytes:
        path = (self.root / location).resolve()
        if not path.is_relative_to(self.root):
            raise DataError(f"location {location!r} lies outside the image folder {self.root}; refused.")
        if not path.is_file():
            raise DataError(f"image {path} no longer exists; restore the file or pass the right --images folder.")
        try:
            with Image.open(path) as img:
                img.load()
                if img.mode not in ("L", "RGB", "RGBA"):
                    img = img.convert("RGB")
                return render_png(np.asarray(img), min_side, max_side)
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"image {path} cannot be read ({exc}); replace the file.") from None


def open_image_source(spec, base: str | Path | None = None) -> ImageSource | None:
    """Build an image source from a path (.npz/.npy file or folder), ``"digits"`` (scikit-learn's
    bundled digits, locations ``"x:INDEX"`` or ``"INDEX"``), a mapping of arrays, or an
    ImageSource (returned as is). None gives None. A relative path is tried against ``base``
    (the store's folder) when it does not exist as given.

    Examples
    --------
    >>> src = open_image_source("data/mnist.npz")   # doctest: +SKIP
    """
    if spec is None or isinstance(spec, ImageSource):
        return spec
    if isinstance(spec, Mapping):
        return ArrayImages(spec)
    if str(spec) == "digits":
        return ArrayImages({"x": sklearn.datasets.load_digits().images})
    path = Path(spec)
    if not path.exists() and base is not None and not path.is_absolute() and (Path(base) / path).exists():
        path = Path(base) / path
    if path.is_dir():
        return FolderImages(path)
    if path.suffix.lower() in (".npz", ".npy"):
        return ArrayImages(path)
    if not path.exists():
        raise DataError(f"no images at {spec}; pass an .npz/.npy file or an image folder.")
    raise InputError(f"{spec} is neither an image folder nor an .npz/.npy file; pass one of those.")
