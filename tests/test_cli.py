"""The command line: `pseudolabel selftrain` writes a complete, resumable run directory; bad input
ends in one line on stderr and exit code 2; `pseudolabel demo` says where its results are.

The runs use the seed recipe with the fast network (no minimum step count), so that a run on
digits takes seconds: the default recipe trains at least 600 steps a round, minutes on 2 cores.
"""
from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pseudolabel.cli import main

ROOT = Path(__file__).resolve().parents[1]
# 100 labels, 2 rounds; a threshold the briefly trained network passes, so every round adds labels.
FAST = ["--data", "digits", "--labeled", "100", "--max-iter", "2", "--epochs", "15", "--recipe", "seed",
        "--arch", "fast", "--threshold", "0.5", "--seed", "0"]
TIMING = {"seconds", "elapsed_s"}
TEST_ACCURACY_LINE = re.compile(r"^test accuracy: \d\.\d{4}$")


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def history_without_timing(path: Path) -> list[dict]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def subprocess_env() -> dict:
    # The same torch thread count as this process, so in-process and subprocess runs compute alike.
    return dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()), PYTHONUNBUFFERED="1")


def cli_command() -> list[str]:
    exe = ROOT / ".venv" / "bin" / "pseudolabel"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "pseudolabel.cli"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run, in-process: the run directory other tests inspect and compare with."""
    out = tmp_path_factory.mktemp("cli") / "run"
    result = CliRunner().invoke(main, ["selftrain", *FAST, "--out", str(out)])
    return out, result


# -- selftrain -------------------------------------------------------------------------------------

def test_selftrain_writes_the_run_directory(reference):
    out, result = reference
    assert result.exit_code == 0, result.output + (result.stderr or "")
    for name in ("config.json", "history.jsonl", "history.csv", "labels.csv", "model.joblib"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["job"] == "selftrain" and config["data"] == "digits" and config["labeled"] == 100
    assert config["threshold"] == 0.5 and config["max_iter"] == 2 and config["seed"] == 0

    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r["round"] for r in history] == list(range(len(history)))
    assert len(history) >= 2 and history[1]["n_added"] > 0  # self-training did happen
    assert all("test_accuracy" in r and "elapsed_s" in r for r in history)
    with open(out / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["round"]) for r in rows] == [r["round"] for r in history]

    with open(out / "labels.csv") as fh:
        labels = list(csv.DictReader(fh))
    assert {"item", "label", "source", "round", "confidence"} <= set(labels[0])
    assert len(labels) == 1347  # every training digit, one row each
    given = [r for r in labels if r["source"] == "given"]
    pseudo = [r for r in labels if r["source"] == "pseudo"]
    assert len(given) == 100
    assert all(r["round"] == "0" and r["confidence"] == "" and int(r["label"]) >= 0 for r in given)
    assert len(pseudo) == history[-1]["n_pseudo"] > 0
    assert all(int(r["round"]) >= 1 and float(r["confidence"]) > 0.5 for r in pseudo)
    assert len({r["item"] for r in labels}) == len(labels)

    import joblib

    from pseudolabel.datasets import load_digits

    model = joblib.load(out / "model.joblib")
    ds = load_digits()
    acc = float(np.mean(model.predict(ds.X_test) == ds.y_test))
    assert acc == pytest.approx(history[-1]["test_accuracy"])

    lines = result.output.strip().splitlines()
    assert TEST_ACCURACY_LINE.match(lines[-1]), lines[-1]
    assert float(lines[-1].split(": ")[1]) == pytest.approx(history[-1]["test_accuracy"], abs=5e-5)


def test_frontier_recipe_ends_with_a_student_model(tmp_path):
    out = tmp_path / "frontier"
    result = CliRunner().invoke(main, ["selftrain", "--data", "digits", "--labeled", "100", "--recipe", "frontier",
                                       "--max-iter", "1", "--epochs", "2", "--min-steps", "30", "--threshold", "0.5",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["recipe"] == "frontier" and config["final_epochs"] > 0
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r["round"] for r in history] == [0, 1, 2]
    assert history[-1]["final"] is True and "final" not in history[1]
    import joblib

    from pseudolabel.datasets import load_digits

    model = joblib.load(out / "model.joblib")  # the student, not the last round's model
    assert model.epochs == config["final_epochs"] and model.arch == config["final_arch"] and not model.warm_start
    ds = load_digits()
    assert float(np.mean(model.predict(ds.X_test) == ds.y_test)) == pytest.approx(history[-1]["test_accuracy"])


def test_progress_names_round_and_epoch(reference):
    _, result = reference
    # SelfTraining clones the CNN and its callbacks: the job must still advance the round they print
    for r in (0, 1, 2):
        assert re.search(rf"^round {r} epoch 15/15 loss \d\.\d{{4}} train acc", result.stderr, re.M)
        assert re.search(rf"^round {r}: \d+ labeled \(\+\d+\), test accuracy \d\.\d{{4}}$", result.stderr, re.M)
    assert re.search(r"^\s*round\s+.*test acc", result.output, re.M)  # the per-round table


@pytest.mark.reliability
@pytest.mark.parametrize("kill_after", [1, 2], ids=["round-0", "round-1"])
def test_resume_after_a_kill_gives_the_same_history(reference, tmp_path, kill_after):
    ref_out, ref_result = reference
    assert ref_result.exit_code == 0
    out = tmp_path / "run"
    history = out / "history.jsonl"
    env = subprocess_env()
    with open(tmp_path / "killed.log", "wb") as log:
        proc = subprocess.Popen([*cli_command(), "selftrain", *FAST, "--out", str(out)], cwd=tmp_path, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and proc.poll() is None:
                if history.exists() and len(history.read_text().splitlines()) >= kill_after:
                    break
                time.sleep(0.05)
            assert proc.poll() is None, "the run ended before it could be killed: " + (tmp_path / "killed.log").read_text()
            os.killpg(proc.pid, signal.SIGKILL)  # no cleanup, as with a power cut or an OOM kill
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    rounds = len(history.read_text().splitlines())
    assert rounds == kill_after, "the kill came after the run had finished"

    # The kill is a real process's; the resume only reads what it left, so it runs in-process.
    done = CliRunner().invoke(main, ["selftrain", *FAST, "--out", str(out), "--resume"])
    assert done.exit_code == 0, done.output[-3000:] + done.stderr[-3000:]
    assert "resuming" in done.stderr or "restarting" in done.stderr
    got, want = history_without_timing(history), history_without_timing(ref_out / "history.jsonl")
    assert got == want, f"killed after {rounds} rounds; resumed run:\n{done.stderr[-2000:]}"
    assert TEST_ACCURACY_LINE.match(done.stdout.strip().splitlines()[-1])
    with open(out / "labels.csv") as a, open(ref_out / "labels.csv") as b:
        assert list(csv.reader(a)) == list(csv.reader(b))


# -- bad input ---------------------------------------------------------------------------------------

def assert_one_line_error(result, progress_before=False):
    """Exit 2, no traceback, and one line 'error: ...' on stderr: the only line for input refused
    up front, the last one after progress lines for a problem met while the run reads its data."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.stderr)
    err = result.stderr
    assert "Traceback" not in err and "Traceback" not in result.stdout
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error")]
    assert len(errors) == 1 and lines[-1] == errors[0] and errors[0].startswith("error: "), err
    if not progress_before:
        assert len(lines) == 1, err
    return errors[0]


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def test_bad_threshold(tmp_path):
    line = assert_one_line_error(invoke("selftrain", "--data", "digits", "--threshold", "1.5",
                                        "--out", str(tmp_path / "run")))
    assert "The 'threshold' parameter of SelfTraining must be a float in [0, 1). Got 1.5 instead." in line


def test_bad_threshold_exits_2_and_writes_nothing(tmp_path):
    result = invoke("selftrain", "--data", "digits", "--threshold", "1.5", "--out", str(tmp_path / "run"))
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert "must be a float in [0, 1). Got 1.5 instead." in result.stderr
    assert not (tmp_path / "run").exists()


def test_unknown_data_spec(tmp_path):
    line = assert_one_line_error(invoke("selftrain", "--data", "imagenet-21k", "--out", str(tmp_path / "run")))
    assert line.startswith("error: data 'imagenet-21k' does not exist; pass 'mnist', 'digits'")
    assert not (tmp_path / "run").exists()


def test_empty_image_folder(tmp_path):
    (tmp_path / "images" / "cats").mkdir(parents=True)
    line = assert_one_line_error(invoke("selftrain", "--data", str(tmp_path / "images"), "--out", str(tmp_path / "run")))
    assert line.startswith(f"error: no images found in {tmp_path / 'images'}")
    assert not (tmp_path / "run").exists()


def test_corrupt_png_in_image_folder(tmp_path, digits):
    images = tmp_path / "images"
    for label in (0, 1):
        (images / str(label)).mkdir(parents=True)
        for i in np.flatnonzero(digits[1] == label)[:4]:
            Image.fromarray((digits[0][i] * 15).astype(np.uint8)).save(images / str(label) / f"{i}.png")
    for i in range(4):  # unlabeled images beside the class folders
        Image.fromarray((digits[0][100 + i] * 15).astype(np.uint8)).save(images / f"u{i}.png")
    bad = images / "1" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not the rest of a PNG")
    line = assert_one_line_error(invoke("selftrain", "--data", str(images), "--max-iter", "1", "--epochs", "1",
                                        "--out", str(tmp_path / "run")), progress_before=True)
    assert line.startswith(f"error: cannot read image {bad}") and line.endswith("remove or replace it.")


def test_existing_run_directory_is_refused_and_left_intact(reference):
    out, result = reference
    assert result.exit_code == 0
    before = snapshot(out)
    line = assert_one_line_error(invoke("selftrain", *FAST, "--out", str(out)))
    assert line == f"error: {out} holds a run already; pass --resume to continue it or choose a new --out."
    assert snapshot(out) == before


def test_resume_without_a_run_is_refused(tmp_path):
    line = assert_one_line_error(invoke("selftrain", *FAST, "--out", str(tmp_path / "none"), "--resume"))
    assert "holds no run to resume" in line


# -- demo ----------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_demo_says_where_its_results_are(tmp_path):
    earlier = tmp_path / "demo"
    earlier.mkdir()
    (earlier / "notes.txt").write_text("an earlier demo")
    result = CliRunner().invoke(main, ["demo", "--out", str(earlier)])
    assert result.exit_code == 0, result.output + (result.stderr or "")
    out = tmp_path / "demo-2"  # an earlier demo is never overwritten
    assert snapshot(earlier) == {"notes.txt": b"an earlier demo"}
    lines = result.output.strip().splitlines()
    assert TEST_ACCURACY_LINE.match(lines[-1])
    where = next(line for line in lines if line.startswith("results: "))
    assert str(out) in where
    for name in ("config.json", "history.jsonl", "history.csv", "labels.csv", "model.joblib"):
        assert (out / "selftrain" / name).is_file()
    for name in ("issues.csv", "grid.png", "labels.csv", "labels.db"):
        assert (out / "clean" / name).is_file()
    base, final = map(float, re.search(r"supervised (\d\.\d{4}) -> self-trained (\d\.\d{4})", result.output).groups())
    assert final == float(lines[-1].split(": ")[1])
    assert final > 0.9  # 80 labels of digits to train on: a CNN that learned
    # Every round scored on the 20 labels set aside; the run keeps the best-scoring one (never the
    # test set), and on digits self-training helps.
    history = [json.loads(line) for line in (out / "selftrain" / "history.jsonl").read_text().splitlines()]
    rounds = [r for r in history if "val_accuracy" in r]
    assert len(rounds) >= 2
    best = max(r["val_accuracy"] for r in rounds)
    picked = [r for r in rounds if r["val_accuracy"] == best][-1]
    assert final == pytest.approx(picked["test_accuracy"], abs=1e-4)
    assert final >= base
    # Cleaning: 5 % corrupted, most found, the labels better after than before.
    m = re.search(r"labels correct (\d\.\d{4}) -> (\d\.\d{4})", result.output)
    assert m and float(m.group(2)) > float(m.group(1))
    # A line per round or fold, not per epoch: every epoch line is a last epoch.
    epochs = re.findall(r"epoch (\d+)/(\d+) ", result.stderr)
    assert epochs and all(e == n for e, n in epochs)
    assert len(result.stderr.splitlines()) < 60


def test_selftrain_semi_learns_from_the_unlabeled_rows_too(tmp_path):
    out = tmp_path / "semi"
    result = CliRunner().invoke(main, ["selftrain", "--data", "digits", "--labeled", "100", "--max-iter", "1",
                                       "--epochs", "2", "--min-steps", "20", "--semi", "fixmatch", "--seed", "0",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert re.search(r"round 0 epoch 1/\d+ .* unlabeled used \d\.\d{3}", result.stderr), result.stderr
    assert json.loads((out / "config.json").read_text())["semi"] == "fixmatch"
    assert TEST_ACCURACY_LINE.match(result.stdout.strip().splitlines()[-1])


@pytest.mark.reliability
@pytest.mark.parametrize("args, expected", [
    (["--labeled", "99999999"], "--labeled 99999999 is more than the 1347 labeled samples of data 'digits'"),
    (["--labeled", "100", "--epochs", "0"], "--epochs must be an int >= 1 or one of 'auto'. Got 0 instead."),
    (["--labeled", "100", "--device", "cuda:7"], "device 'cuda:7' is not available here"),
    (["--labeled", "100", "--device", "tpu"], "device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got 'tpu'"),
])
def test_impossible_options_are_refused_before_a_run_directory_exists(tmp_path, args, expected):
    line = assert_one_line_error(invoke("selftrain", "--data", "digits", *args, "--out", str(tmp_path / "run")))
    assert expected in line
    assert not (tmp_path / "run").exists()


def test_image_folder_options_skip_bad_files_and_declare_the_size(tmp_path):
    """A corrupt file stops the run in one line naming --skip-bad-images; with it the file is left
    out and named; --image-size decides the size whatever sizes the files have."""
    rng = np.random.default_rng(0)
    for c in range(2):
        (tmp_path / "f" / str(c)).mkdir(parents=True)
        for i in range(12):
            side = 12 if i % 3 else 10  # two sizes in the folder
            Image.fromarray((rng.random((side, side)) * 255).astype(np.uint8)).save(tmp_path / "f" / str(c) / f"{i}.png")
    (tmp_path / "f" / "1" / "bad.png").write_bytes(b"\x89PNG this is no image")
    base = ["selftrain", "--data", str(tmp_path / "f"), "--labeled", "6", "--max-iter", "0", "--epochs", "1"]
    line = assert_one_line_error(invoke(*base, "--out", str(tmp_path / "r1")))
    assert "bad.png" in line and "--skip-bad-images" in line and not (tmp_path / "r1").exists()
    result = invoke(*base, "--skip-bad-images", "--image-size", "8", "8", "--out", str(tmp_path / "r2"))
    assert result.exit_code == 0, result.stderr
    assert re.search(r"^note: skipped 1 of 25 images .*1/bad\.png", result.stderr, re.M)
    config = json.loads((tmp_path / "r2" / "config.json").read_text())
    assert config["image_size"] == [8, 8] and config["skip_bad_images"] is True
    labels = list(csv.DictReader(open(tmp_path / "r2" / "labels.csv")))
    assert len(labels) == 24 and not any("bad.png" in row["item"] for row in labels)
