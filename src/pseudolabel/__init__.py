"""pseudolabel: self-training and label cleaning with labels that say where they came from.

The public names load lazily, so `import pseudolabel` stays cheap and torch is imported only
when the CNN is used.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "SelfTraining": "pseudolabel.selftrain",
    "out_of_fold_proba": "pseudolabel.crossval",
    "rank_label_issues": "pseudolabel.issues",
    "fix_labels": "pseudolabel.issues",
    "LabelStore": "pseudolabel.store",
    "inject_noise": "pseudolabel.datasets",
    "load_mnist": "pseudolabel.datasets",
    "load_digits": "pseudolabel.datasets",
    "load_image_folder": "pseudolabel.datasets",
    "ConvNetClassifier": "pseudolabel.models",
    "EmbeddingClassifier": "pseudolabel.models",
}

__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'pseudolabel' has no attribute {name!r}")


def __dir__():
    return __all__
