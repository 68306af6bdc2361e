"""ConvNetClassifier: a scikit-learn estimator around a small torch CNN for images.

The estimator's surface lives here (parameters and their checks, ``fit``'s input handling,
prediction, pickling); the work is in one mixin per concern:

- :mod:`pseudolabel.models.images`: image inputs (arrays of any layout, file paths) and devices;
- :mod:`pseudolabel.models.training`: the fit chain ``_initialize -> _fit_loop -> _run_epoch ->
  _train_step``, optimizer, one-cycle schedule and EMA teacher (:class:`TorchFitMixin`);
- :mod:`pseudolabel.models.semi`: online pseudo-labeling, FixMatch/FlexMatch
  (:class:`SemiSupervisedMixin`), whose epochs step through the same ``_train_step``;
- :mod:`pseudolabel.models.nets`: the built-in networks.

Pickles name this module's ``ConvNetClassifier``; it stays here, and the helpers that used to be
defined here are re-exported, so ``from pseudolabel.models.cnn import ...`` keeps working.
"""
from __future__ import annotations

import inspect
from typing import Callable, Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError as SkNotFittedError
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d
from torch import nn

from pseudolabel._validation import check_finite, check_labels, check_same_length
from pseudolabel.callbacks import Callback
from pseudolabel.exceptions import InputError, NotFittedError
# as_image_batch, resolve_device, one_cycle and AUTO_STRIDED_MIN_SIDE were cnn.py's before the split.
from pseudolabel.models.backbones import BACKBONES, FineTuneMixin, check_weights, pixel_scaling
from pseudolabel.models.images import as_image_batch, reject_sparse, resolve_device, take_rows  # noqa: F401
from pseudolabel.models.semi import SEMI_MODES, SemiSupervisedMixin
from pseudolabel.models.training import AUTO_STRIDED_MIN_SIDE, TorchFitMixin, one_cycle  # noqa: F401

__all__ = ["AUTO_STRIDED_MIN_SIDE", "ConvNetClassifier", "as_image_batch", "one_cycle", "resolve_device"]

_ARCHS = ("auto", "sized", "strided", "fast", "wide", "seed")


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


class ConvNetClassifier(FineTuneMixin, SemiSupervisedMixin, TorchFitMixin, ClassifierMixin, BaseEstimator):
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
        average pooling; "wide": the same with two convolutions per stage (about four times the
        work); "sized": "wide" for a first fit of at most 20,000 images of 16 pixels a side or
        more, else "fast" (a small set affords the larger network; ``training.SIZED_WIDE_ROWS``);
        "seed": the case study's CNN
        (conv 32, conv 64, max-pool, dense 128, dropout), for baselines. A torchvision backbone
        name (``pseudolabel.models.backbones.BACKBONES``: "resnet18", "resnet34", "resnet50",
        "efficientnet_b0", "mobilenet_v3_small", ...; needs torchvision) trains that network with
        a new head for the classes; grey images become 3 channels and every image is resized to
        ``image_size`` (docs/backbones.md).
    weights : {None, "imagenet"} or path, default=None
        A backbone's starting weights: None trains from scratch; "imagenet" takes torchvision's
        ImageNet weights (downloaded once into torch's hub cache) and normalizes the input with
        ImageNet's mean and std; a path loads a state_dict saved from the same torchvision
        network (any head: a head of another shape is left out). With weights, ``fit``
        fine-tunes like fastai: ``freeze_epochs`` with the body frozen, then ``epochs`` with
        everything unfrozen at discriminative learning rates (``lr / 2`` for the head down to
        ``lr / 200`` for the first layers). Only for backbones.
    freeze_epochs : int, default=1
        Epochs that train only the new head of a pretrained backbone before it is unfrozen.
    epochs : int or "auto", default=10
        Passes over the training data per ``fit`` (the most, with a validation split). "auto":
        about 120,000 training samples per fit, 3 to 30 epochs (``training.planned_epochs``), so
        2,000 images get more passes than 60,000.
    validation_fraction : float in (0, 1), optional
        Hold out this share of the training rows (stratified), score every epoch on it, stop
        after ``patience`` epochs without a lower validation loss (first annealing the learning rate
        over ``patience`` more epochs) and keep the best epoch's weights
        (supervised fits of at least 5 planned epochs: a shorter plan has no room to stop early
        and trains on every row). The held-out rows are not trained on. ``validation_accuracy_``,
        ``best_epoch_`` and ``stopped_epoch_`` say what happened; each epoch's record has
        ``val_accuracy``.
    patience : int, default=3
        Epochs without a better validation score before training stops (at least a tenth of the
        planned epochs, and never while the learning rate warms up: the first quarter).
    budget : float, optional
        Seconds a fit may take: after the first epoch the epochs left are cut to what fits (the
        learning-rate schedule is re-planned for them).
    min_steps : int, default=0
        Train at least this many optimizer steps, so tiny labeled sets still get enough updates.
    batch_size : int, default=128
    lr : float, default=3e-3
        Peak learning rate (one-cycle schedule for "fast"/"wide"/custom, constant for "seed").
    optimizer : {"adamw", "adam", "sgd"}, default="adamw"
    weight_decay : float, default=5e-4
    augment : {"affine", "auto", None}, default="affine"
        Random rotation, scale, shear and shift of whole batches as tensor ops (no per-sample Python).
        "auto": only in a fit of 8 epochs or more of images at least 16 pixels a side (a short run
        learns more from the images as they are; ``training.AUTO_AUGMENT_EPOCHS`` says how it was
        chosen; shifting 8x8 digits by a pixel moves an eighth of the image).
    image_size : (int, int), optional
        Size file inputs are resized to; default the first image's size. For a backbone (an int
        or a pair) also the network's input size, every image resized to it per batch; default
        the size of its ImageNet weights (224) with ``weights``, else the images' own size (at
        least 32). Smaller is much faster on a CPU (64 or 96).
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
    callbacks : list of Callback (or callables), optional
        Training hooks (:class:`pseudolabel.callbacks.Callback`): each one's
        ``on_epoch_end(estimator, record)`` runs after every epoch, with the epoch's ``history_``
        record (epoch, epochs, loss, train_accuracy, samples, samples_per_s, seconds, and
        unlabeled_used with ``semi``). A plain callable is called as ``cb(estimator, record)``.

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
        weights: str | None = None,
        freeze_epochs: int = 1,
        epochs: int | str = 10,
        min_steps: int = 0,
        validation_fraction: float | None = None,
        patience: int = 3,
        budget: float | None = None,
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
        callbacks: Sequence[Callback | Callable] | None = None,
    ):
        self.module = module
        self.arch = arch
        self.weights = weights
        self.freeze_epochs = freeze_epochs
        self.epochs = epochs
        self.min_steps = min_steps
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.budget = budget
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
    def check_params(self) -> "ConvNetClassifier":
        """Check every parameter against its allowed values (``fit`` does this first); raises one
        InputError line naming the first bad one. Returns self."""
        self._check_params()
        return self

    def _check_params(self) -> None:
        def bad(name, expected):
            raise InputError(
                f"The {name!r} parameter of ConvNetClassifier must be {expected}. "
                f"Got {getattr(self, name)!r} instead."
            )

        if self.module is None and self.arch not in _ARCHS and self.arch not in BACKBONES:
            bad("arch", f"one of {_ARCHS} or a torchvision backbone ({', '.join(BACKBONES)})")
        backbone = self.module is None and self.arch in BACKBONES
        if self.weights is not None and not backbone:
            bad("weights", f"None unless arch is a torchvision backbone ({', '.join(BACKBONES[:3])}, ...)")
        if backbone:
            check_weights(self.arch, self.weights)  # a file of another network: one line, before training
            size = self.image_size
            if not (size is None or (_is_int(size) and size >= 8) or (isinstance(size, (tuple, list))
                                                                      and len(size) == 2
                                                                      and all(_is_int(v) and v >= 8 for v in size))):
                bad("image_size", "None, an int >= 8 or a (height, width) pair of ints >= 8 for a backbone")
        v = self.freeze_epochs
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            bad("freeze_epochs", "an int >= 0")
        for name in ("epochs", "min_steps"):
            v = getattr(self, name)
            if name == "epochs" and v == "auto":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                bad(name, "an int >= 0" + (" or 'auto'" if name == "epochs" else ""))
        for name in ("batch_size", "inference_batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                bad(name, "an int >= 1")
        v = self.validation_fraction
        if v is not None and not (_is_number(v) and 0 < v < 1):
            bad("validation_fraction", "None or a float in (0, 1)")
        if isinstance(self.patience, bool) or not _is_int(self.patience) or self.patience < 1:
            bad("patience", "an int >= 1")
        if self.budget is not None and not (_is_number(self.budget) and self.budget > 0):
            bad("budget", "None or a number of seconds > 0")
        if not (isinstance(self.lr, (float, int)) and self.lr > 0):
            bad("lr", "a float > 0")
        if self.optimizer not in ("adamw", "adam", "sgd"):
            bad("optimizer", "one of 'adamw', 'adam', 'sgd'")
        if self.ema is not None and not (_is_number(self.ema) and 0 <= self.ema < 1):
            bad("ema", "None or a float in [0, 1)")
        if self.augment not in (None, "affine", "auto", False, True):
            bad("augment", "'affine', 'auto' or None")
        if self.semi not in (None,) + SEMI_MODES:
            bad("semi", f"None or one of {SEMI_MODES}")
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
        reject_sparse(X)
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
            unlabeled_X, X, y_arr = take_rows(X, unlabeled), take_rows(X, ~unlabeled), y_arr[~unlabeled]
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
            if self.module is None and self.arch in BACKBONES and self.weights is not None:
                self.mean_, self.std_ = pixel_scaling(Xt)  # [0, 1]; the backbone applies ImageNet's mean/std
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
            self.n_fit_rows_ = len(Xt)  # arch="sized" reads it
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
        return self._net_logits(Xt).numpy()

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
        # Models pickled before a parameter existed (ema, semi, ...) get its default.
        for name, param in inspect.signature(type(self).__init__).parameters.items():
            if name != "self" and param.default is not inspect.Parameter.empty:
                state.setdefault(name, param.default)
        self.__dict__.update(state)
        if "module_" in state:  # a model saved on a GPU machine loads on this one's best device
            self.device_ = resolve_device(self.device, fallback=True)
            for key in ("module_", "ema_module_"):
                if key in state:
                    setattr(self, key, getattr(self, key).to(self.device_))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags
