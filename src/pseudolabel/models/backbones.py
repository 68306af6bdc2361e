"""torchvision backbones: building them with a new head, their weights, their input, fine-tuning.

``ConvNetClassifier(arch="resnet18", weights="imagenet" | PATH | None)`` trains one of
:data:`BACKBONES`; ``EmbeddingClassifier`` (:mod:`pseudolabel.models.embed`) uses one without its
head as a fixed feature extractor. Everything torchvision-specific lives here:

- :func:`build_backbone`: the torchvision network with its classifier head replaced by a new
  ``Linear`` for ``n_classes`` (or by ``Identity`` for features), weights loaded;
- :class:`BackboneNet`: the network behind its input adapter (grey to 3 channels, resize to the
  backbone's input size, ImageNet mean/std when pretrained), and the frozen-body switch;
- :class:`FineTuneMixin`: fastai's ``fine_tune`` for ConvNetClassifier: ``freeze_epochs`` with the
  body frozen (only the new head learns), then every layer at discriminative learning rates.

torchvision is imported inside the functions that need it, so the built-in networks work without it.
"""
from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pseudolabel.exceptions import DataError, InputError, one_line

__all__ = ["BACKBONES", "BackboneNet", "FineTuneMixin", "backbone_network", "build_backbone", "check_weights",
           "default_image_size", "feature_size", "input_size", "load_weights_file", "pixel_scaling", "weights_identity"]

# The classifier head of each backbone: the path of its final Linear (attribute names and indices).
_HEADS = {
    "resnet18": ("fc",),
    "resnet34": ("fc",),
    "resnet50": ("fc",),
    "efficientnet_b0": ("classifier", 1),
    "efficientnet_b1": ("classifier", 1),
    "mobilenet_v3_small": ("classifier", 3),
    "mobilenet_v3_large": ("classifier", 3),
    "convnext_tiny": ("classifier", 2),
    "densenet121": ("classifier",),
}
#: Names ``arch=`` (ConvNetClassifier) and ``backbone=`` (EmbeddingClassifier) accept.
BACKBONES: tuple[str, ...] = tuple(_HEADS)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# fastai's fine_tune: the unfrozen phase runs at half the frozen phase's rate, the body's earlier
# half at 1/100 and its later half at 1/10 of the head's (fastai: slice(base_lr / lr_mult, base_lr)
# over three layer groups, lr_mult=100).
UNFROZEN_LR_FACTOR = 0.5
BODY_LR_FACTORS = (0.01, 0.1)


def _torchvision():
    try:
        import torchvision  # optional extra: only the backbones need it
    except ImportError:
        raise InputError("torchvision backbones need torchvision; install it with "
                         "pip install 'pseudolabel[vision]' (a torchvision matching your torch).") from None
    return torchvision


def _check_name(name) -> None:
    if name not in _HEADS:
        raise InputError(f"{name!r} is not a known backbone; use one of {', '.join(BACKBONES)}.")


def _imagenet_weights(name: str):
    return _torchvision().models.get_model_weights(name).DEFAULT


def default_image_size(name: str) -> tuple[int, int]:
    """The input size ``name``'s ImageNet weights were trained at (224 for most, 240 for efficientnet_b1)."""
    _check_name(name)
    crop = _imagenet_weights(name).transforms().crop_size
    side = int(crop[0] if isinstance(crop, (list, tuple)) else crop)
    return side, side


def input_size(image_size, name: str) -> tuple[int, int]:
    """(height, width) of ``name``'s input for an ``image_size`` of None (the weights' size), an int or a pair."""
    if image_size is None:
        return default_image_size(name)
    if isinstance(image_size, (int, np.integer)):
        return int(image_size), int(image_size)
    h, w = image_size
    return int(h), int(w)


def _head_prefix(name: str) -> str:
    return ".".join(str(p) for p in _HEADS[name]) + "."


def _get_head(net: nn.Module, name: str) -> nn.Module:
    mod = net
    for p in _HEADS[name]:
        mod = mod[p] if isinstance(p, int) else getattr(mod, p)
    return mod


def _set_head(net: nn.Module, name: str, new: nn.Module) -> None:
    *parents, last = _HEADS[name]
    mod = net
    for p in parents:
        mod = mod[p] if isinstance(p, int) else getattr(mod, p)
    if isinstance(last, int):
        mod[last] = new
    else:
        setattr(mod, last, new)


@functools.lru_cache(maxsize=None)
def _shapes(name: str) -> dict[str, tuple]:
    """Parameter and buffer shapes of ``name`` (built on the meta device: no memory, no time).
    Cached: callers only read the dict."""
    tv = _torchvision()
    with torch.device("meta"):
        net = tv.models.get_model(name, weights=None)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


# -- weights ------------------------------------------------------------------------------------

def load_weights_file(path) -> dict[str, torch.Tensor]:
    """The state_dict in a ``.pt``/``.pth`` file: ``torch.save(model.state_dict(), path)``, also
    inside ``{"state_dict": ...}`` or ``{"model": ...}``, and with DataParallel's ``module.`` prefix."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"weights file {str(path)!r} does not exist; pass the path of a state_dict saved with "
                         "torch.save(model.state_dict(), path), 'imagenet' or None.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # files in torch's legacy (non-zip) format cannot be memory-mapped
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise DataError(f"cannot read weights file {str(path)!r}: {one_line(exc)}; save the network's "
                            "weights with torch.save(model.state_dict(), path).") from None
    except Exception as exc:
        raise DataError(f"cannot read weights file {str(path)!r}: {one_line(exc)}; save the network's "
                        "weights with torch.save(model.state_dict(), path).") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"weights file {str(path)!r} holds no state_dict of tensors; save the network's weights "
                         "with torch.save(model.state_dict(), path).")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _body_mismatch(name: str, state: dict) -> str | None:
    """Why ``state`` is not ``name``'s body (missing, extra or differently shaped tensors), or None."""
    head = _head_prefix(name)
    want = {k: v for k, v in _shapes(name).items() if not k.startswith(head)}
    have = {k: tuple(v.shape) for k, v in state.items() if not k.startswith(head)}
    missing = [k for k in want if k not in have]
    extra = [k for k in have if k not in want]
    shaped = [k for k in want if k in have and have[k] != want[k]]
    if not (missing or extra or shaped):
        return None
    parts = []
    if missing:
        parts.append(f"{len(missing)} of its {len(want)} tensors missing (e.g. {missing[0]!r})")
    if extra:
        parts.append(f"{len(extra)} unknown (e.g. {extra[0]!r})")
    if shaped:
        parts.append(f"{len(shaped)} of another shape (e.g. {shaped[0]!r}: {have[shaped[0]]} instead of "
                     f"{want[shaped[0]]})")
    return ", ".join(parts)


_CHECKED: dict[tuple, None] = {}


def check_weights(name: str, weights) -> None:
    """Check ``weights`` for backbone ``name`` without training: None, "imagenet", or a state_dict
    file of the same torchvision architecture (any head). A file of another architecture raises one
    InputError line naming both. Files are memory-mapped and each (file, size, mtime) checked once."""
    _check_name(name)
    if weights is None or weights == "imagenet":
        return
    if not isinstance(weights, (str, os.PathLike)):
        raise InputError(f"weights must be 'imagenet', the path of a state_dict file or None; got {weights!r}.")
    path = Path(weights)
    if not path.is_file():
        raise InputError(f"weights file {str(path)!r} does not exist; pass the path of a state_dict saved with "
                         "torch.save(model.state_dict(), path), 'imagenet' or None.")
    st = path.stat()
    key = (name, str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _CHECKED:
        return
    state = load_weights_file(path)
    why = _body_mismatch(name, state)
    if why is not None:
        other = next((n for n in BACKBONES if n != name and _body_mismatch(n, state) is None), None)
        if other is not None:
            raise InputError(f"weights file {str(path)!r} holds {other} weights, not {name} weights; pass arch "
                             f"(or backbone) {other!r}, or a state_dict saved from torchvision's {name}.")
        raise InputError(f"weights file {str(path)!r} is not a state_dict of torchvision's {name} ({why}); pass "
                         f"one saved with torch.save(torchvision.models.{name}().state_dict(), path).")
    _CHECKED[key] = None


_FILE_HASHES: dict[tuple, str] = {}


def weights_identity(name: str, weights) -> str:
    """A short stable name for the weights (a cache key part): "imagenet-<torchvision weights enum>",
    "random-seed0-torch<version>" for None, "file-<sha256 of the file's bytes>" for a file."""
    if weights is None:
        return f"random-seed0-torch{torch.__version__.split('+')[0]}"
    if weights == "imagenet":
        return f"imagenet-{_imagenet_weights(name).name}"
    path = Path(weights)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _FILE_HASHES[key] = h.hexdigest()
    return "file-" + _FILE_HASHES[key][:32]


def _imagenet_state(name: str) -> dict:
    w = _imagenet_weights(name)
    try:
        return w.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # no network, a proxy, a full disk, a damaged download: all end here
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        raise DataError(f"cannot get the ImageNet weights of {name} ({w.url} into {hub}): {one_line(exc)}; "
                        f"download that file on a machine with internet and pass weights=PATH to it, or put it "
                        f"in {hub}, or pass weights=None to train from scratch.") from None


def build_backbone(name: str, n_classes: int | None, weights=None) -> nn.Module:
    """torchvision's ``name`` with its classifier head replaced by a new ``Linear(features, n_classes)``
    (``n_classes=None``: by ``Identity``, so the network returns its features).

    ``weights``: None (random initialization, seeded by torch's global generator), "imagenet"
    (torchvision's default ImageNet weights, downloaded once into torch's hub cache), or the path of
    a state_dict of the same architecture; its head is loaded too when its shape fits, else the new
    head keeps its random initialization.

    Examples
    --------
    >>> net = build_backbone("resnet18", 10)
    >>> net.fc
    Linear(in_features=512, out_features=10, bias=True)
    """
    _check_name(name)
    check_weights(name, weights)
    net = _torchvision().models.get_model(name, weights=None)
    state = None
    if weights == "imagenet":
        state = _imagenet_state(name)
    elif weights is not None:
        state = load_weights_file(weights)
    if state is not None:
        prefix = _head_prefix(name)
        saved = state.get(prefix + "weight")
        if saved is not None and saved.ndim == 2 and tuple(saved.shape) != tuple(_get_head(net, name).weight.shape):
            # the file's head (another number of classes): a Linear of its shape, so every tensor loads strictly
            _set_head(net, name, nn.Linear(saved.shape[1], saved.shape[0], bias=prefix + "bias" in state))
        # strict unless the file has no head at all (saved from a headless network); its body was checked
        net.load_state_dict(state, strict=saved is not None)
    head = _get_head(net, name)
    if n_classes is None:
        _set_head(net, name, nn.Identity())
    elif state is None or weights == "imagenet" or head.out_features != n_classes:
        _set_head(net, name, nn.Linear(head.in_features, n_classes))
    return net


def feature_size(name: str) -> int:
    """Length of the feature vector ``name`` gives its head."""
    _check_name(name)
    return int(_shapes(name)[_head_prefix(name) + "weight"][1])


# -- input and network --------------------------------------------------------------------------

def pixel_scaling(X: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per channel that take X's pixels to [0, 1] (the normalization of a pretrained
    backbone's input before its ImageNet mean/std): uint8 / 255; other dtypes as they are when they
    lie within [0, 1], else divided by their maximum."""
    c = X.shape[1]
    scale = 255.0 if X.dtype == torch.uint8 else max(1.0, float(X.max()) if X.numel() else 1.0)
    return np.zeros(c, np.float32), np.full(c, scale, np.float32)


def to_three_channels(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, 3, H, W): grey repeated, alpha (a 4th channel) dropped."""
    c = x.shape[1]
    if c == 3:
        return x
    if c in (1, 2):  # grey, grey + alpha
        return x[:, :1].expand(-1, 3, -1, -1)
    return x[:, :3]


class BackboneNet(nn.Module):
    """A torchvision network behind its input adapter: images of any channel count become 3
    channels, are resized to ``size`` (bilinear, antialiased when shrinking) and, for pretrained
    weights, normalized with ImageNet's mean and std. Inputs arrive scaled to [0, 1] for pretrained
    weights (ConvNetClassifier's ``mean_``/``std_`` do that), standardized otherwise.

    ``frozen`` (set by :meth:`freeze_body`) keeps the body's parameters fixed and its BatchNorm
    layers in eval mode even in ``train()``, so the frozen body is exactly the pretrained feature
    extractor and its running statistics are not pulled towards a handful of new images.
    """

    def __init__(self, net: nn.Module, name: str, size: tuple[int, int], imagenet_norm: bool):
        super().__init__()
        self.net = net
        self.name = name
        self.size = tuple(int(s) for s in size)
        self.imagenet_norm = bool(imagenet_norm)
        self.frozen = False
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def head(self) -> nn.Module:
        return _get_head(self.net, self.name)

    def adapt(self, x: torch.Tensor) -> torch.Tensor:
        """The network's input for a batch: 3 channels, ``size`` pixels, ImageNet-normalized."""
        x = to_three_channels(x)
        if tuple(x.shape[-2:]) != self.size:
            shrink = x.shape[-2] > self.size[0] or x.shape[-1] > self.size[1]
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=shrink)
        if self.imagenet_norm:
            x = (x - self.mean) / self.std
        return x

    def forward(self, x):
        return self.net(self.adapt(x))

    def body_and_head_parameters(self) -> tuple[list, list]:
        head = {id(p) for p in self.head().parameters()}
        params = list(self.net.parameters())
        return [p for p in params if id(p) not in head], [p for p in params if id(p) in head]

    def freeze_body(self, frozen: bool = True) -> None:
        body, _ = self.body_and_head_parameters()
        for p in body:
            p.requires_grad_(not frozen)
        self.frozen = frozen
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.frozen:
            head = set(self.head().modules())
            for m in self.net.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m not in head:
                    m.eval()
        return self


# From scratch, images are not enlarged to 224 pixels: nothing was trained at that size. They keep
# their own size, but at least this many pixels a side (the networks downsample 32-fold).
SCRATCH_MIN_SIDE = 32


def backbone_network(name: str, n_classes: int | None, weights=None, image_size=None,
                     images_hw: tuple[int, int] | None = None) -> BackboneNet:
    """:func:`build_backbone` behind its input adapter (:class:`BackboneNet`), as
    ConvNetClassifier and EmbeddingClassifier use it. ``image_size`` (int or (h, w)) defaults to
    the size of the backbone's ImageNet weights (224) when there are weights, else to the images'
    own size ``images_hw``, at least :data:`SCRATCH_MIN_SIDE` a side."""
    net = build_backbone(name, n_classes, weights)
    if image_size is None and weights is None and images_hw is not None:
        image_size = tuple(max(SCRATCH_MIN_SIDE, int(s)) for s in images_hw)
    return BackboneNet(net, name, input_size(image_size, name), imagenet_norm=weights is not None)


# -- fine-tuning ---------------------------------------------------------------------------------

class FineTuneMixin:
    """fastai's ``fine_tune`` for ConvNetClassifier with a pretrained backbone (``weights`` set):

    1. ``freeze_epochs`` epochs with the body frozen (BatchNorm included): only the new head
       learns, at ``lr``, one-cycle;
    2. ``epochs`` epochs (at least ``min_steps`` steps) with everything unfrozen, one-cycle again,
       at half the rate: the head at ``lr / 2``, the body's later half at ``lr / 20``, its earlier
       half at ``lr / 200`` (early layers hold the most general features and move least).

    A warm-started refit (``warm_start=True`` after the first fit) and ``freeze_epochs=0`` run
    phase 2 alone. From scratch (``weights=None``) and the built-in networks train in one phase
    with every parameter at ``lr``, as before. With weights, ``history_`` records carry ``phase``
    ("head" or "all"). Reads the estimator's ``arch``, ``module``, ``weights``, ``freeze_epochs``,
    ``epochs``, ``min_steps`` and ``lr``; the loop itself is TorchFitMixin's ``_fit_loop``, run
    once per phase.
    """

    def _phases(self) -> tuple[str, ...]:
        if not (self.module is None and self.arch in _HEADS and self.weights is not None):
            return ()
        first = getattr(self, "n_fit_calls_", 0) == 0
        return ("head", "all") if first and self.freeze_epochs > 0 else ("all",)

    def _fit_loop(self, steps_per_epoch, run_epoch) -> None:
        phases = self._phases()
        if not phases:
            return super()._fit_loop(steps_per_epoch, run_epoch)
        net = self.module_
        history = []
        try:
            for phase in phases:
                self._phase = phase
                net.freeze_body(phase == "head")
                super()._fit_loop(steps_per_epoch,
                                  lambda steps, opt, sched: {**run_epoch(steps, opt, sched), "phase": self._phase})
                history += self.history_
        finally:
            net.freeze_body(False)
            self.__dict__.pop("_phase", None)
        self.history_ = history

    def _loop_length(self) -> tuple[int, int]:
        if getattr(self, "_phase", None) == "head":
            return int(self.freeze_epochs), 0
        return super()._loop_length()

    def _param_groups(self):
        phase = getattr(self, "_phase", None)
        if phase is None:
            return super()._param_groups()
        body, head = self.module_.body_and_head_parameters()
        if phase == "head":
            return [{"params": head, "lr": self.lr}]
        base = self.lr * UNFROZEN_LR_FACTOR
        half = len(body) // 2
        return [{"params": body[:half], "lr": base * BODY_LR_FACTORS[0]},
                {"params": body[half:], "lr": base * BODY_LR_FACTORS[1]},
                {"params": head, "lr": base}]
