"""ConvNetClassifier: scikit-learn's estimator contract, every input kind, and the torch details
(reproducibility, warm start, chunked inference, user modules, pickling, augmentation)."""
from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.base import clone
from sklearn.exceptions import NotFittedError as SkNotFittedError
from sklearn.metrics import accuracy_score
from sklearn.utils.estimator_checks import parametrize_with_checks
from torch import nn

from pseudolabel.exceptions import InputError
from pseudolabel.models import ConvNetClassifier
from pseudolabel.models.augment import random_affine
from pseudolabel.models.cnn import as_image_batch, resolve_device

# A config small enough for the estimator checks: 30 optimizer steps learn make_blobs (the
# checks want > 83 % training accuracy) in a fraction of a second.
SMALL = dict(epochs=1, min_steps=30, random_state=0)

# The checks that genuinely do not apply, and why.
EXPECTED_FAILED_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data": (
        "minibatch SGD: repeating a row changes the batches and the number of steps, so weighting a "
        "row by 2 is not the same model as repeating it (equal in expectation, not exactly)"
    ),
    "check_classifiers_classes": (
        "it trains on the labels {-1, 1}; in pseudolabel -1 marks an unlabeled sample everywhere, so "
        "the CNN refuses negative labels instead of silently learning a class '-1' from partial labels "
        "(string labels and binary decision_function are tested below)"
    ),
}


@parametrize_with_checks([ConvNetClassifier(**SMALL)], expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# -- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def split(digits):
    X, y = digits
    return X[:600], y[:600], X[1200:1500], y[1200:1500]


@pytest.fixture(scope="module")
def fitted(split):
    X, y, _, _ = split
    return ConvNetClassifier(epochs=1, min_steps=60, random_state=0).fit(X, y)


# -- the estimator API ---------------------------------------------------------------------------

def test_clone_get_params_set_params():
    clf = ConvNetClassifier(epochs=3, lr=1e-3, random_state=5)
    params = clf.get_params()
    assert params["epochs"] == 3 and params["lr"] == 1e-3 and params["random_state"] == 5
    assert params["module"] is None and params["arch"] == "fast"
    twin = clone(clf)
    assert twin is not clf and twin.get_params() == params
    assert clf.set_params(epochs=7, arch="wide") is clf
    assert clf.epochs == 7 and clf.arch == "wide" and twin.epochs == 3
    with pytest.raises(ValueError):
        clf.set_params(no_such_parameter=1)


def test_unfitted_predict_raises_not_fitted(split):
    X = split[2]
    for method in ("predict", "predict_proba", "decision_function"):
        with pytest.raises(SkNotFittedError):
            getattr(ConvNetClassifier(), method)(X)


def test_fit_predict_proba_score_on_digits(fitted, split):
    _, _, X_test, y_test = split
    assert fitted.input_shape_ == (1, 8, 8) and fitted.n_features_in_ == 64
    assert list(fitted.classes_) == list(range(10))
    proba = fitted.predict_proba(X_test)
    assert proba.shape == (len(X_test), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    pred = fitted.predict(X_test)
    np.testing.assert_array_equal(pred, fitted.classes_[proba.argmax(axis=1)])
    acc = accuracy_score(y_test, pred)
    assert acc > 0.8  # chance is 0.1
    assert fitted.score(X_test, y_test) == pytest.approx(acc)
    assert len(fitted.history_) >= 1 and {"loss", "train_accuracy", "samples_per_s"} <= set(fitted.history_[0])


def test_flat_vectors_are_square_images(digits):
    X, y = digits
    flat = X.reshape(len(X), 64)
    clf = ConvNetClassifier(epochs=1, min_steps=60, random_state=0).fit(flat[:600], y[:600])
    assert clf.input_shape_ == (1, 8, 8)
    assert clf.score(flat[1200:1500], y[1200:1500]) > 0.8
    # the same images as (n, 8, 8) are the same input
    np.testing.assert_allclose(clf.predict_proba(X[1200:1210]), clf.predict_proba(flat[1200:1210]))


def test_flat_non_square_vectors_are_strips():
    assert as_image_batch(np.zeros((4, 10))).shape == (4, 1, 1, 10)


def test_mnist_uint8_images(mnist_small):
    X, y, X_test, y_test = mnist_small
    assert as_image_batch(X[:5]).dtype == np.uint8  # kept small in memory until a batch is used
    clf = ConvNetClassifier(epochs=1, min_steps=60, batch_size=64, random_state=0).fit(X[:800], y[:800])
    assert clf.input_shape_ == (1, 28, 28)
    assert clf.score(X_test[:300], y_test[:300]) > 0.6  # chance is 0.1


def _rgb(X):
    """Colour digits: each channel a different function of the grey image."""
    return np.stack([X, 16 - X, X * 0.5], axis=-1).astype(np.float32)


def test_rgb_images_channels_last_and_first(split):
    X, y, X_test, y_test = split
    clf = ConvNetClassifier(epochs=1, min_steps=60, random_state=0).fit(_rgb(X), y)
    assert clf.input_shape_ == (3, 8, 8)
    assert clf.score(_rgb(X_test), y_test) > 0.8
    channels_first = np.transpose(_rgb(X_test), (0, 3, 1, 2))
    np.testing.assert_allclose(clf.predict_proba(channels_first), clf.predict_proba(_rgb(X_test)))


def _write_pngs(folder, X, sizes):
    """Digits as 8-bit PNGs, the i-th one resized to sizes[i % len(sizes)] (width, height)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(X):
        im = Image.fromarray((img * 255 / 16).astype(np.uint8), mode="L")
        im = im.resize(sizes[i % len(sizes)], Image.NEAREST)
        path = folder / f"{i:04d}.png"
        im.save(path)
        paths.append(str(path))
    return paths


def test_image_files_of_different_sizes(split, tmp_path):
    X, y, X_test, y_test = split
    train = _write_pngs(tmp_path / "train", X[:400], [(16, 16), (24, 24), (20, 12)])
    test = _write_pngs(tmp_path / "test", X_test[:100], [(32, 32), (8, 8)])
    clf = ConvNetClassifier(epochs=1, min_steps=60, image_size=(16, 16), random_state=0).fit(train, y[:400])
    assert clf.input_shape_ == (1, 16, 16)
    assert clf.score(test, y_test[:100]) > 0.6
    assert clf.predict(np.asarray(test, dtype=object)).shape == (100,)  # an object array of paths too


def test_non_contiguous_integer_classes_are_mapped_back(digits):
    X, y = digits
    keep = y < 3
    X3, y3 = X[keep], np.array([3, 7, 11])[y[keep]]
    clf = ConvNetClassifier(epochs=1, min_steps=40, random_state=0).fit(X3[:300], y3[:300])
    assert list(clf.classes_) == [3, 7, 11]
    pred = clf.predict(X3[300:])
    assert set(np.unique(pred)) <= {3, 7, 11}
    assert np.mean(pred == y3[300:]) > 0.9
    assert clf.predict_proba(X3[300:]).shape == (len(pred), 3)


def test_string_labels_and_binary_decision_function(digits):
    X, y = digits
    keep = (y == 0) | (y == 1)
    names = np.where(y[keep] == 0, "zero", "one")
    clf = ConvNetClassifier(epochs=1, min_steps=30, random_state=0).fit(X[keep][:200], names[:200])
    assert list(clf.classes_) == ["one", "zero"]
    dec = clf.decision_function(X[keep][200:])
    assert dec.shape == (int(keep.sum()) - 200,)  # scikit-learn's binary shape
    pred = clf.predict(X[keep][200:])
    np.testing.assert_array_equal(pred, clf.classes_[(dec > 0).astype(int)])
    assert np.mean(pred == names[200:]) > 0.9


# -- torch details -------------------------------------------------------------------------------

def test_random_state_makes_fits_identical(split):
    X, y, X_test, _ = split
    a = ConvNetClassifier(epochs=1, min_steps=20, random_state=3).fit(X, y).predict_proba(X_test)
    b = ConvNetClassifier(epochs=1, min_steps=20, random_state=3).fit(X, y).predict_proba(X_test)
    c = ConvNetClassifier(epochs=1, min_steps=20, random_state=4).fit(X, y).predict_proba(X_test)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)  # the seed matters, so equality above is not an accident


def test_warm_start_continues_from_the_weights(split):
    X, y, _, _ = split
    clf = ConvNetClassifier(epochs=1, min_steps=40, warm_start=True, random_state=0).fit(X, y)
    first = clf.history_[0]["loss"]
    module = clf.module_
    clf.fit(X, y)
    assert clf.module_ is module and clf.n_fit_calls_ == 2
    assert clf.history_[0]["loss"] < 0.5 * first
    # without warm_start a second fit starts over from fresh weights
    cold = ConvNetClassifier(epochs=1, min_steps=40, random_state=0).fit(X, y)
    cold_first = cold.history_[0]["loss"]
    cold.fit(X, y)
    assert cold.history_[0]["loss"] > 0.5 * cold_first


def test_warm_start_rejects_new_classes(digits):
    X, y = digits
    clf = ConvNetClassifier(epochs=1, min_steps=5, warm_start=True, random_state=0)
    clf.fit(X[y < 5][:100], y[y < 5][:100])
    with pytest.raises(InputError, match=r"classes \[5\] unseen in the first fit.*warm_start=False"):
        clf.fit(X[:100], np.where(y[:100] < 5, y[:100], 5))


def test_chunked_inference_equals_unchunked(fitted, split):
    X_test = split[2]
    try:
        chunked = fitted.set_params(inference_batch_size=7).predict_proba(X_test)  # 43 chunks, the last of 6
        whole = fitted.set_params(inference_batch_size=4096).predict_proba(X_test)
    finally:
        fitted.set_params(inference_batch_size=256)
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)
    assert chunked.shape == (300, 10)


def test_user_module_instance_is_copied_and_trained(split):
    X, y, X_test, y_test = split
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    before = [p.detach().clone() for p in net.parameters()]
    clf = ConvNetClassifier(net, epochs=1, min_steps=60, augment=None, random_state=0).fit(X, y)
    assert clf.module_ is not net
    for p, q in zip(before, net.parameters()):  # the user's module is left as it was
        assert torch.equal(p, q)
    assert clf.score(X_test, y_test) > 0.8
    assert clone(clf).module is not net  # clone deep-copies non-estimator parameters


def test_user_module_factory_gets_channels_and_classes(split):
    X, y, X_test, y_test = split
    calls = []

    def factory(in_channels, n_classes):
        calls.append((in_channels, n_classes))
        return nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, n_classes))

    clf = ConvNetClassifier(factory, epochs=1, min_steps=60, random_state=0).fit(_rgb(X), y)
    assert calls == [(3, 10)]
    assert clf.score(_rgb(X_test), y_test) > 0.6


def test_bad_module_is_refused(split):
    X, y = split[:2]
    with pytest.raises(InputError, match="module must be a torch.nn.Module or a callable"):
        ConvNetClassifier("resnet", epochs=1).fit(X, y)


def test_device_auto_resolves_to_the_machine(fitted):
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert fitted.device_.type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(InputError, match="device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got 'gpu0'"):
        resolve_device("gpu0")


def test_pickle_round_trip_predicts_the_same(fitted, split):
    X_test = split[2]
    back = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(back.predict_proba(X_test), fitted.predict_proba(X_test))
    np.testing.assert_array_equal(back.classes_, fitted.classes_)


def test_random_affine_changes_images_keeps_shape(digits):
    x = torch.from_numpy(digits[0][:32]).unsqueeze(1)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    a, b = random_affine(x, generator=g1), random_affine(x, generator=g2)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)  # the generator decides everything
    changed = (a - x).abs().flatten(1).amax(1) > 1.0
    assert changed.float().mean() > 0.9  # nearly every image moved
    # ink is preserved roughly: the transform moves pixels, it does not invent or erase the digit
    ratio = a.sum(dim=(1, 2, 3)) / x.sum(dim=(1, 2, 3))
    assert ratio.min() > 0.6 and ratio.max() < 1.6
    # zero strength is the identity
    same = random_affine(x, degrees=0, scale=(1, 1), shear=0, translate=0)
    torch.testing.assert_close(same, x, atol=1e-4, rtol=0)
    strips = torch.rand(5, 1, 1, 64)
    assert torch.equal(random_affine(strips), strips)  # flat vectors are left alone


def test_seed_arch_trains(mnist_small):
    X, y, X_test, y_test = mnist_small
    clf = ConvNetClassifier(arch="seed", epochs=1, batch_size=64, lr=1e-3, optimizer="adam", augment=None,
                            weight_decay=0.0, random_state=0).fit(X[:800], y[:800])
    assert clf.score(X_test[:300], y_test[:300]) > 0.6
    with pytest.raises(InputError, match="at least 5x5 pixels"):
        ConvNetClassifier(arch="seed", epochs=1).fit(np.zeros((4, 10)), [0, 1, 0, 1])


def test_strided_arch_learns_mnist_and_handles_small_and_flat_inputs(mnist_small, digits):
    X, y, X_test, y_test = mnist_small
    clf = ConvNetClassifier(arch="strided", epochs=0, min_steps=150, random_state=0).fit(X[:2000], y[:2000])
    assert clf.score(X_test, y_test) > 0.9
    convs = [m for m in clf.module_.modules() if isinstance(m, nn.Conv2d)]
    assert [c.stride for c in convs] == [(2, 2), (2, 2), (1, 1)]  # no pooling layers: strides shrink
    Xd, yd = digits
    assert ConvNetClassifier(arch="strided", epochs=1, random_state=0).fit(Xd[:200], yd[:200]).predict(
        Xd[:5]).shape == (5,)
    strips = np.random.default_rng(0).normal(size=(60, 7)).astype(np.float32)  # 1 x 7 strips: never strided
    clf = ConvNetClassifier(arch="strided", epochs=1, random_state=0).fit(strips, np.arange(60) % 3)
    assert [c.stride for c in clf.module_.modules() if isinstance(c, nn.Conv2d)][0] == (1, 2)


def test_auto_arch_is_strided_for_large_images_only(mnist_small, digits):
    X, y = mnist_small[:2]
    big = ConvNetClassifier(arch="auto", epochs=0, min_steps=1, random_state=0).fit(X[:100], y[:100])
    Xd, yd = digits
    small = ConvNetClassifier(arch="auto", epochs=0, min_steps=1, random_state=0).fit(Xd[:100], yd[:100])
    assert (big.arch_, small.arch_) == ("strided", "fast")
    assert any(isinstance(m, nn.MaxPool2d) for m in small.module_.modules())
    assert not any(isinstance(m, nn.MaxPool2d) for m in big.module_.modules())


def test_ema_predicts_with_the_averaged_weights(split):
    X, y, X_test, y_test = split
    clf = ConvNetClassifier(epochs=2, ema=0.99, random_state=0).fit(X, y)
    assert clf.ema_steps_ == 10  # one update per step: 2 epochs of ceil(600 / 128) steps
    live = dict(clf.module_.named_parameters())
    avg = dict(clf.ema_module_.named_parameters())
    assert set(live) == set(avg)
    assert any(not torch.equal(live[k], avg[k]) for k in live)  # an average, not a copy
    assert all(not p.requires_grad for p in avg.values())
    # predictions come from the average: swapping it for the live weights changes the logits
    with_ema = clf.predict_proba(X_test)
    clf.ema_module_.load_state_dict(clf.module_.state_dict())
    assert not np.allclose(with_ema, clf.predict_proba(X_test))
    # ema=0 keeps the average equal to the last weights
    zero = ConvNetClassifier(epochs=1, ema=0.0, random_state=0).fit(X, y)
    assert all(torch.equal(a, b) for a, b in zip(zero.module_.state_dict().values(),
                                                  zero.ema_module_.state_dict().values()))
    # the average survives pickling and warm-started fits continue it
    again = pickle.loads(pickle.dumps(clf))
    assert np.allclose(again.predict_proba(X_test), clf.predict_proba(X_test))
    warm = ConvNetClassifier(epochs=1, ema=0.99, warm_start=True, random_state=0).fit(X, y)
    steps = warm.ema_steps_
    warm.fit(X, y)
    assert warm.ema_steps_ == 2 * steps


def test_ema_update_is_a_moving_average_with_warm_up(split):
    X, y = split[:2]
    clf = ConvNetClassifier(epochs=0, min_steps=1, ema=0.9, random_state=0).fit(X, y)
    with torch.no_grad():
        for p in clf.ema_module_.parameters():
            p.zero_()
        for p in clf.module_.parameters():
            p.fill_(1.0)
    clf.ema_steps_ = 0  # first step: decay (1 + 0) / (10 + 0) = 0.1, so the average moves 90 % of the way
    clf._update_ema(clf._ema_pairs())
    assert all(torch.allclose(p, torch.full_like(p, 0.9)) for p in clf.ema_module_.parameters())
    clf.ema_steps_ = 1000  # late: the decay is ema itself, 0.9
    clf._update_ema(clf._ema_pairs())
    assert all(torch.allclose(p, torch.full_like(p, 0.91)) for p in clf.ema_module_.parameters())
    assert clf.ema_steps_ == 1001


# -- bad input -----------------------------------------------------------------------------------

def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def test_nan_in_X_is_refused(split):
    X, y = split[:2]
    X = X.copy()
    X[3, 2, 2] = np.nan
    X[9, 0, 0] = np.inf
    with pytest.raises(InputError) as exc:
        ConvNetClassifier(epochs=1).fit(X, y)
    assert one_line(exc) == "X contains NaN or infinity in 2 sample(s); drop or impute those rows first."


def test_wrong_image_shape_at_predict(fitted):
    with pytest.raises(InputError) as exc:
        fitted.predict(np.zeros((3, 28, 28), np.float32))
    assert re.fullmatch(r"X has 784 features, but ConvNetClassifier is expecting 64 features as input: "
                        r"X has images of shape \(1, 28, 28\) \(C, H, W\) but the model was fitted on "
                        r"\(1, 8, 8\); resize the images or refit\.", one_line(exc))
    with pytest.raises(InputError, match=r"shape \(3, 8, 8\) .* fitted on \(1, 8, 8\)"):
        fitted.predict(np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(InputError, match="Reshape your data"):
        fitted.predict(np.zeros(64, np.float32))


@pytest.mark.parametrize("params, message", [
    (dict(epochs=-1), "The 'epochs' parameter of ConvNetClassifier must be an int >= 0. Got -1 instead."),
    (dict(epochs=2.5), "The 'epochs' parameter of ConvNetClassifier must be an int >= 0. Got 2.5 instead."),
    (dict(batch_size=0), "The 'batch_size' parameter of ConvNetClassifier must be an int >= 1. Got 0 instead."),
    (dict(lr=0), "The 'lr' parameter of ConvNetClassifier must be a float > 0. Got 0 instead."),
    (dict(arch="huge"), "The 'arch' parameter of ConvNetClassifier must be one of ('auto', 'strided', 'fast', "
                        "'wide', 'seed'). Got 'huge' instead."),
    (dict(ema=1.0), "The 'ema' parameter of ConvNetClassifier must be None or a float in [0, 1). Got 1.0 instead."),
    (dict(ema="yes"), "The 'ema' parameter of ConvNetClassifier must be None or a float in [0, 1). "
                      "Got 'yes' instead."),
    (dict(optimizer="rmsprop"), "The 'optimizer' parameter of ConvNetClassifier must be one of 'adamw', "
                                "'adam', 'sgd'. Got 'rmsprop' instead."),
    (dict(augment="mixup"), "The 'augment' parameter of ConvNetClassifier must be 'affine' or None. "
                            "Got 'mixup' instead."),
    (dict(semi="mixmatch"), "The 'semi' parameter of ConvNetClassifier must be None or one of ('fixmatch', "
                            "'flexmatch'). Got 'mixmatch' instead."),
    (dict(unlabeled_ratio=0), "The 'unlabeled_ratio' parameter of ConvNetClassifier must be an int >= 1. "
                              "Got 0 instead."),
    (dict(semi_threshold=0), "The 'semi_threshold' parameter of ConvNetClassifier must be a float in (0, 1]. "
                             "Got 0 instead."),
    (dict(semi_weight=-1), "The 'semi_weight' parameter of ConvNetClassifier must be a float >= 0. "
                           "Got -1 instead."),
])
def test_bad_params_are_named(split, params, message):
    X, y = split[:2]
    clf = ConvNetClassifier(**params)  # __init__ only stores: the check runs at fit
    with pytest.raises(InputError) as exc:
        clf.fit(X, y)
    assert one_line(exc) == message


def test_bad_labels_and_lengths(split):
    X, y = split[:2]
    with pytest.raises(InputError, match="X and y must be the same length, but X is length 600 and y is length 599"):
        ConvNetClassifier(epochs=1).fit(X, y[:-1])
    with pytest.raises(InputError, match="y contains the label -1; labels must be >= 0"):
        ConvNetClassifier(epochs=1).fit(X, np.where(y == 0, -1, y))
    with pytest.raises(ValueError, match="Unknown label type"):
        ConvNetClassifier(epochs=1).fit(X, y + 0.5)
    with pytest.raises(InputError, match="target y is None"):
        ConvNetClassifier(epochs=1).fit(X, None)
    with pytest.raises(InputError, match="X must be numeric images or image file paths"):
        ConvNetClassifier(epochs=1).fit(np.array([[1 + 2j] * 4] * 600), y)


def test_sample_weight_is_used_and_checked(split):
    X, y, X_test, _ = split
    # weight zero on every 5 makes the model blind to it: it barely predicts 5 afterwards
    w = np.where(y == 5, 0.0, 1.0)
    clf = ConvNetClassifier(epochs=1, min_steps=60, random_state=0).fit(X, y, sample_weight=w)
    plain = ConvNetClassifier(epochs=1, min_steps=60, random_state=0).fit(X, y)
    assert np.mean(clf.predict(X_test) == 5) < 0.5 * np.mean(plain.predict(X_test) == 5)
    with pytest.raises(InputError, match="at least one non-zero weight"):
        ConvNetClassifier(epochs=1).fit(X, y, sample_weight=np.zeros(len(y)))


# -- online pseudo-labeling (semi=) -----------------------------------------------------------------

def _few_labels(y: np.ndarray, per_class: int) -> np.ndarray:
    partial = np.full(len(y), -1)
    for c in np.unique(y):
        partial[np.flatnonzero(y == c)[:per_class]] = c
    return partial


@pytest.mark.parametrize("semi", ["fixmatch", "flexmatch"])
def test_semi_learns_from_the_unlabeled_rows(digits, semi):
    """5 labels per class: the online mode beats the same network trained on the labels alone
    by more than a point, and the unlabeled rows are really used."""
    X, y = digits
    rng = np.random.RandomState(0)
    order = rng.permutation(len(y))
    train, test = order[:1300], order[1300:]
    partial = _few_labels(y[train], 5)
    known = partial >= 0
    alone = ConvNetClassifier(epochs=10, min_steps=200, ema=0.99, random_state=0).fit(X[train][known], partial[known])
    online = ConvNetClassifier(epochs=10, min_steps=200, ema=0.99, semi=semi, random_state=0).fit(X[train], partial)
    assert list(online.classes_) == list(range(10))  # -1 marks rows, it is not a class
    used = [h["unlabeled_used"] for h in online.history_]
    assert 0.5 < used[-1] <= 1.0
    assert accuracy_score(y[test], online.predict(X[test])) > accuracy_score(y[test], alone.predict(X[test])) + 0.01


def test_semi_threshold_one_ignores_the_unlabeled_rows(digits):
    X, y = digits
    partial = _few_labels(y[:600], 5)
    clf = ConvNetClassifier(epochs=2, min_steps=20, semi="fixmatch", semi_threshold=1.0, random_state=0)
    clf.fit(X[:600], partial)
    assert all(h["unlabeled_used"] < 0.05 for h in clf.history_)


def test_unlabeled_rows_need_semi(digits):
    X, y = digits
    with pytest.raises(InputError, match="labels must be >= 0"):
        ConvNetClassifier(epochs=1).fit(X[:100], _few_labels(y[:100], 2))
    with pytest.raises(InputError, match="no labeled samples"):
        ConvNetClassifier(epochs=1, semi="fixmatch").fit(X[:100], np.full(100, -1))


def test_flexmatch_lowers_the_threshold_of_classes_few_images_claim():
    clf = ConvNetClassifier(semi="flexmatch", semi_threshold=0.9)
    clf.n_classes_, clf.device_ = 3, torch.device("cpu")
    # Class 0 claims 6 images, class 1 three, class 2 none; one image is unclaimed.
    clf._status = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, -1])
    thresholds = clf._class_thresholds().tolist()
    beta = np.array([6, 3, 0]) / 6
    np.testing.assert_allclose(thresholds, beta / (2 - beta) * 0.9, rtol=1e-6)
    assert thresholds[0] == pytest.approx(0.9) and thresholds[2] == 0.0
    clf.semi = "fixmatch"
    assert clf._class_thresholds().tolist() == pytest.approx([0.9] * 3)


def test_strong_augment_erases_a_square_and_keeps_shape():
    from pseudolabel.models.augment import strong_augment

    x = torch.ones(16, 1, 28, 28)
    out = strong_augment(x, degrees=0, scale=(1, 1), shear=0, translate=0, contrast=(1, 1), cutout=0.25,
                         generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    erased = (out == 0).sum(dim=(1, 2, 3))
    assert (erased == 7 * 7).all()  # one 7x7 square per image, nothing else touched
    tiny = torch.ones(2, 1, 3, 3)
    assert torch.equal(strong_augment(tiny), tiny)
