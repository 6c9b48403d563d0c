"""The doctor names a table's features by their column names: a pandas DataFrame's columns, a CSV's
columns with text columns one-hot (``city=paris``), or ``feature_names=``; by index otherwise."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch
from torch import nn

from test_cli import DIGITS, trainwise
from test_csv_categorical import people
from trainwise import doctor


def leaky_table(n: int = 300) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    frame = pd.DataFrame({"age": rng.normal(40, 10, n), "income": rng.normal(50, 5, n),
                          "approved_flag": y + 0.01 * rng.normal(size=n)})  # the label, copied into a feature
    return frame, y


def leakage(report) -> str:
    (check,) = [c for c in report.checks if c.id == "data.leakage"]
    assert check.status == "FAIL"  # each leak here copies the label: it reproduces the target
    return check.message


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))


def test_a_dataframes_columns_name_the_leaking_feature():
    frame, y = leaky_table()
    report = doctor.check(net(), (frame, y), only=["data.leakage"], lr=1e-2, baselines=False)
    assert "the best single feature (feature 'approved_flag') alone predicts" in leakage(report)
    assert "check that feature 'approved_flag' is known before the label is" in \
        [c for c in report.checks if c.id == "data.leakage"][0].fix


def test_arrays_are_named_by_index_or_by_feature_names():
    frame, y = leaky_table()
    x = frame.to_numpy(dtype=np.float32)
    assert "(feature 2) alone predicts" in leakage(doctor.check(net(), (x, y), only=["data.leakage"], lr=1e-2))
    named = doctor.check(net(), (x, y), only=["data.leakage"], lr=1e-2, feature_names=["a", "b", "c"])
    assert "(feature 'c') alone predicts" in leakage(named)
    wrong = doctor.check(net(), (x, y), only=["data.leakage"], lr=1e-2, feature_names=["a", "b"])  # not one per column
    assert "(feature 2) alone predicts" in leakage(wrong)


def test_the_cli_doctor_names_a_csvs_one_hot_columns(tmp_path):
    people(tmp_path / "people.csv")  # the label is the city: city=paris alone predicts it
    proc = trainwise("doctor", DIGITS, "data.dataset=csv", "data.path=people.csv", "data.target=label",
                     "model.hidden=[8]", "--no-baselines", "--out", "d.json", cwd=tmp_path)
    assert proc.returncode in (0, 1), proc.stderr
    (check,) = [c for c in json.loads((tmp_path / "d.json").read_text())["checks"] if c["id"] == "data.leakage"]
    assert "the best single feature (feature 'city=paris') alone predicts" in check["message"]


def test_the_doctor_takes_a_dataframe_with_text_columns_as_fit_does():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.normal(40, 10, 300), "city": rng.choice(["oslo", "paris", "rome"], 300)})
    y = (frame["city"] == "paris").to_numpy().astype("int64")
    torch.manual_seed(0)
    report = doctor.check(nn.Linear(4, 2), (frame, y), only=["data.leakage"], lr=1e-2, baselines=False)
    assert "(feature 'city=paris') alone predicts" in leakage(report)
