"""Tables and texts from the command line (pseudolabel.tabular, pseudolabel.models.registry): real
small data (scikit-learn's wine, generated short texts), string class names from the CSV to every
output, models by name, and bad input refused in one line with nothing written."""
from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_wine

from pseudolabel.cli import main
from pseudolabel.exceptions import DataError, InputError
from pseudolabel.jobs.config import CleanConfig, SelfTrainConfig
from pseudolabel.models.registry import make_model, model_names
from pseudolabel.store import LabelStore
from pseudolabel.tabular import load_table

NAMES = np.array(["class_a", "class_b", "class_c"], dtype=object)
TOPICS = {
    "sport": "goal match team player coach league score stadium season referee ball win",
    "food": "recipe bake oven flour sugar dinner spicy sauce garlic taste soup bread",
    "space": "orbit rocket planet star galaxy launch astronaut moon telescope comet nasa mars",
    "music": "guitar song album concert drum melody singer band chord piano lyrics tour",
}
FILLER = "the a today really very new big small good just".split()


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, *needles):
    assert result.exit_code == 2, (result.exit_code, result.output, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def wine_csv(tmp_path_factory):
    """Wine (178 rows, 13 numeric features) with string class names and 60 labels blanked."""
    d = load_wine(as_frame=True)
    frame = d.frame.drop(columns="target")
    frame["target"] = NAMES[d.target.to_numpy()]
    rng = np.random.default_rng(0)
    frame.loc[rng.choice(len(frame), 60, replace=False), "target"] = ""
    path = tmp_path_factory.mktemp("tables") / "wine.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def texts_csv(tmp_path_factory):
    """200 short texts of 4 topics drawn from word lists (seeded), an id column, 60 labels blanked."""
    rng = np.random.default_rng(0)
    topics = list(TOPICS)
    rows = []
    for i in range(200):
        topic = topics[i % 4]
        words = list(rng.choice(TOPICS[topic].split(), 4)) + list(rng.choice(FILLER, 3))
        rng.shuffle(words)
        rows.append({"id": f"doc{i:03d}", "text": " ".join(words), "topic": topic if i % 10 >= 3 else ""})
    path = tmp_path_factory.mktemp("texts") / "texts.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def classes_in_store(db) -> list:
    store = LabelStore(db, create=False)
    try:
        return list(store.classes)
    finally:
        store.close()


# -- load_table ------------------------------------------------------------------------------------

def test_load_table_keeps_names_rows_and_blanks(wine_csv):
    ds = load_table(wine_csv, "target")
    frame = pd.read_csv(wine_csv, keep_default_na=False)
    assert ds.classes == ["class_a", "class_b", "class_c"]
    assert ds.X.shape == (178, 13) and ds.X.dtype == np.float64
    assert ds.items[:2] == ["row:0", "row:1"] and ds.locations == [f"row:{i}" for i in range(178)]
    assert ds.source == str(wine_csv.resolve()) and ds.X_test is None
    blank = (frame["target"] == "").to_numpy()
    assert (ds.y[blank] == -1).all() and (ds.y[~blank] >= 0).all()
    assert [ds.classes[k] for k in ds.y[~blank]] == frame["target"][~blank].tolist()


def test_load_table_text_ids_categoricals_and_parquet(tmp_path, texts_csv):
    ds = load_table(texts_csv, "topic", text_column="text")
    assert ds.X.ndim == 1 and ds.X.dtype == object and isinstance(ds.X[0], str)
    assert ds.items[0] == "doc000" and ds.locations[0] == "row:0"
    frame = pd.DataFrame({"size": [1.5, None, 3.0, 2.0], "colour": ["red", "blue", "", "red"],
                          "label": [1, 2, None, 2]})
    frame.to_parquet(tmp_path / "t.parquet")
    ds = load_table(tmp_path / "t.parquet", "label")
    # numbers as written ("1", not "1.0"); one-hot colour (blue, red), a missing one all zeros; NaN kept
    assert ds.classes == ["1", "2"] and ds.y.tolist() == [0, 1, -1, 1]
    assert ds.X.shape == (4, 3) and np.isnan(ds.X[1, 0]) and ds.X[2, 1:].tolist() == [0.0, 0.0]
    assert any("one-hot" in n for n in ds.notes)


# -- the registry and the configs -------------------------------------------------------------------

def test_models_by_name_and_defaults_by_kind():
    for name in ("logreg", "hgb", "forest", "tfidf-logreg"):
        est = make_model(name, random_state=0)
        assert hasattr(est, "fit") and hasattr(est, "predict_proba")
    assert {"logreg", "hgb", "forest", "tfidf-logreg", "cnn"} <= set(model_names())
    assert type(make_model("cnn", epochs=1)).__name__ == "ConvNetClassifier"
    assert SelfTrainConfig.build({"data": "t.csv", "label_column": "y"}).model_name == "hgb"
    assert CleanConfig.build({"data": "t.csv", "label_column": "y", "text_column": "t"}).model_name == "tfidf-logreg"
    assert SelfTrainConfig.build({"data": "digits"}).model_name is None  # images: the CNN, as before


# -- end to end through the CLI ---------------------------------------------------------------------

def test_selftrain_table_writes_names_everywhere(tmp_path, wine_csv):
    out = tmp_path / "st"
    result = invoke("selftrain", "--data", wine_csv, "--label-column", "target", "--model", "logreg",
                    "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    assert "held out" in result.stderr and "test accuracy" in result.output
    config = json.loads((out / "config.json").read_text())
    assert config["model_name"] == "logreg" and config["label_column"] == "target"
    labels = pd.read_csv(out / "labels.csv", keep_default_na=False)
    assert set(labels["class_name"]) - {""} == {"class_a", "class_b", "class_c"}
    assert (labels["source"] == "pseudo").any()
    assert classes_in_store(out / "labels.db") == ["class_a", "class_b", "class_c"]
    assert not (out / "grid.png").exists()
    exported = invoke("export", out / "labels.db", "--out", tmp_path / "export.csv")
    assert exported.exit_code == 0, exported.output + exported.stderr
    assert set(pd.read_csv(tmp_path / "export.csv")["class"]) == {"class_a", "class_b", "class_c"}

    # the model is part of what a run computes: a resume with another one is refused
    again = invoke("selftrain", "--data", wine_csv, "--label-column", "target", "--model", "hgb",
                   "--out", out, "--resume")
    assert_one_line_error(again, "model_name 'hgb' (saved 'logreg')")


def test_clean_table_with_hgb(tmp_path, wine_csv):
    out = tmp_path / "clean"
    result = invoke("clean", "--data", wine_csv, "--label-column", "target", "--model", "hgb", "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    issues = pd.read_csv(out / "issues.csv")
    assert set(issues["given_class"]) == {"class_a", "class_b", "class_c"}
    assert set(issues["predicted_class"]) <= {"class_a", "class_b", "class_c"}
    assert issues["key"].str.startswith("row:").all() and len(issues) == 118
    labels = pd.read_csv(out / "labels.csv")
    assert set(labels["given_class"]) == {"class_a", "class_b", "class_c"}
    assert classes_in_store(out / "labels.db") == ["class_a", "class_b", "class_c"]
    assert not (out / "grid.png").exists() and "grid" not in result.output
    assert json.loads((out / "config.json").read_text())["model_name"] == "hgb"


def test_texts_selftrain_and_clean_with_tfidf(tmp_path, texts_csv):
    st = invoke("selftrain", "--data", texts_csv, "--label-column", "topic", "--text-column", "text",
                "--threshold", "0.9", "--out", tmp_path / "st")
    assert st.exit_code == 0, st.output + st.stderr
    labels = pd.read_csv(tmp_path / "st" / "labels.csv", keep_default_na=False)
    assert labels["item"].str.startswith("doc").all()
    assert set(labels["class_name"]) - {""} == set(TOPICS)
    accuracy = float(st.output.strip().splitlines()[-1].split()[-1])
    assert accuracy >= 0.8  # word lists of 4 topics: the held-out labels are easy
    assert json.loads((tmp_path / "st" / "config.json").read_text())["model_name"] == "tfidf-logreg"

    cl = invoke("clean", "--data", texts_csv, "--label-column", "topic", "--text-column", "text",
                "--passes", "2", "--out", tmp_path / "clean")  # pass 2 weighs each label: the pipeline takes it
    assert cl.exit_code == 0, cl.output + cl.stderr
    issues = pd.read_csv(tmp_path / "clean" / "issues.csv")
    assert set(issues["given_class"]) == set(TOPICS) and len(issues) == 140
    assert classes_in_store(tmp_path / "clean" / "labels.db") == sorted(TOPICS)


def test_sweep_over_a_table(tmp_path, wine_csv):
    out = tmp_path / "sweep"
    result = invoke("sweep", "--data", wine_csv, "--label-column", "target", "--model", "logreg",
                    "--labeled", "20", "--threshold", "0.9", "--max-iter", "2", "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    table = pd.read_csv(out / "table.csv")
    assert len(table) == 2 and table["test_accuracy_mean"].notna().all()  # a cell and the all-labels row


def test_model_from_a_module_of_ones_own(tmp_path, wine_csv, monkeypatch):
    (tmp_path / "my_table_models.py").write_text(textwrap.dedent("""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        def Factory():
            return make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=500))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "clean"
    result = invoke("clean", "--data", wine_csv, "--label-column", "target", "--model",
                    "module:my_table_models:Factory", "--folds", "3", "--passes", "2", "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    assert "Pipeline.fit takes no sample_weight: pass 2 trains unweighted" in result.stderr
    assert json.loads((out / "config.json").read_text())["model_name"] == "module:my_table_models:Factory"
    assert set(pd.read_csv(out / "issues.csv")["given_class"]) == {"class_a", "class_b", "class_c"}
    sys.modules.pop("my_table_models", None)


# -- bad input: one line, exit 2, nothing written ---------------------------------------------------

def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


BAD = {
    "missing label column": (["--label-column", "nope"], None, ("no label column 'nope'", "columns are: alcohol")),
    "text column of numbers": (["--label-column", "target", "--text-column", "alcohol"], None,
                               ("holds numbers, not text",)),
    "unknown model": (["--label-column", "target", "--model", "xgboostish"], None,
                      ("'xgboostish' is not a model", "logreg, hgb, forest, tfidf-logreg, cnn")),
    "module that fails to import": (["--label-column", "target", "--model", "module:no_such_module_xyz:F"], None,
                                    ("cannot import 'no_such_module_xyz'",)),
    "factory that is not a classifier": (["--label-column", "target", "--model", "module:json:JSONDecoder"], None,
                                         ("lacks get_params, fit, predict_proba",)),
    "text model on a table": (["--label-column", "target", "--model", "tfidf-logreg"], None,
                              ("does not take a table's numeric features",)),
    "empty table": (["--label-column", "target"], "a,target\n", ("has a header but no rows",)),
    "one class only": (["--label-column", "target"], "a,target\n1,x\n2,x\n3,\n", ("only the class 'x'",)),
    "missing numbers for logreg": (["--label-column", "target", "--model", "logreg"],
                                   "a,b,target\n1,,x\n2,3,y\n3,4,x\n4,5,y\n5,6,x\n6,7,y\n7,8,x\n8,9,y\n",
                                   ("1 of 8 rows have missing numbers", "--model hgb or forest")),
}


@pytest.mark.parametrize("command", ["selftrain", "clean"])
@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, wine_csv, command, case):
    flags, content, needles = BAD[case]
    data = wine_csv if content is None else _write(tmp_path, "t.csv", content)
    out = tmp_path / "run"
    result = invoke(command, "--data", data, *flags, "--out", out)
    assert_one_line_error(result, *needles)
    assert not out.exists()


def test_hgb_takes_missing_numbers(tmp_path):
    # SelfTraining.fit and out_of_fold_proba pass NaN on when the estimator's tags allow it (allows_nan).
    rows = "".join(f"{i},{'' if i % 7 == 0 else i % 5},{'x' if i % 2 else 'y'}\n" for i in range(40))
    data = _write(tmp_path, "nan.csv", "a,b,target\n" + rows)
    result = invoke("clean", "--data", data, "--label-column", "target", "--model", "hgb", "--out", tmp_path / "c")
    assert result.exit_code == 0, result.output + result.stderr


def test_bad_table_files_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_table(tmp_path / "nope.csv", "y")
    with pytest.raises(DataError, match="is empty"):
        load_table(_write(tmp_path, "empty.csv", "\n"), "y")
    with pytest.raises(DataError, match="more than once"):
        load_table(_write(tmp_path, "ids.csv", "id,a,y\nk,1,x\nk,2,z\n"), "y")
    with pytest.raises(InputError, match="no feature column"):
        load_table(_write(tmp_path, "bare.csv", "y\nx\nz\n"), "y")


def test_selftrain_of_texts_uses_selftrainings_own_defaults(tmp_path, texts_csv):
    """Without --threshold a model that is not a torch network gets SelfTraining's defaults
    (criterion auto: here a confident model, so scikit-learn's 0.75, said in a line), not the CNN
    recipe's 0.99 with relabeling; a threshold given is used as written."""
    out = tmp_path / "st"
    result = invoke("selftrain", "--data", texts_csv, "--label-column", "topic", "--text-column", "text",
                    "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    assert "selection: scikit-learn's threshold 0.75 (" in result.output  # these word lists are easy
    saved = json.loads((out / "config.json").read_text())
    assert saved["threshold"] is None and saved["max_iter"] == 10
    assert saved["relabel"] is False and saved["given_share"] is None
    with LabelStore(out / "labels.db") as store:
        sources = store.events()["source"].value_counts().to_dict()
    assert sources.get("pseudo", 0) > 0, sources
    again = invoke("selftrain", "--data", texts_csv, "--label-column", "topic", "--text-column", "text",
                   "--threshold", "0.99", "--max-iter", "2", "--out", tmp_path / "given")
    assert again.exit_code == 0, again.output + again.stderr
    assert json.loads((tmp_path / "given" / "config.json").read_text())["threshold"] == 0.99  # as given


def test_a_small_tables_default_model_is_logreg_and_a_large_ones_hgb(tmp_path, wine_csv):
    """Without --model a table's model is settled by its given labels: 118 wine labels get logreg
    (boosted trees need 20 rows a leaf: hgb was 38.9 % on wine at 20 labels, logreg 96.7 %);
    2,000 labels, or missing values, get hgb. The choice is said and saved."""
    out = tmp_path / "small"
    result = invoke("selftrain", "--data", wine_csv, "--label-column", "target", "--max-iter", "1", "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    assert "model: logreg, the default for a table with 118 given labels" in result.output
    assert "selection: scikit-learn's threshold 0.75" in result.output  # logreg is confident on wine
    saved = json.loads((out / "config.json").read_text())
    assert saved["model_name"] == "logreg" and saved["model_defaulted"] is True

    rng = np.random.default_rng(0)
    big = pd.DataFrame(rng.normal(size=(2100, 4)), columns=list("abcd"))
    big["y"] = np.where(big["a"] + 0.3 * rng.normal(size=2100) > 0, "up", "down")
    big.loc[2000:, "y"] = ""
    big.to_csv(tmp_path / "big.csv", index=False)
    result = invoke("clean", "--data", tmp_path / "big.csv", "--label-column", "y", "--folds", "2", "--passes", "1",
                    "--out", tmp_path / "big")
    assert result.exit_code == 0, result.output + result.stderr
    assert "model: hgb, the default for a table with 2000 given labels" in result.output
    assert json.loads((tmp_path / "big" / "config.json").read_text())["model_name"] == "hgb"

    wine = pd.read_csv(wine_csv, keep_default_na=False)
    wine.loc[3, "alcohol"] = np.nan  # a missing value (an empty cell): logreg cannot take it
    wine.to_csv(tmp_path / "gap.csv", index=False)
    result = invoke("selftrain", "--data", tmp_path / "gap.csv", "--label-column", "target", "--max-iter", "1",
                    "--out", tmp_path / "gap")
    assert result.exit_code == 0, result.output + result.stderr
    assert "model: hgb, the default for a table with 118 given labels and missing values" in result.output


def test_selftrain_says_adaptive_for_an_underconfident_text_model(tmp_path):
    """Texts that mix topics (2 words of their topic, 1 of another, 4 fillers) and 75 labels: TF-IDF
    + logistic regression puts almost nothing above 0.75, so criterion auto goes adaptive, says so,
    and still takes pseudo labels."""
    rng = np.random.default_rng(3)
    topics = list(TOPICS)
    rows = []
    for i in range(400):
        topic, other = topics[i % 4], topics[(i + 1 + rng.integers(3)) % 4]
        words = list(rng.choice(TOPICS[topic].split(), 2)) + list(rng.choice(TOPICS[other].split(), 1)) + \
            list(rng.choice(FILLER, 4))
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "topic": topic if i % 16 == 0 or i % 16 == 5 or i % 16 == 10 else ""})
    pd.DataFrame(rows).to_csv(tmp_path / "mixed.csv", index=False)
    result = invoke("selftrain", "--data", tmp_path / "mixed.csv", "--label-column", "topic", "--text-column", "text",
                    "--holdout", "0", "--out", tmp_path / "st")
    assert result.exit_code == 0, result.output + result.stderr
    assert "selection: adaptive (" in result.output and "temperature" in result.output, result.output
    with LabelStore(tmp_path / "st" / "labels.db") as store:
        assert (store.events()["source"] == "pseudo").sum() > 0
