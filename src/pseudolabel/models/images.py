"""Image inputs: arrays of any common layout or image file paths as one (n, C, H, W) batch, and
the torch device a model runs on. No estimator state here, so jobs can use it without a model."""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse
import torch
from sklearn.utils import _safe_indexing

from pseudolabel.exceptions import InputError
from pseudolabel.imagefolder import read_images

__all__ = ["as_image_batch", "resolve_device"]


def resolve_device(device: str | torch.device = "auto", *, fallback: bool = False) -> torch.device:
    """'auto' picks CUDA when present, then Apple's MPS, then the CPU. A device this torch cannot
    use ('cuda' on a CPU-only build or a machine without a GPU) is refused in one line, or, with
    ``fallback=True`` (a model loaded on another machine), replaced by what 'auto' picks."""
    if isinstance(device, torch.device):
        return device
    if device != "auto" and isinstance(device, str) and not _available(device):
        if fallback:
            return resolve_device("auto")
        raise InputError(f"device {device!r} is not available here (torch {torch.__version__}, CUDA available: "
                         f"{torch.cuda.is_available()}); pass --device auto or cpu, or install a torch build "
                         "for that device.")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}.") from exc


def _available(device: str) -> bool:
    kind = device.split(":", 1)[0]
    if kind == "cuda":
        if not torch.cuda.is_available():
            return False
        index = device.split(":", 1)[1] if ":" in device else "0"
        return not index.isdigit() or int(index) < torch.cuda.device_count()
    if kind == "mps":
        return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    return True


def take_rows(X, mask: np.ndarray):
    """The rows of X (array, list of paths, lazy image reader) where mask is True."""
    return _safe_indexing(X, np.flatnonzero(mask))


def is_path(x) -> bool:
    return isinstance(x, (str, bytes)) or hasattr(x, "__fspath__")


def is_path_like(X) -> bool:
    if isinstance(X, (list, tuple)):
        return len(X) > 0 and is_path(X[0])
    arr = np.asarray(X) if not isinstance(X, np.ndarray) else X
    if arr.dtype.kind == "O":  # an object array of numbers (e.g. from a data frame) is numeric data
        return arr.size > 0 and is_path(arr.flat[0])
    return arr.dtype.kind in "US"


def reject_sparse(X) -> None:
    if scipy.sparse.issparse(X):  # len() of a sparse matrix is not its number of rows
        raise InputError("X is a sparse matrix, but images must be dense; convert it with X.toarray().")


def as_image_batch(X, image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Return X as an (n, C, H, W) numpy array (uint8 kept as uint8, everything else float32).

    Accepts (n, H, W), (n, H, W, C) with C in 1/3/4, (n, C, H, W), flat (n, d) with d a square
    (8x8 digits, 28x28 MNIST), other flat (n, d) as 1 x d strips, and sequences of image paths.
    """
    if is_path_like(X):
        arr = read_images([str(p) for p in X], size=image_size)
    else:
        reject_sparse(X)
        arr = np.asarray(X)
        if arr.dtype.kind == "O":
            arr = arr.astype(np.float32)  # numbers stored as objects; anything else raises TypeError
        if arr.dtype.kind not in "uifb":
            raise InputError(
                f"X must be numeric images or image file paths, got dtype {arr.dtype}; "
                "convert to a numeric array or pass paths as strings."
            )
    if arr.ndim >= 2 and math.prod(arr.shape[1:]) == 0:
        raise InputError(
            f"X has 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required; pass images with pixels."
        )
    if arr.ndim == 2:
        side = int(round(math.sqrt(arr.shape[1])))
        if side * side == arr.shape[1]:
            arr = arr.reshape(len(arr), 1, side, side)
        else:
            arr = arr.reshape(len(arr), 1, 1, arr.shape[1])
    elif arr.ndim == 3:
        arr = arr[:, None, :, :]
    elif arr.ndim == 4:
        if arr.shape[-1] in (1, 3, 4) and arr.shape[1] not in (1, 3, 4):
            arr = np.transpose(arr, (0, 3, 1, 2))
    else:
        raise InputError(
            f"X must have 2, 3 or 4 dimensions (samples first), got shape {arr.shape}; "
            "Reshape your data: pass images as (n, H, W), (n, H, W, C) or (n, C, H, W), one image as X[None]."
        )
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float32, copy=False)
    return np.ascontiguousarray(arr)
