"""The noise model behind the cleaning methods: cleanlab's confident joint (how many labels of each
given class are probably some other class), the noise matrix it implies, and the posterior over
each sample's true class given the model's probabilities and its given label.

Functions over already-checked arrays: ``columns`` are the given labels as column indices of
``probs`` (n_samples, n_classes), probabilities as float64. The public, checking entry points are
in :mod:`pseudolabel.issues`.
"""
from __future__ import annotations

import numpy as np

# The noise matrix's pseudo-count per cell when counting wrong labels. Chosen on scikit-learn's
# digits with out-of-fold logistic regression (97 % accurate), noise draws 1 and 3 at 0-5 %
# symmetric noise: pseudo-counts 1 / 0.1 / 0.01 estimated 28 / 20 / 18 wrong labels where 18 were
# flipped (0 %: 10 / 4 / 2; 5 %: 102 / 94 / 91 of 90). MNIST's benchmark draws were not looked at.
COUNT_PSEUDO = 0.01

__all__ = ["COUNT_PSEUDO", "normalized_margin_score", "confident_joint", "noise_matrix", "fit_noise_temperature",
           "noise_posterior", "wrong_label_draws", "estimated_issue_counts"]


def normalized_margin_score(columns: np.ndarray, probs: np.ndarray) -> np.ndarray:
    rows = np.arange(len(columns))
    p_given = probs[rows, columns]
    others = probs.copy()
    others[rows, columns] = -np.inf
    return (others.max(axis=1) - p_given + 1.0) / 2.0


def confident_joint(columns: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (calibrated confident joint C[given, confident], confident class per sample or -1).

    The raw joint counts each sample whose probability reaches some class's threshold at
    (given class, most probable such class); rows are then scaled to the given class sizes so
    that samples with no confident class still count.
    """
    n_classes = probs.shape[1]
    given_counts = np.bincount(columns, minlength=n_classes)
    sums = np.bincount(columns, weights=probs[np.arange(len(columns)), columns],
                       minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        thresholds = sums / given_counts
    # A class nobody was given has no evidence for a threshold: never confident about it.
    thresholds[given_counts == 0] = np.inf
    # Small slack so that a sample at exactly the mean is not lost to rounding.
    above = probs >= thresholds - 1e-6
    confident = np.where(above.any(axis=1), np.argmax(np.where(above, probs, -1.0), axis=1), -1)
    has = confident >= 0
    joint = np.zeros((n_classes, n_classes), dtype=np.float64)
    np.add.at(joint, (columns[has], confident[has]), 1.0)
    row_sums = joint.sum(axis=1)
    scale = np.divide(given_counts, row_sums, out=np.zeros(n_classes), where=row_sums > 0)
    calibrated = joint * scale[:, None]
    # A given class with no confident sample at all: trust its labels.
    empty = (row_sums == 0) & (given_counts > 0)
    calibrated[empty, empty] = given_counts[empty]
    return calibrated, confident


def noise_matrix(columns: np.ndarray, probs: np.ndarray, pseudo_count: float = 1.0) -> np.ndarray:
    """Estimated ``T[true, given] = P(given label | true class)`` from the confident joint.

    A pseudo-count per cell keeps a flip never seen in the data possible, not impossible. One per
    cell (the ranking's) is a strong prior on a small data set: with 10 classes of 135 samples it
    says 6 % of each class is flipped before any evidence, so counting wrong labels uses
    :data:`COUNT_PSEUDO` instead.
    """
    calibrated, _ = confident_joint(columns, probs)  # [given, confident (= true)]
    counts = calibrated.T + pseudo_count
    return counts / counts.sum(axis=1, keepdims=True)


def _tempered(log_probs: np.ndarray, temperature: float) -> np.ndarray:
    z = log_probs / temperature
    z -= z.max(axis=1, keepdims=True)
    out = np.exp(z)
    out /= out.sum(axis=1, keepdims=True)
    return out


# Temperatures tried when fitting: 0.05 (sharpen a lot) to 3 (soften), evenly on a log scale.
_TEMPERATURES = np.exp(np.linspace(np.log(0.05), np.log(3.0), 61))


def fit_noise_temperature(columns: np.ndarray, probs: np.ndarray, T: np.ndarray) -> float:
    """The temperature whose ``softmax(log p / t) @ T`` gives the given labels the highest likelihood."""
    log_probs = np.log(np.clip(probs, 1e-12, 1.0))
    rows = np.arange(len(columns))
    nll = [-np.mean(np.log(np.clip((_tempered(log_probs, t) @ T)[rows, columns], 1e-12, None)))
           for t in _TEMPERATURES]
    return float(_TEMPERATURES[int(np.argmin(nll))])


def noise_posterior(columns: np.ndarray, probs: np.ndarray, fit_rows: np.ndarray | None = None,
                    pseudo_count: float = 1.0, temperature: float | None = None) -> np.ndarray:
    """Posterior over each sample's true class given the model and its given label (method "posterior").

    The noise matrix (and the temperature, unless given) are fitted on ``fit_rows`` (all rows when
    None) and applied to every row: :func:`wrong_label_draws` refits the matrix on bootstrap
    resamples this way.
    """
    fit = slice(None) if fit_rows is None else fit_rows
    T = noise_matrix(columns[fit], probs[fit], pseudo_count)
    if temperature is None:
        temperature = fit_noise_temperature(columns[fit], probs[fit], T)
    clean = _tempered(np.log(np.clip(probs, 1e-12, 1.0)), temperature)
    q = clean * T[:, columns].T
    return q / q.sum(axis=1, keepdims=True)


def wrong_label_draws(columns: np.ndarray, probs: np.ndarray, n_draws: int, rng: np.random.Generator,
                      temperature: float | None = None) -> np.ndarray:
    """Plausible numbers of wrong labels in this data set, one per draw.

    Each draw refits the noise matrix on a bootstrap resample of the rows (the temperature is fitted
    once, on all of them: refitting it per draw cost 3 s a draw on 60,000 rows and moved the
    interval little), computes every row's probability that its given label is wrong, and draws
    which labels are wrong (a Bernoulli per row). The spread holds both the uncertainty of the noise
    matrix and the chance in which labels are wrong; it does not hold the model's own errors beyond
    what the temperature corrects (an out-of-fold model that is wrong with confidence counts as noise).
    """
    n = len(columns)
    rows = np.arange(n)
    draws = np.empty(n_draws, dtype=np.int64)
    if temperature is None:
        temperature = fit_noise_temperature(columns, probs, noise_matrix(columns, probs, COUNT_PSEUDO))
    for b in range(n_draws):
        q = noise_posterior(columns, probs, fit_rows=rng.integers(0, n, n), pseudo_count=COUNT_PSEUDO,
                            temperature=temperature)
        draws[b] = int(np.sum(rng.random(n) < 1.0 - q[rows, columns]))
    return draws


def estimated_issue_counts(columns: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Estimated number of wrong labels per given class: the calibrated joint's off-diagonal."""
    calibrated, _ = confident_joint(columns, probs)
    off_diagonal = calibrated.sum(axis=1) - np.diag(calibrated)
    return np.rint(off_diagonal).astype(np.int64)
