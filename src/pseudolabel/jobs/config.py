"""Typed job configs: built once from a recipe name plus the user's options, checked once, saved to
and read from a run's ``config.json``.

Every job (selftrain, clean, sweep) takes one of these. ``build`` resolves the recipe by name
(:mod:`pseudolabel.jobs.recipes`), lays the user's options over it and checks every value against
one table of allowed values (``constraints``, the way scikit-learn declares
``_parameter_constraints``); the model's own parameters are checked by the model, and
self-training's by ``SelfTraining``, so each value has one rule in one place. The model's
parameter names come from ``ConvNetClassifier().get_params()``, never from a hand-kept list.

A config reads like the flat dict ``config.json`` holds (``config["epochs"]``, ``{**config}``), so
run directories written before these classes existed resume unchanged: their keys are sorted into
job settings, model parameters and anything else (kept as it was).

Examples
--------
>>> cfg = SelfTrainConfig.build({"data": "digits", "labeled": 100, "recipe": "seed"})
>>> cfg.threshold, cfg.model["arch"], cfg["epochs"]
(0.99, 'seed', 10)
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pseudolabel._validation import Boolean, Interval, Options, Satisfies, check_params
from pseudolabel.exceptions import InputError, RunDirectoryError
from pseudolabel.issues import METHODS, POLICIES
from pseudolabel.jobs.recipes import CLEAN_RECIPES, RECIPES, SCORE_RECIPES
from pseudolabel.runs import CONFIG, RunDirectory, jsonable
from pseudolabel.selftrain import SelfTraining

# Written by RunDirectory.create beside the config; never part of a job's settings.
_RUN_KEYS = ("job", "created_at")
# Where a resumed run may differ from its saved config: where it runs, not what it computes.
RESUME_SAFE = ("device", "jobs", "threads", "cluster", "workers")
# Not compared on resume: the data is checked item by item (selftrain) or by the folds' label
# digests (clean); ids and the start are the run's own; the store is compared by resolved path.
_NOT_COMPARED = ("data", "run_id", "start", "store")


def saved_config(out, job: str) -> dict:
    """The config.json of the ``job`` run in ``out``; RunDirectoryError when there is none."""
    run = RunDirectory(out)
    if not (run.path / CONFIG).is_file():
        raise RunDirectoryError(f"{run.path} holds no run to resume (no {CONFIG}); start one without --resume.")
    saved = run.config
    if saved.get("job") != job:
        raise RunDirectoryError(f"{run.path} holds a '{saved.get('job')}' run, not '{job}'; "
                                f"resume it with 'pseudolabel {saved.get('job')}'.")
    return saved
NOISE_KINDS = ("symmetric", "pairs")


def check_device(device) -> None:
    """A device this machine's torch can use, before anything is written (one line otherwise)."""
    from pseudolabel.models.images import resolve_device  # torch is loaded lazily

    resolve_device(device)


@functools.lru_cache(maxsize=None)
def model_param_names() -> frozenset:
    """The ConvNetClassifier parameters a config may set (what the job supplies itself left out)."""
    from pseudolabel.models import ConvNetClassifier  # torch: loaded only when a job builds a model

    return frozenset(ConvNetClassifier().get_params()) - {"module", "random_state", "callbacks", "verbose"}


def make_model(model: Mapping, seed: int, callbacks=None, name: str | None = None):
    """The estimator ``name`` names (:func:`pseudolabel.models.registry.make_model`; None: the
    ConvNetClassifier) with ``model``'s parameters (the torch models'), seeded."""
    from pseudolabel.models.registry import make_model as registry_model  # torch is loaded lazily

    return registry_model(name, random_state=seed, callbacks=callbacks, **dict(model))


def pick_table_model(config: "JobConfig", y, X, say) -> "JobConfig":
    """The config with a table's default model settled by its data (registry.default_model: the
    number of given labels in ``y``, missing values in ``X``), said in one line; a config whose
    model was named, or that is not a table, as it is."""
    if config.data_kind != "table" or not config.extra.get(MODEL_DEFAULTED):
        return config
    from pseudolabel.models.registry import default_model  # torch: lazily

    n_labels = int(np.sum(np.asarray(y) != -1))
    if getattr(config, "labeled", None) is not None:  # --labeled N keeps N of them
        n_labels = min(n_labels, int(config.labeled))
    missing = getattr(X, "dtype", None) is not None and X.dtype.kind == "f" and bool(np.isnan(X).any())
    name = default_model("table", n_labels=n_labels, missing=missing)
    say(f"model: {name}, the default for a table with {n_labels} given labels"
        f"{' and missing values' if missing else ''} (--model to choose another; docs/tables.md)")
    return config if name == config.model_name else type(config).build({**config.to_dict(), "model_name": name})


def check_data(model_name: str | None, kind: str, X) -> None:
    """Refuse, in one line before anything is written, a table with missing numbers for a model
    that cannot take them (hgb and forest can)."""
    if kind != "table" or getattr(X, "dtype", None) is None or X.dtype.kind != "f":
        return
    from pseudolabel.models.registry import allows_nan, make_model as registry_model  # torch: lazily

    missing = np.isnan(X).any(axis=1)
    if missing.any():
        estimator = registry_model(model_name) if model_name.startswith("module:") else None
        if not allows_nan(model_name, estimator):
            raise InputError(f"{int(missing.sum())} of {len(X)} rows have missing numbers, which --model {model_name} "
                             "cannot take; use --model hgb or forest (they take missing values), or fill them in.")


def parse_duration(text) -> float:
    """Seconds in ``"90"``, ``"90s"``, ``"10m"``, ``"1.5h"`` (a number alone is seconds)."""
    raw = str(text).strip().lower()
    scale = {"s": 1, "m": 60, "h": 3600}.get(raw[-1:], None)
    try:
        value = float(raw[:-1] if scale else raw) * (scale or 1)
    except ValueError:
        raise InputError(f"budget {text!r} is not a duration; write e.g. 90s, 10m or 1.5h.") from None
    if not value > 0 or value == float("inf"):
        raise InputError(f"budget {text!r} must be a positive duration; write e.g. 90s, 10m or 1.5h.")
    return value


# The flat key (config.json, --input-size) of the model's own ``image_size``: the size a backbone
# resizes its input to. ``image_size`` in the flat dict is the job's: the size images are decoded at.
INPUT_SIZE = "input_size"
# Parameters only the torchvision backbones (and embed:) read; refused for other models.
BACKBONE_PARAMS = {"weights": "--weights", "freeze_epochs": "--freeze-epochs", "image_size": "--input-size"}

# Set in config.json when a table's model was not named (--model): the jobs settle it by the data.
MODEL_DEFAULTED = "model_defaulted"

# The selftrain job's rounds for a model that is not a torch network (tables, texts, embed:,
# module:): SelfTraining's defaults (docs/selftraining.md, "The default selection").
SKLEARN_ROUNDS = dict(threshold=None, max_iter=10, relabel=False, given_share=None)

_SEED = [Interval(int, 0, None)]
# Stricter than the model's own rules where a job needs it: a job that trains zero epochs would
# write a run of untrained models.
_JOB_CONSTRAINTS = {
    "epochs": [Interval(int, 1, None), Options("auto")],
    "image_size": [Satisfies(lambda v: _check_size(v), "a (height, width) pair of ints >= 1"), None],
    "skip_bad_images": [Boolean()],
}


def _check_text(value) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"not a non-empty string: {value!r}")


def _check_size(value) -> None:
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)):
        raise InputError(f"not a (height, width) pair: {value!r}")


@dataclass
class JobConfig(Mapping):
    """What every job's config has: the data, the seed, the recipe, the store, the run id; the
    model's parameters (``model``) and keys the job does not read (``extra``, kept in config.json)."""

    job: ClassVar[str] = ""
    recipes: ClassVar[dict] = {}
    constraints: ClassVar[dict] = {}

    data: Any = None
    seed: int = 0
    recipe: str = "default"
    store: str | None = None
    run_id: str | None = None
    # An image folder's images are decoded once at this (height, width); None: the size they share,
    # else the most common one (a line says what was resized). skip_bad_images leaves out files that
    # cannot be decoded (a line names them) instead of refusing the folder.
    image_size: Any = None
    skip_bad_images: bool = False
    # A table or texts (pseudolabel.tabular): the label column, and the column of texts (None: a
    # table's other columns are the features). model_name: --model (models/registry.py); None is
    # the CNN for images, and a table's or text's default is resolved (and saved) by build.
    label_column: str | None = None
    text_column: str | None = None
    model_name: str | None = None
    model: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    # -- building ----------------------------------------------------------------------------
    @classmethod
    def build(cls, options: Mapping | None = None, **more) -> "JobConfig":
        """The recipe ``options["recipe"]`` (default "default") with the options that are not None
        laid over it, checked. None means "not given" (the command line's unset flags); to set a
        parameter to None, use ``build(...).replace(name=None).check()``."""
        given = {k: v for k, v in {**(options or {}), **more}.items() if v is not None}
        recipe = given.get("recipe", "default")
        if recipe not in cls.recipes:
            raise InputError(f"--recipe must be one of {', '.join(map(repr, cls.recipes))}. Got {recipe!r} instead.")
        flat = {**cls.recipes[recipe], **given}
        cls._adjust(flat, given)
        return cls.from_dict(flat).check()

    @classmethod
    def _adjust(cls, flat: dict, given: dict) -> None:
        """Rules between options; ``given`` holds only what the caller set. Epochs mean epochs: a
        recipe's minimum of optimizer steps (which stretches training on small data) gives way
        when the caller sets the epochs but not the minimum."""
        if "epochs" in given and "min_steps" not in given:
            flat["min_steps"] = 0
        weights = flat.get("weights")
        if isinstance(weights, (str, Path)) and str(weights).strip().lower() not in ("imagenet", "none"):
            flat["weights"] = str(Path(weights).expanduser().resolve())  # a resumed run finds it from anywhere
        if flat.get("model_name") is None and flat.get("label_column") is not None:
            from pseudolabel.models.registry import default_model  # torch is loaded lazily

            table = flat.get("text_column") is None
            flat["model_name"] = default_model("table" if table else "text")
            if table:  # a table's default is settled once its labels are read (pick_table_model)
                flat[MODEL_DEFAULTED] = flat.get(MODEL_DEFAULTED, True)

    @classmethod
    def coerce(cls, config) -> "JobConfig":
        """A config as is, or one built from a dict (a recipe and options, or a saved config)."""
        return config if isinstance(config, cls) else cls.build(config)

    @classmethod
    def from_saved(cls, saved: Mapping) -> "JobConfig":
        """The config a run saved in its config.json (runs from before these classes included)."""
        return cls.build(saved)

    @classmethod
    def resume(cls, out, given: Mapping, say) -> "JobConfig":
        """The config of the run in ``out`` to resume, read before the run is touched.

        The saved config wins. Options in ``given`` (None = not given) that differ from it are
        refused in one line naming them, except where the run happens (``device``, ``jobs``,
        ``threads``): those are applied, with a note. So a resumed run computes what the first
        run would have, or says why it does not start.
        """
        saved = saved_config(out, cls.job)
        asked = given.to_dict() if isinstance(given, JobConfig) else {
            k: v for k, v in dict(given).items() if v is not None}
        asked = {k: v for k, v in asked.items() if k not in _NOT_COMPARED}
        # Where it runs is applied before the saved config is checked: a run saved with
        # --device cuda resumes on a CPU machine with --device cpu.
        safe = {k: asked[k] for k in RESUME_SAFE if k in asked}
        config = cls.from_saved({**saved, **safe})
        asked = {k: v for k, v in asked.items() if k in config}
        wanted = cls.build({**config.to_dict(), **asked})  # the options as a run would read them
        differ, applied = [], []
        for key in asked:
            if key in RESUME_SAFE:
                if key in saved and jsonable(saved[key]) != jsonable(wanted[key]):
                    applied.append(f"{key}={wanted[key]!r} (saved {saved[key]!r})")
            elif jsonable(wanted[key]) != jsonable(config[key]):
                differ.append(f"{key} {wanted[key]!r} (saved {config[key]!r})")
        store = given.get("store")
        if store is not None and str(Path(store).expanduser().resolve()) != str(config.store):
            differ.append(f"store {str(store)!r} (saved {config.store!r})")
        if differ:
            raise InputError(f"{out} holds a {cls.job} run saved with other settings: {', '.join(differ)}; "
                             "leave those options out to continue it as it was, or start a new run in another --out.")
        if applied:
            say("note: --resume applies " + ", ".join(applied))
        return config

    @classmethod
    def from_dict(cls, flat: Mapping) -> "JobConfig":
        """Sort a flat dict (a recipe with options, or a saved config.json) into fields, model
        parameters and extra keys. Nothing is checked here: :meth:`check` does that."""
        names = {f.name for f in dataclasses.fields(cls)} - {"model", "extra"}
        known, model, extra = {}, {}, {}
        for k, v in flat.items():
            if k in _RUN_KEYS:
                continue
            if k in names:
                known[k] = v
            elif k == INPUT_SIZE:  # the model's image_size (the job's image_size is the decode size)
                model["image_size"] = v
            elif k in model_param_names():
                model[k] = v
            else:
                extra[k] = v
        if isinstance(flat.get("model"), Mapping):  # a config dumped with asdict
            model.update(flat["model"])
            extra.pop("model", None)
        if isinstance(known.get("image_size"), list):  # config.json keeps tuples as lists
            known["image_size"] = tuple(known["image_size"])
        return cls(**known, model=model, extra=extra)

    def replace(self, **changes) -> "JobConfig":
        """A copy with ``changes`` (job settings or model parameters), not checked again."""
        return type(self).from_dict({**self.to_dict(), **changes})

    def check(self) -> "JobConfig":
        """Check every value against the one table of each owner; raises InputError naming the
        first bad one (as a command-line flag). Returns self."""
        check_params(self.to_dict(), {**_JOB_CONSTRAINTS, **self.constraints})
        from pseudolabel.models.registry import check_model  # torch is loaded lazily

        for flag, value in (("--label-column", self.label_column), ("--text-column", self.text_column),
                            ("--model", self.model_name)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise InputError(f"{flag} must be a non-empty name. Got {value!r} instead.")
        if self.text_column is not None and self.label_column is None:
            raise InputError("--text-column needs --label-column: name the column of labels too.")
        self._check_backbone_params()
        estimator = make_model(self.model, 0, name=self.model_name)  # an unknown name stops here
        check_model(self.model_name, self.data_kind)
        if hasattr(estimator, "check_params"):  # the torch models check their own parameters
            estimator.check_params()
        check_device(self.model.get("device", "auto"))
        self._check_more()
        return self

    def _check_backbone_params(self) -> None:
        """--weights, --freeze-epochs and --input-size need a model that reads them."""
        from pseudolabel.models.registry import EMBED, MODULE, is_backbone  # torch is loaded lazily

        name = self.model_name or "cnn"
        size = self.model.get("image_size")
        if isinstance(size, int) and size < 8:
            raise InputError(f"--input-size must be at least 8 pixels; got {size} (the networks downsample 32-fold: "
                             "32 or more is usual).")
        if name.startswith(MODULE) or is_backbone(name):
            return  # a backbone reads them all; a user's estimator gets those it has
        given = [flag for key, flag in BACKBONE_PARAMS.items() if self.model.get(key) is not None]
        if name.startswith(EMBED):
            given = [flag for flag in given if flag == "--freeze-epochs"]  # embed: fine-tunes nothing
        if given:
            one = len(given) == 1
            models = "a torchvision backbone (--model resnet18, ...)" + (
                "" if given == ["--freeze-epochs"] else " or embed:BACKBONE")
            raise InputError(f"{', '.join(given)} {'applies' if one else 'apply'} to {models}, not --model {name}; "
                             f"leave {'it' if one else 'them'} out or pick a backbone.")

    def _check_more(self) -> None:
        """Checks that need more than one value (a subclass's)."""

    @property
    def data_kind(self) -> str:
        """"images", "table" (``label_column`` given) or "text" (``text_column`` too)."""
        if self.label_column is None:
            return "images"
        return "text" if self.text_column is not None else "table"

    # -- reading, as the flat dict config.json holds -----------------------------------------
    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("model", "extra")}
        model = {(INPUT_SIZE if k == "image_size" else k): v for k, v in self.model.items()}
        return {**self.extra, **out, **model}

    def __getitem__(self, key: str):
        return self.to_dict()[key]

    def __iter__(self):
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


@dataclass
class SelfTrainConfig(JobConfig):
    """The selftrain job: data, how many labels to keep, the rounds (``SelfTraining``'s
    parameters) and the model. ``final_epochs``: a student trained from scratch on the last
    round's labels (the frontier recipe)."""

    job: ClassVar[str] = "selftrain"
    recipes: ClassVar[dict] = RECIPES
    constraints: ClassVar[dict] = {
        "labeled": [Interval(int, 1, None), None],
        "seed": _SEED,
        "recipe": [Options(*RECIPES)],
        "final_epochs": [Interval(int, 1, None), None],
        "final_arch": [Options("auto", "sized", "strided", "fast", "wide", "seed"), None],
        "start": [Options("data", "store"), None],
        "holdout": [Interval(float, 0.0, 1.0, closed="left")],
        "validation": [Interval(float, 0.0, 1.0, closed="left")],
    }

    labeled: int | None = None
    threshold: Any = 0.99
    max_iter: int | None = 4
    relabel: bool = True
    class_quota: int | None = None
    given_share: float | None = 0.5
    final_epochs: int | None = None
    final_arch: str | None = None
    start: str | None = None
    # A table or texts without a test split: this share of each class's given labels is held out
    # to measure accuracy (jobs.selftrain.hold_out); 0 trains on every label.
    holdout: float = 0.2
    # This share of each class's given labels is set aside (never trained on) to score every round;
    # the run keeps the round that scores best (jobs.selftrain.RoundRecorder); 0: the last round.
    validation: float = 0.0

    @classmethod
    def _adjust(cls, flat: dict, given: dict) -> None:
        super()._adjust(flat, given)
        from pseudolabel.models.registry import is_backbone  # torch is loaded lazily

        name = flat.get("model_name")
        if name is not None and name != "cnn" and not is_backbone(name):
            # The recipes' rounds (0.99, relabel, given_share, 4 rounds) were tuned on the CNN;
            # other models get SelfTraining's own defaults, criterion "auto" among them.
            flat.update({k: v for k, v in SKLEARN_ROUNDS.items() if k not in given})

    def _check_more(self) -> None:
        self.selftraining().check_params()

    def selftraining(self, callbacks=None) -> SelfTraining:
        """The SelfTraining of this config around its model; ``callbacks`` go to every model (their
        epoch hooks) and to SelfTraining (their round hooks)."""
        clf = make_model(self.model, self.seed, callbacks, name=self.model_name)
        final = None
        if self.final_epochs:  # a student trained from scratch on the last round's labels
            final = make_model({**self.model, "arch": self.final_arch or self.model.get("arch", "auto"),
                                "epochs": self.final_epochs, "min_steps": 0, "warm_start": False},
                               self.seed + 1, callbacks, name=self.model_name)
        return SelfTraining(clf, threshold=self.threshold, max_iter=self.max_iter, relabel=self.relabel,
                            class_quota=self.class_quota, given_share=self.given_share, final_estimator=final,
                            callback=list(callbacks) if callbacks else None)


@dataclass
class CleanConfig(JobConfig):
    """The clean job: folds, passes, how suspects are ranked and fixed, the simulation's noise,
    workers, and the folds' model (later passes: ``later_*``)."""

    job: ClassVar[str] = "clean"
    recipes: ClassVar[dict] = CLEAN_RECIPES
    constraints: ClassVar[dict] = {
        "seed": _SEED,
        "folds": [Interval(int, 2, None)],
        "passes": [Options("auto"), Interval(int, 1, None)],
        "method": [Options(*METHODS)],
        "threshold": [Interval(float, 0.0, 1.0, closed="left")],
        "policy": [Options(*POLICIES)],
        "noise": [Interval(float, 0.0, 1.0, closed="left"), None],
        "noise_kind": [Options(*NOISE_KINDS)],
        "limit": [Interval(int, 2, None), None],
        "jobs": [Interval(int, 1, None)],
        "threads": [Interval(int, 1, None)],
        "eval_epochs": [Interval(int, 1, None)],
        "later_epochs": [Interval(int, 1, None)],
        "later_augment": [Options("affine", "none")],
        "later_weighted": [Boolean()],
        "average_passes": [Boolean()],
        "budget": [Interval(float, 0.0, None, closed="neither"), None],
        "cluster": [Satisfies(lambda v: _check_text(v), "local, auto or ray://HOST:PORT"), None],
    }

    folds: int = 4
    passes: Any = "auto"
    method: str = "posterior"
    threshold: float = 0.0
    policy: str = "relabel"
    noise: float | None = None
    noise_kind: str = "symmetric"
    limit: int | None = None
    jobs: int = 1
    threads: int = 1
    eval_epochs: int = 2
    later_epochs: int = 8
    later_augment: str = "affine"
    later_weighted: bool = True
    average_passes: bool = True
    budget: float | None = None
    # The folds as Ray tasks (pseudolabel.cluster): local, auto, ray://HOST:PORT; None: this machine.
    cluster: str | None = None

    @classmethod
    def _adjust(cls, flat: dict, given: dict) -> None:
        super()._adjust(flat, given)
        if isinstance(flat.get("budget"), str):
            flat["budget"] = parse_duration(flat["budget"])
        passes = flat.get("passes")
        if isinstance(passes, str) and passes.strip().isdigit():
            flat["passes"] = int(passes)

    @classmethod
    def from_saved(cls, saved: Mapping) -> "CleanConfig":
        """A saved config.json; a run from before later passes had their own recipe resumes
        with the old behaviour (its later passes train like the first, unweighted, unaveraged)."""
        saved = dict(saved)
        if "validation_fraction" not in saved:  # a run from before early stopping: its folds did not
            saved.update(validation_fraction=None)
        if "later_epochs" not in saved:
            saved.update(later_epochs=saved.get("epochs", CLEAN_RECIPES["default"]["epochs"]),
                         later_augment=saved.get("augment") or "none", later_weighted=False, average_passes=False)
        return cls.build(saved)

    def pass_config(self, pass_no: int) -> "CleanConfig":
        """The config whose model trains the folds of pass ``pass_no``: from pass 2 on,
        ``later_epochs`` and ``later_augment`` ("none": no augmentation) replace the model's."""
        if pass_no < 2:
            return self
        # validation_fraction=None: the later passes' recipe was chosen training on every row
        return self.replace(epochs=self.later_epochs, validation_fraction=None,
                            augment=None if self.later_augment == "none" else self.later_augment)


@dataclass
class ScoreConfig(JobConfig):
    """The score job: a run's saved model (``run``) over a pool (``pool``: .npy, image folder or
    manifest), ``chunk_size`` images at a time, optionally with every class's probability
    (``proba``), locally or on a Ray cluster (``cluster``: local, auto, ray://HOST:PORT; ``workers``
    actors, default one per GPU or CPU)."""

    job: ClassVar[str] = "score"
    recipes: ClassVar[dict] = SCORE_RECIPES
    constraints: ClassVar[dict] = {
        "run": [Satisfies(lambda v: _check_text(v), "a path")],
        "pool": [Satisfies(lambda v: _check_text(v), "a path")],
        "chunk_size": [Interval(int, 1, None)],
        "proba": [Boolean()],
        "cluster": [Satisfies(lambda v: _check_text(v), "local, auto or ray://HOST:PORT"), None],
        "workers": [Interval(int, 1, None), None],
    }

    run: str | None = None
    pool: str | None = None
    chunk_size: int = 4096
    proba: bool = False
    cluster: str | None = None
    workers: int | None = None


def config_for(job: str, options: Mapping) -> JobConfig:
    """The checked config of ``job`` ("selftrain" or "clean") from a recipe name and options."""
    return {"selftrain": SelfTrainConfig, "clean": CleanConfig}[job].build(options)
