"""trainwise doctor: the report contract, the user's objects left untouched, every data form fit()
takes, classification/binary/regression, the post-run diagnosis, and the CLI as a person runs it."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_helpers import cli_in_process
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from trainwise import Trainer, doctor
from trainwise.doctor import DoctorReport
from trainwise.errors import ConfigError, DataNotFoundError

ROOT = Path(__file__).resolve().parents[1]
PREFLIGHT_IDS = {
    "data.nonfinite", "data.label_range", "data.split_overlap", "data.duplicates", "data.imbalance",
    "data.normalization", "data.constant_features", "data.input_scale", "data.batch_remainder",
    "data.near_duplicates", "data.conflicting_labels", "data.drift", "data.leakage", "data.outliers",
    "model.train_mode", "model.init_loss", "model.output_activation", "model.dead_units", "model.gradient_flow",
    "model.batchnorm_batch_size", "model.dropout", "model.symmetry", "model.linear_only",
    "train.one_step", "train.overfit_batch", "train.lr",
    "baseline.majority", "baseline.random", "baseline.linear", "baseline.shallow_mlp", "baseline.comparison"}
RUN_IDS = {"run.diverged", "run.underfit", "run.overfit", "run.plateau", "run.still_improving", "run.oscillation",
           "run.lr_too_high", "run.lr_too_low", "run.worse_than_baseline"}


def blobs(n=300, seed=0, classes=3, dim=8):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=torch.Generator().manual_seed(7)) * 3
    y = torch.arange(n) % classes
    x = centers[y] + torch.randn(n, dim, generator=g)
    return (x - x.mean(0)) / x.std(0), y


def mlp(dim=8, out=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(dim, 32), nn.ReLU(), nn.Linear(32, out))


def test_report_has_every_preflight_check_in_the_contract_shape(tmp_path):
    x, y = blobs()
    report = doctor.check(mlp(), (x[:240], y[:240]), (x[240:], y[240:]), lr=0.1)
    data = report.to_json()
    assert {c["id"] for c in data["checks"]} == PREFLIGHT_IDS
    assert data["verdict"] == "PASS", [c for c in data["checks"] if c["status"] != "PASS"]
    for c in data["checks"]:
        assert set(c) == {"id", "status", "value", "threshold", "message", "fix"}
        assert c["status"] in ("PASS", "WARN", "FAIL")
    path = report.write(tmp_path / "doctor.json")
    assert json.loads(path.read_text()) == data
    assert DoctorReport.from_json(data).to_json() == data


def test_the_users_model_and_optimizer_are_left_untouched():
    x, y = blobs()
    model = mlp()
    model.eval()  # a WARN for model.train_mode; the mode must survive the doctor
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    before = copy.deepcopy(model.state_dict())
    report = doctor.check(model, (x, y), optimizer=optimizer, lr=None, baselines=False)
    assert report.get("model.train_mode").status == "WARN"
    assert report.get("train.overfit_batch").status == "PASS"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training and optimizer.state_dict()["state"] == {}
    assert optimizer.param_groups[0]["lr"] == 0.05
    assert optimizer.param_groups[0]["params"][0] is next(model.parameters())
    assert all(p.grad is None for p in model.parameters())


class DictDataset(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"features": self.x[i], "label": self.y[i]}


@pytest.mark.parametrize("form", ["tuple", "numpy", "dict", "tensor_dataset", "dataset_of_dicts", "dataloader"])
def test_every_data_form_fit_takes(form):
    x, y = blobs(200)
    data = {"tuple": (x, y), "numpy": (x.numpy(), y.numpy()), "dict": {"x": x, "y": y},
            "tensor_dataset": TensorDataset(x, y), "dataset_of_dicts": DictDataset(x, y),
            "dataloader": DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)}[form]
    report = doctor.check(mlp(), data, lr=1e-2, baselines=False)
    assert report.failed() == [], [c.message for c in report.failed()]
    assert report.get("train.overfit_batch").status == "PASS"
    assert report.get("data.imbalance").value == pytest.approx(67 / 66, rel=1e-3)


def test_binary_with_bce_and_regression_and_a_loss_callable_pass():
    x, y = blobs(200, classes=2)
    binary = doctor.check(mlp(out=1), (x, y.float()), loss=nn.BCEWithLogitsLoss(), lr=1e-2)
    assert binary.failed() == [] and binary.get("baseline.linear").value > 0.9
    g = torch.Generator().manual_seed(0)
    xr = torch.randn(300, 5, generator=g)
    yr = xr @ torch.randn(5, generator=g)
    regression = doctor.check(mlp(5, 1), (xr[:240], yr[:240]), (xr[240:], yr[240:]), loss="mse", lr=1e-2)
    assert regression.failed() == [] and regression.get("baseline.linear").value > 0.9  # R²
    assert regression.get("baseline.majority").value < 0.05

    def my_loss(outputs, targets):
        return nn.functional.cross_entropy(outputs, targets)

    custom = doctor.check(mlp(), blobs(200), loss=my_loss, optimizer=torch.optim.Adam(mlp().parameters()),
                          lr=None, baselines=False)
    assert custom.get("train.one_step").status == "FAIL"  # that optimizer holds another model's parameters
    model = mlp()
    ok = doctor.check(model, blobs(200), loss=my_loss, optimizer=torch.optim.Adam(model.parameters(), lr=3e-3),
                      lr=None, baselines=False)
    assert ok.failed() == []


def test_thresholds_are_arguments_and_unknown_ones_get_a_did_you_mean():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(250, 8, generator=g)
    y = torch.cat([torch.zeros(200), torch.ones(50)]).long()
    only = ["data.imbalance"]
    assert doctor.check(mlp(out=2), (x, y), only=only).get("data.imbalance").status == "PASS"  # ratio 4
    strict = doctor.check(mlp(out=2), (x, y), only=only, thresholds={"imbalance_ratio": 3})
    assert strict.get("data.imbalance").status == "WARN" and strict.get("data.imbalance").threshold == 3
    assert "class_weights" in strict.get("data.imbalance").fix and "sampler" in strict.get("data.imbalance").fix
    with pytest.raises(ConfigError, match="did you mean 'imbalance_ratio'"):
        doctor.check(mlp(), blobs(), thresholds={"imbalance_ration": 3})


def test_diagnose_a_fit_result_and_its_run_folder_alike(tmp_path):
    x, y = blobs(300)
    result = Trainer(mlp(), lr=1e-2, epochs=6, run_dir=tmp_path / "run", progress=False, report=False,
                     schedule="constant").fit((x[:240], y[:240]), (x[240:], y[240:]))
    from_result, from_folder = doctor.diagnose(result), doctor.diagnose(tmp_path / "run")
    assert {c.id for c in from_folder.checks} == RUN_IDS
    assert [(c.id, c.status) for c in from_result.checks] == [(c.id, c.status) for c in from_folder.checks]
    assert from_folder.get("run.diverged").status == "PASS"
    assert from_folder.get("run.worse_than_baseline").status == "PASS"
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.yaml").write_text("name: x\n")
    with pytest.raises(DataNotFoundError, match="no metrics.csv"):
        doctor.diagnose(tmp_path / "empty")


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "trainwise", *args], cwd=cwd, capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"})


def test_cli_bad_input_is_one_error_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optimzer: {lr: 0.1}\n")
    for args in ([str(bad)], [str(tmp_path / "missing.yaml")], [str(tmp_path)],
                 [str(ROOT / "examples" / "digits.yaml"), "--threshold", "imbalance_ration=3"]):
        done = cli_in_process("doctor", *args, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text("{}")
    done = cli_in_process("doctor", str(tmp_path / "run"), cwd=tmp_path)
    assert done.returncode == 2 and "no metrics.csv" in done.stderr


@pytest.mark.slow
def test_cli_preflight_of_digits_then_train_and_diagnose(tmp_path):
    config = str(ROOT / "examples" / "digits.yaml")
    done = run_cli("doctor", config, "--out", str(tmp_path / "pre" / "doctor.json"), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((tmp_path / "pre" / "doctor.json").read_text())
    tabular_only = {"data.drift", "data.leakage", "data.outliers"}  # per-feature checks; digits are 8x8 images
    assert data["verdict"] in ("PASS", "WARN") and {c["id"] for c in data["checks"]} == PREFLIGHT_IDS - tabular_only
    assert (tmp_path / "pre" / "doctor_samples.png").stat().st_size > 1000
    assert "verdict:" in done.stdout and "train.overfit_batch" in done.stdout
    run = tmp_path / "run"
    done = run_cli("train", config, "train.epochs=5", "--run-dir", str(run), "--doctor", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (run / "doctor.json").exists() and (run / "metrics.csv").exists()
    done = run_cli("doctor", str(run), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    merged = json.loads((run / "doctor.json").read_text())
    assert {c["id"] for c in merged["checks"]} == (PREFLIGHT_IDS - tabular_only) | RUN_IDS
    still = next(c for c in merged["checks"] if c["id"] == "run.still_improving")
    assert still["status"] == "WARN"  # 5 epochs of 40 planned: it was still learning
    html = (run / "report.html").read_text()
    assert "Doctor" in html and "run.still_improving" in html


def test_train_with_doctor_stops_on_a_fail_before_training(tmp_path):
    """BatchNorm on batches of one sample cannot train: a FAIL, and the doctor's own training checks are skipped
    (they would meet the same error). The digits' 1,294 training samples leave no last batch of 1 at batch 1."""
    run = tmp_path / "run"
    done = run_cli("train", str(ROOT / "examples" / "digits.yaml"), "model.norm=batch", "data.batch_size=1",
                   "--run-dir", str(run), "--doctor", "--quiet", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "model.batchnorm_batch_size" in done.stdout and "not training" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    data = json.loads((run / "doctor.json").read_text())
    assert data["verdict"] == "FAIL"
    assert next(c for c in data["checks"] if c["id"] == "model.batchnorm_batch_size")["status"] == "FAIL"
    assert not any(c["id"].startswith("train.") for c in data["checks"])
    assert not (run / "metrics.csv").exists() and not (run / "checkpoints").exists()
