"""A PNG grid of images with titles: the quickest way for a person to see suspected wrong labels.

Drawn on a ``matplotlib.figure.Figure`` with the Agg canvas, not ``pyplot``: no global state,
no GUI backend, safe in a worker thread or a web server.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from pseudolabel._validation import check_same_length
from pseudolabel.exceptions import DataError, InputError

__all__ = ["grid_rows", "save_image_grid", "suspect_grid"]

PathLike = Union[str, os.PathLike]


def save_image_grid(
    images,
    titles: Optional[Sequence[str]],
    path: PathLike,
    *,
    ncols: int = 5,
    cmap: str = "Greys",
    figsize: Optional[tuple[float, float]] = None,
    dpi: int = 100,
) -> Path:
    """Write images in a grid, each with its title, to a PNG file.

    Parameters
    ----------
    images : sequence
        Arrays of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), or paths of image files
        (read with Pillow); a stacked array (n, H, W) works too.
    titles : sequence of str or None
        One title per image; None for no titles.
    path : str or path-like
        The PNG to write; missing parent folders are created.
    ncols : int, default=5
        Images per row.
    cmap : str, default="Greys"
        Colormap of single-channel images: "Greys" draws MNIST's bright ink dark on white.
    figsize : (width, height) in inches or None, default=None
        None gives 2 by 2.2 inches per image. The PNG is ``figsize * dpi`` pixels.
    dpi : int, default=100

    Returns
    -------
    path : pathlib.Path
        The file written.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "grid.png")
    >>> save_image_grid(np.eye(8)[None].repeat(3, 0), ["a", "b", "c"], out, ncols=3).name
    'grid.png'
    """
    # matplotlib takes most of a second to import: loaded when a grid is drawn, not with the module.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(images)
    if n == 0:
        raise InputError("images is empty, but a grid needs at least one image; pass some images.")
    if titles is not None:
        check_same_length("images", images, "titles", titles)
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise InputError(
            f"The 'ncols' parameter of save_image_grid must be an int >= 1. Got {ncols!r} instead."
        )
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    if figsize is None:
        figsize = (2.0 * ncols, 2.2 * nrows)

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    for i in range(n):
        image = _as_image(images[i], i)
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.imshow(image, cmap=cmap if image.ndim == 2 else None, interpolation="nearest")
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=9)
        ax.set_axis_off()
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.92, wspace=0.1, hspace=0.35)

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # No bbox_inches="tight": the PNG keeps the size figsize * dpi that the caller asked for.
    fig.savefig(out, format="png", dpi=dpi)
    return out


def grid_rows(
    issues: pd.DataFrame,
    n: int = 25,
    class_names: Optional[Union[Sequence[str], Mapping]] = None,
) -> pd.DataFrame:
    """The rows of a :func:`pseudolabel.rank_label_issues` table that :func:`suspect_grid` draws.

    Only disagreements (``predicted != given``): an image whose label the model agrees with is
    not worth a person's look, so agreements never fill the grid. Most likely wrong first:
    flagged rows (``is_issue``) first, then by ``score`` descending (higher is more suspicious),
    then ``p_given`` ascending, then the table's own order (a stable sort, so a table straight
    from ``rank_label_issues`` keeps its order). At most ``n`` rows; fewer, or none, when there
    are fewer disagreements.

    Returns
    -------
    rows : pandas.DataFrame
        The chosen rows with their columns, a fresh index 0..len-1, and a ``title`` column
        ``"Label x | Pred y (p)"``: the given label, the prediction (``class_names[label]`` when
        names are given) and the prediction's probability ``p_max``, two decimals.

    Examples
    --------
    >>> import numpy as np
    >>> from pseudolabel.issues import rank_label_issues
    >>> proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.97, 0.03]])
    >>> issues = rank_label_issues([0, 1, 1], proba, method="disagreement")
    >>> grid_rows(issues, n=25, class_names=["cat", "dog"])["title"].tolist()
    ['Label dog | Pred cat (0.97)']
    """
    _check_issues(issues, n, "grid_rows")
    disagrees = issues["predicted"].to_numpy() != issues["given"].to_numpy()
    rows = issues[disagrees].assign(_pos=np.arange(int(disagrees.sum())))
    # (column, descending?) in order of precedence; columns a hand-made table lacks are skipped.
    order = [(c, desc) for c, desc in (("is_issue", True), ("score", True), ("p_given", False))
             if c in rows] + [("_pos", False)]
    rows = rows.sort_values([c for c, _ in order], ascending=[not d for _, d in order],
                            kind="stable")
    rows = rows.drop(columns="_pos").head(n).reset_index(drop=True)
    rows["title"] = _suspect_titles(rows, class_names)
    return rows


def suspect_grid(
    images,
    issues: pd.DataFrame,
    path: PathLike,
    n: int = 25,
    class_names: Optional[Union[Sequence[str], Mapping]] = None,
    *,
    ncols: int = 5,
    cmap: str = "Greys",
) -> Path:
    """Draw the ``n`` most likely wrong labels of :func:`pseudolabel.rank_label_issues` as a grid.

    Only samples the model disagrees with (``predicted != given``) are drawn, chosen and ordered
    by :func:`grid_rows`: flagged first, then the most suspicious. Each image is titled
    ``"Label x | Pred y (p)"``: its given label, the predicted one and the prediction's
    probability. With fewer than ``n`` disagreements the grid is smaller; with none, the PNG is a
    small image that says so (the file is always written, so a report can link it).

    Parameters
    ----------
    images : sequence
        All samples' images, indexed by the ``item`` column of ``issues``: an array (n, H, W),
        a list of arrays, or a list of image file paths.
    issues : pandas.DataFrame
        The result of ``rank_label_issues``.
    path : str or path-like
        The PNG to write.
    n : int, default=25
        The most disagreements to draw.
    class_names : sequence or mapping or None, default=None
        Names for label values in titles (``class_names[label]``); None prints the labels.

    Returns
    -------
    path : pathlib.Path
        The PNG written. ``grid_rows(issues, n, class_names)`` gives the rows it shows, in order,
        with their titles.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from pseudolabel.issues import rank_label_issues
    >>> proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.97, 0.03]])
    >>> issues = rank_label_issues([0, 1, 1], proba, method="disagreement")
    >>> out = os.path.join(tempfile.mkdtemp(), "suspects.png")
    >>> suspect_grid(np.zeros((3, 8, 8)), issues, out, n=1).name
    'suspects.png'
    """
    _check_issues(issues, n, "suspect_grid")
    items = issues["item"].to_numpy(dtype=np.int64)
    if len(items) and (items.max() >= len(images) or items.min() < 0):
        raise InputError(
            f"issues refers to item {int(items.max())}, but images holds {len(images)}; "
            "pass the images the labels were ranked for."
        )
    top = grid_rows(issues, n, class_names)
    if len(top) == 0:
        return _message_png(
            f"No disagreements: the model agrees with all {len(issues)} given labels.", path)
    items = top["item"].to_numpy(dtype=np.int64)
    return save_image_grid([images[i] for i in items], top["title"].tolist(), path,
                           ncols=ncols, cmap=cmap)


def _check_issues(issues, n, where: str) -> None:
    if not isinstance(issues, pd.DataFrame):
        raise InputError(
            f"issues must be a DataFrame from rank_label_issues, got {type(issues).__name__}; "
            "pass rank_label_issues(labels, pred_probs)."
        )
    missing = [c for c in ("item", "given", "predicted", "p_max") if c not in issues]
    if missing:
        raise InputError(
            f"issues lacks the column(s) {', '.join(missing)}; "
            "pass a DataFrame from rank_label_issues."
        )
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(
            f"The 'n' parameter of {where} must be an int >= 1. Got {n!r} instead."
        )
    if len(issues) == 0:
        raise InputError("issues is empty, so there is nothing to draw; rank some labels first.")


def _message_png(text: str, path: PathLike, *, dpi: int = 100) -> Path:
    """A small white PNG (500 x 100 pixels) with one line of text, for a grid with nothing to show."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 1.0), dpi=dpi)
    FigureCanvasAgg(fig)
    fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=9, wrap=True)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=dpi)
    return out


def _suspect_titles(rows: pd.DataFrame, class_names) -> list[str]:
    """Titles "Label x | Pred y (p)", one per row of a rank_label_issues table."""

    def name(label) -> str:
        if class_names is None:
            return str(label)
        try:
            return str(class_names[label])
        except (KeyError, IndexError, TypeError):
            return str(label)

    return [
        f"Label {name(g)} | Pred {name(p)} ({pm:.2f})"
        for g, p, pm in zip(rows["given"], rows["predicted"], rows["p_max"])
    ]


def _as_image(image, index: int) -> np.ndarray:
    """Return a 2-D (grayscale) or 3-D RGB(A) array that imshow draws as intended."""
    if isinstance(image, (str, os.PathLike)):
        image = _read_image(image)
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (3, 4):
        # Channels-first (torch's layout): move the channels last.
        arr = np.moveaxis(arr, 0, -1)
        if arr.shape[-1] == 1:
            arr = arr[..., 0]
    if arr.ndim == 2:
        return arr
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        if arr.dtype.kind == "f" and (arr.min() < 0 or arr.max() > 1):
            # imshow clips float RGB to [0, 1]; rescale so the picture stays visible.
            span = float(arr.max() - arr.min()) or 1.0
            arr = (arr - arr.min()) / span
        return arr
    raise InputError(
        f"image {index} has shape {arr.shape}, expected (H, W), (H, W, 1), (H, W, 3) or "
        "(H, W, 4); pass one image per entry."
    )


def _read_image(path: PathLike) -> np.ndarray:
    try:
        with Image.open(path) as img:
            if img.mode in ("RGB", "RGBA"):
                return np.asarray(img)
            if img.mode in ("P", "LA", "PA", "CMYK", "YCbCr", "HSV"):
                rgba = "A" in img.mode or img.mode == "P"
                return np.asarray(img.convert("RGBA" if rgba else "RGB"))
            return np.asarray(img.convert("L"))
    except FileNotFoundError:
        raise DataError(f"image file {os.fspath(path)!r} does not exist; check the path.") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(
            f"cannot read image {os.fspath(path)!r} ({exc}); check that it is a valid image file."
        ) from None
