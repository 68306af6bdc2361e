"""SelfTraining and out_of_fold_proba on the inputs scikit-learn's SelfTrainingClassifier takes
(sparse TF-IDF matrices, data frames with named columns, texts through a pipeline, string class
names), and the default selection: adaptive for any model but the CNN, plain threshold for it."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.semi_supervised import SelfTrainingClassifier

from pseudolabel.crossval import out_of_fold_proba
from pseudolabel.exceptions import InputError
from pseudolabel.models import ConvNetClassifier
from pseudolabel.selftrain import SelfTraining

TOPICS = {
    "food": "recipe oven flour sauce chef bake garlic pan dinner butter".split(),
    "money": "market stock bank price investor profit fund trade loan budget".split(),
    "sport": "goal match team coach league striker referee season stadium penalty".split(),
    "tech": "software chip server cloud code device network laptop robot update".split(),
}
NOISE = "the a of to in and is for on with was new year day city report today people time week".split()


def make_texts(n_per_topic: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Short documents: 3-4 words of their topic, 1-2 of another (a topic word alone does not
    decide) and 5-8 shared noise words, so a model on 40 labels is mostly right but unsure (its
    highest probability on the pool is about 0.6)."""
    rng = np.random.default_rng(seed)
    names = sorted(TOPICS)
    docs, labels = [], []
    for i in range(n_per_topic * len(names)):
        c = i % len(names)
        other = names[(c + 1 + rng.integers(len(names) - 1)) % len(names)]
        tokens = (list(rng.choice(TOPICS[names[c]], rng.integers(3, 5)))
                  + list(rng.choice(TOPICS[other], rng.integers(1, 3)))
                  + list(rng.choice(NOISE, rng.integers(5, 9))))
        rng.shuffle(tokens)
        docs.append(" ".join(tokens))
        labels.append(names[c])
    return docs, np.array(labels)


def partial(labels: np.ndarray, n_labeled: int, seed: int) -> np.ndarray:
    """Names with -1 (the integer, in an object array) for all but ``n_labeled`` stratified rows."""
    keep, _ = train_test_split(np.arange(len(labels)), train_size=n_labeled, stratify=labels, random_state=seed)
    out = np.full(len(labels), -1, dtype=object)
    out[keep] = labels[keep]
    return out


@pytest.fixture(scope="module")
def text_split():
    docs, y = make_texts(150, 0)
    test_docs, y_test = make_texts(50, 1)
    return docs, y, partial(y, 40, 0), test_docs, y_test


# -- inputs ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", [sp.csr_matrix, sp.csr_array, sp.coo_matrix])
def test_sparse_tfidf_through_fit_predict_and_out_of_fold(text_split, fmt):
    docs, y, yp, test_docs, y_test = text_split
    vec = TfidfVectorizer().fit(docs)
    X, X_test = fmt(vec.transform(docs)), fmt(vec.transform(test_docs))
    st = SelfTraining(LogisticRegression(), max_iter=2).fit(X, yp)
    assert st.predict(X_test).shape == (len(y_test),) and set(st.predict(X_test)) <= set(TOPICS)
    assert st.predict_proba(X_test).shape == (len(y_test), 4)
    given = np.array([v != -1 for v in yp.tolist()])
    proba = out_of_fold_proba(LogisticRegression(), X[np.flatnonzero(given)] if fmt is not sp.coo_matrix
                              else sp.csr_matrix(X)[np.flatnonzero(given)], yp[given].astype(str), cv=3,
                              random_state=0)
    assert proba.shape == (40, 4) and np.allclose(proba.sum(axis=1), 1)
    dense = SelfTraining(LogisticRegression(), max_iter=2).fit(X.toarray(), yp)
    np.testing.assert_array_equal(st.transduction_, dense.transduction_)  # sparse = dense, row for row


def test_sparse_nan_still_one_line(text_split):
    docs, _, yp, _, _ = text_split
    X = TfidfVectorizer().fit_transform(docs).tocsr()
    X.data[0] = np.nan
    with pytest.raises(InputError, match=r"^X contains NaN or infinity in 1 sample"):
        SelfTraining(LogisticRegression()).fit(X, yp)


def test_data_frame_with_named_columns():
    X, y = load_wine(return_X_y=True, as_frame=True)
    X = X.set_axis(np.arange(1000, 1000 + len(X)))  # an index that is not 0..n-1
    yp = np.where(np.arange(len(y)) % 6 == 0, y.to_numpy(), -1)
    model = make_pipeline(StandardScaler(), LogisticRegression())
    st = SelfTraining(model, max_iter=3).fit(X, yp)
    assert list(st.feature_names_in_) == list(X.columns)
    assert np.mean(st.predict(X) == y.to_numpy()) > 0.85
    with pytest.raises(InputError, match="feature names|columns"):
        st.predict(X[X.columns[::-1]])
    proba = out_of_fold_proba(model, X, y, cv=3, random_state=0)
    assert proba.shape == (len(X), 3)
    nullable = X.astype("Float64")
    nullable.iloc[4, 2] = pd.NA
    with pytest.raises(InputError, match=r"^X contains NaN or infinity in 1 sample"):
        SelfTraining(model).fit(nullable, yp)


def test_nan_goes_on_to_a_model_that_takes_it():
    X, y = load_wine(return_X_y=True)
    X = X.copy()
    X[::7, 3] = np.nan  # HistGradientBoosting handles missing values itself (allow_nan), as in STC
    yp = np.where(np.arange(len(y)) % 3 == 0, y, -1)
    st = SelfTraining(HistGradientBoostingClassifier(max_iter=20, random_state=0), max_iter=2).fit(X, yp)
    assert st.predict(X).shape == (len(y),)
    proba = out_of_fold_proba(HistGradientBoostingClassifier(max_iter=20), X, y, cv=3, random_state=0)
    assert proba.shape == (len(y), 3)
    with pytest.raises(InputError, match=r"^X contains NaN or infinity in 26 sample"):
        SelfTraining(LogisticRegression()).fit(X, yp)


def test_texts_as_list_array_and_series_with_a_pipeline(text_split):
    docs, y, yp, test_docs, y_test = text_split
    pipe = make_pipeline(TfidfVectorizer(), LogisticRegression())
    results = []
    for X in (docs, np.array(docs), np.array(docs, dtype=object), pd.Series(docs, dtype="string")):
        st = SelfTraining(pipe, max_iter=2).fit(X, yp)
        results.append(st.transduction_)
        assert set(st.predict(test_docs)) <= set(TOPICS)
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
    given = np.flatnonzero(np.array([v != -1 for v in yp.tolist()]))
    for X in (docs, pd.Series(docs, dtype="string")):
        proba = out_of_fold_proba(pipe, [docs[i] for i in given] if isinstance(X, list) else X.iloc[given],
                                  pd.Series(yp[given].astype(str), dtype="string"), cv=3, random_state=0)
        assert proba.shape == (40, 4)


def test_string_class_names_round_trip(text_split):
    docs, y, yp, test_docs, _ = text_split
    st = SelfTraining(make_pipeline(TfidfVectorizer(), LogisticRegression()), max_iter=2).fit(docs, yp)
    assert st.classes_.tolist() == sorted(TOPICS)
    taken = st.transduction_ != -1
    assert set(st.transduction_[taken].tolist()) <= set(TOPICS)
    assert np.all(st.transduction_[np.array([v != -1 for v in yp.tolist()])] == yp[yp != -1])


# -- the default selection -------------------------------------------------------------------------

def test_adaptive_default_adds_labels_where_threshold_added_none_and_gains(text_split):
    docs, y, yp, test_docs, y_test = text_split
    vec = TfidfVectorizer().fit(docs)
    X, X_test = vec.transform(docs), vec.transform(test_docs)
    given = np.array([v != -1 for v in yp.tolist()])
    supervised = LogisticRegression().fit(X[np.flatnonzero(given)], yp[given].astype(str))
    plain = SelfTraining(LogisticRegression(), threshold=0.75, criterion="threshold").fit(X, yp)
    assert plain.criterion_ == "threshold"
    assert plain.termination_condition_ == "no_change" and plain.history_[-1]["n_pseudo"] == 0
    auto = SelfTraining(LogisticRegression()).fit(X, yp, y_true=y)
    assert auto.criterion_ == "adaptive" and auto.temperature_ < 1  # sharpened: the model is underconfident
    assert auto.history_[-1]["n_pseudo"] > 200
    taken = auto.labeled_iter_ > 0
    assert np.mean(auto.transduction_[taken] == y[taken]) > 0.85
    acc_sup = np.mean(supervised.predict(X_test) == y_test)
    acc_auto = np.mean(auto.predict(X_test) == y_test)
    assert acc_auto > acc_sup + 0.03, (acc_sup, acc_auto)
    # Each round takes at most its per-class quota (10 % of the pool, split like the given labels).
    assert max(r["n_added"] for r in auto.history_) <= int(np.ceil(0.1 * (~given).sum() / 4)) * 4


def test_explicit_settings_are_what_they_say(text_split):
    docs, _, yp, _, _ = text_split
    X = TfidfVectorizer().fit_transform(docs)
    assert SelfTraining(LogisticRegression(), threshold=0.9, max_iter=0).fit(X, yp).criterion_ == "threshold"
    assert SelfTraining(LogisticRegression(), calibration="temperature", max_iter=0).fit(X, yp).criterion_ == \
        "threshold"
    assert SelfTraining(LogisticRegression(), criterion="k_best", max_iter=0).fit(X, yp).criterion_ == "k_best"
    st = SelfTraining(LogisticRegression(), threshold=0.3, max_iter=1).fit(X, yp)
    taken = st.labeled_iter_ == 1
    assert taken.any() and np.all(st.label_confidence_[taken] > 0.3)  # raw probabilities, as given
    with pytest.raises(InputError, match=r"^The 'criterion' parameter of SelfTraining must be one of"):
        SelfTraining(LogisticRegression(), criterion="best").fit(X, yp)


def test_adaptive_with_one_label_in_a_class_runs_uncalibrated():
    X, y = load_wine(return_X_y=True)
    yp = np.full(len(y), -1)
    for c, n in ((0, 1), (1, 3), (2, 3)):
        yp[np.flatnonzero(y == c)[:n]] = c
    st = SelfTraining(make_pipeline(StandardScaler(), LogisticRegression()), max_iter=2).fit(X, yp)
    assert st.criterion_ == "adaptive" and st.temperature_ == 1.0 and st.n_iter_ >= 1


def test_convnet_keeps_plain_threshold(digits):
    X, y = digits[0][:200], digits[1][:200]
    yp = np.where(np.arange(len(y)) % 4 == 0, y, -1)
    cnn = ConvNetClassifier(epochs=1, min_steps=15, random_state=0)
    default = SelfTraining(cnn, max_iter=1).fit(X, yp)
    explicit = SelfTraining(clone(cnn), threshold=0.95, criterion="threshold", max_iter=1).fit(X, yp)
    assert default.criterion_ == "threshold" and not hasattr(default, "temperature_")
    assert [r["threshold"] for r in default.history_[1:]] in ([], [0.95])
    assert default.termination_condition_ == explicit.termination_condition_
    np.testing.assert_array_equal(default.transduction_, explicit.transduction_)
    np.testing.assert_array_equal(default.label_confidence_, explicit.label_confidence_)
    assert SelfTraining().get_params()["criterion"] == "auto"


def test_adaptive_resumes_to_the_same_labels(text_split):
    docs, _, yp, _, _ = text_split
    X = TfidfVectorizer().fit_transform(docs)
    full = SelfTraining(LogisticRegression(), max_iter=4).fit(X, yp)
    states = []
    SelfTraining(LogisticRegression(), max_iter=2, callback=lambda st, rec: states.append(st.get_state())).fit(X, yp)
    resumed = SelfTraining(LogisticRegression(), max_iter=4).fit(X, yp, resume=states[-1])
    np.testing.assert_array_equal(resumed.transduction_, full.transduction_)
    assert [r["n_added"] for r in resumed.history_] == [r["n_added"] for r in full.history_]


def test_auto_keeps_scikit_learns_threshold_for_a_confident_model():
    """criterion="auto" with a model confident on most of the pool (logistic regression on
    breast_cancer, 57 labels): scikit-learn's plain 0.75, the same labels as SelfTrainingClassifier;
    a resumed run keeps that choice."""
    X, y = load_breast_cancer(return_X_y=True)
    yp = np.full(len(y), -1)
    rows = np.random.default_rng(0).permutation(len(y))[:57]
    yp[rows] = y[rows]
    model = make_pipeline(StandardScaler(), LogisticRegression())
    auto = SelfTraining(clone(model)).fit(X, yp)
    sk = SelfTrainingClassifier(clone(model)).fit(X, yp)
    assert auto.criterion_ == "threshold" and auto.history_[1]["threshold"] == 0.75
    assert auto.history_[1]["n_added"] > 0.7 * (len(y) - 57)  # most of the pool at once
    np.testing.assert_array_equal(auto.transduction_, sk.transduction_)
    np.testing.assert_array_equal(auto.predict(X), sk.predict(X))
    states = []
    SelfTraining(clone(model), max_iter=1, callback=lambda st, rec: states.append(st.get_state())).fit(X, yp)
    resumed = SelfTraining(clone(model)).fit(X, yp, resume=states[-1])
    assert resumed.criterion_ == "threshold"
    np.testing.assert_array_equal(resumed.transduction_, auto.transduction_)
