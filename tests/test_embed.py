"""EmbeddingClassifier (models/embed.py): features computed once and cached in memory and on disk,
keyed by the image (pixels, or path + size + mtime) and the backbone, weights and input size; a
scikit-learn head on top; self-training rounds and cross-validation folds reuse the features.

Real resnet18s (random init, seeded, saved as state_dicts: no downloads here) on real MNIST PNGs
and arrays, at 32x32 pixels.
"""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression

from pseudolabel.callbacks import Callback
from pseudolabel.crossval import out_of_fold_proba
from pseudolabel.exceptions import InputError, one_line
from pseudolabel.models.embed import EmbeddingClassifier, clear_memory_cache
from pseudolabel.selftrain import SelfTraining

torchvision = pytest.importorskip("torchvision")

SIZE = 32


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Two resnet18 state_dicts of different random inits."""
    folder = tmp_path_factory.mktemp("weights")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        paths.append(folder / f"resnet18-{seed}.pt")
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), paths[-1])
    return paths


@pytest.fixture(scope="module")
def digits_png(tmp_path_factory, mnist_path):
    """200 MNIST training images (20 per class) as PNG files, their labels, and the test images."""
    root = tmp_path_factory.mktemp("png")
    with np.load(mnist_path) as d:
        X, y = d["x_train"][:4000], d["y_train"][:4000].astype(np.int64)
        X_test, y_test = d["x_test"][:200], d["y_test"][:200].astype(np.int64)
    take = np.concatenate([np.flatnonzero(y == c)[:20] for c in range(10)])
    paths = []
    for i in take:
        paths.append(str(root / f"{i:05d}.png"))
        Image.fromarray(X[i]).save(paths[-1])
    return paths, y[take], X[take], X_test, y_test


@pytest.fixture(autouse=True)
def fresh_memory():
    """Each test starts with nothing in memory: its hits come from its own cache folder."""
    clear_memory_cache()


def _model(weights_path, cache_dir, **kw):
    return EmbeddingClassifier("resnet18", weights=str(weights_path), image_size=SIZE, cache_dir=cache_dir,
                               batch_size=100, **kw)


def test_first_fit_misses_then_a_new_instance_hits_the_disk_cache(digits_png, weights, tmp_path):
    paths, y, _, _, _ = digits_png
    first = _model(weights[0], tmp_path).fit(paths, y)
    assert (first.cache_hits_, first.cache_misses_) == (0, 200)
    assert first.n_embedding_features_ == 512
    proba = first.predict_proba(paths[:50])
    assert (first.cache_hits_, first.cache_misses_) == (50, 200)  # predict looked them up
    clear_memory_cache()  # a new process, as far as the cache can tell: only the disk holds them
    second = _model(weights[0], tmp_path).fit(paths, y)
    assert (second.cache_hits_, second.cache_misses_) == (200, 0)
    np.testing.assert_allclose(second.predict_proba(paths[:50]), proba, rtol=1e-6, atol=1e-8)
    assert first.score(paths, y) > 0.8  # its own training images; chance is 0.1


def test_a_changed_file_or_array_image_is_computed_again(digits_png, weights, tmp_path):
    paths, y, X, _, _ = digits_png
    _model(weights[0], tmp_path).fit(paths[:40], y[:40])
    Image.fromarray(255 - X[3]).save(paths[3])  # rewritten: new size/mtime
    os.utime(paths[3], ns=(1, 1_000_000_000_000))  # a different mtime even on coarse clocks
    again = _model(weights[0], tmp_path).fit(paths[:40], y[:40])
    assert (again.cache_hits_, again.cache_misses_) == (39, 1)
    Image.fromarray(X[3]).save(paths[3])

    arr = _model(weights[0], tmp_path).fit(X[:40], y[:40])
    assert arr.cache_misses_ == 40  # arrays are keyed by their pixels, not by any file
    changed = X[:40].copy()
    changed[7, 10, 10] ^= 1
    arr2 = _model(weights[0], tmp_path).fit(changed, y[:40])
    assert (arr2.cache_hits_, arr2.cache_misses_) == (39, 1)


def test_another_backbone_weights_or_size_misses(digits_png, weights, tmp_path):
    X, y = digits_png[2][:30], digits_png[1][:30]
    base = _model(weights[0], tmp_path).fit(X, y)
    assert base.cache_misses_ == 30
    other_weights = _model(weights[1], tmp_path).fit(X, y)
    assert (other_weights.cache_hits_, other_weights.cache_misses_) == (0, 30)
    other_size = _model(weights[0], tmp_path).set_params(image_size=40).fit(X, y)
    assert other_size.cache_misses_ == 30
    scratch = EmbeddingClassifier("resnet18", weights=None, image_size=SIZE, cache_dir=tmp_path).fit(X, y)
    assert scratch.cache_misses_ == 30
    mobile = EmbeddingClassifier("mobilenet_v3_small", weights=None, image_size=SIZE, cache_dir=tmp_path).fit(X, y)
    assert mobile.cache_misses_ == 30 and mobile.n_embedding_features_ == 1024
    namespaces = sorted(p.name for p in tmp_path.iterdir())
    assert len(namespaces) == 5 and all(n.endswith("-p1") for n in namespaces)


def test_string_classes_and_the_head(digits_png, weights, tmp_path):
    paths, y, _, _, _ = digits_png
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    clf = _model(weights[0], tmp_path).fit(paths, names[y])
    assert list(clf.classes_) == sorted(names)
    assert clf.predict(paths[:5]).dtype.kind == "U" and set(clf.predict(paths)) <= set(names)
    assert clf.predict_proba(paths[:5]).shape == (5, 10)
    custom = _model(weights[0], tmp_path, head=LogisticRegression(C=0.1, max_iter=500)).fit(paths, names[y])
    assert isinstance(custom.head_, LogisticRegression) and custom.head_.C == 0.1
    weighted = _model(weights[0], tmp_path).fit(paths, y, sample_weight=np.where(y == 5, 0.0, 1.0))
    assert np.mean(weighted.predict(paths) == 5) < 0.05  # weight 0 on every 5: the head never learns 5


def test_self_training_and_folds_reuse_the_features(digits_png, weights, tmp_path):
    """SelfTraining clones the model each round and out_of_fold_proba each fold: after the first
    fit every image is a cache hit, so later rounds and folds fit only the head."""
    paths, y, X, X_test, y_test = digits_png
    clf = _model(weights[0], tmp_path)
    partial = np.full(len(y), -1)
    partial[::4] = y[::4]
    st = SelfTraining(clf, threshold=0.0, criterion="k_best", k_best=40, max_iter=3).fit(X, partial)
    assert len(st.history_) >= 3
    assert st.estimator_.cache_misses_ == 0 and st.estimator_.cache_hits_ > 0  # the last round's clone
    shards = len(list(next(tmp_path.iterdir()).iterdir()))
    proba = out_of_fold_proba(clone(clf), X, y, cv=4, random_state=0)
    assert proba.shape == (200, 10) and len(list(next(tmp_path.iterdir()).iterdir())) == shards  # nothing new
    assert np.mean(proba.argmax(1) == y) > 0.4  # out-of-fold on 150 training images; chance is 0.1


class Records(Callback):
    def __init__(self):
        self.seen = []

    def on_epoch_end(self, estimator, record):
        self.seen.append(record)


def test_estimator_api_callbacks_and_pickling(digits_png, weights, tmp_path):
    X, y = digits_png[2][:40], digits_png[1][:40]
    rec = Records()
    clf = _model(weights[0], False, callbacks=[rec], random_state=0)  # cache_dir=False: memory only
    params = clf.get_params()
    assert params["backbone"] == "resnet18" and params["cache_dir"] is False
    twin = clone(clf).get_params()
    assert {k: v for k, v in twin.items() if k != "callbacks"} == {k: v for k, v in params.items() if k != "callbacks"}
    with pytest.raises(NotFittedError):
        clf.predict(X)
    clf.fit(X, y)
    assert [r["epoch"] for r in rec.seen] == [1]
    assert {"cache_hits", "cache_misses", "train_accuracy"} <= set(rec.seen[0])
    assert not any(tmp_path.iterdir())
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(back.predict_proba(X), clf.predict_proba(X))
    assert clf.transform(X).shape == (40, 512)


@pytest.mark.parametrize("params, message", [
    (dict(backbone="vgg99"), "The 'backbone' parameter of EmbeddingClassifier must be one of resnet18, resnet34, "
                             "resnet50, efficientnet_b0, efficientnet_b1, mobilenet_v3_small, mobilenet_v3_large, "
                             "convnext_tiny, densenet121. Got 'vgg99' instead."),
    (dict(batch_size=0), "The 'batch_size' parameter of EmbeddingClassifier must be an int >= 1. Got 0 instead."),
    (dict(image_size=(32,)), "The 'image_size' parameter of EmbeddingClassifier must be None, an int >= 8 or a "
                             "(height, width) pair of ints >= 8. Got (32,) instead."),
    (dict(head="logreg"), "The 'head' parameter of EmbeddingClassifier must be None or a scikit-learn classifier "
                          "with predict_proba. Got 'logreg' instead."),
])
def test_bad_params_are_named(params, message):
    with pytest.raises(InputError) as exc:
        EmbeddingClassifier(**{"weights": None, **params}).check_params()
    assert one_line(exc.value) == message


def test_weights_of_another_architecture_is_one_line(tmp_path):
    torch.manual_seed(0)
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), tmp_path / "m.pt")
    with pytest.raises(InputError, match="holds mobilenet_v3_small weights, not resnet18 weights"):
        EmbeddingClassifier("resnet18", weights=tmp_path / "m.pt").fit(np.zeros((4, 8, 8), np.uint8), [0, 1, 0, 1])
