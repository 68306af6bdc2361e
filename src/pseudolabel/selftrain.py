"""SelfTraining: iterative confidence-based pseudo-labeling around any classifier with predict_proba.

Round 0 fits the wrapped estimator on the given labels. Each later round predicts the pool,
takes the predictions that pass the round's selection as labels, and refits. The loop stops when
nothing passes ('no_change'), when every sample has a label ('all_labeled') or after ``max_iter``
rounds ('max_iter'). X is passed to the estimator untouched (only indexed), so a Pipeline over
texts or data frames works, and so does a sparse matrix (a TF-IDF matrix).
"""
from __future__ import annotations

import time
import warnings
from typing import Callable

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.metrics import accuracy_score
from sklearn.utils import _safe_indexing
from sklearn.utils.validation import check_is_fitted

from pseudolabel._validation import (
    UNLABELED, allows_nan, check_finite_any, encode_labels, indexable_rows, num_samples,
)
from pseudolabel.callbacks import notify
from pseudolabel.crossval import out_of_fold_proba
from pseudolabel.calibration import (
    apply_temperature, expected_calibration_error, fit_temperature, threshold_for_expected_precision,
    threshold_for_precision,
)
from pseudolabel.exceptions import InputError
from pseudolabel.selection import (
    CONFIDENT_THRESHOLD, ThresholdSchedule, adaptive_quota, adaptive_take, check_schedule, class_balanced,
    confident_enough, select_by_threshold, select_k_best, threshold_for_round,
)

_CRITERIA = ("auto", "threshold", "k_best")
# Folds of the out-of-fold predictions on the given labels that calibrate the confidences.
_ADAPTIVE_FOLDS = 5
_CALIBRATIONS = ("temperature",)
_CALIBRATION_KEYS = ("temperature", "ece_before", "ece_after", "chosen_threshold", "estimated_precision",
                     "precision_support", "expected_precision")


def _is_convnet(estimator) -> bool:
    """Whether ``estimator`` is pseudolabel's CNN (None: the default one), without importing torch."""
    if estimator is None:
        return True
    return type(estimator).__name__ == "ConvNetClassifier" and type(estimator).__module__.startswith(
        "pseudolabel.models")


def _is_real(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _accuracy(pred: np.ndarray, truth: np.ndarray) -> float | None:
    return float(np.mean(pred == truth)) if len(truth) else None


def _check_n_features(est, X, reset: bool) -> None:
    """scikit-learn's n_features_in_ / feature_names_in_ bookkeeping (silent for X without columns,
    e.g. a list of texts); a wrong feature count at predict is one InputError line."""
    try:
        from sklearn.utils.validation import _check_feature_names, _check_n_features as check_n
    except ImportError:  # scikit-learn < 1.6: methods of BaseEstimator
        def check_n(e, X, reset):
            return BaseEstimator._check_n_features(e, X, reset=reset)

        def _check_feature_names(e, X, *, reset):
            return BaseEstimator._check_feature_names(e, X, reset=reset)
    try:
        # At predict: columns of a data frame by name and order, as the estimator inside would check.
        _check_feature_names(est, X, reset=reset)
        check_n(est, X, reset=reset)
    except ValueError as exc:
        if "does not contain any features" in str(exc):  # 1-D X where a 2-D one was fitted
            raise InputError(
                f"X has shape {getattr(X, 'shape', (len(X),))}, but SelfTraining was fitted on rows of "
                f"{est.n_features_in_} features; Reshape your data: X.reshape(1, -1) for one sample."
            ) from None
        raise InputError(f"{' '.join(str(exc).split())} Pass X with the columns SelfTraining was fitted on.") from None


class SelfTraining(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Self-training: label the pool with the model's confident predictions, retrain, repeat.

    Parameters
    ----------
    estimator : classifier with ``fit`` and ``predict_proba``
        Cloned at ``fit``. Default: :class:`pseudolabel.models.ConvNetClassifier`. An estimator
        with a true ``semi`` attribute (``ConvNetClassifier(semi="fixmatch")``) learns from
        unlabeled rows online: each fit also gets the rows still unlabeled, labeled -1, so the
        rounds' confident labels and the online pseudo-labels of every step work together.
    threshold : float, list of floats, callable or None, default=None
        A prediction becomes a label when its probability is strictly greater than the threshold.
        A list gives one value per round (its last value repeats); a callable gets the round (1-based).
        None: 0.95 wherever a threshold is used (the CNN, ``criterion="threshold"``, ``calibration``);
        a threshold given makes ``criterion="auto"`` a plain threshold, as written.
    criterion : {"auto", "threshold", "k_best"}, default="auto"
        "threshold": the threshold above, on the model's probabilities as they are (scikit-learn's
        ``SelfTrainingClassifier``). "k_best": the ``k_best`` most confident. "auto" resolves at
        ``fit`` (``criterion_``): "threshold" when the estimator is
        :class:`~pseudolabel.models.ConvNetClassifier` (its recipes were tuned on a threshold, so it
        runs exactly as before), or when ``threshold``, ``calibration`` or ``target_precision`` is
        given; otherwise "adaptive". A fixed threshold fails a model whose probabilities run low:
        TF-IDF + logistic regression on 40 texts of 4 topics is right 86 % of the time with no
        probability above 0.6, so 0.75 takes nothing; forests and boosted trees are coarse the same
        way. "adaptive" does not read raw probabilities: each round the pool's probabilities are
        calibrated by a temperature fitted to out-of-fold predictions of the given labels
        (cross-validated, so no label is set aside: 18 labels of 3 classes are enough; a class with
        one label leaves them uncalibrated, ``temperature_`` 1.0), then per predicted class the most
        confident are taken, at most 10 % of the unlabeled pool per round split in the proportions
        of the given classes (a per-class k-best), and only those with calibrated confidence above
        0.7 (:func:`pseudolabel.selection.adaptive_take`). Except that a model confident on most of
        the pool in round 1 (70 % above 0.75: :func:`pseudolabel.selection.confident_enough`)
        keeps scikit-learn's plain threshold 0.75 (``criterion_`` "threshold"), as
        ``SelfTrainingClassifier`` selects. On scikit-learn's digits, breast_cancer and wine with
        10 % labels and a text set with 40: at or above ``SelfTrainingClassifier`` in all 9 cases,
        +1.6 to +2.0 points on the mean (docs/benchmarks.md).
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
    calibration : {None, "temperature"}, default=None
        "temperature": each round fits a temperature on the held-out given labels (see
        ``validation_fraction``; :func:`pseudolabel.calibration.fit_temperature`) and applies it
        to the pool's probabilities before selection, so the threshold is read against
        confidences that match the held-out accuracy.
    target_precision : float in (0, 1] or None, default=None
        Pick each round's threshold so the estimated precision of the labels taken is at least
        this; it replaces the ``threshold`` schedule and needs ``criterion`` "threshold" or "auto". It
        implies the temperature above. The threshold is the higher of two: the lowest at which
        the mean calibrated confidence of the pool rows above it reaches the target (their
        expected precision; :func:`~pseudolabel.calibration.threshold_for_expected_precision`),
        and the lowest at which the share of correct held-out predictions above it does, with
        at least 10 of them (:func:`~pseudolabel.calibration.threshold_for_precision`). The
        held-out share alone is too coarse with 20 held-out labels: on digits with 5 % labels it
        took labels about 95 % right for a target of 0.98. When either cannot reach the target
        the loop stops ('precision_unreachable'). Compare with ``added_accuracy`` (``y_true``).
    validation_fraction : float in (0, 1), default=0.2
        Used only with ``calibration`` or ``target_precision``: this share of the given labels of each
        class (rounded; one per class always stays for training) is held out, the same rows in every
        round, chosen with a fixed seed. They are never fit on; they keep their label in
        ``transduction_`` (``labeled_iter_`` 0) and are listed in ``held_out_``.
    final_estimator : classifier, optional
        A "student" fitted once more, from scratch, on the labels of the last round (given and
        pseudo, ``given_share`` applied) after the loop stops; it then makes the predictions
        (``estimator_``) and the round's model stays in ``teacher_``. The rounds can use a small
        model that trains fast and labels well enough, and the student a larger one trained
        longer: with 1000 MNIST labels the rounds' labels were 99.8 % right while the small
        model scored about 98 %, so the model, not the labels, was what held accuracy back.
        Its record in ``history_`` has ``final: True`` and the round after the last.
    callback : Callback, list of Callbacks, or callable, optional
        After every round (round 0 included): each :class:`pseudolabel.callbacks.Callback`'s
        ``on_round_end(self, record)``, or a plain callable as ``callback(self, record)``; e.g. to
        checkpoint or print progress.
    verbose : int, default=0
        1 prints one line per round.

    Attributes
    ----------
    estimator_ : the fitted estimator of the last round.
    criterion_ : 'threshold', 'k_best' or 'adaptive': the selection used (``criterion`` resolved).
    confident_share_ : float, with criterion "auto" resolved for a model other than the CNN (after
        the first selection): the share of the pool above 0.75 that decided between a plain
        threshold (at least 0.7) and "adaptive".
    temperature_ : float, with criterion_ 'adaptive' (after the first round): the temperature of
        the out-of-fold predictions of the given labels (< 1 sharpens an underconfident model).
    classes_ : the classes of the given labels.
    transduction_ : ndarray (n,), label of every row after training, -1 where none was taken.
    labeled_iter_ : ndarray (n,), round in which each row got its label: 0 = given, -1 = never.
    label_confidence_ : ndarray (n,), confidence of each machine label, nan for given labels.
    history_ : list of dict, one per round (round 0 = the supervised fit): round, threshold,
        n_labeled, n_added, seconds and, with ``eval_set``, test_accuracy; with ``y_true``,
        added_accuracy, train_label_accuracy, high_conf_accuracy, low_conf_accuracy, pool_accuracy.
        With criterion_ 'adaptive': temperature, expected_precision (the mean calibrated confidence
        of the labels taken) and threshold (the lowest calibrated confidence taken).
        With ``calibration`` or ``target_precision``, for the model that picked the round's labels
        (None in round 0): temperature, ece_before and ece_after (on the held-out labels),
        chosen_threshold (the threshold applied), estimated_precision and precision_support (the
        share of correct held-out predictions above it, and how many there were) and
        expected_precision (the mean calibrated confidence of the labels taken).
    held_out_ : ndarray of int, the given rows held out for calibration (empty without it).
    n_iter_ : rounds of pseudo-labeling run.
    termination_condition_ : 'max_iter' | 'no_change' | 'all_labeled' | 'precision_unreachable' | 'cycle'
        ('cycle': with ``relabel`` the labels returned to those of an earlier round).

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
        threshold: ThresholdSchedule | None = None,
        *,
        criterion: str = "auto",
        k_best: int = 10,
        max_iter: int | None = 10,
        relabel: bool = False,
        class_quota: int | None = None,
        sample_weight: str = "none",
        given_share: float | None = None,
        calibration: str | None = None,
        target_precision: float | None = None,
        validation_fraction: float = 0.2,
        final_estimator=None,
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
        self.calibration = calibration
        self.target_precision = target_precision
        self.validation_fraction = validation_fraction
        self.final_estimator = final_estimator
        self.callback = callback
        self.verbose = verbose

    # -- checks -------------------------------------------------------------------------------
    def check_params(self) -> "SelfTraining":
        """Check every parameter against the allowed values (``fit`` does this first); raises one
        InputError line naming the first bad one. Returns self."""
        self._check_params()
        return self

    def _check_params(self) -> None:
        if self.criterion not in _CRITERIA:
            raise InputError(
                f"The 'criterion' parameter of SelfTraining must be one of {_CRITERIA}. "
                f"Got {self.criterion!r} instead."
            )
        if self.criterion == "k_best":
            select_k_best(np.zeros((0, 1)), self.k_best)
        elif self.threshold is not None:
            check_schedule(self.threshold)
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
        if not (self.calibration is None or (isinstance(self.calibration, str) and self.calibration in _CALIBRATIONS)):
            raise InputError(
                f"The 'calibration' parameter of SelfTraining must be None or 'temperature'. "
                f"Got {self.calibration!r} instead."
            )
        if self.target_precision is not None and not (
            _is_real(self.target_precision) and 0 < self.target_precision <= 1
        ):
            raise InputError(
                f"The 'target_precision' parameter of SelfTraining must be a float in (0, 1] or None. "
                f"Got {self.target_precision!r} instead."
            )
        if self.target_precision is not None and self.criterion == "k_best":
            raise InputError(
                f"The 'target_precision' parameter of SelfTraining picks each round's threshold, so it needs "
                f"criterion='threshold'. Got criterion={self.criterion!r} instead."
            )
        if not (_is_real(self.validation_fraction) and 0 < self.validation_fraction < 1):
            raise InputError(
                f"The 'validation_fraction' parameter of SelfTraining must be a float in (0, 1). "
                f"Got {self.validation_fraction!r} instead."
            )

    def _calibrating(self) -> bool:
        return self.calibration is not None or self.target_precision is not None

    def _resolve_criterion(self) -> str:
        """criterion_: 'threshold' or 'k_best' as given; 'auto' is 'threshold' for the CNN or when a
        threshold, calibration or target_precision was given, else 'adaptive'."""
        if self.criterion != "auto":
            return self.criterion
        if (_is_convnet(self.estimator) or self.threshold is not None or self.calibration is not None
                or self.target_precision is not None):
            return "threshold"
        return "adaptive"

    def _plain_threshold(self) -> ThresholdSchedule:
        """The threshold of criterion_ 'threshold': as given; else scikit-learn's 0.75 where
        criterion "auto" found the model confident (selection.confident_enough), 0.95 for the CNN."""
        if self.threshold is not None:
            return self.threshold
        return CONFIDENT_THRESHOLD if self._resolve_criterion() == "adaptive" else 0.95

    def _given_temperature(self, X, y: np.ndarray) -> float:
        """The temperature of the adaptive selection: fitted to out-of-fold probabilities of the
        given labels (every given row predicted by a model fit on the others), so no label is
        set aside; 1.0 (no change) when a class has a single given label."""
        rows = np.flatnonzero(y != UNLABELED)
        counts = np.unique(y[rows], return_counts=True)[1]
        n_folds = int(min(_ADAPTIVE_FOLDS, counts.min()))
        if n_folds < 2:
            return 1.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. convergence warnings of the folds' small fits
            proba = out_of_fold_proba(self.estimator, _safe_indexing(X, rows), y[rows], cv=n_folds,
                                      random_state=0)
        return fit_temperature(proba, np.searchsorted(np.unique(y[rows]), y[rows]), from_proba=True)

    def _validation_rows(self, y: np.ndarray) -> np.ndarray:
        """The given rows held out for calibration: a stratified share, the same for any round."""
        if not self._calibrating():
            return np.zeros(0, dtype=np.int64)
        # A fixed seed: a resumed run holds out the same rows without storing them.
        rng = np.random.default_rng(0)
        parts = []
        for c in np.unique(y[y != -1]):
            rows = np.flatnonzero(y == c)
            # One row per class always stays for training, so the model knows every given class.
            n_hold = min(len(rows) - 1, int(np.floor(self.validation_fraction * len(rows) + 0.5)))
            if n_hold > 0:
                parts.append(rng.choice(rows, n_hold, replace=False))
        held = np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
        if len(held) == 0:
            raise InputError(
                f"validation_fraction={self.validation_fraction} holds out none of the {int(np.sum(y != -1))} given "
                "labels, but calibration and target_precision need held-out labels; label at least 2 samples "
                "per class or raise validation_fraction."
            )
        return held

    def _held_out_check(self, X):
        """Temperature, calibrated confidence and correctness of the current model on the held-out rows."""
        rows = self.held_out_
        proba = self.estimator_.predict_proba(_safe_indexing(X, rows))
        est_classes = self.estimator_.classes_
        truth = self._transduction[rows]  # given labels: held-out rows never leave round 0
        y_idx = np.searchsorted(est_classes, truth)
        rec = dict.fromkeys(_CALIBRATION_KEYS)
        rec["ece_before"] = expected_calibration_error(proba, y_idx)
        temperature = None
        if self.calibration == "temperature" or self.target_precision is not None:
            temperature = fit_temperature(proba, y_idx, from_proba=True)
            proba = apply_temperature(proba, temperature)
            rec["temperature"] = temperature
            rec["ece_after"] = expected_calibration_error(proba, y_idx)
        correct = est_classes[proba.argmax(axis=1)] == truth
        return temperature, proba.max(axis=1), correct, rec

    def _make_estimator(self, estimator=None, name: str = "estimator"):
        estimator = self.estimator if estimator is None and name == "estimator" else estimator
        if estimator is None:
            from pseudolabel.models import ConvNetClassifier  # torch is loaded only when it is the model

            return ConvNetClassifier()
        if not hasattr(estimator, "predict_proba"):
            raise InputError(
                f"The {name} {type(estimator).__name__} has no predict_proba, which self-training needs "
                "to score its predictions; use a probabilistic classifier (e.g. LogisticRegression, or wrap it in "
                "CalibratedClassifierCV)."
            )
        return clone(estimator)

    # -- fit ----------------------------------------------------------------------------------
    def fit(self, X, y, *, eval_set=None, y_true=None, resume=None):
        """Fit on X with partial labels y (-1 = unlabeled). Returns self.

        Labels may be integers or names (strings). As in scikit-learn's SelfTrainingClassifier, -1
        marks an unlabeled sample: the integer -1 in an object array of names
        (``np.array(["cat", "dog", -1], dtype=object)``), or the string "-1" that numpy makes of it
        in an array of strings. Names are encoded once: the wrapped estimator is fit on their
        positions in ``classes_`` (the sorted names); ``classes_``, ``predict`` and
        ``transduction_`` give the names (``transduction_``: an object array, -1 where unlabeled).

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
        if self.final_estimator is not None:
            self._make_estimator(self.final_estimator, "final_estimator")  # fails before any training
        if y is None:
            raise InputError("SelfTraining requires y to be passed, but the target y is None; "
                             "pass one label per sample with -1 for unlabeled samples.")
        X = indexable_rows(X)
        n_x, n_y = num_samples(X, "X"), num_samples(y, "y") if not hasattr(y, "__len__") else len(y)
        if n_x != n_y:
            raise InputError(f"X and y must be the same length, but X is length {n_x} and y is length {n_y}; "
                             "pass one label per sample.")
        if not allows_nan(self.estimator):  # NaN goes on to a model that handles it (boosted trees)
            check_finite_any(X, "X")
        # Names are encoded once here: the estimator is fit on their positions in classes_.
        y, names = encode_labels(y, "y")
        labeled = y != UNLABELED
        if not labeled.any():
            raise InputError(f"y has no labeled samples ({'none given' if len(y) == 0 else 'all are -1'}); "
                             "label at least one sample per class.")
        classes = np.unique(y[labeled])
        if len(classes) < 2:
            shown = names[0] if names is not None else classes[0]
            raise InputError(
                f"y holds only one class ({shown}) among its labeled samples; label samples of at least two classes."
            )
        if labeled.all():
            warnings.warn("y contains no unlabeled samples; SelfTraining is a plain supervised fit.", UserWarning)
        if y_true is not None:
            y_true = self._encode_like(y_true, names, n_y)
        if eval_set is not None:
            if not (isinstance(eval_set, (tuple, list)) and len(eval_set) == 2):
                raise InputError("eval_set must be a pair (X_eval, y_eval); got a " + type(eval_set).__name__ + ".")
            n_xe, n_ye = num_samples(eval_set[0], "eval_set X"), num_samples(eval_set[1], "eval_set y")
            if n_xe != n_ye:
                raise InputError(f"eval_set X and eval_set y must be the same length, but eval_set X is length "
                                 f"{n_xe} and eval_set y is length {n_ye}; pass one label per sample.")
        _check_n_features(self, X, reset=True)
        self._label_names = names
        self.classes_ = classes if names is None else names
        self.held_out_ = self._validation_rows(y)
        self.criterion_ = self._resolve_criterion()
        self.__dict__.pop("confident_share_", None)  # an earlier fit's; a resumed state brings its own
        if self.criterion_ == "adaptive":
            # Fitted before the first round that needs it (none with max_iter=0).
            self.temperature_ = None
            self._adaptive_quota = adaptive_quota(y[labeled], int(np.sum(~labeled)))
        self._y_true = y_true
        self._eval_set = eval_set
        if resume is not None:
            self._set_state(resume)
        else:
            self.estimator_ = self._make_estimator()
            self._transduction = y.copy()
            self.labeled_iter_ = np.where(labeled, 0, -1)
            self.label_confidence_ = np.full(len(y), np.nan)
            self.history_ = []
            self.n_iter_ = 0
            self.termination_condition_ = None
            self.final_fitted_ = False
            t0 = time.perf_counter()
            self._fit_estimator(X)
            self._record(0, None, 0, t0, pool_pred=None,
                         calibration=dict.fromkeys(_CALIBRATION_KEYS) if self._calibrating() else
                         {"temperature": None, "expected_precision": None}
                         if self.criterion_ == "adaptive" else None)
        given = labeled
        # With relabel the labels of a round can return to those of an earlier one and then repeat
        # forever (max_iter=None): a state seen before ends the loop ('cycle').
        seen = {self._transduction.tobytes()}

        while self.termination_condition_ is None:
            if self.max_iter is not None and self.n_iter_ >= self.max_iter:
                self.termination_condition_ = "max_iter"
                break
            t0 = time.perf_counter()
            round_ = self.n_iter_ + 1
            pool = np.flatnonzero(~given if self.relabel else self._transduction == -1)
            if len(pool) == 0:
                self.termination_condition_ = "all_labeled"
                break
            proba = self.estimator_.predict_proba(_safe_indexing(X, pool))
            cal_rec = None
            if self._calibrating():
                temperature, held_conf, held_correct, cal_rec = self._held_out_check(X)
                if temperature is not None:
                    proba = apply_temperature(proba, temperature)
            est_classes = self.estimator_.classes_
            pred = est_classes[proba.argmax(axis=1)]
            conf = proba.max(axis=1)
            threshold = None
            if self.criterion_ == "adaptive" and self.n_iter_ == 0:
                self.confident_share_ = float(np.mean(conf > CONFIDENT_THRESHOLD))
                if confident_enough(proba):
                    # The first selection sees a model that is confident on most of the pool: a plain
                    # threshold (scikit-learn's 0.75) takes that share at once; nothing to adapt to.
                    self.criterion_ = "threshold"
                if self.verbose:
                    print(f"criterion auto: {self.confident_share_:.0%} of the pool above {CONFIDENT_THRESHOLD}: "
                          f"{'a plain threshold' if self.criterion_ == 'threshold' else 'adaptive'}", flush=True)
            if self.criterion_ == "adaptive":
                if self.temperature_ is None:
                    self.temperature_ = self._given_temperature(X, y)
                proba = apply_temperature(proba, self.temperature_)
                conf = proba.max(axis=1)
                take = adaptive_take(proba, self._adaptive_quota)
                # The record's threshold: the lowest calibrated confidence taken.
                threshold = float(conf[take].min()) if take.any() else None
                cal_rec = {"temperature": self.temperature_}
            elif self.criterion_ == "threshold":
                if self.target_precision is not None:
                    on_held_out = threshold_for_precision(held_conf, held_correct, self.target_precision)
                    on_pool = threshold_for_expected_precision(conf, self.target_precision)
                    if on_held_out is None or on_pool is None:
                        self.termination_condition_ = "precision_unreachable"
                        break
                    threshold = max(on_held_out, on_pool)
                else:
                    threshold = threshold_for_round(self._plain_threshold(), round_)
                take = select_by_threshold(proba, threshold)
                if self._resolve_criterion() == "adaptive":  # auto, switched to a threshold: same records
                    cal_rec = {"temperature": None}
                if cal_rec is not None and "chosen_threshold" in cal_rec:
                    above = held_conf > threshold
                    cal_rec["chosen_threshold"] = threshold
                    cal_rec["precision_support"] = int(above.sum())
                    cal_rec["estimated_precision"] = float(held_correct[above].mean()) if above.any() else None
            else:
                take = select_k_best(proba, self.k_best)
            if self.class_quota is not None:
                take = class_balanced(proba, take, self.class_quota)
            if cal_rec is not None:
                cal_rec["expected_precision"] = float(conf[take].mean()) if take.any() else None
            before = self._transduction.copy()
            before_iter = self.labeled_iter_.copy()
            before_conf = self.label_confidence_.copy()
            if self.relabel:
                self._transduction[pool] = -1
                self.labeled_iter_[pool] = -1
                self.label_confidence_[pool] = np.nan
            chosen = pool[take]
            # A relabeled row whose label did not change keeps the round it was first taken in.
            unchanged = before[chosen] == pred[take]
            self._transduction[chosen] = pred[take]
            self.labeled_iter_[chosen] = np.where(unchanged, before_iter[chosen], round_)
            self.label_confidence_[chosen] = conf[take]
            if np.array_equal(before, self._transduction):
                self.termination_condition_ = "no_change"
                break
            state = self._transduction.tobytes()
            if state in seen:  # the model was fit on `before`: keep the labels it was fit on
                self._transduction[:], self.labeled_iter_[:] = before, before_iter
                self.label_confidence_[:] = before_conf
                self.termination_condition_ = "cycle"
                break
            seen.add(state)
            self.n_iter_ = round_
            self._fit_estimator(X)
            n_added = int(np.sum(self._transduction[pool] != -1) - np.sum(before[pool] != -1))
            self._record(round_, threshold, n_added, t0, pool_pred=(pool, pred, take), calibration=cal_rec)
        if self.verbose:
            print(f"stopped after round {self.n_iter_}: {self.termination_condition_}", flush=True)
        if self.final_estimator is not None and not getattr(self, "final_fitted_", False):
            t0 = time.perf_counter()
            self.teacher_ = self.estimator_
            self.estimator_ = self._make_estimator(self.final_estimator, "final_estimator")
            self._fit_estimator(X)
            self.final_fitted_ = True
            self._record(self.n_iter_ + 1, None, 0, t0, pool_pred=None, final=True)
        return self

    def _fit_estimator(self, X) -> None:
        rows = np.flatnonzero(self._transduction != -1)
        held_out = getattr(self, "held_out_", ())
        if len(held_out):
            rows = np.setdiff1d(rows, held_out)
        if self.given_share is not None:
            given = np.flatnonzero(self.labeled_iter_ == 0)
            if len(held_out):
                given = np.setdiff1d(given, held_out)
            n_other = len(rows) - len(given)
            # r copies of the given rows make r*g / (r*g + n_other) >= given_share.
            reps = int(np.ceil(self.given_share * n_other / ((1 - self.given_share) * max(len(given), 1))))
            if reps > 1:
                rows = np.concatenate([rows] + [given] * (reps - 1))
        if getattr(self.estimator_, "semi", None):
            # An estimator that learns from unlabeled rows online (ConvNetClassifier(semi=...))
            # also gets the rows still unlabeled, marked -1; never the held-out ones.
            rows = np.concatenate([rows, np.setdiff1d(np.flatnonzero(self._transduction == -1), held_out)])
        kwargs = {}
        if self.sample_weight == "confidence":
            w = np.where(np.isnan(self.label_confidence_[rows]), 1.0, self.label_confidence_[rows])
            kwargs["sample_weight"] = w
        self.estimator_.fit(_safe_indexing(X, rows), self._transduction[rows], **kwargs)

    def _record(self, round_: int, threshold, n_added: int, t0: float, pool_pred, calibration=None,
                final: bool = False) -> None:
        rec = {
            "round": round_,
            "threshold": threshold,
            "n_labeled": int(np.sum(self._transduction != -1)),
            "n_pseudo": int(np.sum(self.labeled_iter_ > 0)),
            "n_added": n_added,
        }
        if final:
            rec["final"] = True
        if calibration is not None:
            rec.update(calibration)
        yt = self._y_true
        if yt is not None:
            has = self._transduction != -1
            rec["train_label_accuracy"] = _accuracy(self._transduction[has], yt[has])
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
            rec["test_accuracy"] = float(np.mean(self._to_names(self.estimator_.predict(Xe)) == np.asarray(ye)))
        rec["seconds"] = time.perf_counter() - t0
        self.history_.append(rec)
        if self.verbose:
            shown = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in rec.items()
                              if v is not None)
            print(shown, flush=True)
        notify(self.callback, "on_round_end", self, rec, plain=True)
        # The fitted model holds copies of its callbacks (clone deep-copies them): they hear of the
        # round too, so e.g. a progress printer inside it names the next round.
        own = self.callback if isinstance(self.callback, (list, tuple)) else [self.callback]
        notify([cb for cb in getattr(self.estimator_, "callbacks", None) or () if all(cb is not c for c in own)],
               "on_round_end", self, rec)

    # -- resume ------------------------------------------------------------------------------
    def get_state(self) -> dict:
        """Everything needed to continue after the last finished round (pickle it with joblib)."""
        check_is_fitted(self, "estimator_")
        # transduction_ is saved as codes (-1 unlabeled), the same for names and integer labels.
        state = {k.lstrip("_") + ("_" if k == "_transduction" else ""): getattr(self, k) for k in (
            "estimator_", "_transduction", "labeled_iter_", "label_confidence_", "history_", "n_iter_",
            "termination_condition_", "final_fitted_", "criterion_", "confident_share_") if hasattr(self, k)}
        state = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in state.items()}
        state["history_"] = [dict(r) for r in self.history_]
        return state

    def _set_state(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, "_transduction" if k == "transduction_" else k, v)

    # -- labels as the user gave them ----------------------------------------------------------
    @property
    def transduction_(self) -> np.ndarray:
        """Label of every row after training, -1 where none was taken (for names: an object array
        of names with the integer -1 there)."""
        if "_transduction" not in self.__dict__:
            raise AttributeError("'SelfTraining' object has no attribute 'transduction_'")
        codes = self._transduction
        if getattr(self, "_label_names", None) is None:
            return codes
        out = np.empty(len(codes), dtype=object)
        out[:] = UNLABELED
        has = codes != UNLABELED
        out[has] = self._label_names[codes[has]]
        return out

    def _to_names(self, codes: np.ndarray) -> np.ndarray:
        names = getattr(self, "_label_names", None)
        return codes if names is None else names[np.asarray(codes, dtype=np.int64)]

    @staticmethod
    def _encode_like(y_true, names, n: int) -> np.ndarray:
        """y_true as codes of ``names`` (a class never given gets -2: it matches no prediction)."""
        codes, true_names = encode_labels(y_true, "y_true", allow_unlabeled=False)
        if len(codes) != n:
            raise InputError(f"y and y_true must be the same length, but y is length {n} and y_true is length "
                             f"{len(codes)}; pass one true label per sample.")
        if (names is None) != (true_names is None):
            raise InputError("y and y_true must both hold integer labels or both hold names; "
                             "pass y_true in the same kind as y.")
        if names is None:
            return codes
        pos = np.clip(np.searchsorted(names, true_names), 0, len(names) - 1)
        known = names[pos] == true_names
        return np.where(known, pos, -2)[codes]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        if self.estimator is not None:
            from sklearn.utils import get_tags  # scikit-learn >= 1.6 only, where this method is called

            tags.input_tags.sparse = get_tags(self.estimator).input_tags.sparse
        return tags

    # -- predict ------------------------------------------------------------------------------
    def predict(self, X) -> np.ndarray:
        """Predicted class of each row: values of ``classes_`` (names when y held names)."""
        check_is_fitted(self, "estimator_")
        X = indexable_rows(X)
        _check_n_features(self, X, reset=False)
        return self._to_names(self.estimator_.predict(X))

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, one column per value of ``classes_``, in that order."""
        check_is_fitted(self, "estimator_")
        X = indexable_rows(X)
        _check_n_features(self, X, reset=False)
        return self.estimator_.predict_proba(X)

    def score(self, X, y, sample_weight=None) -> float:
        check_is_fitted(self, "estimator_")
        if getattr(self, "_label_names", None) is not None:
            return float(accuracy_score(y, self.predict(X), sample_weight=sample_weight))
        X = indexable_rows(X)
        _check_n_features(self, X, reset=False)
        return self.estimator_.score(X, y, sample_weight=sample_weight)
