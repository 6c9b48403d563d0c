"""``trainwise predict`` and ``trainwise evaluate`` as a person calls them: real runs, real files,
real subprocesses; every mistake gets one ``error:`` line and exit 2, never a traceback."""

from __future__ import annotations

import csv
import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import cli_in_process
from test_cli import DIGITS, trainwise

SPECIES = ("setosa", "versicolor", "virginica")


def assert_one_error(proc, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0]


def read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A text-labelled classification run and a regression run on targets far from 0."""
    folder = tmp_path_factory.mktemp("inference")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 3))
    species = [SPECIES[0] if a > 0.4 else SPECIES[1] if a > -0.4 else SPECIES[2] for a in x[:, 0]]
    lines = [f"{a:.4f},{b:.4f},{c:.4f},{s}" for (a, b, c), s in zip(x, species)]
    (folder / "iris.csv").write_text("sepal,petal,width,species\n" + "\n".join(lines) + "\n")
    price = 1000 + 100 * x[:, 0]
    lines = [f"{a:.4f},{b:.4f},{p:.3f}" for (a, b, _), p in zip(x, price)]
    (folder / "houses.csv").write_text("rooms,age,price\n" + "\n".join(lines) + "\n")
    common = ["model.hidden=[16]", "model.dropout=0", "optimizer.lr=0.01", "train.early_stopping.monitor=val_loss",
              "--quiet"]
    for name, data, target, epochs in (("cls", "iris.csv", "species", 10), ("reg", "houses.csv", "price", 25)):
        proc = trainwise("train", DIGITS, "data.dataset=csv", f"data.path={data}", f"data.target={target}",
                         f"train.epochs={epochs}", *common, "--run-dir", name, cwd=folder)
        assert proc.returncode == 0, proc.stderr
    return folder


def test_predict_csv_writes_class_names_one_row_per_input(work, tmp_path):
    # the target column may be there (ignored) or not, columns in any order
    source = read_rows(work / "iris.csv")
    (tmp_path / "with_target.csv").write_text("\n".join(",".join(row) for row in source[:21]) + "\n")
    (tmp_path / "reordered.csv").write_text("\n".join(",".join([r[2], r[0], r[1]]) for r in source[:21]) + "\n")
    outputs = []
    for name in ("with_target", "reordered"):
        proc = trainwise("predict", str(work / "cls"), f"{name}.csv", "--out", f"{name}-out.csv", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        outputs.append(read_rows(tmp_path / f"{name}-out.csv"))
    assert outputs[0] == outputs[1]
    header, *rows = outputs[0]
    assert header == ["prediction", *(f"probability_{name}" for name in SPECIES)]
    assert len(rows) == 20
    assert {row[0] for row in rows} <= set(SPECIES)
    truth = [row[3] for row in source[1:21]]
    assert sum(row[0] == label for row, label in zip(rows, truth)) >= 14
    for row in rows:
        assert sum(float(value) for value in row[1:]) == pytest.approx(1.0, abs=1e-4)


def test_predict_npz_output_holds_names_and_indices(work, tmp_path):
    proc = trainwise("predict", str(work / "cls"), str(work / "iris.csv"), "--out", "p.npz", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "p.npz") as preds:
        assert preds["predictions"].shape == (240,)
        assert set(preds["predictions"].tolist()) <= set(SPECIES)
        assert [SPECIES[i] for i in preds["class_index"]] == preds["predictions"].tolist()


def test_regression_predictions_and_metrics_are_in_original_units(work, tmp_path):
    proc = trainwise("predict", str(work / "reg"), str(work / "houses.csv"), "--out", "p.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    header, *rows = read_rows(tmp_path / "p.csv")
    assert header == ["prediction"] and len(rows) == 240
    predicted = np.array([float(row[0]) for row in rows])
    truth = np.array([float(row[2]) for row in read_rows(work / "houses.csv")[1:]])
    assert abs(predicted.mean() - 1000) < 30 and np.sqrt(np.mean((predicted - truth) ** 2)) < 40
    proc = trainwise("evaluate", str(work / "reg"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((work / "reg" / "summary.json").read_text())
    evaluated = json.loads((work / "reg" / "evaluate_test.json").read_text())
    assert evaluated["rmse"] == pytest.approx(summary["test_rmse"], rel=1e-4)


def test_regression_run_without_target_normalization(work, tmp_path):
    run = Path(shutil.copytree(work / "reg", tmp_path / "old-run"))
    description = json.loads((run / "data.json").read_text())
    del description["target_normalization"]  # a run folder written before targets were standardized
    (run / "data.json").write_text(json.dumps(description))
    proc = trainwise("predict", str(run), str(work / "houses.csv"), "--out", "p.npz", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "p.npz") as preds:
        assert abs(preds["predictions"].mean()) < 10  # the raw, standardized outputs


@pytest.mark.parametrize(("files", "args", "fragments"), [
    ({}, ["missing.csv", "--out", "p.csv"], ["input file not found: missing.csv"]),
    ({"few.csv": "sepal,width\n1,2\n"}, ["few.csv", "--out", "p.csv"], ["lacks the column(s) 'petal'"]),
    ({"text.csv": "sepal,petal,width\n1,big,2\n"}, ["text.csv", "--out", "p.csv"],
     ["column 'petal' holds 'big', not a number"]),
    ({}, ["x.npz", "--out", "p.csv"], ["per sample, the model expects (3,)"]),
    ({"ok.csv": "sepal,petal,width\n1,2,3\n"}, ["ok.csv", "--out", "p.txt"], ["--out must end in .npz or .csv"]),
    ({"broken.npz": "not a zip"}, ["broken.npz", "--out", "p.csv"], ["cannot read npz file"]),
])
def test_predict_mistakes_get_one_error_line(work, tmp_path, files, args, fragments):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    np.savez(tmp_path / "x.npz", x=np.zeros((4, 5), dtype=np.float32))
    assert_one_error(cli_in_process("predict", str(work / "cls"), *args, cwd=tmp_path), *fragments)


def test_not_a_run_folder(tmp_path):
    assert_one_error(trainwise("predict", "nowhere", "x.csv", "--out", "p.csv", cwd=tmp_path),
                     "nowhere is not a trainwise run folder")


# --- run folders of the Python API: evaluate --data, --model ---------------------------------

NETS = '''
from torch import nn


class Net(nn.Module):
    def __init__(self, input_shape=(4,), num_outputs=3):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(input_shape[0], 16), nn.ReLU(), nn.Linear(16, num_outputs))

    def forward(self, x):
        return self.body(x)
'''
SCRIPT = '''
import numpy as np
import trainwise
from torch import nn

from nets import Net as ImportableNet


class Net(nn.Module):  # defined in the script: __main__:Net, which the CLI cannot import
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x):
        return self.body(x)


import torch

torch.manual_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(300, 4)).astype(np.float32)
y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.8)
np.savez("held_out.npz", x=x[:60], y=y[:60])
rows = [",".join(f"{v:.5f}" for v in row) + f",{label}" for row, label in zip(x[:60], y[:60])]
open("held_out.csv", "w").write("f0,f1,f2,f3,y\\n" + "\\n".join(rows) + "\\n")
for name, model in (("script_run", Net()), ("module_run", ImportableNet())):
    trainwise.Trainer(model, loss="cross_entropy", lr=0.01, epochs=10, run_dir=name,
                      progress=False).fit((x[60:], y[60:]), (x[:60], y[:60]))
'''


@pytest.fixture(scope="module")
def python_runs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("python-api")
    (folder / "nets.py").write_text(NETS)
    (folder / "train.py").write_text(textwrap.dedent(SCRIPT))
    import os
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "train.py"], cwd=folder, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr
    return folder


def test_python_run_evaluates_on_a_data_file(python_runs):
    for data in (["--data", "held_out.npz"], ["--data", "held_out.csv", "--target", "y"]):
        proc = trainwise("evaluate", "module_run", *data, "--model", "nets:Net", cwd=python_runs)
        assert proc.returncode == 0, proc.stderr
        assert "accuracy" in proc.stdout
    evaluated = json.loads((python_runs / "module_run" / "evaluate_held_out.json").read_text())
    assert 0.5 < evaluated["accuracy"] <= 1.0


def test_python_run_without_data_names_the_data_option(python_runs):
    assert_one_error(trainwise("evaluate", "module_run", cwd=python_runs), "pass --data FILE")


def test_script_model_needs_the_model_option(python_runs, tmp_path):
    assert_one_error(trainwise("evaluate", "script_run", "--data", "held_out.npz", cwd=python_runs),
                     "'__main__:Net'", "--model package.module:factory")
    proc = trainwise("predict", "script_run", "held_out.npz", "--out", str(tmp_path / "p.csv"),
                     "--model", "nets:Net", cwd=python_runs)
    assert proc.returncode == 0, proc.stderr
    assert len(read_rows(tmp_path / "p.csv")) == 61


def test_model_that_does_not_import_names_the_model_option(python_runs, tmp_path):
    # from a folder where nets.py is not importable
    run = str(python_runs / "module_run")
    assert_one_error(trainwise("evaluate", run, "--data", str(python_runs / "held_out.npz"), "--model", "nets:Net",
                               cwd=tmp_path), "cannot import module 'nets'", "--model")
    # the run's config.yaml names nets:Net: a file is data, so it is not imported without --model
    assert_one_error(trainwise("evaluate", "module_run", "--data", "held_out.npz", cwd=python_runs),
                     "'nets:Net'; trainwise never imports code a file names", "pass --model nets:Net")
    assert_one_error(trainwise("evaluate", run, "--data", str(python_runs / "held_out.npz"),
                               "--model", "nonexistent_pkg:Net", cwd=tmp_path), "nonexistent_pkg")
    assert_one_error(trainwise("evaluate", run, "--data", str(python_runs / "held_out.npz"),
                               "--model", "mlp", cwd=tmp_path), "do not fit the model built by 'mlp'")


def test_nonfinite_inputs_in_an_npz_are_refused_by_predict_and_evaluate(work, tmp_path):
    x = np.random.default_rng(1).normal(size=(6, 3)).astype(np.float32)
    x[2, 1], x[4, 0] = np.nan, np.inf
    np.savez(tmp_path / "bad.npz", x=x, y=np.zeros(6, dtype=np.int64))
    for command in (("predict", str(work / "cls"), str(tmp_path / "bad.npz"), "--out", str(tmp_path / "p.npz")),
                    ("evaluate", str(work / "cls"), "--data", str(tmp_path / "bad.npz"))):
        assert_one_error(trainwise(*command, cwd=tmp_path), "array 'x' holds NaN or Inf in 2 of 6 rows (the first: "
                                                            "row 2)", "fill them in or drop those rows")
    assert not (tmp_path / "p.npz").exists()


def test_evaluate_split_refuses_a_data_file_that_changed_since_training(work, tmp_path):
    shutil.copy(work / "iris.csv", tmp_path / "iris.csv")
    proc = trainwise("train", DIGITS, "data.dataset=csv", "data.path=iris.csv", "data.target=species",
                     "train.epochs=2", "--quiet", "--run-dir", "cls", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    same = trainwise("evaluate", "cls", "--split", "test", cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    header, *rows = (work / "iris.csv").read_text().splitlines()
    (tmp_path / "iris.csv").write_text("\n".join([header, *reversed(rows)]) + "\n")  # same rows, another order
    assert_one_error(trainwise("evaluate", "cls", "--split", "test", cwd=tmp_path),
                     "iris.csv changed since this run trained on it (SHA-256 ",
                     "a test split re-made from it would hold other rows, training rows among them")
