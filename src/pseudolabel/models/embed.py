"""EmbeddingClassifier: a pretrained backbone as a fixed feature extractor, a fast head on top.

For CPUs: every image goes through the backbone once (eval mode, no gradients, in batches), its
feature vector is cached in memory and on disk, and only the head (a logistic regression by
default) is trained. Self-training rounds and cross-validation folds fit clones of the estimator
over and over on the same images; all of them after the first find the features cached and take
seconds.

Cache keys (docs/backbones.md): a namespace per backbone name + weights identity ("imagenet-
<enum>", the sha256 of a weights file, or the seeded random initialization) + input size + the
preprocessing version, and within it one key per image: the hash of the image's pixels (arrays) or
of its absolute path, size and modification time (files, which are not decoded on a hit).
"""
from __future__ import annotations

import hashlib
import os
import time
import uuid
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import NotFittedError as SkNotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, has_fit_parameter

from pseudolabel._validation import check_labels, check_same_length
from pseudolabel.callbacks import Callback, notify
from pseudolabel.exceptions import InputError, NotFittedError, one_line
from pseudolabel.imagefolder import read_images
from pseudolabel.models.backbones import (BACKBONES, backbone_network, check_weights, feature_size, input_size,
                                          weights_identity)
from pseudolabel.models.images import as_image_batch, is_path_like, reject_sparse, resolve_device

__all__ = ["EmbeddingClassifier", "clear_memory_cache", "default_cache_dir"]

# Bumped when the pixels -> network input path changes, so old cached features are not reused.
_PREPROCESSING = "p1"
# Features kept in memory across instances of this process (clones per fold and round share them).
MEMORY_LIMIT_BYTES = 1 << 30
SHARD_ROWS = 4096
_MEMORY: dict[str, dict[str, np.ndarray]] = {}
_MEMORY_BYTES = [0]
_SHARDS_SEEN: dict[tuple[str, str], set] = {}
_EXTRACTORS: dict[tuple, torch.nn.Module] = {}


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/pseudolabel/embeddings``, ``~/.cache/pseudolabel/embeddings`` without it."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pseudolabel" / "embeddings"


def clear_memory_cache() -> None:
    """Forget the features held in memory (the disk cache stays)."""
    _MEMORY.clear()
    _SHARDS_SEEN.clear()
    _EXTRACTORS.clear()
    _MEMORY_BYTES[0] = 0


def _remember(namespace: str, keys, feats: np.ndarray) -> None:
    if _MEMORY_BYTES[0] + feats.nbytes > MEMORY_LIMIT_BYTES:  # simplest bound: start over, the disk keeps them
        _MEMORY.clear()
        _SHARDS_SEEN.clear()
        _MEMORY_BYTES[0] = 0
    table = _MEMORY.setdefault(namespace, {})
    for k, row in zip(keys, feats):
        table[k] = row
    _MEMORY_BYTES[0] += feats.nbytes


def _scan_disk(root: Path, namespace: str) -> None:
    """Read the shards of ``root/namespace`` this process has not read yet into the memory cache."""
    folder = root / namespace
    seen = _SHARDS_SEEN.setdefault((str(root), namespace), set())
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".npz") and n not in seen)
    except OSError:  # no cache yet
        return
    for name in names:
        try:
            with np.load(folder / name, allow_pickle=False) as shard:
                _remember(namespace, shard["keys"].tolist(), shard["features"])
        except (OSError, ValueError, KeyError):  # a shard another process is writing, or a damaged one
            continue
        seen.add(name)


def _save_shard(root: Path, namespace: str, keys: list[str], feats: np.ndarray) -> None:
    """One new shard file per batch of computed features, written whole and renamed into place, so
    concurrent writers (parallel folds) never see each other's half-written files."""
    folder = root / namespace
    name = f"{uuid.uuid4().hex}.npz"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{name}.tmp"
        with open(tmp, "wb") as f:
            np.savez(f, keys=np.asarray(keys, dtype="U32"), features=feats)
        os.replace(tmp, folder / name)
        _SHARDS_SEEN.setdefault((str(root), namespace), set()).add(name)
    except OSError as exc:
        warnings.warn(f"embedding cache {str(folder)!r} is not writable ({one_line(exc)}); features are kept "
                      "in memory only. Pass cache_dir= a writable folder.", stacklevel=3)


def _array_keys(arr: np.ndarray) -> list[str]:
    head = f"{arr.dtype.str}{arr.shape[1:]}".encode()
    return [hashlib.blake2b(head + img.tobytes(), digest_size=16).hexdigest() for img in arr]


def _path_keys(paths: list[str]) -> list[str]:
    keys = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            raise InputError(f"image file {p!r} does not exist or cannot be read; check the path.") from None
        ident = f"{os.path.abspath(p)}\0{st.st_size}\0{st.st_mtime_ns}".encode()
        keys.append(hashlib.blake2b(ident, digest_size=16).hexdigest())
    return keys


def _to_unit(xb: torch.Tensor) -> torch.Tensor:
    """Pixels to [0, 1]: uint8 / 255; other images divided by their own maximum when it exceeds 1
    (per image, so an image's features never depend on the batch it came with)."""
    if xb.dtype == torch.uint8:
        return xb.float() / 255.0
    xb = xb.float()
    peak = xb.flatten(1).amax(1).clamp_min(1.0).view(-1, 1, 1, 1)
    return xb / peak


class EmbeddingClassifier(ClassifierMixin, BaseEstimator):
    """A classifier on a pretrained backbone's features: the backbone runs once per image, the head
    is what trains.

    Parameters
    ----------
    backbone : str, default="resnet18"
        A torchvision network of :data:`pseudolabel.models.backbones.BACKBONES`, used without its
        classifier head (resnet18: 512 features per image).
    weights : {"imagenet", None} or path, default="imagenet"
        "imagenet": torchvision's ImageNet weights (downloaded once into torch's hub cache); a
        path: a state_dict saved from the same torchvision network; None: a random
        initialization (seeded, the same every time: a baseline, not a useful feature extractor).
    head : scikit-learn classifier, optional
        Trained on the features (cloned at fit); default ``StandardScaler`` + ``LogisticRegression``.
    image_size : int or (int, int), optional
        The backbone's input size; default that of its ImageNet weights (224). 64-112 is several
        times faster on a CPU, at some cost in accuracy.
    cache_dir : path or False, optional
        Where features are kept between processes; default :func:`default_cache_dir`
        (``~/.cache/pseudolabel/embeddings``). False keeps them in memory only.
    batch_size : int, default=64
        Images per forward pass when features are computed.
    device : str, default="auto"
        Where the backbone runs; "auto" takes a GPU when there is one.
    random_state : int, optional
        Passed to the default head (and to ``head``'s ``random_state`` when it has one).
    callbacks : list of Callback, optional
        ``on_epoch_end(estimator, record)`` once per fit (one "epoch": the head's fit), with
        loss, train_accuracy, samples, seconds, cache_hits and cache_misses.

    Attributes
    ----------
    classes_, head_ (the fitted head), n_embedding_features_, cache_hits_ and cache_misses_ (images
    whose features were found in a cache or computed, since the last fit began; fit and predict
    both count), device_.

    Examples
    --------
    >>> clf = EmbeddingClassifier("resnet18", weights=None, image_size=32, cache_dir=False)
    >>> X = np.random.default_rng(0).integers(0, 255, (20, 28, 28), dtype=np.uint8)
    >>> clf.fit(X, np.arange(20) % 2).predict(X[:3]).shape
    (3,)
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        *,
        weights: str | None = "imagenet",
        head=None,
        image_size: int | tuple[int, int] | None = None,
        cache_dir: str | os.PathLike | bool | None = None,
        batch_size: int = 64,
        device: str = "auto",
        random_state: int | None = None,
        callbacks: Sequence[Callback | Callable] | None = None,
    ):
        self.backbone = backbone
        self.weights = weights
        self.head = head
        self.image_size = image_size
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state
        self.callbacks = callbacks

    # -- parameters -------------------------------------------------------------------------
    def check_params(self) -> "EmbeddingClassifier":
        """Check every parameter (``fit`` does this first); one InputError line names the first bad
        one, and a weights file of another network names both. Returns self."""
        def bad(name, expected):
            raise InputError(f"The {name!r} parameter of EmbeddingClassifier must be {expected}. "
                             f"Got {getattr(self, name)!r} instead.")

        def is_int(v):
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        if self.backbone not in BACKBONES:
            bad("backbone", f"one of {', '.join(BACKBONES)}")
        check_weights(self.backbone, self.weights)
        if self.head is not None and not all(callable(getattr(self.head, m, None))
                                             for m in ("fit", "predict_proba", "get_params")):
            bad("head", "None or a scikit-learn classifier with predict_proba")
        size = self.image_size
        if not (size is None or (is_int(size) and size >= 8) or (isinstance(size, (tuple, list)) and len(size) == 2
                                                                 and all(is_int(v) and v >= 8 for v in size))):
            bad("image_size", "None, an int >= 8 or a (height, width) pair of ints >= 8")
        if not (self.cache_dir is None or self.cache_dir is False or isinstance(self.cache_dir, (str, os.PathLike))):
            bad("cache_dir", "None, False or a folder path")
        if not (is_int(self.batch_size) and self.batch_size >= 1):
            bad("batch_size", "an int >= 1")
        return self

    # -- features -----------------------------------------------------------------------------
    def _namespace(self) -> str:
        h, w = input_size(self.image_size, self.backbone)
        return f"{self.backbone}-{weights_identity(self.backbone, self.weights)}-{h}x{w}-{_PREPROCESSING}"

    def _root(self) -> Path | None:
        if self.cache_dir is False:
            return None
        return Path(self.cache_dir).expanduser() if self.cache_dir is not None else default_cache_dir()

    def _extractor(self, namespace: str) -> torch.nn.Module:
        key = (namespace, str(self.device_))
        if key not in _EXTRACTORS:
            while len(_EXTRACTORS) >= 2:
                _EXTRACTORS.pop(next(iter(_EXTRACTORS)))
            with torch.random.fork_rng(devices=[]):  # a random init is seeded, so its features cache
                torch.manual_seed(0)
                net = backbone_network(self.backbone, None, self.weights, self.image_size)
            _EXTRACTORS[key] = net.to(self.device_).eval()
        return _EXTRACTORS[key]

    def transform(self, X) -> np.ndarray:
        """The backbone's features of X, (n, n_features) float32: cached ones looked up, the rest
        computed in batches and cached. Counts into ``cache_hits_`` / ``cache_misses_``."""
        if not hasattr(self, "device_"):
            self.check_params()
            self.device_ = resolve_device(self.device)
            self.cache_hits_ = self.cache_misses_ = 0
        reject_sparse(X)
        paths = is_path_like(X)
        if paths:
            items = [str(p) for p in X]
            keys = _path_keys(items)
        else:
            items = as_image_batch(X)
            if items.dtype != np.uint8 and not np.all(np.isfinite(items)):
                raise InputError("X contains NaN or infinity; images must hold finite pixel values.")
            keys = _array_keys(items)
        namespace, root = self._namespace(), self._root()
        table = _MEMORY.setdefault(namespace, {})
        missing = [i for i, k in enumerate(keys) if k not in table]
        if missing and root is not None:
            _scan_disk(root, namespace)
            table = _MEMORY.setdefault(namespace, {})
            missing = [i for i, k in enumerate(keys) if k not in table]
        if missing:
            self._compute(items, keys, missing, paths, namespace, root)
            table = _MEMORY[namespace]
        self.cache_hits_ += len(keys) - len(missing)
        self.cache_misses_ += len(missing)
        if not keys:
            return np.zeros((0, self._dim()), np.float32)
        return np.stack([table[k] for k in keys])

    def _compute(self, items, keys, missing, paths, namespace, root) -> None:
        net = self._extractor(namespace)
        size = input_size(self.image_size, self.backbone)
        pending_keys, pending = [], []
        for start in range(0, len(missing), self.batch_size):
            rows = missing[start:start + self.batch_size]
            if paths:  # decoded at the network's size and in colour, whatever the batch holds
                batch = as_image_batch(read_images([items[i] for i in rows], size=size, mode="RGB"))
            else:
                batch = items[rows]
            with torch.inference_mode():
                xb = _to_unit(torch.from_numpy(batch).to(self.device_))
                feats = net(xb).float().flatten(1).cpu().numpy()
            batch_keys = [keys[i] for i in rows]
            _remember(namespace, batch_keys, feats)
            pending_keys += batch_keys
            pending.append(feats)
            # a shard every SHARD_ROWS images: few files, and an interrupted run keeps most of its work
            if root is not None and (len(pending_keys) >= SHARD_ROWS or start + self.batch_size >= len(missing)):
                _save_shard(root, namespace, pending_keys, np.concatenate(pending))
                pending_keys, pending = [], []

    def _dim(self) -> int:
        return feature_size(self.backbone)

    # -- fit and predict ------------------------------------------------------------------------
    def _make_head(self):
        if self.head is None:
            return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=self.random_state))
        head = clone(self.head)
        if self.random_state is not None and "random_state" in head.get_params(deep=False):
            head.set_params(random_state=self.random_state)
        return head

    def fit(self, X, y, sample_weight=None) -> "EmbeddingClassifier":
        """Compute (or look up) the features of X and fit the head on them. Returns self."""
        self.check_params()
        if y is None:
            raise InputError("EmbeddingClassifier requires y to be passed, but the target y is None; "
                             "pass one label per sample.")
        try:
            y_arr = column_or_1d(y, warn=True)
        except ValueError as exc:
            raise InputError(f"{exc} Pass one label per sample.") from None
        reject_sparse(X)
        check_same_length("X", X, "y", y_arr)
        if len(y_arr) == 0:
            raise InputError("X and y are empty; pass at least one labeled sample per class.")
        check_classification_targets(y_arr)
        if y_arr.dtype.kind in "iufb":
            y_arr = check_labels(y_arr, "y", allow_unlabeled=False)
        t0 = time.perf_counter()
        self.device_ = resolve_device(self.device)
        self.cache_hits_ = self.cache_misses_ = 0
        feats = self.transform(X)
        self.classes_ = np.unique(y_arr)
        self.n_embedding_features_ = feats.shape[1]
        head = self._make_head()
        fit_params = {}
        if sample_weight is not None:
            sw = np.asarray(sample_weight, dtype=np.float64)
            check_same_length("sample_weight", sw, "y", y_arr)
            last = head.steps[-1][1] if isinstance(head, Pipeline) else head
            if not has_fit_parameter(last, "sample_weight"):
                raise InputError(f"the head {type(last).__name__} takes no sample_weight; use a head that does "
                                 "(LogisticRegression, the default) or fit without weights.")
            key = f"{head.steps[-1][0]}__sample_weight" if isinstance(head, Pipeline) else "sample_weight"
            fit_params[key] = sw
        if len(self.classes_) == 1:  # scikit-learn's heads refuse one class; a constant answer is exact
            self.head_ = None
        else:
            self.head_ = head.fit(feats, y_arr, **fit_params)
        proba = self._proba(feats)
        pred = self.classes_[proba.argmax(1)]
        codes = np.searchsorted(self.classes_, y_arr)
        record = {"epoch": 1, "epochs": 1,
                  "loss": float(-np.mean(np.log(np.clip(proba[np.arange(len(codes)), codes], 1e-12, None)))),
                  "train_accuracy": float(np.mean(pred == y_arr)), "samples": len(y_arr),
                  "seconds": time.perf_counter() - t0, "cache_hits": self.cache_hits_,
                  "cache_misses": self.cache_misses_}
        record["samples_per_s"] = record["samples"] / record["seconds"] if record["seconds"] > 0 else float("nan")
        self.history_ = [record]
        notify(self.callbacks, "on_epoch_end", self, record)
        return self

    def _proba(self, feats: np.ndarray) -> np.ndarray:
        if self.head_ is None:
            return np.ones((len(feats), 1))
        proba = self.head_.predict_proba(feats)
        out = np.zeros((len(feats), len(self.classes_)))
        out[:, np.searchsorted(self.classes_, self.head_.classes_)] = proba
        return out

    def _check_fitted(self) -> None:
        try:
            check_is_fitted(self, "head_")
        except SkNotFittedError as exc:
            raise NotFittedError(str(exc)) from None

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``."""
        self._check_fitted()
        return self._proba(self.transform(X))

    def predict(self, X) -> np.ndarray:
        proba = self.predict_proba(X)  # checks fitted before classes_ is read
        return self.classes_[np.argmax(proba, axis=1)]
