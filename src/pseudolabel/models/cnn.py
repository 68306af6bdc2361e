"""ConvNetClassifier: a scikit-learn estimator around a small torch CNN for images.

fit -> _initialize -> _fit_loop -> _run_epoch (_run_epoch_semi with unlabeled rows) -> _train_step,
each step small and overridable (skorch's shape). Inputs are grey or RGB arrays, flat vectors
whose length is a square, or image file paths (decoded and resized once per call).
"""
from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import _safe_indexing
from sklearn.utils.multiclass import check_classification_targets
from sklearn.exceptions import NotFittedError as SkNotFittedError
from sklearn.utils.validation import check_is_fitted, column_or_1d
from torch import nn

from pseudolabel._validation import check_finite, check_labels, check_same_length
from pseudolabel.exceptions import InputError, NotFittedError
from pseudolabel.models.augment import random_affine, strong_augment
from pseudolabel.models.nets import build_network

_ARCHS = ("auto", "strided", "fast", "wide", "seed")
_SEMI = ("fixmatch", "flexmatch")
# "auto" takes the strided network from this many pixels per side up: below, its early
# downsampling leaves too little of the image (8x8 digits learn better with the pooled "fast").
AUTO_STRIDED_MIN_SIDE = 16


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA when present, then Apple's MPS, then the CPU."""
    if isinstance(device, torch.device):
        return device
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


def one_cycle(total_steps: int, warmup: float = 0.25, start: float = 0.1, end: float = 1e-3):
    """Learning-rate factor per step: linear warm-up from ``start`` to 1 over the first quarter, then
    linear decay to ``end``. Unlike torch's OneCycleLR it is defined for any number of steps, even 1."""
    up = max(1, int(total_steps * warmup))

    def factor(step: int) -> float:
        if step < up:
            return start + (1 - start) * step / up
        return max(end, 1 - (1 - end) * (step - up) / max(1, total_steps - up))

    return factor


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _labeled_loss(logits, yb, wb):
    """Cross-entropy, weighted per sample when weights are given."""
    if wb is None:
        return F.cross_entropy(logits, yb)
    return (F.cross_entropy(logits, yb, reduction="none") * wb).sum() / wb.sum().clamp_min(1e-12)


def _take(X, mask: np.ndarray):
    """The rows of X (array, list of paths, lazy image reader) where mask is True."""
    return _safe_indexing(X, np.flatnonzero(mask))


def _is_path(x) -> bool:
    return isinstance(x, (str, bytes)) or hasattr(x, "__fspath__")


def _is_path_like(X) -> bool:
    if isinstance(X, (list, tuple)):
        return len(X) > 0 and _is_path(X[0])
    arr = np.asarray(X) if not isinstance(X, np.ndarray) else X
    if arr.dtype.kind == "O":  # an object array of numbers (e.g. from a data frame) is numeric data
        return arr.size > 0 and _is_path(arr.flat[0])
    return arr.dtype.kind in "US"


def _reject_sparse(X) -> None:
    import scipy.sparse

    if scipy.sparse.issparse(X):  # len() of a sparse matrix is not its number of rows
        raise InputError("X is a sparse matrix, but images must be dense; convert it with X.toarray().")


def as_image_batch(X, image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Return X as an (n, C, H, W) numpy array (uint8 kept as uint8, everything else float32).

    Accepts (n, H, W), (n, H, W, C) with C in 1/3/4, (n, C, H, W), flat (n, d) with d a square
    (8x8 digits, 28x28 MNIST), other flat (n, d) as 1 x d strips, and sequences of image paths.
    """
    if _is_path_like(X):
        from pseudolabel.datasets import read_images

        arr = read_images([str(p) for p in X], size=image_size)
    else:
        _reject_sparse(X)
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


class ConvNetClassifier(ClassifierMixin, BaseEstimator):
    """A small convolutional network for image classification, as a scikit-learn classifier.

    Parameters
    ----------
    module : torch.nn.Module or callable, optional
        Your own network: a module (copied at fit) or a factory ``f(in_channels, n_classes)``
        returning one. It takes (N, C, H, W) float tensors and returns logits. Overrides ``arch``.
    arch : {"auto", "strided", "fast", "wide", "seed"}, default="fast"
        Built-in network. "auto": "strided" for images of at least 16x16 pixels, else "fast"
        (the one used is in ``arch_``). "strided": three strided conv-BN-ReLU layers (5x5/2,
        3x3/2, 3x3) and global average pooling, the fastest (3.3x the seed CNN's training and
        4.2x its inference samples/s on a 2-core CPU, docs/benchmarks.md), but slower to learn
        from a few hundred images. "fast": conv-BN-ReLU blocks with max-pooling and global
        average pooling; "wide": the same with twice the channels; "seed": the case study's CNN
        (conv 32, conv 64, max-pool, dense 128, dropout), for baselines.
    epochs : int, default=10
        Passes over the training data per ``fit``.
    min_steps : int, default=0
        Train at least this many optimizer steps, so tiny labeled sets still get enough updates.
    batch_size : int, default=128
    lr : float, default=3e-3
        Peak learning rate (one-cycle schedule for "fast"/"wide"/custom, constant for "seed").
    optimizer : {"adamw", "adam", "sgd"}, default="adamw"
    weight_decay : float, default=5e-4
    augment : {"affine", None}, default="affine"
        Random rotation, scale, shear and shift of whole batches as tensor ops (no per-sample Python).
    image_size : (int, int), optional
        Size file inputs are resized to; default the first image's size.
    warm_start : bool, default=False
        Continue from the current weights on the next ``fit`` instead of starting over.
    device : str, default="auto"
        "auto" uses a GPU when one exists, else the CPU.
    inference_batch_size : int, default=256
        Chunk size for predict/predict_proba. Small chunks stay in the CPU's caches: on a 2-core
        CPU, batches of 256 ran faster than batches of 2048 for every built-in network.
    ema : float in [0, 1) or None, default=None
        Keep an exponential moving average of the weights (a "mean teacher") with this decay per
        step, e.g. 0.999, and predict with it. The average of the last few hundred steps is
        usually more accurate and better calibrated than the last weights, which matters when
        its predictions become training labels. Early steps use a smaller decay,
        ``min(ema, (1 + t) / (10 + t))``, so the average does not remember the random start.
    semi : {None, "fixmatch", "flexmatch"}, default=None
        Online pseudo-labeling of the rows whose label is -1 (scikit-learn's mark for unlabeled):
        every step also draws ``unlabeled_ratio * batch_size`` unlabeled images, predicts a weakly
        augmented view with the teacher (the EMA weights when ``ema`` is set, else the current
        ones, without gradients), and trains the strongly augmented view (larger affine, contrast,
        cutout) towards the predicted class where its confidence reaches ``semi_threshold``
        (FixMatch, Sohn et al. 2020). ``"flexmatch"`` scales the threshold per class by how many
        unlabeled images that class already claims confidently (Zhang et al. 2021), so hard,
        late classes are not starved. An epoch is one pass over the unlabeled rows. Without
        ``semi``, a label of -1 is an error.
    unlabeled_ratio : int, default=3
        Unlabeled images per labeled image in each step (FixMatch's mu).
    semi_threshold : float in (0, 1], default=0.95
        Teacher confidence from which an unlabeled image's prediction is trained on.
    semi_weight : float, default=1.0
        Weight of the unlabeled loss against the labeled one.
    channels_last : bool, default=True
        NHWC memory layout; 1.4-2x faster convolutions on CPUs.
    random_state : int, optional
        Seed for weights, shuffling, dropout and augmentation.
    verbose : int, default=0
        1 prints one line per epoch.
    callbacks : list of callables, optional
        Each is called as ``cb(estimator, record)`` after every epoch with a dict
        (epoch, loss, train_accuracy, samples_per_s, seconds).

    Attributes
    ----------
    classes_, n_classes_, module_, input_shape_, history_ (one dict per epoch of the last fit),
    n_fit_calls_, device_.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = ConvNetClassifier(epochs=3, random_state=0).fit(X[:500], y[:500])
    >>> clf.predict(X[:3]).shape
    (3,)
    """

    def __init__(
        self,
        module: nn.Module | Callable | None = None,
        *,
        arch: str = "fast",
        epochs: int = 10,
        min_steps: int = 0,
        batch_size: int = 128,
        lr: float = 3e-3,
        optimizer: str = "adamw",
        weight_decay: float = 5e-4,
        augment: str | None = "affine",
        image_size: tuple[int, int] | None = None,
        warm_start: bool = False,
        device: str = "auto",
        inference_batch_size: int = 256,
        ema: float | None = None,
        semi: str | None = None,
        unlabeled_ratio: int = 3,
        semi_threshold: float = 0.95,
        semi_weight: float = 1.0,
        channels_last: bool = True,
        random_state: int | None = None,
        verbose: int = 0,
        callbacks: Sequence[Callable] | None = None,
    ):
        self.module = module
        self.arch = arch
        self.epochs = epochs
        self.min_steps = min_steps
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.augment = augment
        self.image_size = image_size
        self.warm_start = warm_start
        self.device = device
        self.inference_batch_size = inference_batch_size
        self.ema = ema
        self.semi = semi
        self.unlabeled_ratio = unlabeled_ratio
        self.semi_threshold = semi_threshold
        self.semi_weight = semi_weight
        self.channels_last = channels_last
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    # -- parameters -------------------------------------------------------------------------
    def _check_params(self) -> None:
        def bad(name, expected):
            raise InputError(
                f"The {name!r} parameter of ConvNetClassifier must be {expected}. "
                f"Got {getattr(self, name)!r} instead."
            )

        if self.module is None and self.arch not in _ARCHS:
            bad("arch", f"one of {_ARCHS}")
        for name in ("epochs", "min_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                bad(name, "an int >= 0")
        for name in ("batch_size", "inference_batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                bad(name, "an int >= 1")
        if not (isinstance(self.lr, (float, int)) and self.lr > 0):
            bad("lr", "a float > 0")
        if self.optimizer not in ("adamw", "adam", "sgd"):
            bad("optimizer", "one of 'adamw', 'adam', 'sgd'")
        if self.ema is not None and not (_is_number(self.ema) and 0 <= self.ema < 1):
            bad("ema", "None or a float in [0, 1)")
        if self.augment not in (None, "affine", False, True):
            bad("augment", "'affine' or None")
        if self.semi not in (None,) + _SEMI:
            bad("semi", f"None or one of {_SEMI}")
        v = self.unlabeled_ratio
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            bad("unlabeled_ratio", "an int >= 1")
        if not (_is_number(self.semi_threshold) and 0 < self.semi_threshold <= 1):
            bad("semi_threshold", "a float in (0, 1]")
        if not (_is_number(self.semi_weight) and self.semi_weight >= 0):
            bad("semi_weight", "a float >= 0")

    # -- data ---------------------------------------------------------------------------------
    def _prepare_X(self, X) -> torch.Tensor:
        arr = as_image_batch(X, self.image_size)
        if arr.dtype != np.uint8:
            check_finite(arr, "X")
        return torch.from_numpy(arr)

    def _normalize(self, xb: torch.Tensor, augment: bool = False) -> torch.Tensor:
        xb = xb.to(self.device_, non_blocking=True).float()
        if augment:  # on raw pixels, so the zero padding of shifted images is background
            xb = random_affine(xb, generator=self._gen)
        xb = (xb - self._mean_t) / self._std_t
        if self.channels_last and xb.shape[-1] > 1:
            xb = xb.contiguous(memory_format=torch.channels_last)
        return xb

    # -- fit ----------------------------------------------------------------------------------
    def fit(self, X, y, sample_weight=None):
        """Train the network on images X and integer labels y. Returns self."""
        self._check_params()
        if y is None:
            raise InputError(
                "ConvNetClassifier requires y to be passed, but the target y is None; pass one label per sample."
            )
        try:
            y_arr = column_or_1d(y, warn=True)  # a column vector is raveled with a warning, as in scikit-learn
        except ValueError as exc:
            raise InputError(f"{exc} Pass one label per sample.") from None
        _reject_sparse(X)
        if not hasattr(X, "__len__"):
            X = np.asarray(X)
        check_same_length("X", X, "y", y_arr)
        if len(y_arr) == 0:
            raise InputError("X and y are empty; pass at least one labeled sample per class.")
        unlabeled = None
        if self.semi is not None and y_arr.dtype.kind in "iufb":
            y_arr = check_labels(y_arr, "y", allow_unlabeled=True)
            unlabeled = y_arr == -1
            if unlabeled.all():
                raise InputError("y has no labeled samples (all are -1); label at least one sample per class.")
            if not unlabeled.any():
                unlabeled = None
        if unlabeled is not None:
            if sample_weight is not None:
                sample_weight = np.asarray(sample_weight)[~unlabeled]
            unlabeled_X, X, y_arr = _take(X, unlabeled), _take(X, ~unlabeled), y_arr[~unlabeled]
        check_classification_targets(y_arr)
        y_arr = check_labels(y_arr, "y", allow_unlabeled=False) if y_arr.dtype.kind in "iufb" else y_arr
        Xt = self._prepare_X(X)
        Xu = None if unlabeled is None else self._prepare_X(unlabeled_X)

        first = not (self.warm_start and hasattr(self, "module_"))
        if first:
            self.classes_ = np.unique(y_arr)
            self.n_classes_ = len(self.classes_)
            self.input_shape_ = tuple(Xt.shape[1:])
            self.n_features_in_ = int(np.prod(self.input_shape_))
            self.n_fit_calls_ = 0
            self.device_ = resolve_device(self.device)
            xf = Xt.float()
            dims = (0, 2, 3)
            mean = xf.mean(dim=dims)
            std = xf.std(dim=dims).clamp_min(1e-3) if len(xf) > 1 else torch.ones_like(mean)
            self.mean_ = mean.numpy()
            self.std_ = std.numpy()
        else:
            self._check_input_shape(Xt)
            unknown = np.setdiff1d(np.unique(y_arr), self.classes_)
            if unknown.size:
                raise InputError(
                    f"y holds classes {unknown.tolist()} unseen in the first fit of a warm-started model; "
                    "set warm_start=False to start over with the new classes."
                )
        self._set_norm_tensors()
        codes = torch.from_numpy(np.searchsorted(self.classes_, y_arr).astype(np.int64))
        weights = None
        if sample_weight is not None:
            sw = np.asarray(sample_weight, dtype=np.float32)
            if sw.ndim != 1:
                raise InputError(
                    f"sample_weight must be one-dimensional, got shape {sw.shape}; pass one weight per sample."
                )
            check_same_length("sample_weight", sw, "y", y_arr)
            if not np.all(np.isfinite(sw)) or (sw < 0).any() or sw.sum() <= 0:
                raise InputError(
                    "sample_weight must be finite and >= 0 with at least one non-zero weight; "
                    "all zero weights leave nothing to learn from."
                )
            weights = torch.from_numpy(sw)

        seed = None if self.random_state is None else int(self.random_state) + 7919 * self.n_fit_calls_
        self._gen = torch.Generator().manual_seed(seed if seed is not None else int(torch.seed() % 2**31))
        if seed is not None:
            torch.manual_seed(seed)  # dropout draws from the global generator
        if first:
            self._initialize()
        elif self.ema is not None and not hasattr(self, "ema_module_"):
            self._init_ema()  # ema switched on between warm-started fits
        if Xu is not None:
            self._check_input_shape(Xu)
            self._fit_loop_semi(Xt, codes, weights, Xu)
        else:
            self._fit_supervised(Xt, codes, weights)
        self.n_fit_calls_ += 1
        return self

    def _set_norm_tensors(self) -> None:
        shape = (1, -1, 1, 1)
        self._mean_t = torch.as_tensor(self.mean_, device=self.device_).view(shape)
        self._std_t = torch.as_tensor(self.std_, device=self.device_).view(shape)

    def _initialize(self) -> None:
        in_ch = self.input_shape_[0]
        self.arch_ = self.arch
        if self.arch == "auto":
            self.arch_ = "strided" if min(self.input_shape_[1:]) >= AUTO_STRIDED_MIN_SIDE else "fast"
        if self.module is not None:
            if isinstance(self.module, nn.Module):
                import copy

                net = copy.deepcopy(self.module)
            elif callable(self.module):
                net = self.module(in_ch, self.n_classes_)
            else:
                raise InputError(
                    f"module must be a torch.nn.Module or a callable (in_channels, n_classes) -> Module; "
                    f"got {type(self.module).__name__}."
                )
        else:
            net = build_network(self.arch_, in_ch, self.n_classes_, self.input_shape_[1:])
        net = net.to(self.device_)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.module_ = net
        self._init_ema()

    def _init_ema(self) -> None:
        if self.ema is None:
            self.__dict__.pop("ema_module_", None)
            return
        import copy

        self.ema_module_ = copy.deepcopy(self.module_).eval()
        for p in self.ema_module_.parameters():
            p.requires_grad_(False)
        self.ema_steps_ = 0

    def _ema_pairs(self) -> tuple:
        """(averaged float tensors, live float tensors, averaged others, live others), built once
        per fit: state_dict() per step would cost more than the update itself on a small net."""
        live, avg = self.module_.state_dict(), self.ema_module_.state_dict()
        fl = [k for k, v in live.items() if v.dtype.is_floating_point]
        other = [k for k in live if k not in set(fl)]
        return [avg[k] for k in fl], [live[k] for k in fl], [avg[k] for k in other], [live[k] for k in other]

    @torch.no_grad()
    def _update_ema(self, pairs: tuple) -> None:
        """Move the averaged weights towards the current ones (BN statistics included)."""
        t = self.ema_steps_
        decay = min(float(self.ema), (1 + t) / (10 + t))
        avg_f, live_f, avg_o, live_o = pairs
        torch._foreach_lerp_(avg_f, live_f, 1.0 - decay)
        for a, b in zip(avg_o, live_o):
            a.copy_(b)
        self.ema_steps_ = t + 1

    def _make_optimizer(self, total_steps: int):
        params = self.module_.parameters()
        if self.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=self.lr, momentum=0.9, nesterov=True,
                                  weight_decay=self.weight_decay)
        elif self.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        else:
            opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        sched = None
        if getattr(self, "arch_", self.arch) != "seed" or self.module is not None:
            sched = torch.optim.lr_scheduler.LambdaLR(opt, one_cycle(max(total_steps, 1)))
        return opt, sched

    def _fit_loop(self, steps_per_epoch: int, run_epoch: Callable) -> None:
        """Run ``epochs`` epochs (at least ``min_steps`` steps) of ``run_epoch(steps, opt, sched)``."""
        total = max(self.epochs * steps_per_epoch, self.min_steps)
        n_epochs = math.ceil(total / steps_per_epoch) if total else 0
        opt, sched = self._make_optimizer(total)
        self.history_ = []
        step = 0
        for epoch in range(n_epochs):
            steps = min(steps_per_epoch, total - step)
            t0 = time.perf_counter()
            record = run_epoch(steps, opt, sched)
            secs = time.perf_counter() - t0
            step += steps
            record.update(epoch=epoch + 1, epochs=n_epochs, seconds=secs,
                          samples_per_s=record["samples"] / secs if secs > 0 else float("nan"))
            self.history_.append(record)
            if self.verbose:
                extra = f" unlabeled used {record['unlabeled_used']:.3f}" if "unlabeled_used" in record else ""
                print(
                    f"epoch {epoch + 1}/{n_epochs} loss {record['loss']:.4f} "
                    f"acc {record['train_accuracy']:.4f}{extra} {record['samples_per_s']:.0f} samples/s",
                    flush=True,
                )
            for cb in self.callbacks or ():
                cb(self, record)

    def _fit_supervised(self, Xt: torch.Tensor, codes: torch.Tensor, weights: torch.Tensor | None) -> None:
        bs = min(self.batch_size, len(Xt))
        self._fit_loop(math.ceil(len(Xt) / bs),
                       lambda steps, opt, sched: self._run_epoch(Xt, codes, weights, bs, steps, opt, sched))

    def _permutation(self, n: int, length: int) -> torch.Tensor:
        """At least ``length`` indices: fresh permutations of range(n), one after another."""
        reps = max(1, math.ceil(length / n))
        return torch.cat([torch.randperm(n, generator=self._gen) for _ in range(reps)])

    def _after_step(self, sched, ema_pairs) -> None:
        if sched is not None:
            sched.step()
        if ema_pairs is not None:
            self._update_ema(ema_pairs)

    def _run_epoch(self, Xt, codes, weights, bs, steps, opt, sched) -> dict:
        self.module_.train()
        perm = self._permutation(len(Xt), steps * bs)
        loss_sum = torch.zeros((), device=self.device_)
        correct = torch.zeros((), device=self.device_, dtype=torch.long)
        seen = 0
        ema_pairs = self._ema_pairs() if self.ema is not None else None
        for i in range(steps):
            idx = perm[i * bs:(i + 1) * bs]
            if len(idx) == 0:
                break
            xb = self._normalize(Xt[idx], augment=self.augment in ("affine", True))
            yb = codes[idx].to(self.device_, non_blocking=True)
            wb = None if weights is None else weights[idx].to(self.device_)
            loss, logits = self._train_step(xb, yb, wb, opt)
            self._after_step(sched, ema_pairs)
            loss_sum += loss.detach() * len(idx)
            correct += (logits.argmax(1) == yb).sum()
            seen += len(idx)
        return {"loss": float(loss_sum) / max(seen, 1), "train_accuracy": float(correct) / max(seen, 1),
                "samples": seen}

    # -- online pseudo-labeling (semi=) ------------------------------------------------------------
    def _fit_loop_semi(self, Xt, codes, weights, Xu) -> None:
        bs = min(self.batch_size, len(Xt))
        ubs = min(self.unlabeled_ratio * self.batch_size, len(Xu))
        # FlexMatch's learning status: the class each unlabeled image was last confidently given, or -1.
        self._status = torch.full((len(Xu),), -1, dtype=torch.long)
        self._fit_loop(math.ceil(len(Xu) / ubs),
                       lambda steps, opt, sched: self._run_epoch_semi(Xt, codes, weights, Xu, bs, ubs,
                                                                      steps, opt, sched))
        del self._status

    def _class_thresholds(self) -> torch.Tensor:
        """Per-class confidence thresholds: fixed for FixMatch, FlexMatch's scaled ones otherwise."""
        tau = float(self.semi_threshold)
        if self.semi == "fixmatch":
            return torch.full((self.n_classes_,), tau, device=self.device_)
        status = self._status
        counts = torch.bincount(status[status >= 0], minlength=self.n_classes_).float()
        # With warm-up: classes are compared with the images nobody claimed yet, too.
        beta = counts / max(float(counts.max()), float((status < 0).sum()), 1.0)
        return (beta / (2.0 - beta) * tau).to(self.device_)

    def _run_epoch_semi(self, Xt, codes, weights, Xu, bs, ubs, steps, opt, sched) -> dict:
        self.module_.train()
        perm = self._permutation(len(Xt), steps * bs)
        uperm = self._permutation(len(Xu), steps * ubs)
        teacher = self.ema_module_ if self.ema is not None else self.module_
        loss_sum = torch.zeros((), device=self.device_)
        correct = torch.zeros((), device=self.device_, dtype=torch.long)
        used = torch.zeros((), device=self.device_)
        seen = useen = 0
        ema_pairs = self._ema_pairs() if self.ema is not None else None
        for i in range(steps):
            idx, uidx = perm[i * bs:(i + 1) * bs], uperm[i * ubs:(i + 1) * ubs]
            raw_u = Xu[uidx].to(self.device_, non_blocking=True).float()
            with torch.no_grad():
                teacher.eval()
                weak = teacher(self._normalize(raw_u, augment=True)).softmax(1)
                self.module_.train()
                conf, pseudo = weak.max(1)
                mask = (conf >= self._class_thresholds()[pseudo]).float()
                sure = conf.cpu() >= self.semi_threshold
                self._status[uidx[sure]] = pseudo.cpu()[sure]
            xb = self._normalize(Xt[idx], augment=self.augment in ("affine", True))
            xs = self._normalize(strong_augment(raw_u, generator=self._gen))
            yb = codes[idx].to(self.device_, non_blocking=True)
            logits = self.module_(torch.cat([xb, xs]))
            lab, strong = logits[:len(idx)], logits[len(idx):]
            wb = None if weights is None else weights[idx].to(self.device_)
            unlabeled_loss = (F.cross_entropy(strong, pseudo, reduction="none") * mask).mean()
            loss = _labeled_loss(lab, yb, wb) + float(self.semi_weight) * unlabeled_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self._after_step(sched, ema_pairs)
            loss_sum += loss.detach() * len(idx)
            correct += (lab.argmax(1) == yb).sum()
            used += mask.sum()
            seen += len(idx)
            useen += len(uidx)
        return {"loss": float(loss_sum) / max(seen, 1), "train_accuracy": float(correct) / max(seen, 1),
                "unlabeled_used": float(used) / max(useen, 1), "samples": seen + useen}

    def _train_step(self, xb, yb, wb, opt):
        logits = self.module_(xb)
        loss = _labeled_loss(logits, yb, wb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss, logits

    # -- predict -----------------------------------------------------------------------------
    def _check_input_shape(self, Xt: torch.Tensor) -> None:
        shape = tuple(Xt.shape[1:])
        if shape != tuple(self.input_shape_):
            n_new, n_fit = int(np.prod(shape)), int(np.prod(self.input_shape_))
            size = (f"X has {n_new} features, but ConvNetClassifier is expecting {n_fit} features as input: "
                    if n_new != n_fit else "")
            raise InputError(
                f"{size}X has images of shape {shape} (C, H, W) but the model was fitted on "
                f"{tuple(self.input_shape_)}; resize the images or refit."
            )

    def _check_fitted(self) -> None:
        try:
            check_is_fitted(self, "module_")
        except SkNotFittedError as exc:
            raise NotFittedError(str(exc)) from None

    def decision_function(self, X) -> np.ndarray:
        """Logits, (n, n_classes), computed in chunks of inference_batch_size.

        With two classes, scikit-learn's shape: (n,), the logit of classes_[1] minus that of classes_[0].
        """
        logits = self._logits(X)
        return logits[:, 1] - logits[:, 0] if self.n_classes_ == 2 else logits

    def _logits(self, X) -> np.ndarray:
        self._check_fitted()
        Xt = self._prepare_X(X)
        self._check_input_shape(Xt)
        self._set_norm_tensors()
        net = self.ema_module_ if self.ema is not None and hasattr(self, "ema_module_") else self.module_
        net.eval()
        out = []
        with torch.inference_mode():
            for start in range(0, len(Xt), self.inference_batch_size):
                xb = self._normalize(Xt[start:start + self.inference_batch_size])
                out.append(net(xb).float().cpu())
        if not out:
            return np.zeros((0, self.n_classes_), dtype=np.float32)
        return torch.cat(out).numpy()

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (softmax of the logits), columns in the order of classes_."""
        logits = torch.from_numpy(self._logits(X))
        return torch.softmax(logits.double(), dim=1).numpy()

    def predict(self, X) -> np.ndarray:
        logits = self._logits(X)  # checks fitted before classes_ is read
        return self.classes_[np.argmax(logits, axis=1)]

    def __getstate__(self):
        state = self.__dict__.copy()
        for key in ("_gen", "_mean_t", "_std_t"):
            state.pop(key, None)
        if "module_" in state:  # pickles load on machines without the GPU they were trained on
            for key in ("module_", "ema_module_"):
                if key in state:
                    state[key] = state[key].to("cpu")
            state["device_"] = torch.device("cpu")
        return state

    def __setstate__(self, state):
        # models pickled before these parameters existed
        for key, value in (("ema", None), ("semi", None), ("unlabeled_ratio", 3), ("semi_threshold", 0.95),
                           ("semi_weight", 1.0)):
            state.setdefault(key, value)
        self.__dict__.update(state)
        if "module_" in state:
            self.device_ = resolve_device(self.device)
            for key in ("module_", "ema_module_"):
                if key in state:
                    setattr(self, key, getattr(self, key).to(self.device_))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags
