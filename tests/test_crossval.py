"""out_of_fold_proba: every sample predicted by a model that never saw it, columns aligned."""
from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError as SkNotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, KFold
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.validation import check_is_fitted

from pseudolabel import out_of_fold_proba
from pseudolabel.exceptions import InputError


@pytest.fixture(scope="module")
def digits_flat():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float64), y.astype(np.int64)


def blobs(labels, seed=0, n_per_class=30):
    """Well separated 2-D blobs, one per label value: any decent model predicts them right."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.asarray(labels), n_per_class)
    angles = np.searchsorted(np.unique(labels), y) * 2 * np.pi / len(np.unique(labels))
    X = np.c_[np.cos(angles), np.sin(angles)] * 5 + rng.normal(scale=0.3, size=(len(y), 2))
    return X, y


class SeenRowsClassifier(ClassifierMixin, BaseEstimator):
    """Memorizes its training rows by id (column 0 of X): one-hot on the training label for a
    row it was fit on, uniform for any other row. Out-of-fold, it must never look memorized."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.memory_ = {int(i): int(label) for i, label in zip(np.asarray(X)[:, 0], y)}
        return self

    def predict_proba(self, X):
        check_is_fitted(self)
        proba = np.full((len(X), len(self.classes_)), 1.0 / len(self.classes_))
        for row, i in enumerate(np.asarray(X)[:, 0]):
            if int(i) in self.memory_:
                proba[row] = 0.0
                proba[row, np.searchsorted(self.classes_, self.memory_[int(i)])] = 1.0
        return proba


def test_digits_probabilities_are_out_of_fold_and_useful(digits_flat, seed):
    X, y = digits_flat
    proba = out_of_fold_proba(LogisticRegression(max_iter=1000), X, y, cv=5, random_state=seed)
    assert proba.shape == (len(y), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert np.mean(proba.argmax(axis=1) == y) > 0.9
    # Out-of-fold, a linear model is less sure of its training labels than in-sample.
    in_sample = LogisticRegression(max_iter=1000).fit(X, y).predict_proba(X)
    assert proba[np.arange(len(y)), y].mean() < in_sample[np.arange(len(y)), y].mean()


def test_sample_weight_reaches_each_fold_and_can_silence_wrong_labels(digits_flat, seed):
    """Down-weighting the rows whose labels were corrupted brings the out-of-fold predictions
    back toward the truth; the weights of a fold's training rows reach its model."""
    from pseudolabel import inject_noise

    X, y = digits_flat
    noisy_y, noisy = inject_noise(y, 0.3, random_state=seed, n_classes=10)
    model = LogisticRegression(max_iter=500)
    plain = out_of_fold_proba(model, X, noisy_y, cv=3, random_state=seed)
    trusted = np.where(noisy, 1e-3, 1.0)
    weighted = out_of_fold_proba(model, X, noisy_y, cv=3, random_state=seed, sample_weight=trusted)
    assert np.mean(weighted.argmax(1) == y) > np.mean(plain.argmax(1) == y) + 0.02
    same = out_of_fold_proba(model, X, noisy_y, cv=3, random_state=seed, sample_weight=np.ones(len(y)))
    np.testing.assert_allclose(same, plain, atol=1e-6)
    with pytest.raises(InputError, match="sample_weight is length 10 and y is length"):
        out_of_fold_proba(model, X, noisy_y, sample_weight=np.ones(10))
    for bad in (np.full(len(y), -1.0), np.r_[np.nan, np.ones(len(y) - 1)]):
        with pytest.raises(InputError, match="^sample_weight (must be one non-negative|contains NaN)"):
            out_of_fold_proba(model, X, noisy_y, sample_weight=bad)


def test_every_sample_is_predicted_by_a_model_that_never_saw_it(seed):
    y = np.repeat(np.arange(4), 25)
    X = np.c_[np.arange(len(y)), np.zeros(len(y))]
    # The estimator does memorize: fit on everything, it is one-hot on its own rows.
    assert SeenRowsClassifier().fit(X, y).predict_proba(X).max(axis=1).min() == 1.0

    proba = out_of_fold_proba(SeenRowsClassifier(), X, y, cv=5, random_state=seed)
    np.testing.assert_allclose(proba, 0.25)


def test_columns_follow_sorted_label_values(seed):
    X, y = blobs([9, 2, 5], seed=seed)
    proba = out_of_fold_proba(LogisticRegression(), X, y, cv=3, random_state=seed)
    assert proba.shape == (len(y), 3)
    # Columns are [2, 5, 9]: on separable blobs the argmax column names the right class.
    assert np.mean(np.array([2, 5, 9])[proba.argmax(axis=1)] == y) > 0.95


def test_columns_aligned_when_a_training_fold_lacks_a_class(seed):
    X, y = blobs([2, 5, 9], seed=seed)  # sorted by label: unshuffled KFold(3) holds out one class
    proba = out_of_fold_proba(LogisticRegression(), X, y, cv=KFold(3))
    assert proba.shape == (len(y), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    for col, label in enumerate([2, 5, 9]):
        held_out = y == label
        # That fold's model never saw the class: its column is 0, the others carry the mass.
        assert np.all(proba[held_out, col] == 0.0)
        assert np.all(proba[~held_out, col] > 0.0)


def test_parallel_equals_sequential(digits_flat, seed):
    X, y = digits_flat[0][:600], digits_flat[1][:600]
    estimator = LogisticRegression(max_iter=1000)
    sequential = out_of_fold_proba(estimator, X, y, cv=3, random_state=seed, n_jobs=None)
    parallel = out_of_fold_proba(estimator, X, y, cv=3, random_state=seed, n_jobs=2)
    np.testing.assert_allclose(parallel, sequential, rtol=1e-10, atol=1e-12)
    other_split = out_of_fold_proba(estimator, X, y, cv=3, random_state=seed + 1)
    assert not np.allclose(other_split, sequential)


def test_callback_reports_each_fold_in_order(digits_flat, seed):
    X, y = digits_flat[0][:500], digits_flat[1][:500]
    calls = []
    out_of_fold_proba(GaussianNB(), X, y, cv=4, random_state=seed,
                      callback=lambda i, n, info: calls.append((i, n, info)))
    assert [c[0] for c in calls] == [0, 1, 2, 3]
    assert all(c[1] == 4 for c in calls)
    assert sum(c[2]["n_test"] for c in calls) == len(y)
    assert all(c[2]["n_train"] + c[2]["n_test"] == len(y) for c in calls)
    assert all(0.5 < c[2]["accuracy"] <= 1.0 and c[2]["seconds"] >= 0 for c in calls)


@pytest.mark.parametrize("estimator", [
    GaussianNB(), KNeighborsClassifier(5), DecisionTreeClassifier(random_state=0),
    MLPClassifier((32,), max_iter=60, random_state=0),
])
def test_works_with_any_probabilistic_classifier(estimator, digits_flat, seed):
    X, y = digits_flat[0][:600], digits_flat[1][:600]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the MLP's ConvergenceWarning at 60 iterations
        proba = out_of_fold_proba(estimator, X, y, cv=3, random_state=seed)
    assert proba.shape == (600, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert np.mean(proba.argmax(axis=1) == y) > 0.7
    with pytest.raises(SkNotFittedError):
        check_is_fitted(estimator)  # cloned, never fit in place


def test_dataframe_and_list_inputs_match_arrays(digits_flat, seed):
    X, y = digits_flat[0][:300], digits_flat[1][:300]
    reference = out_of_fold_proba(GaussianNB(), X, y, cv=3, random_state=seed)
    from_frame = out_of_fold_proba(GaussianNB(), pd.DataFrame(X), pd.Series(y), cv=3,
                                   random_state=seed)
    from_list = out_of_fold_proba(GaussianNB(), X.tolist(), y.tolist(), cv=3, random_state=seed)
    np.testing.assert_allclose(from_frame, reference)
    np.testing.assert_allclose(from_list, reference)


def test_rare_class_lowers_the_number_of_folds_with_a_warning(seed):
    X, y = blobs([0, 1, 2], seed=seed)
    keep = np.r_[np.flatnonzero(y != 2), np.flatnonzero(y == 2)[:3]]
    X, y = X[keep], y[keep]
    folds = []
    with pytest.warns(UserWarning, match=r"class 2 has 3 samples, fewer than cv=5 folds; using 3"):
        proba = out_of_fold_proba(LogisticRegression(), X, y, cv=5, random_state=seed,
                                  callback=lambda i, n, info: folds.append(n))
    assert folds == [3, 3, 3]
    assert np.mean(proba.argmax(axis=1) == y) > 0.95


def test_single_sample_class_is_an_error(seed):
    X, y = blobs([0, 1], seed=seed)
    X, y = np.r_[X, [[0.0, 0.0]]], np.r_[y, 7]
    with pytest.raises(InputError, match=r"^class 7 has 1 sample; out-of-fold predictions need at "
                                         r"least 2 per class: label more or drop it\.$"):
        out_of_fold_proba(LogisticRegression(), X, y, cv=5, random_state=seed)


def test_bad_input_gives_one_clear_line(digits_flat):
    X, y = digits_flat[0][:100], digits_flat[1][:100]
    lr = LogisticRegression()
    with pytest.raises(InputError, match="X is length 100 and y is length 99"):
        out_of_fold_proba(lr, X, y[:99])
    X_nan = X.copy()
    X_nan[3, 5] = np.nan
    with pytest.raises(InputError, match="X contains NaN or infinity in 1 sample"):
        out_of_fold_proba(lr, X_nan, y)
    y_unlabeled = y.copy()
    y_unlabeled[0] = -1
    with pytest.raises(InputError, match="y contains the label -1"):
        out_of_fold_proba(lr, X, y_unlabeled)
    for bad_cv in (1, 0, "5", 2.5, True):
        with pytest.raises(InputError,
                           match=r"'cv' parameter of out_of_fold_proba must be an int >= 2"):
            out_of_fold_proba(lr, X, y, cv=bad_cv)
    with pytest.raises(InputError,
                       match=r"^LinearSVC has no predict_proba.*CalibratedClassifierCV"):
        out_of_fold_proba(LinearSVC(), X, y)
    with pytest.raises(InputError, match="estimator must be a scikit-learn estimator"):
        out_of_fold_proba(object(), X, y)
    with pytest.raises(InputError, match="y holds a single class"):
        out_of_fold_proba(lr, X, np.zeros(100, dtype=int))
    # A splitter whose test folds overlap would predict some samples twice.
    groups = np.arange(100) % 5
    bad_splits = [(np.flatnonzero(groups != 0), np.flatnonzero(groups <= 1))] * 2

    class OverlappingSplitter(GroupKFold):
        def split(self, X, y=None, groups=None):
            return iter(bad_splits)

    with pytest.raises(InputError, match="in no test fold or in several"):
        out_of_fold_proba(lr, X, y, cv=OverlappingSplitter(2))


@pytest.mark.slow
def test_convnet_classifier_out_of_fold(mnist_small, seed):
    if importlib.util.find_spec("pseudolabel.models.cnn") is None:
        pytest.skip("pseudolabel.models.cnn (ConvNetClassifier) is not written yet")
    from pseudolabel.models import ConvNetClassifier

    x_train, y_train = mnist_small[0][:600], mnist_small[1][:600]
    params = ConvNetClassifier().get_params()
    # 2 epochs of 300 images are few steps: min_steps gives the model enough updates to learn.
    wanted = {"epochs": 2, "random_state": seed, "min_steps": 50, "batch_size": 32, "augment": None}
    kwargs = {k: v for k, v in wanted.items() if k in params}
    proba = out_of_fold_proba(ConvNetClassifier(**kwargs), x_train, y_train, cv=2,
                              random_state=seed)
    assert proba.shape == (600, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-4)
    assert np.mean(proba.argmax(axis=1) == y_train) > 0.6  # chance is 0.1


# -- class names and chaining ----------------------------------------------------------------------

def test_string_labels_give_columns_in_sorted_name_order(seed):
    X, y = blobs([0, 1, 2], seed=seed)
    names = np.array(["zebra", "ant", "mole"])  # sorted: ant, mole, zebra
    by_code = out_of_fold_proba(LogisticRegression(), X, y, cv=3, random_state=seed)
    for y_named in (names[y], names[y].astype(object), pd.Series(names[y])):
        proba = out_of_fold_proba(LogisticRegression(), X, y_named, cv=3, random_state=seed)
        # column k is the k-th name in sorted order: ant (code 1), mole (2), zebra (0)
        np.testing.assert_allclose(proba, by_code[:, [1, 2, 0]], atol=1e-8)
    wider = out_of_fold_proba(LogisticRegression(), X, names[y], cv=3, random_state=seed,
                              classes=["ant", "bee", "mole", "zebra"])
    assert wider.shape == (len(y), 4) and np.all(wider[:, 1] == 0)
    np.testing.assert_allclose(wider[:, [0, 2, 3]], by_code[:, [1, 2, 0]], atol=1e-8)


def test_string_label_errors_name_the_class(seed):
    X, y = blobs([0, 1], seed=seed)
    names = np.array(["cat", "dog"])[y]
    with pytest.raises(InputError, match=r"^y holds the label 'dog', which classes=\['cat', 'eel'\] lacks"):
        out_of_fold_proba(LogisticRegression(), X, names, classes=["cat", "eel"])
    with pytest.raises(InputError, match=r"^classes must hold names \(strings\) like y"):
        out_of_fold_proba(LogisticRegression(), X, names, classes=[0, 1])
    with pytest.raises(InputError, match=r"^class 'eel' has 1 sample"):
        out_of_fold_proba(LogisticRegression(), np.r_[X, [[0.0, 0.0]]], np.append(names, "eel"))
    with pytest.raises(InputError, match=r"^y mixes class names with int values"):
        out_of_fold_proba(LogisticRegression(), X, np.array(list(names[:-1]) + [3], dtype=object))


def test_sparse_and_coo_X_match_dense(seed):
    import scipy.sparse as sparse

    X, y = blobs([0, 1, 2], seed=seed)
    dense = out_of_fold_proba(LogisticRegression(), X, y, cv=3, random_state=seed)
    for fmt in (sparse.csr_matrix, sparse.coo_matrix, sparse.csc_array):
        np.testing.assert_allclose(out_of_fold_proba(LogisticRegression(), fmt(X), y, cv=3, random_state=seed),
                                   dense, atol=1e-6)
    X_nan = sparse.csr_matrix(np.where(np.arange(X.size).reshape(X.shape) == 3, np.nan, X))
    with pytest.raises(InputError, match=r"^X contains NaN or infinity in 1 sample"):
        out_of_fold_proba(LogisticRegression(), X_nan, y)
