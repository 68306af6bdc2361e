"""The clean job's data: the labeled rows it checks, decoded once, with what a simulation knows
(the injected noise, a held-out test set)."""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import train_test_split

from pseudolabel.datasets import Dataset, inject_noise, read_images
from pseudolabel.exceptions import InputError

# Share of an image folder held out as the test set of a simulation (the folder has no test split).
HOLDOUT = 0.2


@dataclass
class CleanData:
    """The labeled rows a run checks, with what a simulation knows about them."""

    ds: Dataset                    # the rows checked (labeled only), as a Dataset for the store
    X: np.ndarray                  # decoded images
    images: object                 # what the grid draws: arrays, or file paths for a folder
    y: np.ndarray                  # labels as given (noisy in a simulation)
    y_true: np.ndarray | None = None
    noisy: np.ndarray | None = None
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    notes: list = field(default_factory=list)


def _rows(ds: Dataset, rows: np.ndarray) -> Dataset:
    return dataclasses.replace(
        ds, X=ds.X[rows], y=ds.y[rows], items=[ds.items[i] for i in rows],
        locations=None if ds.locations is None else [ds.locations[i] for i in rows])


def prepare_data(config: dict, ds: Dataset) -> CleanData:
    """Apply --limit, leave out unlabeled rows, hold out a test set of an image folder in a
    simulation, decode images, and corrupt the labels when --noise is set."""
    notes = list(ds.notes)  # what the loader did (folders ignored, files skipped, ...)
    n_all = len(ds)
    rows = np.arange(n_all)
    if config["limit"] is not None and config["limit"] < n_all:
        rows = rows[: config["limit"]]
    unlabeled = int(np.sum(ds.y[rows] < 0))
    rows = rows[ds.y[rows] >= 0]
    if unlabeled:
        notes.append(f"{unlabeled} unlabeled samples are left out: cleaning checks given labels")
    if len(rows) < 2 * config["folds"]:
        raise InputError(f"data {ds.name or config['data']!r} has {len(rows)} labeled samples, too few for "
                         f"{config['folds']} folds; label more, pass a larger --limit or fewer --folds.")
    X_test = y_test = None
    simulate = config["noise"] is not None
    if simulate:
        if ds.X_test is not None and ds.y_test is not None and (ds.y_test >= 0).all():
            X_test, y_test = ds.X_test, ds.y_test
        else:
            try:
                rows, test_rows = train_test_split(rows, test_size=HOLDOUT, stratify=ds.y[rows],
                                                   random_state=config["seed"])
            except ValueError:
                raise InputError(f"data {ds.name!r} has no test split and a class too small to hold out "
                                 f"{HOLDOUT:.0%} of it for the simulation's test accuracy; label more images."
                                 ) from None
            rows, test_rows = np.sort(rows), np.sort(test_rows)
            X_test, y_test = ds.X[test_rows], ds.y[test_rows]
            notes.append(f"{len(test_rows)} samples ({HOLDOUT:.0%}) held out as the simulation's test set")
    sub = _rows(ds, rows)
    images = sub.X
    X = sub.X
    if ds.root is not None:  # an image folder: decode once, not once per fold
        X = read_images(sub.X, size=ds.image_size, notes=notes)
        if X_test is not None:
            X_test = read_images(X_test, size=X.shape[1:3], mode="RGB" if X.ndim == 4 else "L")
    y_true = sub.y.copy()
    data = CleanData(ds=sub, X=X, images=images, y=y_true, X_test=X_test, y_test=y_test, notes=notes)
    if simulate:
        data.y, data.noisy = inject_noise(y_true, float(config["noise"]), kind=config["noise_kind"],
                                          random_state=config["seed"], n_classes=len(ds.classes))
        data.y_true = y_true
    return data


def digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


