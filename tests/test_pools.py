"""Pools larger than memory (pseudolabel.pools) and the score job that reads them chunk by chunk
(pseudolabel.jobs.score, `pseudolabel score`): every kind of pool yields every item once, in
order, with its id; scores equal the model's own predictions; a job resumed after losing parts
scores only those again; bad input is one line."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from pseudolabel.cli import main
from pseudolabel.exceptions import DataError, InputError, RunDirectoryError
from pseudolabel.jobs.score import parts_dir, run_score
from pseudolabel.jobs.selftrain import run_selftrain
from pseudolabel.pools import ArrayPool, FolderPool, ManifestPool, open_pool


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny finished selftrain run on digits (seconds): its model.joblib and labels.db."""
    out = tmp_path_factory.mktemp("st") / "run"
    run_selftrain({"data": "digits", "labeled": 100, "max_iter": 1, "epochs": 2, "recipe": "seed", "arch": "fast",
                   "threshold": 0.5, "seed": 0}, out, say=lambda m: None)
    return out


@pytest.fixture(scope="module")
def npy_pool(tmp_path_factory, digits):
    path = tmp_path_factory.mktemp("pool") / "pool.npy"
    np.save(path, digits[0][:700])
    return path


@pytest.fixture(scope="module")
def png_folder(tmp_path_factory, digits):
    root = tmp_path_factory.mktemp("pngs")
    for i in range(23):
        sub = root / ("a" if i < 10 else "b/c")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray((digits[0][i] * 15).astype(np.uint8)).save(sub / f"{i:03d}.png")
    (root / ".hidden").mkdir()
    (root / "notes.txt").write_text("not an image")
    return root


def test_array_pool_chunks_cover_every_item_once_in_order(npy_pool, digits):
    pool = open_pool(npy_pool)
    assert isinstance(pool, ArrayPool) and len(pool) == 700 and pool.n_chunks(256) == 3
    chunks = list(pool.chunks(256))
    assert [c.index for c in chunks] == [0, 1, 2] and [len(c.ids) for c in chunks] == [256, 256, 188]
    np.testing.assert_array_equal(np.concatenate([c.X for c in chunks]), digits[0][:700])
    assert chunks[1].ids[0] == "pool/256" and pool.ids(698) == ["pool/698", "pool/699"]
    assert [c.index for c in pool.chunks(256, skip=[1])] == [0, 2]
    rows = np.array([699, 3, 256, 3])
    np.testing.assert_array_equal(pool.take(rows), digits[0][rows])
    assert chunks[0].X.flags.writeable  # torch refuses read-only arrays


def test_folder_and_manifest_pools_read_files_in_a_fixed_order(png_folder, tmp_path):
    pool = open_pool(png_folder)
    assert isinstance(pool, FolderPool) and len(pool) == 23
    assert pool.ids(0, 2) == ["a/000.png", "a/001.png"] and pool.ids(22) == ["b/c/022.png"]
    X = np.concatenate([c.X for c in pool.chunks(5)])
    assert X.shape == (23, 8, 8) and X.dtype == np.uint8
    keys = pool.ids()
    pd.DataFrame({"path": [str(png_folder / k) for k in keys[::-1]], "id": [f"x{i}" for i in range(23)]}).to_parquet(
        tmp_path / "m.parquet")
    pd.DataFrame({"path": keys}).to_csv(png_folder / "m.csv", index=False)  # relative to the manifest
    parquet, csv = open_pool(tmp_path / "m.parquet"), open_pool(png_folder / "m.csv")
    assert isinstance(parquet, ManifestPool) and parquet.ids(0, 1) == ["x0"]
    np.testing.assert_array_equal(parquet.read(0, 23), X[::-1])
    np.testing.assert_array_equal(csv.read(0, 23), X)
    assert csv.ids(0, 1) == ["a/000.png"]


@pytest.mark.parametrize("make, message", [
    (lambda p: np.save(p / "flat.npy", np.zeros((4, 5))), "reshape it"),
    (lambda p: np.savez(p / "x.npz", a=np.zeros((2, 3, 3))), "neither a .npy file"),
    (lambda p: pd.DataFrame({"file_name": ["a.png"]}).to_csv(p / "m.csv", index=False), "needs a 'path' column"),
])
def test_bad_pools_are_one_line(tmp_path, make, message):
    make(tmp_path)
    target = next(p for p in tmp_path.iterdir())
    with pytest.raises(InputError, match=message):
        open_pool(target)
    with pytest.raises(DataError, match="no pool at"):
        open_pool(tmp_path / "missing.npy.gz")


def test_score_cli_writes_names_and_confidences_equal_to_the_model(tiny_run, npy_pool, tmp_path, digits):
    import joblib

    out = tmp_path / "scores.parquet"
    result = CliRunner().invoke(main, ["score", str(tiny_run), "--pool", str(npy_pool), "--out", str(out),
                                       "--chunk-size", "128", "--proba"])
    assert result.exit_code == 0, result.output
    assert "scored 700 items (6 of 6 chunks now)" in result.output
    df = pd.read_parquet(out)
    model = joblib.load(tiny_run / "model.joblib")
    proba = model.predict_proba(digits[0][:700])
    assert list(df.columns[:3]) == ["item", "label", "confidence"] and df.columns[3] == "p_0" and len(df) == 700
    assert df["item"].tolist() == [f"pool/{i}" for i in range(700)]
    assert df["label"].tolist() == [str(c) for c in model.classes_[proba.argmax(axis=1)]]
    np.testing.assert_allclose(df["confidence"], proba.max(axis=1), rtol=1e-6)
    np.testing.assert_allclose(df[[f"p_{c}" for c in range(10)]].to_numpy(), proba, rtol=1e-5, atol=1e-7)
    # A second call does not overwrite; bad input is one line, exit 2.
    again = CliRunner().invoke(main, ["score", str(tiny_run), "--pool", str(npy_pool), "--out", str(out)])
    assert again.exit_code == 2 and again.output.count("\n") == 1 and "exists already" in again.output
    bad = CliRunner().invoke(main, ["score", str(tmp_path), "--pool", str(npy_pool), "--out", str(tmp_path / "x.pq")])
    assert bad.exit_code == 2 and "no model.joblib" in bad.output


def test_resume_scores_only_the_missing_chunks(tiny_run, npy_pool, tmp_path):
    out = tmp_path / "s.parquet"
    options = {"run": str(tiny_run), "pool": str(npy_pool), "chunk_size": 100}
    first = run_score(options, out, say=lambda m: None)
    assert first.n_scored == 7
    reference = pd.read_parquet(out)
    folder = parts_dir(out)
    # As a job killed after four chunks leaves it: parts 4-6 and the output missing.
    for k in (4, 5, 6):
        (folder / f"chunk-{k:06d}.parquet").unlink()
    out.unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in folder.glob("chunk-*.parquet")}
    lines = []
    res = run_score({"run": None, "pool": None}, out, resume=True, say=lines.append)
    assert res.n_scored == 3 and "4 chunks on disk already" in lines[0]
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("chunk-*.parquet") if p.name in kept} == kept
    pd.testing.assert_frame_equal(pd.read_parquet(out), reference)
    with pytest.raises(InputError, match="saved with other settings: chunk_size"):
        run_score({"chunk_size": 50}, out, resume=True, say=lambda m: None)
    with pytest.raises(RunDirectoryError, match="no run to resume"):
        run_score({}, tmp_path / "other.parquet", resume=True, say=lambda m: None)


POOL_RUN = ["selftrain", "--data", "digits", "--labeled", "100", "--max-iter", "2", "--epochs", "8", "--recipe", "seed",
            "--arch", "fast", "--threshold", "0.3", "--seed", "0", "--pool-cap", "50"]


@pytest.fixture(scope="module")
def pool_run(npy_pool, tmp_path_factory):
    """A finished `selftrain --data digits --labeled 100 --pool pool.npy` run (seconds)."""
    out = tmp_path_factory.mktemp("pool-run") / "st"
    result = CliRunner().invoke(main, [*POOL_RUN, "--pool", str(npy_pool), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_selftrain_with_a_pool_reads_it_in_chunks_and_records_its_labels(pool_run, npy_pool, tmp_path):
    from pseudolabel.jobs.selftrain_pool import POOL_LABELS
    from pseudolabel.store import LabelStore

    out = pool_run
    history = [r for r in (out / "history.csv").read_text().splitlines()[1:]]
    assert len(history) == 3  # rounds 0, 1, 2
    scores = pd.read_parquet(out / POOL_LABELS)
    assert scores["item"].tolist() == [f"pool/{i}" for i in range(700)]
    taken = scores[scores["label"] != ""]
    assert len(taken) > 0 and (taken["confidence"] > 0.3).all() and (taken["round"] >= 1).all()
    import json
    records = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert all(r["n_trained_pseudo"] <= 50 for r in records)  # the cap
    with LabelStore(out / "labels.db", create=False) as store:
        current = store.current_labels(split="pool")
        assert len(current) == 700
        pseudo = current[current["source"] == "pseudo"].set_index("key")["label"]
        names = taken.set_index("item")["label"]
        assert sorted(pseudo.index) == sorted(names.index)
        assert [str(v) for v in pseudo.loc[names.index]] == names.tolist()
    again = CliRunner().invoke(main, ["selftrain", "--data", "digits", "--labeled", "100", "--pool",
                                      str(tmp_path / "none.npy"), "--out", str(tmp_path / "x")])
    assert again.exit_code == 2 and again.output.startswith("error: no pool file at")
    assert not (tmp_path / "x").exists()  # nothing written


def _given_events(db) -> pd.DataFrame:
    """The given events of the store's one run, with their items' keys and splits."""
    from pseudolabel.store import LabelStore

    with LabelStore(db, create=False) as store:
        (run_id,) = store.runs()["run_id"].tolist()
        items = store.items().set_index("item_id")
        events = store.events(run_id, "given")
        return events.assign(key=items.loc[events["item_id"], "key"].to_numpy(),
                             split=items.loc[events["item_id"], "split"].to_numpy(), run_id=run_id)


def test_a_pool_run_records_the_given_labels_of_data_once(pool_run, npy_pool):
    from pseudolabel.datasets import load_dataset

    ds = load_dataset("digits")
    given = _given_events(pool_run / "labels.db")
    # --labeled 100: 100 given events of round 0, each the data set's label of its item, 10 per class.
    assert len(given) == 100 and given["key"].is_unique and (given["round"] == 0).all()
    assert set(given["split"]) == {"train"}
    truth = dict(zip(ds.items, ds.y.tolist()))
    assert given["label"].tolist() == [truth[k] for k in given["key"]]
    assert given["label"].value_counts().to_dict() == {c: 10 for c in range(10)}
    # As the in-memory job: every item of --data is in the store, the pool's beside them.
    from pseudolabel.store import LabelStore

    with LabelStore(pool_run / "labels.db", create=False) as store:
        assert store.items()["split"].value_counts().to_dict() == {"train": len(ds.items), "pool": 700}
    # A resumed run (here: one that had finished) records them no second time.
    again = CliRunner().invoke(main, [*POOL_RUN, "--pool", str(npy_pool), "--out", str(pool_run), "--resume"])
    assert again.exit_code == 0, again.output
    pd.testing.assert_frame_equal(_given_events(pool_run / "labels.db"), given)
