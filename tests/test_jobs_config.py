"""Typed job configs: a recipe by name plus options, checked once against one table, read back from
the flat config.json of runs made before these classes existed."""
from __future__ import annotations

import json

import pytest

from pseudolabel.exceptions import InputError
from pseudolabel.jobs.config import CleanConfig, SelfTrainConfig, model_param_names
from pseudolabel.jobs.recipes import CLEAN_DEFAULTS, DEFAULTS, RECIPES, SEED_PROTOCOL
from pseudolabel.models import ConvNetClassifier


def test_a_recipe_by_name_from_python_as_from_the_command_line():
    seed = SelfTrainConfig.build({"data": "digits", "labeled": 100, "recipe": "seed"})
    assert seed.model["arch"] == "seed" and seed.model["optimizer"] == "adam" and seed.max_iter == 10
    default = SelfTrainConfig.build({"data": "digits", "labeled": 100})
    assert default.recipe == "default" and default["ema"] == DEFAULTS["ema"] and default.threshold == 0.99
    with pytest.raises(InputError, match=r"--recipe must be one of 'default', 'seed', 'frontier'. Got 'fast'"):
        SelfTrainConfig.build({"data": "digits", "recipe": "fast"})


def test_model_parameters_come_from_get_params_not_a_list():
    names = model_param_names()
    assert names == set(ConvNetClassifier().get_params()) - {"module", "random_state", "callbacks", "verbose"}
    assert "ema" in names and "semi_weight" in names
    # None in options means "the recipe's"; replace() sets a parameter to None.
    cfg = SelfTrainConfig.build({"data": "digits", "semi": "fixmatch", "semi_weight": 0.5, "ema": None})
    assert cfg.model["ema"] == DEFAULTS["ema"]
    cfg = cfg.replace(ema=None).check()
    assert cfg.model["semi"] == "fixmatch" and cfg.model["semi_weight"] == 0.5 and cfg.model["ema"] is None
    clf = cfg.selftraining().estimator
    assert (clf.semi, clf.semi_weight, clf.ema, clf.random_state) == ("fixmatch", 0.5, None, 0)


def test_epochs_mean_epochs_unless_min_steps_is_given_too():
    assert DEFAULTS["min_steps"] > 0 and CLEAN_DEFAULTS["min_steps"] > 0
    assert SelfTrainConfig.build({"data": "digits", "epochs": 1})["min_steps"] == 0
    assert SelfTrainConfig.build({"data": "digits", "epochs": 1, "min_steps": 50})["min_steps"] == 50
    assert SelfTrainConfig.build({"data": "digits"})["min_steps"] == DEFAULTS["min_steps"]
    assert CleanConfig.build({"data": "digits", "epochs": 2})["min_steps"] == 0


@pytest.mark.parametrize("options, message", [
    ({"threshold": 1.5}, "The 'threshold' parameter of SelfTraining must be a float in [0, 1). Got 1.5 instead."),
    ({"threshold": [0.99, 2.0]}, "must be a float in [0, 1). Got 2.0 instead."),
    ({"max_iter": -1}, "The 'max_iter' parameter of SelfTraining must be an int >= 0 or None. Got -1"),
    ({"labeled": 0}, "--labeled must be an int >= 1 or None. Got 0 instead."),
    ({"epochs": 0}, "--epochs must be an int >= 1 or one of 'auto'. Got 0 instead."),
    ({"batch_size": 0}, "The 'batch_size' parameter of ConvNetClassifier must be an int >= 1. Got 0 instead."),
    ({"device": "cuda:7"}, "device 'cuda:7' is not available here"),
    ({"arch": "huge"}, "The 'arch' parameter of ConvNetClassifier must be one of"),
    ({"seed": "x"}, "--seed must be an int >= 0. Got 'x' instead."),
])
def test_selftrain_values_checked_once_with_one_message_shape(options, message):
    with pytest.raises(InputError) as err:
        SelfTrainConfig.build({"data": "digits", **options})
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("options, message", [
    ({"folds": 1}, "--folds must be an int >= 2. Got 1 instead."),
    ({"passes": "many"}, "--passes must be one of 'auto' or an int >= 1. Got 'many' instead."),
    ({"noise": 1.5}, "--noise must be a float in [0.0, 1.0) or None. Got 1.5 instead."),
    ({"method": "vote"}, "--method must be one of"),
    ({"later_weighted": "yes"}, "--later-weighted must be True or False. Got 'yes' instead."),
    ({"jobs": 0}, "--jobs must be an int >= 1. Got 0 instead."),
    ({"later_epochs": 0}, "--later-epochs must be an int >= 1. Got 0 instead."),
])
def test_clean_values_checked_once(options, message):
    with pytest.raises(InputError) as err:
        CleanConfig.build({"data": "digits", **options})
    assert message in str(err.value)


def test_a_flat_config_json_round_trips_and_keeps_unknown_keys():
    cfg = SelfTrainConfig.build({"data": "digits", "labeled": 60, "recipe": "frontier"})
    saved = json.loads(json.dumps({"job": "selftrain", "created_at": "2026-01-01T00:00:00+00:00",
                                   "sweep_cell": "n60_s0", **cfg.to_dict()}))
    again = SelfTrainConfig.build(saved)
    assert again.to_dict() == {**cfg.to_dict(), "sweep_cell": "n60_s0"}
    assert again.extra == {"sweep_cell": "n60_s0"} and again.final_epochs == RECIPES["frontier"]["final_epochs"]
    assert {**again}["sweep_cell"] == "n60_s0" and again.get("no such key") is None


def test_a_config_json_written_before_the_typed_configs_resumes_as_it_was():
    """What the old code saved: the recipe dict merged with the options, no 'recipe' for a Python
    caller, and for clean no later-pass keys (those runs resume with the old behaviour)."""
    old = {"job": "selftrain", "created_at": "2025-06-01T10:00:00+00:00", **SEED_PROTOCOL, "data": "digits",
           "labeled": 100, "seed": 3, "epochs": 1, "run_id": "selftrain-20250601T100000-abcdef", "start": "data"}
    cfg = SelfTrainConfig.build(old)
    assert cfg.model["arch"] == "seed" and cfg["min_steps"] == 0 and cfg.seed == 3 and cfg.max_iter == 10
    assert cfg.run_id == old["run_id"]
    old_clean = {"job": "clean", "data": "digits", "folds": 3, "passes": 1, "method": "posterior",
                 "threshold": 0.0, "policy": "relabel", "noise": 0.1, "noise_kind": "symmetric", "limit": None,
                 "seed": 0, "jobs": 1, "threads": 1, "arch": "fast", "epochs": 3, "eval_epochs": 2,
                 "min_steps": 200, "batch_size": 128, "lr": 3e-3, "augment": None, "ema": 0.999, "device": "auto"}
    clean = CleanConfig.from_saved(old_clean)
    assert (clean.later_epochs, clean.later_augment, clean.later_weighted, clean.average_passes) == (3, "none", False,
                                                                                                     False)
    assert clean.pass_config(2)["epochs"] == 3 and clean.pass_config(2)["augment"] is None
    assert clean["min_steps"] == 200  # saved with the epochs: not reset


@pytest.mark.reliability
def test_job_context_marks_a_failed_run_and_turns_sqlite_errors_into_one_line(tmp_path):
    import sqlite3

    from pseudolabel.exceptions import StoreError
    from pseudolabel.jobs.context import JobContext
    from pseudolabel.runs import RunDirectory

    with pytest.raises(RuntimeError, match="boom"):
        with JobContext() as ctx:
            ctx.open_store(tmp_path / "a.db")
            run = ctx.attach(RunDirectory.create(tmp_path / "run", job="selftrain", config={}))
            raise RuntimeError("boom")
    assert run.status["state"] == "failed" and "boom" in run.status["error"]
    assert ctx.store is None  # closed
    with pytest.raises(StoreError) as err:
        with JobContext() as ctx:
            ctx.open_store(tmp_path / "b.db")
            run2 = ctx.attach(RunDirectory.create(tmp_path / "run2", job="clean", config={}))
            raise sqlite3.DatabaseError("database disk image is malformed")
    assert "b.db cannot be read as a label store (database disk image is malformed)" in str(err.value)
    assert "\n" not in str(err.value) and run2.status["state"] == "failed"
    # A run directory that was never attached (another run's) is left alone.
    with pytest.raises(RuntimeError):
        with JobContext():
            raise RuntimeError("before the run")
    assert run.status["error"].endswith("boom")


@pytest.mark.reliability
def test_resume_refuses_options_that_change_results_and_applies_where_it_runs(digits, tmp_path):
    from pseudolabel.jobs.selftrain import run_selftrain

    lines = []
    options = {"data": "digits", "labeled": 60, "max_iter": 0, "epochs": 1, "seed": 0}
    first = run_selftrain(options, tmp_path / "run", say=lines.append)
    before = {p.name: p.read_bytes() for p in first.run.path.iterdir() if p.is_file()}
    with pytest.raises(InputError) as err:
        run_selftrain({**options, "seed": 5, "epochs": 2}, tmp_path / "run", resume=True, say=lines.append)
    message = str(err.value)
    assert "saved with other settings: epochs 2 (saved 1), seed 5 (saved 0);" in message and "\n" not in message
    # Refused before the run was touched: every file as it was, the status still finished.
    assert {p.name: p.read_bytes() for p in first.run.path.iterdir() if p.is_file()} == before
    lines.clear()

    def recorded():
        from pseudolabel.store import LabelStore

        with LabelStore(first.store, create=False) as store:
            return store.rows("SELECT COUNT(*) FROM predictions")[0][0], store.rows("SELECT COUNT(*) FROM events")[0][0]

    before_counts = recorded()
    assert before_counts[0] > 0
    again = run_selftrain({**options, "device": "cpu"}, tmp_path / "run", resume=True, say=lines.append)
    assert "note: --resume applies device='cpu' (saved 'auto')" in lines
    assert again.run.config["seed"] == 0 and again.test_accuracy == first.test_accuracy
    # Resuming a finished run records no prediction or label event twice.
    assert recorded() == before_counts
