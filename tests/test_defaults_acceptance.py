"""Issue 8's newcomer runs: a CSV, ``data`` and ``model.name`` given, everything else default.

scikit-learn's diabetes table (raw features, a float target) must beat linear regression on the
same split, and its wine table (classes named by text) must reach 95% test accuracy. Both train
through the CLI in a real subprocess and are judged on the run folder's files.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from trainwise.data import load_data

pytestmark = pytest.mark.slow


def trainwise(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "trainwise", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def write_table(path: Path, feature_names: list[str], x: np.ndarray, target: list[str]) -> Path:
    lines = [",".join([*feature_names, "target"])]
    lines += [",".join([*(repr(float(v)) for v in row), label]) for row, label in zip(x, target)]
    path.write_text("\n".join(lines) + "\n")
    return path


def newcomer_run(folder: Path, csv_path: Path) -> tuple[dict, dict, dict]:
    """Train the two-key config; the run's summary, data description and resolved config."""
    (folder / "config.yaml").write_text(
        f"data: {{dataset: csv, path: {csv_path.name}, target: target}}\nmodel: {{name: mlp}}\n"
    )
    proc = trainwise("train", "config.yaml", "--run-dir", "run", "--quiet", cwd=folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = folder / "run"
    return (json.loads((run / "summary.json").read_text()), json.loads((run / "data.json").read_text()),
            yaml.safe_load((run / "config.yaml").read_text()))


def test_diabetes_with_defaults_beats_linear_regression(tmp_path: Path) -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression

    raw = load_diabetes(scaled=False)  # the newcomer's raw table: age in years, sex 1/2, ...
    csv_path = write_table(tmp_path / "diabetes.csv", list(raw.feature_names), raw.data,
                           [repr(float(v)) for v in raw.target])
    summary, data, config = newcomer_run(tmp_path, csv_path)
    assert summary["task"] == "regression"
    assert isinstance(config["optimizer"]["lr"], float)  # lr: auto by default, resolved by the range test

    # The same split in the original units, as the run saw it (seed 0 is the default seed).
    split = load_data("csv", path=csv_path, target="target", seed=0, normalize=False, standardize_target=False)
    train_y = split.train[1].double()
    assert data["target_normalization"]["mean"] == pytest.approx([float(train_y.mean())], rel=1e-6)
    assert data["target_normalization"]["std"] == pytest.approx([float(train_y.std(correction=0))], rel=1e-6)
    test_y = split.test[1].double().numpy()
    rmse = math.sqrt((1 - summary["test_r2"]) * float(np.mean((test_y - test_y.mean()) ** 2)))
    # R² does not depend on units, so ``rmse`` is in the original units. The summary reports it
    # in the original units once the Trainer takes target_normalization; before that, standardized.
    std = data["target_normalization"]["std"][0]
    assert summary["test_rmse"] == pytest.approx(rmse, rel=1e-4) or summary["test_rmse"] * std == pytest.approx(
        rmse, rel=1e-4), (summary["test_rmse"], rmse, std)

    fitted = LinearRegression().fit(split.train[0].numpy(), split.train[1].numpy())
    linear = float(np.sqrt(np.mean((fitted.predict(split.test[0].numpy()) - test_y) ** 2)))
    mean_only = float(np.sqrt(np.mean((test_y - float(train_y.mean())) ** 2)))
    assert rmse < mean_only, f"test RMSE {rmse:.2f} is no better than predicting the mean ({mean_only:.2f})"
    assert rmse < linear, f"test RMSE {rmse:.2f} is not below linear regression's {linear:.2f}"


def test_wine_with_defaults_reaches_95_percent(tmp_path: Path) -> None:
    from sklearn.datasets import load_wine

    raw = load_wine()
    csv_path = write_table(tmp_path / "wine.csv", list(raw.feature_names), raw.data,
                           [f"class_{int(v)}" for v in raw.target])
    summary, data, config = newcomer_run(tmp_path, csv_path)
    assert summary["task"] == "classification" and data["target_normalization"] is None
    assert data["class_names"] == ["class_0", "class_1", "class_2"]
    assert isinstance(config["optimizer"]["lr"], float)
    assert summary["test_accuracy"] >= 0.95, summary["test_accuracy"]
