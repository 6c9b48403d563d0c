"""The CLI, called the way a person calls it: a real subprocess, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "examples" / "digits.yaml")
MNIST = ROOT.parent / "shared" / "data" / "mnist"


def trainwise(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "trainwise", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("cli")
    proc = trainwise("train", DIGITS, "train.epochs=4", "--run-dir", "run", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "run folder: run" in proc.stdout
    return work / "run"


def test_train_writes_the_run_folder(digits_run):
    for name in ("config.yaml", "summary.json", "metrics.csv", "data.json", "report.html", "curves.png",
                 "checkpoints/best.pt", "checkpoints/last.pt", "checkpoints/manifest.json"):
        assert (digits_run / name).is_file(), name
    summary = json.loads((digits_run / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["epochs_run"] == 4
    assert summary["test_accuracy"] > 0.85
    assert "train.epochs" not in (digits_run / "config.yaml").read_text()
    assert "epochs: 4" in (digits_run / "config.yaml").read_text()


def test_evaluate_reproduces_the_test_accuracy(digits_run):
    proc = trainwise("evaluate", str(digits_run), "--split", "test", cwd=digits_run.parent)
    assert proc.returncode == 0, proc.stderr
    evaluated = json.loads((digits_run / "evaluate_test.json").read_text())
    summary = json.loads((digits_run / "summary.json").read_text())
    assert evaluated["accuracy"] == pytest.approx(summary["test_accuracy"])


def test_predict_on_raw_inputs(digits_run, tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    np.savez(tmp_path / "inputs.npz", x=digits.data[:50].astype(np.float32))
    out = tmp_path / "preds.npz"
    proc = trainwise("predict", str(digits_run), str(tmp_path / "inputs.npz"), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with np.load(out) as preds:
        assert preds["predictions"].shape == (50,)
        assert preds["probabilities"].shape == (50, 10)
        np.testing.assert_allclose(preds["probabilities"].sum(1), 1.0, rtol=1e-5)
        assert (preds["predictions"] == digits.target[:50]).mean() > 0.8


def test_dry_run_prints_config_and_callback_order(tmp_path):
    proc = trainwise("train", DIGITS, "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "name: digits-mlp" in proc.stdout
    order = proc.stdout.split("callbacks, in the order they run:")[1]
    assert order.index("EarlyStopping") < order.index("CheckpointSaver") < order.index("ProgressBar")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("args, message", [
    (["optimzer.lr=0.1"], "unknown key 'optimzer' in config; did you mean 'optimizer'?"),
    (["optimizer.lr=-1"], "optimizer.lr: must be > 0 or 'auto', got -1"),
    (["data.batch_size=0"], "data.batch_size: Input should be greater than 0"),
    (["data.val_fraction=1.5"], "data.val_fraction: Input should be less than 1"),
    (["data.dataset=mnist", "data.root=/nonexistent/mnist"], "/nonexistent/mnist"),
    (["data.dataset=digitz"], "did you mean 'digits'"),
    (["model.name=mlpp"], "did you mean 'mlp'"),
])
def test_bad_input_exits_nonzero_with_one_message(args, message, tmp_path):
    proc = trainwise("train", DIGITS, *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0]


def test_missing_config_file(tmp_path):
    proc = trainwise("train", "nope.yaml", cwd=tmp_path)
    assert proc.returncode == 2
    assert "config file not found: nope.yaml" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_csv_label_exits_cleanly(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,label\n1,2,0\n3,nan,1\n" + "".join(f"{i},{i},{i % 2}\n" for i in range(40)))
    proc = trainwise("train", DIGITS, "data.dataset=csv", "data.path=d.csv", "data.target=label", cwd=tmp_path)
    assert proc.returncode == 2
    assert "NaN" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_debug_shows_the_traceback(tmp_path):
    proc = trainwise("--debug", "train", DIGITS, "optimizer.lr=-1", cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr


def _write_csv(path: Path, regression: bool) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 3))
    lines = ["a,b,c,target"]
    for row in x:
        if regression:
            target = f"{2 * row[0] - row[1] + 0.5 * row[2] + 0.01 * rng.normal():.6f}"
        else:
            target = "yes" if row[0] + row[1] > 0 else "no"
        lines.append(",".join(f"{v:.6f}" for v in row) + f",{target}")
    path.write_text("\n".join(lines) + "\n")


def test_csv_regression_reports_rmse(tmp_path):
    _write_csv(tmp_path / "reg.csv", regression=True)
    proc = trainwise("train", DIGITS, "data.dataset=csv", "data.path=reg.csv", "data.target=target",
                     "model.hidden=[32]", "model.dropout=0", "train.epochs=40", "train.early_stopping.monitor=val_loss",
                     "--run-dir", "reg", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "reg" / "summary.json").read_text())
    assert summary["task"] == "regression"
    assert 0 < summary["test_rmse"] < 0.5
    assert summary["test_r2"] > 0.9
    assert "test_rmse" in proc.stdout


def test_csv_classification_trains_with_text_labels(tmp_path):
    _write_csv(tmp_path / "cls.csv", regression=False)
    proc = trainwise("train", DIGITS, "data.dataset=csv", "data.path=cls.csv", "data.target=target",
                     "model.hidden=[32]", "train.epochs=30", "--run-dir", "cls", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "cls" / "summary.json").read_text())
    assert summary["task"] == "classification"
    assert summary["test_accuracy"] > 0.9
    assert summary["class_names"] == ["no", "yes"]


def test_schedule_command_prints_and_plots(tmp_path):
    proc = trainwise("schedule", str(ROOT / "examples" / "mnist.yaml"), f"data.root={MNIST}",
                     "--compare", "cosine,onecycle,step", "--out", "s.png", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("onecycle:", "cosine:", "step:"):
        assert name in proc.stdout
    assert "momentum" in proc.stdout


def test_lr_find_and_lr_auto(tmp_path):
    proc = trainwise("lr-find", DIGITS, "--run-dir", "lf", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    found = json.loads((tmp_path / "lf" / "lr_find.json").read_text())
    assert set(found) >= {"lrs", "losses", "suggestion", "rule"}
    assert f"suggested lr: {found['suggestion']:.3g}" in proc.stdout
    assert (tmp_path / "lf" / "lr_find.png").is_file()

    proc = trainwise("train", DIGITS, "optimizer.lr=auto", "train.epochs=3", "--run-dir", "auto", "--quiet",
                     cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "auto"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["lr_finder"]["rule"] == "valley"
    assert summary["lr"] == summary["lr_finder"]["suggestion"]
    import yaml

    assert yaml.safe_load((run / "config.yaml").read_text())["optimizer"]["lr"] == summary["lr"]
    assert (run / "lr_find.png").is_file()


def test_same_config_twice_gives_identical_losses(tmp_path):
    import csv

    losses = []
    for name in ("a", "b"):
        proc = trainwise("train", DIGITS, "train.epochs=2", "--run-dir", name, "--quiet", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        with open(tmp_path / name / "metrics.csv") as handle:
            losses.append([row for row in csv.DictReader(handle) if row["metric"] == "loss"])
    assert losses[0] == losses[1]
    assert len(losses[0]) >= 4
