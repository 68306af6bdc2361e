"""SelfTraining: iterative confidence-based pseudo-labeling around any classifier with predict_proba.

Round 0 fits the wrapped estimator on the given labels. Each later round predicts the pool,
takes the predictions that pass the round's selection as labels, and refits. The loop stops when
nothing passes ('no_change'), when every sample has a label ('all_labeled') or after ``max_iter``
rounds ('max_iter'). X is passed to the estimator untouched (only indexed), so a Pipeline over
texts or data frames works.
"""
from __future__ import annotations

import time
import warnings
from typing import Callable

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.utils import _safe_indexing
from sklearn.utils.validation import check_is_fitted

from pseudolabel._validation import check_finite, check_labels, check_same_length
from pseudolabel.exceptions import InputError
from pseudolabel.selection import (
    ThresholdSchedule, check_schedule, class_balanced, select_by_threshold, select_k_best,
    threshold_for_round,
)

_CRITERIA = ("threshold", "k_best")


def _accuracy(pred: np.ndarray, truth: np.ndarray) -> float | None:
    return float(np.mean(pred == truth)) if len(truth) else None


class SelfTraining(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Self-training: label the pool with the model's confident predictions, retrain, repeat.

    Parameters
    ----------
    estimator : classifier with ``fit`` and ``predict_proba``
        Cloned at ``fit``. Default: :class:`pseudolabel.models.ConvNetClassifier`.
    threshold : float, list of floats or callable, default=0.95
        A prediction becomes a label when its probability is strictly greater than the threshold.
        A list gives one value per round (its last value repeats); a callable gets the round (1-based).
    criterion : {"threshold", "k_best"}, default="threshold"
    k_best : int, default=10
        Labels taken per round when ``criterion="k_best"``.
    max_iter : int or None, default=10
        Rounds of pseudo-labeling after the first fit; ``0`` is a plain supervised fit, ``None``
        runs until nothing passes or everything is labeled.
    relabel : bool, default=False
        False (the case study): a pseudo-label, once taken, is kept. True: every round predicts the
        whole unlabeled pool again, so labels can change or be dropped and early mistakes are undone.
    class_quota : int or None, default=None
        At most this many new labels per predicted class and round.
    given_share : float in (0, 1) or None, default=None
        Repeat the given labels so they make up at least this share of each round's training rows.
        Without it, thousands of easy pseudo-labels dilute the few given (and harder) samples and
        accuracy can fall after the first round.
    sample_weight : {"none", "confidence"}, default="none"
        "confidence" weights each pseudo-label by its confidence when the estimator's ``fit``
        accepts ``sample_weight``.
    callback : callable, optional
        ``callback(self, record)`` after every round (round 0 included), e.g. to checkpoint.
    verbose : int, default=0
        1 prints one line per round.

    Attributes
    ----------
    estimator_ : the fitted estimator of the last round.
    classes_ : the classes of the given labels.
    transduction_ : ndarray (n,), label of every row after training, -1 where none was taken.
    labeled_iter_ : ndarray (n,), round in which each row got its label: 0 = given, -1 = never.
    label_confidence_ : ndarray (n,), confidence of each machine label, nan for given labels.
    history_ : list of dict, one per round (round 0 = the supervised fit): round, threshold,
        n_labeled, n_added, seconds and, with ``eval_set``, test_accuracy; with ``y_true``,
        added_accuracy, train_label_accuracy, high_conf_accuracy, low_conf_accuracy, pool_accuracy.
    n_iter_ : rounds of pseudo-labeling run.
    termination_condition_ : 'max_iter' | 'no_change' | 'all_labeled'.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.linear_model import LogisticRegression
    >>> X, y = load_digits(return_X_y=True)
    >>> y_partial = y.copy(); y_partial[100:] = -1
    >>> st = SelfTraining(LogisticRegression(max_iter=1000), threshold=0.99, max_iter=3).fit(X, y_partial)
    >>> st.termination_condition_ in ('max_iter', 'no_change', 'all_labeled')
    True
    """

    def __init__(
        self,
        estimator=None,
        threshold: ThresholdSchedule = 0.95,
        *,
        criterion: str = "threshold",
        k_best: int = 10,
        max_iter: int | None = 10,
        relabel: bool = False,
        class_quota: int | None = None,
        sample_weight: str = "none",
        given_share: float | None = None,
        callback: Callable | None = None,
        verbose: int = 0,
    ):
        self.estimator = estimator
        self.threshold = threshold
        self.criterion = criterion
        self.k_best = k_best
        self.max_iter = max_iter
        self.relabel = relabel
        self.class_quota = class_quota
        self.sample_weight = sample_weight
        self.given_share = given_share
        self.callback = callback
        self.verbose = verbose

    # -- checks -------------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.criterion not in _CRITERIA:
            raise InputError(
                f"The 'criterion' parameter of SelfTraining must be one of {_CRITERIA}. "
                f"Got {self.criterion!r} instead."
            )
        if self.criterion == "threshold":
            check_schedule(self.threshold)
        else:
            select_k_best(np.zeros((0, 1)), self.k_best)
        if self.max_iter is not None and (
            isinstance(self.max_iter, bool) or not isinstance(self.max_iter, (int, np.integer)) or self.max_iter < 0
        ):
            raise InputError(
                f"The 'max_iter' parameter of SelfTraining must be an int >= 0 or None. Got {self.max_iter!r} instead."
            )
        if self.class_quota is not None and (not isinstance(self.class_quota, (int, np.integer)) or self.class_quota < 1):
            raise InputError(
                f"The 'class_quota' parameter of SelfTraining must be an int >= 1 or None. "
                f"Got {self.class_quota!r} instead."
            )
        if self.given_share is not None and not (
            isinstance(self.given_share, (float, int)) and not isinstance(self.given_share, bool)
            and 0 < self.given_share < 1
        ):
            raise InputError(
                f"The 'given_share' parameter of SelfTraining must be a float in (0, 1) or None. "
                f"Got {self.given_share!r} instead."
            )
        if self.sample_weight not in ("none", "confidence"):
            raise InputError(
                f"The 'sample_weight' parameter of SelfTraining must be 'none' or 'confidence'. "
                f"Got {self.sample_weight!r} instead."
            )

    def _make_estimator(self):
        if self.estimator is None:
            from pseudolabel.models import ConvNetClassifier

            return ConvNetClassifier()
        if not hasattr(self.estimator, "predict_proba"):
            raise InputError(
                f"The estimator {type(self.estimator).__name__} has no predict_proba, which self-training needs "
                "to score its predictions; use a probabilistic classifier (e.g. LogisticRegression, or wrap it in "
                "CalibratedClassifierCV)."
            )
        return clone(self.estimator)

    # -- fit ----------------------------------------------------------------------------------
    def fit(self, X, y, *, eval_set=None, y_true=None, resume=None):
        """Fit on X with partial labels y (-1 = unlabeled). Returns self.

        Parameters
        ----------
        eval_set : (X_eval, y_eval), optional
            A held-out set scored after every round (reporting only: no decision uses it).
        y_true : array (n,), optional
            The hidden true labels of the pool, in experiments that hide labels; enables the
            per-round accuracy of the labels taken and of high/low-confidence predictions.
        resume : dict, optional
            A state from :meth:`get_state` (saved after a finished round) to continue from.
        """
        self._check_params()
        if y is None:
            raise InputError("SelfTraining requires y to be passed, but the target y is None; "
                             "pass one label per sample with -1 for unlabeled samples.")
        check_same_length("X", X, "y", y)
        check_finite(X, "X")
        y = check_labels(y, "y")
        labeled = y != -1
        if not labeled.any():
            raise InputError("y has no labeled samples (all are -1); label at least one sample per class.")
        classes = np.unique(y[labeled])
        if len(classes) < 2:
            raise InputError(
                f"y holds a single class ({classes[0]}) among its labeled samples; "
                "label samples of at least two classes."
            )
        if labeled.all():
            warnings.warn("y contains no unlabeled samples; SelfTraining is a plain supervised fit.", UserWarning)
        if y_true is not None:
            y_true = check_labels(y_true, "y_true", allow_unlabeled=False)
            check_same_length("y", y, "y_true", y_true)
        if eval_set is not None:
            if not (isinstance(eval_set, (tuple, list)) and len(eval_set) == 2):
                raise InputError("eval_set must be a pair (X_eval, y_eval); got a " + type(eval_set).__name__ + ".")
            check_same_length("eval_set X", eval_set[0], "eval_set y", eval_set[1])

        self.classes_ = classes
        self._y_true = y_true
        self._eval_set = eval_set
        if resume is not None:
            self._set_state(resume)
        else:
            self.estimator_ = self._make_estimator()
            self.transduction_ = y.copy()
            self.labeled_iter_ = np.where(labeled, 0, -1)
            self.label_confidence_ = np.full(len(y), np.nan)
            self.history_ = []
            self.n_iter_ = 0
            self.termination_condition_ = None
            t0 = time.perf_counter()
            self._fit_estimator(X)
            self._record(0, None, 0, t0, pool_pred=None)
        given = labeled

        while self.termination_condition_ is None:
            if self.max_iter is not None and self.n_iter_ >= self.max_iter:
                self.termination_condition_ = "max_iter"
                break
            t0 = time.perf_counter()
            round_ = self.n_iter_ + 1
            pool = np.flatnonzero(~given if self.relabel else self.transduction_ == -1)
            if len(pool) == 0:
                self.termination_condition_ = "all_labeled"
                break
            proba = self.estimator_.predict_proba(_safe_indexing(X, pool))
            est_classes = self.estimator_.classes_
            pred = est_classes[proba.argmax(axis=1)]
            conf = proba.max(axis=1)
            threshold = None
            if self.criterion == "threshold":
                threshold = threshold_for_round(self.threshold, round_)
                take = select_by_threshold(proba, threshold)
            else:
                take = select_k_best(proba, self.k_best)
            if self.class_quota is not None:
                take = class_balanced(proba, take, self.class_quota)
            before = self.transduction_.copy()
            before_iter = self.labeled_iter_.copy()
            if self.relabel:
                self.transduction_[pool] = -1
                self.labeled_iter_[pool] = -1
                self.label_confidence_[pool] = np.nan
            chosen = pool[take]
            # A relabeled row whose label did not change keeps the round it was first taken in.
            unchanged = before[chosen] == pred[take]
            self.transduction_[chosen] = pred[take]
            self.labeled_iter_[chosen] = np.where(unchanged, before_iter[chosen], round_)
            self.label_confidence_[chosen] = conf[take]
            if np.array_equal(before, self.transduction_):
                self.termination_condition_ = "no_change"
                break
            self.n_iter_ = round_
            self._fit_estimator(X)
            n_added = int(np.sum(self.transduction_[pool] != -1) - np.sum(before[pool] != -1))
            self._record(round_, threshold, n_added, t0, pool_pred=(pool, pred, take))
        if self.verbose:
            print(f"stopped after round {self.n_iter_}: {self.termination_condition_}", flush=True)
        return self

    def _fit_estimator(self, X) -> None:
        rows = np.flatnonzero(self.transduction_ != -1)
        if self.given_share is not None:
            given = np.flatnonzero(self.labeled_iter_ == 0)
            n_other = len(rows) - len(given)
            # r copies of the given rows make r*g / (r*g + n_other) >= given_share.
            reps = int(np.ceil(self.given_share * n_other / ((1 - self.given_share) * max(len(given), 1))))
            if reps > 1:
                rows = np.concatenate([rows] + [given] * (reps - 1))
        kwargs = {}
        if self.sample_weight == "confidence":
            w = np.where(np.isnan(self.label_confidence_[rows]), 1.0, self.label_confidence_[rows])
            kwargs["sample_weight"] = w
        self.estimator_.fit(_safe_indexing(X, rows), self.transduction_[rows], **kwargs)

    def _record(self, round_: int, threshold, n_added: int, t0: float, pool_pred) -> None:
        rec = {
            "round": round_,
            "threshold": threshold,
            "n_labeled": int(np.sum(self.transduction_ != -1)),
            "n_pseudo": int(np.sum(self.labeled_iter_ > 0)),
            "n_added": n_added,
        }
        yt = self._y_true
        if yt is not None:
            has = self.transduction_ != -1
            rec["train_label_accuracy"] = _accuracy(self.transduction_[has], yt[has])
            if pool_pred is not None:
                pool, pred, take = pool_pred
                truth = yt[pool]
                rec["pool_size"] = int(len(pool))
                rec["pool_accuracy"] = _accuracy(pred, truth)
                rec["high_conf_accuracy"] = _accuracy(pred[take], truth[take])
                rec["low_conf_accuracy"] = _accuracy(pred[~take], truth[~take])
                rec["added_accuracy"] = rec["high_conf_accuracy"]
        if self._eval_set is not None:
            Xe, ye = self._eval_set
            rec["test_accuracy"] = float(np.mean(self.estimator_.predict(Xe) == np.asarray(ye)))
        rec["seconds"] = time.perf_counter() - t0
        self.history_.append(rec)
        if self.verbose:
            shown = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in rec.items()
                              if v is not None)
            print(shown, flush=True)
        if self.callback is not None:
            self.callback(self, rec)

    # -- resume ------------------------------------------------------------------------------
    def get_state(self) -> dict:
        """Everything needed to continue after the last finished round (pickle it with joblib)."""
        check_is_fitted(self, "estimator_")
        state = {k: getattr(self, k) for k in (
            "estimator_", "transduction_", "labeled_iter_", "label_confidence_", "history_", "n_iter_",
            "termination_condition_")}
        state = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in state.items()}
        state["history_"] = [dict(r) for r in self.history_]
        return state

    def _set_state(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)

    # -- predict ------------------------------------------------------------------------------
    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict(X)

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_proba(X)

    def score(self, X, y, sample_weight=None) -> float:
        check_is_fitted(self, "estimator_")
        return self.estimator_.score(X, y, sample_weight=sample_weight)
