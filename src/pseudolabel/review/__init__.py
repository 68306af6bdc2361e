"""The local review page over a LabelStore: a grid of images, keyboard decisions written as
human label events, queues of suspects, pseudo labels to audit and items to label.

``pseudolabel review DB [--images PATH] [--port N] [--host H]`` calls :func:`review_main`.
"""
from __future__ import annotations

from pathlib import Path

from pseudolabel.review.app import create_app, review_url, serve
from pseudolabel.review.images import ArrayImages, FolderImages, ImageSource, open_image_source

__all__ = ["create_app", "serve", "review_main", "review_url", "ImageSource", "ArrayImages",
           "FolderImages", "open_image_source"]


def review_main(db: str | Path, images: str | Path | None = None, host: str = "127.0.0.1",
                port: int = 8765, open_browser: bool = False) -> None:
    """Entry point of ``pseudolabel review``: serve the page for ``db`` until Ctrl+C.

    Raises StoreError for a missing, corrupt or too new store, DataError for missing images and
    InputError for a port in use; the CLI prints them as one line.

    Examples
    --------
    >>> review_main("runs/clean/labels.db", images="mnist.npz", port=8765)   # doctest: +SKIP
    review page: http://127.0.0.1:8765/?token=...
    """
    serve(db, images=images, host=host, port=port, open_browser=open_browser)
