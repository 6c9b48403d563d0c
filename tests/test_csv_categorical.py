"""Text feature columns of a CSV are one-hot encoded: in training (the categories in data.json), and
the same way for ``predict``, ``evaluate`` and an exported model's inputs; what cannot be a category
(numbers mixed with text, an id column, a value the run never saw) gets one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import cli_in_process
from test_cli import DIGITS, trainwise
from test_cli_inference import assert_one_error, read_rows

from trainwise.data import load_data
from trainwise.data.categorical import MAX_CATEGORIES
from trainwise.errors import DataError

CITIES = ("oslo", "paris", "rome")


def people(path: Path, n: int = 240, seed: int = 0) -> Path:
    """The label depends on the city alone (rome and oslo: high), plus a numeric noise column."""
    rng = np.random.default_rng(seed)
    lines = ["age,city,member,label"]
    for _ in range(n):
        city = CITIES[rng.integers(3)]
        lines.append(f"{rng.integers(18, 80)},{city},{rng.choice(['yes', 'no'])},{'low' if city == 'paris' else 'high'}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_text_columns_become_one_hot_features_in_their_place(tmp_path):
    bundle = load_data("csv", path=people(tmp_path / "p.csv"), target="label", normalize=False, seed=0)
    assert bundle.input_shape == (1 + 3 + 2,)  # age, city=oslo|paris|rome, member=no|yes
    assert bundle.details["categorical"] == {"city": list(CITIES), "member": ["no", "yes"]}
    assert bundle.details["feature_names"] == ["age", "city", "member"]
    x = bundle.train[0]
    assert set(x[:, 1:].unique().tolist()) == {0.0, 1.0}
    assert (x[:, 1:4].sum(1) == 1).all() and (x[:, 4:].sum(1) == 1).all()  # one category per row and column
    assert (x[:, 0] >= 18).all()  # the numeric column untouched


@pytest.mark.parametrize("column, fragment", [
    (["1", "2", "n/a", "4"], "holds numbers and the text 'n/a' on line 4 (a missing-value marker?)"),
    ([f"user{i}" for i in range(MAX_CATEGORIES + 1)], f"is text with {MAX_CATEGORIES + 1} distinct values, more than"),
])
def test_what_cannot_be_a_category_is_refused_in_one_line(tmp_path, column, fragment):
    rows = [f"{value},{i % 2}" for i, value in enumerate(column)]
    (tmp_path / "t.csv").write_text("feature,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match="feature column 'feature' ") as error:
        load_data("csv", path=tmp_path / "t.csv", target="label", seed=0)
    assert fragment in str(error.value)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("categorical")
    people(folder / "people.csv")
    proc = trainwise("train", DIGITS, "data.dataset=csv", "data.path=people.csv", "data.target=label",
                     "train.epochs=20", "model.hidden=[16]", "model.dropout=0", "optimizer.lr=0.02",
                     "train.early_stopping.enabled=false", "--quiet", "--run-dir", "run", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    return folder


def test_a_run_learns_from_a_text_column_and_predict_encodes_it_the_same_way(run, tmp_path):
    summary = json.loads((run / "run" / "summary.json").read_text())
    assert summary["test_accuracy"] >= 0.95  # the label is the city: only its encoding tells it
    assert json.loads((run / "run" / "data.json").read_text())["categorical"]["city"] == list(CITIES)
    rows = ["member,age,city"] + [f"yes,40,{city}" for city in ("rome", "paris", "oslo", "paris")]  # reordered, no label
    (tmp_path / "new.csv").write_text("\n".join(rows) + "\n")
    proc = cli_in_process("predict", str(run / "run"), "new.csv", "--out", "p.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [row[0] for row in read_rows(tmp_path / "p.csv")[1:]] == ["high", "low", "high", "low"]
    evaluated = cli_in_process("evaluate", str(run / "run"), "--data", str(run / "people.csv"), cwd=tmp_path)
    assert evaluated.returncode == 0 and "accuracy" in evaluated.stdout


def test_an_exported_model_takes_the_same_csv(run, tmp_path):
    artifact = tmp_path / "model.onnx"
    proc = trainwise("export", str(run / "run"), "--format", "onnx", "--out", str(artifact), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "new.csv").write_text("age,city,member\n30,paris,no\n30,oslo,no\n")
    proc = cli_in_process("predict", str(artifact), "new.csv", "--out", "p.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [row[0] for row in read_rows(tmp_path / "p.csv")[1:]] == ["low", "high"]


def test_a_category_the_run_never_saw_is_refused_with_the_known_ones(run, tmp_path):
    (tmp_path / "new.csv").write_text("age,city,member\n30,lima,yes\n")
    assert_one_error(cli_in_process("predict", str(run / "run"), "new.csv", "--out", "p.csv", cwd=tmp_path),
                     "column 'city' holds 'lima', which the model never saw in training (its categories: oslo, "
                     "paris, rome)")


def test_drop_columns_leaves_an_id_out_and_a_row_counter_is_named(tmp_path, caplog):
    path = tmp_path / "ids.csv"
    rows = [f"{i + 1},{i % 5}.5,{(i * 7) % 3},{i % 2}" for i in range(60)]
    path.write_text("id,a,b,label\n" + "\n".join(rows) + "\n")
    with caplog.at_level("WARNING", logger="trainwise.data.tabular"):
        kept = load_data("csv", path=path, target="label", normalize=False, seed=0)
    assert kept.input_shape == (3,)
    assert "column 'id' counts the rows (1, 2, 3, ...): an identifier, not a feature; leave it out with " \
           "data.drop_columns: [id]" in caplog.text
    dropped = load_data("csv", path=path, target="label", drop_columns=["id"], normalize=False, seed=0)
    assert dropped.input_shape == (2,) and dropped.details["feature_names"] == ["a", "b"]
    assert dropped.details["dropped_columns"] == ["id"]
    assert sorted(dropped.train[0][:, 0].unique().tolist()) == [0.5, 1.5, 2.5, 3.5, 4.5]  # column a, unscaled
    with pytest.raises(Exception, match=r"data.drop_columns names 'ID', which is not a column .*did you mean 'id'\?"):
        load_data("csv", path=path, target="label", drop_columns=["ID"], seed=0)
    with pytest.raises(Exception, match=r"data.drop_columns names 'label', the target column"):
        load_data("csv", path=path, target="label", drop_columns=["label"], seed=0)


def gappy(path: Path, n: int = 90) -> Path:
    lines = ["age,city,label"]
    for i in range(n):
        age = "" if i % 10 == 3 else "NA" if i % 10 == 7 else str(20 + (i * 7) % 50)
        city = "" if i % 9 == 4 else CITIES[i % 3]
        lines.append(f"{age},{city},{'high' if i % 3 else 'low'}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_missing_fill_uses_the_training_median_an_indicator_and_a_missing_category(tmp_path):
    path = gappy(tmp_path / "g.csv")
    with pytest.raises(DataError, match=r"line 5: empty value in column 'age'.*or set data.missing: fill"):
        load_data("csv", path=path, target="label", seed=0)
    bundle = load_data("csv", path=path, target="label", missing="fill", normalize=False, seed=0)
    assert bundle.input_shape == (2 + 4,)  # age, age_missing, city=(missing)|oslo|paris|rome
    assert bundle.details["categorical"] == {"city": ["(missing)", *CITIES]}
    x = bundle.train[0]
    known = x[x[:, 1] == 0, 0]
    median = bundle.details["missing_fill"]["age"]
    assert median == float(known.median())  # the training rows' median, nothing of val or test
    filled = x[x[:, 1] == 1]
    assert len(filled) > 0 and bool((filled[:, 0] == median).all())
    assert set(x[:, 1].unique().tolist()) == {0.0, 1.0}
    for split in (bundle.val, bundle.test):
        assert bool((split[0][split[0][:, 1] == 1, 0] == median).all())
    assert float(x[:, 2].sum()) > 0  # some training rows' city is the (missing) category


def test_missing_fill_round_trip_through_the_cli(tmp_path):
    gappy(tmp_path / "g.csv")
    proc = trainwise("train", DIGITS, "data.dataset=csv", "data.path=g.csv", "data.target=label",
                     "data.missing=fill", "train.epochs=2", "--quiet", "--run-dir", "run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    described = json.loads((tmp_path / "run" / "data.json").read_text())
    assert set(described["missing_fill"]) == {"age"} and described["input_shape"] == [6]
    predicted = trainwise("predict", "run", "g.csv", "--out", "p.csv", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    assert len(read_rows(tmp_path / "p.csv")) == 91
    evaluated = trainwise("evaluate", "run", "--data", "g.csv", cwd=tmp_path)  # the target: the run's, recorded
    assert evaluated.returncode == 0 and "accuracy" in evaluated.stdout, evaluated.stderr
    (tmp_path / "bad.csv").write_text("age,city,label\nold,rome,high\n")
    assert_one_error(trainwise("predict", "run", "bad.csv", "--out", "q.csv", cwd=tmp_path),
                     "column 'age' holds 'old', not a number")
