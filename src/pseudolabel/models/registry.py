"""Models by name: what ``--model NAME`` builds, for images, tables and texts.

=====================  ==========================================================  ===========
name                   estimator                                                   data
=====================  ==========================================================  ===========
``logreg``             StandardScaler + LogisticRegression                         table
``hgb``                HistGradientBoostingClassifier (takes missing values)       table
``forest``             RandomForestClassifier, 200 trees (takes missing values)    table
``tfidf-logreg``       TfidfVectorizer (words and word pairs) + LogisticRegression text
``cnn``                :class:`~pseudolabel.models.ConvNetClassifier`              images
a torchvision name     ``ConvNetClassifier(arch=NAME, weights="imagenet")`` (resnet18, ...) images
``embed:BACKBONE``     ``EmbeddingClassifier(backbone=BACKBONE)``                  images
``module:MOD:FACTORY`` ``MOD.FACTORY()``: any scikit-learn classifier you write    any
=====================  ==========================================================  ===========

The default by kind of data (:func:`default_model`): images ``cnn``; tables ``logreg`` below
:data:`TABLE_FEW_LABELS` given labels (the better, better calibrated choice for a few hundred
rows), else ``hgb`` (it takes missing values and string columns' one-hot codes as they are and
needs no scaling; also the choice for a small table with missing values); texts ``tfidf-logreg``.

A backbone named here starts from ImageNet weights unless ``weights`` says otherwise (a file's
path, or ``"none"``/None for random weights: ``--weights`` on the command line), as fastai's
``cnn_learner`` does; ``ConvNetClassifier(arch=NAME)`` itself defaults to random weights.

The CNN's parameters (epochs, batch size, ...) come from the job's recipe and go to the torch
models only; scikit-learn models take the seed as ``random_state``. Torch models and the
backbones are imported only when asked for.

Examples
--------
>>> make_model("logreg", random_state=0)            # doctest: +SKIP
WeightedPipeline(steps=[('scale', StandardScaler()), ('logreg', LogisticRegression(...))])
>>> make_model("module:mypkg.models:make_classifier")   # doctest: +SKIP
"""
from __future__ import annotations

import importlib
from typing import Callable

from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from pseudolabel.exceptions import InputError, one_line

__all__ = ["make_model", "model_names", "is_backbone", "default_model", "check_model", "model_kinds", "allows_nan",
           "KINDS", "WeightedPipeline"]

KINDS = ("images", "table", "text")
DEFAULTS = {"images": "cnn", "table": "hgb", "text": "tfidf-logreg"}
EMBED, MODULE = "embed:", "module:"


class WeightedPipeline(Pipeline):
    """A Pipeline whose ``fit`` takes ``sample_weight`` and hands it to the last step, as the
    clean job's later passes (posterior weights) and ``SelfTraining(sample_weight=...)`` pass it."""

    def fit(self, X, y=None, sample_weight=None, **params):
        if sample_weight is not None:
            params[f"{self.steps[-1][0]}__sample_weight"] = sample_weight
        return super().fit(X, y, **params)


def _logreg(random_state=None):
    return WeightedPipeline([("scale", StandardScaler()),
                             ("logreg", LogisticRegression(max_iter=2000, random_state=random_state))])


def _hgb(random_state=None):
    return HistGradientBoostingClassifier(random_state=random_state)


def _forest(random_state=None):
    return RandomForestClassifier(n_estimators=200, random_state=random_state, n_jobs=1)


def _tfidf_logreg(random_state=None):
    # Words and word pairs, sublinear counts: the usual strong baseline for short texts.
    return WeightedPipeline([("tfidf", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
                             ("logreg", LogisticRegression(max_iter=2000, C=10.0, random_state=random_state))])


# name -> (factory taking random_state, the kind of data it takes, whether it takes NaN)
_SKLEARN: dict[str, tuple[Callable, str, bool]] = {
    "logreg": (_logreg, "table", False),
    "hgb": (_hgb, "table", True),
    "forest": (_forest, "table", True),
    "tfidf-logreg": (_tfidf_logreg, "text", False),
}
_EXAMPLE_BACKBONES = ("resnet18", "resnet50", "efficientnet_b0")


def _backbones_module():
    try:  # the backbones module is optional: loaded only to name a backbone
        from pseudolabel.models import backbones
    except ImportError:
        return None
    return backbones


def _backbone_names() -> tuple[str, ...]:
    """The torchvision backbones ConvNetClassifier knows (models/backbones.py, when installed)."""
    backbones = _backbones_module()
    if backbones is None:
        return ()
    for attr in ("backbone_names", "names"):
        fn = getattr(backbones, attr, None)
        if callable(fn):
            return tuple(fn())
    for attr in ("BACKBONES", "NAMES", "ARCHS"):
        value = getattr(backbones, attr, None)
        if value:
            return tuple(value)
    return ()


def is_backbone(name: str) -> bool:
    if _backbones_module() is not None:
        return name in _backbone_names()
    try:  # a torchvision classification model's name (torchvision is loaded only here)
        import torchvision.models
    except ImportError:
        return False
    return name in torchvision.models.list_models(module=torchvision.models)


def model_names() -> list[str]:
    """The plain model names (``embed:BACKBONE`` and ``module:MOD:FACTORY`` come on top)."""
    return [*_SKLEARN, "cnn", *_backbone_names()]


def _choices() -> str:
    backbones = ", ".join((_backbone_names() or _EXAMPLE_BACKBONES)[:3])
    return (f"{', '.join([*_SKLEARN, 'cnn'])}, a torchvision backbone ({backbones}, ...), embed:BACKBONE, "
            "or module:package.module:Factory")


# A table with fewer given labels than this (and no missing values) gets ``logreg``, not ``hgb``:
# scikit-learn's boosted trees need 20 rows per leaf, and below about a thousand labels logistic
# regression was as good or better on each bundled table measured (docs/tables.md: wine and
# breast_cancer at 20-200 labels, digits at 20-800; hgb 38.9 % on wine at 20 labels, logreg 96.7 %;
# hgb first ahead on digits at 1,200).
TABLE_FEW_LABELS = 1000


def default_model(kind: str, n_labels: int | None = None, missing: bool = False) -> str:
    """The model a job uses for ``kind`` of data ("images", "table" or "text") when none is named;
    for a table, ``logreg`` with fewer than :data:`TABLE_FEW_LABELS` given labels (``n_labels``)
    unless values are ``missing``, else ``hgb``."""
    if kind == "table" and n_labels is not None and n_labels < TABLE_FEW_LABELS and not missing:
        return "logreg"
    return DEFAULTS[kind]


def model_kinds(name: str) -> tuple[str, ...]:
    """The kinds of data ``name`` takes ("module:" factories: any)."""
    if name in _SKLEARN:
        return (_SKLEARN[name][1],)
    if name.startswith(MODULE):
        return KINDS
    return ("images",)


def allows_nan(name: str, estimator=None) -> bool:
    """Whether the model takes missing values (NaN) in X."""
    if name in _SKLEARN:
        return _SKLEARN[name][2]
    if estimator is not None and name.startswith(MODULE):
        try:
            from sklearn.utils import get_tags

            return bool(get_tags(estimator).input_tags.allow_nan)
        except Exception:  # an estimator without scikit-learn's tags
            return False
    return False


def _from_module(spec: str):
    target = spec[len(MODULE):]
    mod_name, _, factory_name = target.rpartition(":")
    if not mod_name or not factory_name:
        raise InputError(f"--model {spec!r} must read module:package.module:Factory (a module, a colon, a "
                         "function or class in it); e.g. module:mymodels:make_classifier.")
    try:
        module = importlib.import_module(mod_name)
    except Exception as exc:  # ImportError, or anything the module raises while it is imported
        raise InputError(f"--model {spec!r}: cannot import {mod_name!r} ({type(exc).__name__}: {one_line(exc)}); "
                         "check the name and that its folder is on PYTHONPATH.") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise InputError(f"--model {spec!r}: module {mod_name!r} has no function or class {factory_name!r}; "
                         "name a callable that returns a classifier.")
    try:
        estimator = factory()
    except Exception as exc:
        raise InputError(f"--model {spec!r}: {factory_name}() failed ({type(exc).__name__}: {one_line(exc)}); "
                         "it is called with no arguments and must return a classifier.") from None
    missing = [m for m in ("get_params", "fit", "predict_proba") if not callable(getattr(estimator, m, None))]
    if missing:
        raise InputError(f"--model {spec!r}: {factory_name}() returned a {type(estimator).__name__}, which lacks "
                         f"{', '.join(missing)}; return a scikit-learn classifier with fit and predict_proba "
                         "(e.g. LogisticRegression()).")
    return estimator


def _with_params(estimator, params: dict):
    """Set the parameters of ``params`` the estimator has (the seed, callbacks); others are the CNN's."""
    own = estimator.get_params(deep=False)
    wanted = {k: v for k, v in params.items() if k in own}
    return estimator.set_params(**wanted) if wanted else estimator


def make_model(name: str | None, **params):
    """The estimator ``name`` names, unfitted (see the module's table).

    Parameters
    ----------
    name : str or None
        A model name; None means ``cnn``.
    **params
        ``random_state`` (every model that has one), ``callbacks`` and the
        ConvNetClassifier's parameters (the torch models only; others ignore them).

    Raises
    ------
    InputError
        An unknown name (the names are listed), a module that fails to import, a factory that
        fails or does not return a classifier.
    """
    name = "cnn" if name is None else str(name).strip()
    seed = params.get("random_state")
    if isinstance(params.get("weights"), str) and params["weights"].strip().lower() == "none":
        params["weights"] = None  # --weights none: random initialization
    if name in _SKLEARN:
        return _SKLEARN[name][0](random_state=seed)
    if name.startswith(MODULE):
        return _with_params(_from_module(name), {k: v for k, v in params.items() if k == "random_state"})
    if name.startswith(EMBED):
        backbone = name[len(EMBED):]
        if not backbone:
            raise InputError(f"--model {name!r} names no backbone; pass e.g. embed:resnet18.")
        try:  # torch and torchvision: loaded only when an embedding model is asked for
            from pseudolabel.models.embed import EmbeddingClassifier
        except ImportError as exc:
            raise InputError(f"--model {name!r} needs pseudolabel.models.embed ({one_line(exc)}); "
                             "pip install torchvision, or use another model.") from None
        return _with_params(EmbeddingClassifier(backbone=backbone), params)  # its default: imagenet
    from pseudolabel.models.cnn import ConvNetClassifier  # torch: loaded only for the torch models

    if name == "cnn":
        return ConvNetClassifier(**params)
    if name and is_backbone(name):
        return ConvNetClassifier(**{"weights": "imagenet", **params, "arch": name})
    raise InputError(f"--model {name!r} is not a model; pass one of {_choices()}.")


def check_model(name: str | None, kind: str, estimator=None) -> None:
    """Refuse a model that cannot take ``kind`` of data, in one line, before any training."""
    name = "cnn" if name is None else name
    if kind not in model_kinds(name):
        fits = [n for n in (*_SKLEARN, "cnn") if kind in model_kinds(n)]
        what = {"images": "images", "table": "a table's numeric features", "text": "texts"}[kind]
        raise InputError(f"--model {name} does not take {what}; for this data pass "
                         f"{' or '.join(fits)}{', a torchvision backbone or embed:BACKBONE' if kind == 'images' else ''}"
                         ", or a module:package.module:Factory of your own.")
