"""Training sized by the data (epochs="auto", early stopping on a validation split, a time budget)
and the estimated number of wrong labels (issue 13): on digits and a slice of MNIST."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from pseudolabel import out_of_fold_proba
from pseudolabel.datasets import inject_noise
from pseudolabel.exceptions import InputError
from pseudolabel.issues import estimate_label_errors
from pseudolabel.jobs.config import CleanConfig, parse_duration
from pseudolabel.models.cnn import ConvNetClassifier
from pseudolabel.models.training import AUTO_EPOCHS, planned_epochs


def test_auto_epochs_give_small_data_more_passes_and_large_data_fewer():
    small, large = planned_epochs("auto", 2_000), planned_epochs("auto", 60_000)
    assert small > large >= AUTO_EPOCHS[0]
    # steps per sample: 2,000 images are seen many more times each than 60,000
    assert small / large >= 10
    assert planned_epochs(7, 2_000) == 7
    assert planned_epochs("auto", 10) == AUTO_EPOCHS[1]


@pytest.fixture(scope="module")
def mnist_2k(mnist_small):
    X, y = mnist_small[0][:2000], mnist_small[1][:2000]
    return X, y


def test_fit_with_auto_epochs_trains_more_steps_per_sample_on_fewer_images(digits):
    X, y = digits
    big_X, big_y = np.concatenate([X] * 4), np.concatenate([y] * 4)  # 7,188 images
    fits = {}
    for n in (300, len(big_y)):
        m = ConvNetClassifier(arch="fast", epochs="auto", augment=None, batch_size=64, random_state=0,
                              device="cpu", budget=0.5)  # the budget keeps the test short
        fits[n] = m.fit(big_X[:n], big_y[:n])
    few, many = fits[300], fits[len(big_y)]
    # epochs are passes over the data: steps per sample
    assert few.planned_epochs_ > many.planned_epochs_ >= AUTO_EPOCHS[0]
    assert few.planned_epochs_ * 300 < many.planned_epochs_ * len(big_y) * 1.5  # not more samples in all
    assert len(many.history_) < many.planned_epochs_  # and the budget cut the large fit


def test_early_stopping_holds_out_a_split_keeps_the_best_epoch_and_reports_it(digits):
    X, y = digits
    m = ConvNetClassifier(arch="fast", epochs=40, validation_fraction=0.15, patience=2, augment=None,
                          batch_size=64, random_state=0, device="cpu")
    m.fit(X[:900], y[:900])
    hist = m.history_
    assert all("val_accuracy" in r for r in hist)
    assert len(hist) < 40, "a 900-image fit should plateau well before 40 epochs"
    assert 1 <= m.best_epoch_ <= m.stopped_epoch_ == len(hist)
    assert m.validation_accuracy_ == pytest.approx(hist[m.best_epoch_ - 1]["val_accuracy"])
    # the restored weights are the best epoch's: their accuracy on held-out digits is sound
    assert np.mean(m.predict(X[1200:]) == y[1200:]) > 0.9
    assert not hasattr(m, "_val")  # the split is not pickled with the model


def test_a_budget_cuts_the_planned_epochs(digits):
    X, y = digits
    m = ConvNetClassifier(arch="fast", epochs=500, augment=None, batch_size=32, random_state=0, device="cpu",
                          budget=1.0)
    m.fit(X[:1000], y[:1000])
    assert len(m.history_) < 500
    assert m.history_[-1]["epochs"] == len(m.history_)


@pytest.mark.parametrize("params, message", [
    ({"epochs": "many"}, "'epochs'"),
    ({"validation_fraction": 1.0}, "'validation_fraction'"),
    ({"patience": 0}, "'patience'"),
    ({"budget": -1}, "'budget'"),
])
def test_bad_sizing_parameters_are_refused_in_one_line(params, message):
    with pytest.raises(InputError, match=message):
        ConvNetClassifier(**params).check_params()


def test_budget_durations_parse_and_bad_ones_are_refused():
    assert parse_duration("10m") == 600 and parse_duration("90s") == 90 and parse_duration("1.5h") == 5400
    assert parse_duration(30) == 30
    for bad in ("soon", "-5m", "0"):
        with pytest.raises(InputError, match="budget"):
            parse_duration(bad)
    assert CleanConfig.coerce({"data": "digits", "budget": "2m"}).budget == 120
    assert CleanConfig.coerce({"data": "digits", "epochs": "auto"}).model["epochs"] == "auto"


# -------------------------------------------------------------------------- wrong-label count

@pytest.fixture(scope="module")
def digits_flat():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


@pytest.mark.parametrize("rate, seed", [(0.01, 5), (0.05, 6)])
def test_estimated_count_of_wrong_labels_is_near_the_truth_with_an_interval(digits_flat, rate, seed):
    X, y = digits_flat
    y_noisy, noisy = inject_noise(y, rate, random_state=seed)
    proba = out_of_fold_proba(LogisticRegression(max_iter=500), X, y_noisy, cv=5, random_state=0)
    est = estimate_label_errors(y_noisy, proba, n_draws=40)
    true = int(noisy.sum())
    assert est.low <= est.count <= est.high
    # within the interval widened by the model's own confident mistakes (logistic regression is
    # 97 % accurate on digits: a handful of its errors look like wrong labels)
    assert est.low - 3 <= true <= est.high + 3
    assert abs(est.count - true) <= max(4, 0.15 * true)
    assert sum(est.per_class.values()) == pytest.approx(est.count)
    assert "estimated wrong labels" in est.line()


def test_estimate_names_bad_input(digits_flat):
    X, y = digits_flat
    proba = np.full((len(y), 10), 0.1)
    with pytest.raises(InputError, match="confidence"):
        estimate_label_errors(y, proba, confidence=1.5)
    with pytest.raises(InputError, match="n_draws"):
        estimate_label_errors(y, proba, n_draws=0)
    with pytest.raises(InputError, match="pred_probs"):
        estimate_label_errors(y, proba[:10])


# --------------------------------------------------------------------- the round a split picks

def test_selftrain_scores_every_round_on_labels_set_aside_and_keeps_the_best(tmp_path):
    import json

    from pseudolabel.jobs.selftrain import run_selftrain, validation_rows
    from pseudolabel.store import LabelStore

    lines = []
    config = dict(data="digits", labeled=60, validation=0.25, max_iter=2, epochs=2, min_steps=30, seed=0,
                  threshold=0.9, device="cpu")
    result = run_selftrain(config, tmp_path / "st", say=lines.append)
    history = [json.loads(x) for x in (tmp_path / "st" / "history.jsonl").read_text().splitlines()]
    rounds = [r for r in history if "round" in r]
    assert rounds and all("val_accuracy" in r for r in rounds)
    best = max(r["val_accuracy"] for r in rounds)
    picked = [r for r in rounds if r["val_accuracy"] == best][-1]  # a tie goes to the later round
    assert result.test_accuracy == pytest.approx(picked["test_accuracy"])
    note = next(line for line in lines if "set aside to pick the round" in line)
    n_aside = int(note.split("note: ")[1].split(" of ")[0])
    assert 10 <= n_aside <= 20  # a quarter of each class's 6 labels, rounded
    # the run trained on the rest and the store never saw the ones set aside
    assert rounds[0]["n_labeled"] == 60 - n_aside
    current = LabelStore(tmp_path / "st" / "labels.db").current_labels(split="train")
    assert int((current["source"] == "given").sum()) == 60 - n_aside
    # the split is the same on every resume and leaves a label of each class to train on
    y = np.repeat(np.arange(3), [1, 4, 8])
    keep, val = validation_rows(y, 0.5, 0)
    assert set(np.unique(y[keep])) == {0, 1, 2} and len(val) == 2 + 4
    assert np.array_equal(validation_rows(y, 0.5, 0)[1], val)
    assert validation_rows(np.array([0, 1, 2]), 0.5, 0) is None


def test_sized_arch_takes_the_wide_network_for_small_sets_of_large_enough_images(mnist_small, digits):
    X, y = mnist_small[0][:64], mnist_small[1][:64]
    m = ConvNetClassifier(arch="sized", epochs=1, augment=None, random_state=0, device="cpu").fit(X, y)
    assert m.arch_ == "wide"
    Xd, yd = digits
    d = ConvNetClassifier(arch="sized", epochs=1, augment=None, random_state=0, device="cpu").fit(Xd[:64], yd[:64])
    assert d.arch_ == "fast"  # 8x8 digits: the pooled network, as arch="auto" picks
    # the wide network's epochs count double in the epochs="auto" plan
    assert planned_epochs("auto", 6750, 2.0) == 9 and planned_epochs("auto", 6750) == 18
