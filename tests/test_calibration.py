"""Calibration: temperature scaling, ECE, thresholds for a target precision, and SelfTraining's
``calibration`` / ``target_precision`` options on digits with logistic regression."""
from __future__ import annotations

import io
import subprocess
import sys

import joblib
import numpy as np
import pytest
from scipy.special import softmax
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedShuffleSplit, train_test_split

from pseudolabel.calibration import (
    apply_temperature, expected_calibration_error, fit_temperature, threshold_for_expected_precision,
    threshold_for_precision, wilson_lower_bound,
)
from pseudolabel.exceptions import InputError
from pseudolabel.selftrain import SelfTraining

CAL_KEYS = {"temperature", "ece_before", "ece_after", "chosen_threshold", "estimated_precision",
            "precision_support", "expected_precision"}


@pytest.fixture(scope="module")
def flat(digits):
    """All of digits as flat [0, 1] vectors."""
    X, y = digits
    return X.reshape(len(X), -1).astype(np.float64) / 16.0, y


def hide(y, fraction, seed):
    """Keep a stratified ``fraction`` of the labels, -1 for the rest."""
    keep = next(StratifiedShuffleSplit(1, train_size=fraction, random_state=seed).split(np.zeros(len(y)), y))[0]
    out = np.full_like(y, -1)
    out[keep] = y[keep]
    return out


def sample_labels(logits, T, rng):
    """One label per row drawn from softmax(logits / T): a model whose true temperature is T."""
    p = softmax(logits / T, axis=1)
    return (rng.random((len(p), 1)) > np.cumsum(p, axis=1)).sum(axis=1)


def added_precision(st, y):
    pseudo = st.labeled_iter_ > 0
    return float(np.mean(st.transduction_[pseudo] == y[pseudo]))


# -- temperature and ECE ---------------------------------------------------------------------------

@pytest.mark.parametrize("T0", [0.5, 2.0, 4.0])
def test_fit_temperature_recovers_a_known_temperature(seed, T0):
    rng = np.random.default_rng(seed)
    z = 3 * rng.normal(size=(4000, 10))
    y = sample_labels(z, T0, rng)
    T = fit_temperature(z, y)
    assert abs(np.log(T / T0)) < 0.1
    # log(softmax(z)) differs from z by a per-row constant, which temperature scaling ignores.
    assert fit_temperature(softmax(z, axis=1), y, from_proba=True) == pytest.approx(T, rel=1e-3)


def test_prior_keeps_the_temperature_finite_when_every_held_out_prediction_is_right(seed):
    rng = np.random.default_rng(seed)
    z = 3 * rng.normal(size=(20, 10))
    y = z.argmax(axis=1)  # separable: the likelihood grows as T falls to 0
    assert fit_temperature(z, y, prior_sd=None) < 0.06
    assert 0.3 < fit_temperature(z, y) < 1.0


def test_apply_temperature_keeps_the_prediction_and_moves_the_confidence(seed):
    p = softmax(2 * np.random.default_rng(seed).normal(size=(500, 5)), axis=1)
    soft, sharp = apply_temperature(p, 2.0), apply_temperature(p, 0.5)
    for q in (soft, sharp):
        np.testing.assert_allclose(q.sum(axis=1), 1.0)
        np.testing.assert_array_equal(q.argmax(axis=1), p.argmax(axis=1))
    assert np.all(soft.max(axis=1) <= p.max(axis=1) + 1e-12) and np.all(sharp.max(axis=1) >= p.max(axis=1) - 1e-12)
    np.testing.assert_allclose(apply_temperature(p, 1.0), p, atol=1e-12)
    z = np.log(p)
    np.testing.assert_allclose(apply_temperature(z, 2.0, from_proba=False), soft)


def test_ece_is_small_for_a_calibrated_model_and_large_for_an_overconfident_one(seed):
    rng = np.random.default_rng(seed)
    z = 2 * rng.normal(size=(20000, 10))
    y = sample_labels(z, 1.0, rng)
    assert expected_calibration_error(softmax(z, axis=1), y) < 0.02
    assert expected_calibration_error(softmax(3 * z, axis=1), y) > 0.1
    # accuracy 0.5 at confidence 0.9 in one bin: ECE 0.4
    assert expected_calibration_error(np.array([[0.9, 0.1], [0.9, 0.1]]), np.array([0, 1])) == pytest.approx(0.4)


@pytest.mark.parametrize("split_seed", [0, 1, 2])
def test_temperature_scaling_lowers_ece_of_an_overconfident_model(flat, split_seed):
    X, y = flat
    # Almost no regularization on 100 samples: logistic regression is overconfident.
    X_fit, X_rest, y_fit, y_rest = train_test_split(X, y, train_size=100, stratify=y, random_state=split_seed)
    X_cal, X_test, y_cal, y_test = train_test_split(X_rest, y_rest, train_size=300, stratify=y_rest,
                                                    random_state=split_seed)
    model = LogisticRegression(C=1e4, max_iter=5000).fit(X_fit, y_fit)
    T = fit_temperature(model.predict_proba(X_cal), y_cal, from_proba=True)
    assert T > 1.5  # softens
    p_test = model.predict_proba(X_test)
    before = expected_calibration_error(p_test, y_test)
    after = expected_calibration_error(apply_temperature(p_test, T), y_test)
    assert after < 0.7 * before


# -- thresholds -------------------------------------------------------------------------------------

def calibrated_sample(rng, n):
    """Confidences in (0.3, 1) and correctness drawn with exactly that probability."""
    conf = rng.uniform(0.3, 1.0, n)
    return conf, rng.random(n) < conf


def precision_above(conf, correct, t):
    return float(correct[conf > t].mean())


def test_threshold_for_precision_meets_the_target_at_the_lowest_threshold(seed):
    rng = np.random.default_rng(seed)
    conf, correct = calibrated_sample(rng, 20000)
    t = threshold_for_precision(conf, correct, target=0.95)
    assert precision_above(conf, correct, t) >= 0.95
    assert (conf > t).sum() >= 10
    lower = conf[conf < t].max()  # the next candidate down misses the target
    assert precision_above(conf, correct, lower) < 0.95
    # Precision = mean confidence above t, so t sits near 0.9 here, and holds on new data.
    assert 0.85 < t < 0.93
    conf2, correct2 = calibrated_sample(rng, 20000)
    assert precision_above(conf2, correct2, t) > 0.94
    # the Wilson bound asks more of the same data
    t_cons = threshold_for_precision(conf, correct, target=0.95, conservative=True)
    assert t_cons >= t
    n, k = (conf > t_cons).sum(), correct[conf > t_cons].sum()
    assert wilson_lower_bound(k, n) >= 0.95


def test_threshold_for_expected_precision_matches_the_achieved_precision_when_calibrated(seed):
    rng = np.random.default_rng(seed)
    conf, _ = calibrated_sample(rng, 20000)
    t = threshold_for_expected_precision(conf, target=0.95)
    assert conf[conf > t].mean() >= 0.95 > conf[conf >= conf[conf < t].max()].mean()
    conf2, correct2 = calibrated_sample(rng, 20000)
    assert precision_above(conf2, correct2, t) == pytest.approx(0.95, abs=0.01)
    assert threshold_for_expected_precision(conf, target=1.0) is None  # not even the top row is sure
    assert threshold_for_expected_precision(conf, target=0.95, min_count=len(conf)) is None


def test_threshold_for_precision_returns_none_when_unreachable():
    conf = np.linspace(1.0, 0.5, 1000, endpoint=False)
    correct = np.arange(1000) % 10 != 0  # the most confident is wrong, then every tenth
    assert threshold_for_precision(conf, correct, target=0.99) is None
    assert threshold_for_precision(conf, correct, target=0.85) is not None
    # 20 right answers cannot show 0.98 once the bound counts their uncertainty
    conf20, right20 = np.linspace(0.99, 0.7, 20), np.ones(20, bool)
    assert threshold_for_precision(conf20, right20, target=0.98) is not None
    assert threshold_for_precision(conf20, right20, target=0.98, conservative=True) is None
    assert threshold_for_precision(conf20, right20, target=0.98, min_count=20) is None
    assert threshold_for_precision(np.array([]), np.array([], bool)) is None


def one_line_error(fn, match):
    with pytest.raises(InputError, match=match) as exc:
        fn()
    assert "\n" not in str(exc.value)


def test_function_input_errors():
    z, y = np.zeros((4, 3)), np.array([0, 1, 2, 0])
    one_line_error(lambda: fit_temperature(z, y[:3]), r"^logits_or_proba and y must be the same length")
    one_line_error(lambda: fit_temperature(z, np.array([0, 1, 3, 0])),
                   r"^y holds the column index 3, but the scores have 3 columns")
    one_line_error(lambda: fit_temperature(np.zeros(4), y), r"^logits_or_proba must be a 2-D array")
    one_line_error(lambda: fit_temperature(z + 2, y, from_proba=True), r"values outside \[0, 1\]")
    one_line_error(lambda: fit_temperature(z, y, prior_sd=0), r"^The 'prior_sd' parameter must be")
    one_line_error(lambda: apply_temperature(z + 0.3, 0.0), r"^The temperature T must be a finite float > 0\. Got 0")
    one_line_error(lambda: expected_calibration_error(z + 0.3, y, n_bins=0), r"^The 'n_bins' parameter")
    one_line_error(lambda: threshold_for_precision(np.ones(3), np.ones(3, bool), target=0),
                   r"^The 'target' parameter must be a float in \(0, 1\]\. Got 0 instead\.$")
    one_line_error(lambda: threshold_for_precision(np.ones(3), np.ones(2, bool)),
                   r"^conf and correct must be the same length")
    one_line_error(lambda: threshold_for_expected_precision(np.ones(3), min_count=0), r"^The 'min_count' parameter")


# -- SelfTraining ----------------------------------------------------------------------------------

def test_target_precision_meets_the_target_on_digits(flat):
    X, y = flat
    achieved = []
    for seed in range(4):
        yp = hide(y, 0.05, seed)
        runs = {}
        for target in (0.8, 0.98):
            st = SelfTraining(LogisticRegression(C=10, max_iter=1000), max_iter=2, target_precision=target)
            runs[target] = st.fit(X, yp, y_true=y)
            assert st.n_iter_ >= 1
            for rec in st.history_[1:]:
                assert CAL_KEYS <= rec.keys()
                assert rec["chosen_threshold"] == rec["threshold"]
                assert rec["temperature"] > 0  # target_precision fits it even without calibration=
                assert rec["expected_precision"] >= target - 1e-9
                taken = st.labeled_iter_ == rec["round"]
                assert np.all(st.label_confidence_[taken] > rec["threshold"])
        high, low = runs[0.98], runs[0.8]
        # the same round-0 model: a higher target can only raise round 1's threshold
        assert high.history_[1]["threshold"] > low.history_[1]["threshold"]
        assert added_precision(high, y) > added_precision(low, y)
        achieved.append(added_precision(high, y))
    # Measured over 8 seeds: 0.949 to 0.996, mean 0.982 (the held-out share alone: mean 0.945).
    assert min(achieved) >= 0.93
    assert np.mean(achieved) >= 0.96


def test_calibration_never_reads_y_true(flat):
    X, y = flat
    yp = hide(y, 0.05, 1)

    def fit(y_true):
        return SelfTraining(LogisticRegression(C=10, max_iter=1000), max_iter=2, target_precision=0.95,
                            calibration="temperature").fit(X, yp, y_true=y_true)

    right, wrong, none = fit(y), fit((y + 1) % 10), fit(None)
    assert right.history_[1]["added_accuracy"] > 0.9 and wrong.history_[1]["added_accuracy"] == 0.0
    for other in (wrong, none):
        for a, b in zip(right.history_, other.history_):
            assert {k: a[k] for k in CAL_KEYS} == {k: b[k] for k in CAL_KEYS}
        np.testing.assert_array_equal(right.transduction_, other.transduction_)


def test_held_out_rows_keep_their_label_but_are_not_fit_on(flat):
    X, y = flat
    yp = hide(y, 0.05, 0)
    sizes = []

    class CountingLR(LogisticRegression):
        def fit(self, X, y, sample_weight=None):
            sizes.append(len(y))
            return super().fit(X, y, sample_weight=sample_weight)

    st = SelfTraining(CountingLR(C=10, max_iter=1000), threshold=0.95, max_iter=2, calibration="temperature")
    st.fit(X, yp)
    held = st.held_out_
    given = yp != -1
    assert np.all(given[held])
    for c in np.unique(yp[given]):  # stratified: about a fifth of each class, and never a whole class
        n_c, held_c = np.sum(yp == c), np.sum(yp[held] == c)
        assert held_c == min(n_c - 1, int(np.floor(0.2 * n_c + 0.5)))
    assert np.all(st.labeled_iter_[held] == 0) and np.array_equal(st.transduction_[held], yp[held])
    assert sizes[0] == given.sum() - len(held)
    for size, rec in zip(sizes[1:], st.history_[1:]):
        assert size == rec["n_labeled"] - len(held)
    # the same rows on a second fit (a resumed run relies on it)
    np.testing.assert_array_equal(SelfTraining(LogisticRegression(), calibration="temperature", max_iter=0)
                                  .fit(X, yp).held_out_, held)


def test_resume_holds_out_the_same_rows(flat):
    X, y = flat
    yp = hide(y, 0.05, 2)
    saved = {}

    def snapshot(est, rec):
        if rec["round"] == 1:
            buf = io.BytesIO()
            joblib.dump(est.get_state(), buf)  # as the job saves after every round
            saved["state"] = buf.getvalue()

    def make(callback=None):
        return SelfTraining(LogisticRegression(C=10, max_iter=1000), max_iter=3, target_precision=0.95,
                            callback=callback)

    full = make(snapshot).fit(X, yp)
    assert full.n_iter_ >= 2
    resumed = make().fit(X, yp, resume=joblib.load(io.BytesIO(saved["state"])))
    strip = [[{k: v for k, v in r.items() if k != "seconds"} for r in h] for h in (full.history_, resumed.history_)]
    assert strip[0] == strip[1]
    np.testing.assert_array_equal(full.transduction_, resumed.transduction_)


def test_temperature_changes_the_labels_taken_by_an_overconfident_model(flat):
    X, y = flat
    yp = hide(y, 0.1, 0)
    common = dict(threshold=0.95, max_iter=1)
    plain = SelfTraining(LogisticRegression(C=1e4, max_iter=5000), **common).fit(X, yp, y_true=y)
    cal = SelfTraining(LogisticRegression(C=1e4, max_iter=5000), calibration="temperature", **common)
    cal.fit(X, yp, y_true=y)
    rec = cal.history_[1]
    assert rec["temperature"] > 1.5
    assert rec["chosen_threshold"] == 0.95 and rec["ece_after"] is not None
    assert rec["n_added"] < plain.history_[1]["n_added"]
    assert rec["added_accuracy"] > plain.history_[1]["added_accuracy"]


def test_without_the_options_nothing_is_held_out(flat):
    X, y = flat
    yp = hide(y, 0.05, 0)
    a = SelfTraining(LogisticRegression(C=10, max_iter=1000), threshold=0.9, max_iter=2).fit(X, yp)
    b = SelfTraining(LogisticRegression(C=10, max_iter=1000), threshold=0.9, max_iter=2,
                     validation_fraction=0.5).fit(X, yp)
    assert len(a.held_out_) == 0
    np.testing.assert_array_equal(a.transduction_, b.transduction_)
    assert not any(CAL_KEYS & rec.keys() for rec in a.history_)


def test_too_few_held_out_labels_stop_before_the_first_round(flat):
    X, y = flat
    yp = hide(y, 0.05, 0)  # about 9 per class: 0.1 holds out 1 each, 10 in all
    st = SelfTraining(LogisticRegression(C=10, max_iter=1000), target_precision=0.9, validation_fraction=0.1)
    st.fit(X, yp)
    assert len(st.held_out_) == 10
    assert st.termination_condition_ == "precision_unreachable"
    assert st.n_iter_ == 0 and np.all(st.labeled_iter_ <= 0)


@pytest.mark.parametrize("params, message", [
    (dict(calibration="platt"), "The 'calibration' parameter of SelfTraining must be None or 'temperature'. "
                                "Got 'platt' instead."),
    (dict(target_precision=1.5), "The 'target_precision' parameter of SelfTraining must be a float in (0, 1] "
                                 "or None. Got 1.5 instead."),
    (dict(target_precision=0), "The 'target_precision' parameter of SelfTraining must be a float in (0, 1] "
                               "or None. Got 0 instead."),
    (dict(target_precision=True), "The 'target_precision' parameter of SelfTraining must be a float in (0, 1] "
                                  "or None. Got True instead."),
    (dict(target_precision=0.99, criterion="k_best"),
     "The 'target_precision' parameter of SelfTraining picks each round's threshold, so it needs "
     "criterion='threshold'. Got criterion='k_best' instead."),
    (dict(validation_fraction=1.0), "The 'validation_fraction' parameter of SelfTraining must be a float in (0, 1). "
                                    "Got 1.0 instead."),
    (dict(validation_fraction="0.2"), "The 'validation_fraction' parameter of SelfTraining must be a float in "
                                      "(0, 1). Got '0.2' instead."),
])
def test_bad_params(flat, params, message):
    X, y = flat
    st = SelfTraining(LogisticRegression(), **params)  # __init__ only stores
    with pytest.raises(InputError) as exc:
        st.fit(X, hide(y, 0.05, 0))
    assert str(exc.value) == message


def test_one_label_per_class_cannot_be_held_out(flat):
    X, y = flat
    yp = np.full_like(y, -1)
    first = [np.flatnonzero(y == c)[0] for c in range(10)]
    yp[first] = y[first]
    one_line_error(lambda: SelfTraining(LogisticRegression(), calibration="temperature").fit(X, yp),
                   r"^validation_fraction=0\.2 holds out none of the 10 given labels, .*label at least 2 samples "
                   r"per class or raise validation_fraction\.$")


def test_calibration_does_not_import_torch():
    code = "import sys, pseudolabel.calibration, pseudolabel.selftrain; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
