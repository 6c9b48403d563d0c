"""The doctor on edge cases a tester found: a run that diverged before its first epoch ended, exact
copies counted as near duplicates, imbalanced classes read as uninformative inputs, a feature that is
the label, a dead ReLU layer, and NaN in the inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_helpers import cli_in_process
from sklearn.datasets import load_breast_cancer, load_digits, load_wine, make_classification
from torch import nn

from test_doctor import run_cli
from trainwise import Trainer, doctor
from trainwise.doctor.thresholds import RANGES, SOURCES, Thresholds


def standardized(x: np.ndarray, fit_on: np.ndarray) -> np.ndarray:
    std = fit_on.std(0)
    return ((x - fit_on.mean(0)) / np.where(std > 0, std, 1.0)).astype(np.float32)


def breast_cancer() -> tuple:
    """scikit-learn's breast cancer table, standardized on train: (x_train, y_train), (x_val, y_val)."""
    x, y = load_breast_cancer(return_X_y=True)
    order = np.random.RandomState(0).permutation(len(x))
    val, train = order[:142], order[142:]
    return (standardized(x[train], x[train]), y[train]), (standardized(x[val], x[train]), y[val])


def tensors(x: np.ndarray, y: np.ndarray) -> tuple:
    return torch.tensor(x), torch.tensor(y)


def relu_mlp(inputs: int, outputs: int = 2) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(inputs, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, outputs))


def test_a_run_that_diverged_before_its_first_epoch_ended_is_diagnosed_not_refused(tmp_path):
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(standardized(x, x))
    y = torch.tensor(y)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    result = Trainer(model, optimizer="sgd", lr=500.0, schedule="constant", grad_clip=None, epochs=3,
                     early_stopping=False, run_dir=tmp_path / "run", progress=False,
                     report=False).fit((x[:1500], y[:1500]), (x[1500:], y[1500:]))
    assert result.status == "diverged" and result.summary["epochs_run"] == 0
    for report in (doctor.diagnose(result.run_dir), doctor.diagnose(result)):
        assert report.verdict == "FAIL"
        diverged = report.get("run.diverged")
        assert diverged.status == "FAIL" and diverged.value["nonfinite_steps"] == 3
        assert diverged.message.startswith("status diverged: training diverged: loss is ")
        assert "after 3 rollbacks, before its first epoch ended" in diverged.message
        assert "lower the lr" in diverged.fix and "grad_clip" in diverged.fix and "warmup" in diverged.fix
        statuses = {c.id: c.status for c in report.checks}
        assert statuses == {"run.diverged": "FAIL", "run.underfit": "SKIP", "run.overfit": "SKIP",
                            "run.plateau": "SKIP", "run.still_improving": "SKIP", "run.oscillation": "SKIP",
                            "run.lr_too_high": "WARN", "run.lr_too_low": "SKIP", "run.worse_than_baseline": "SKIP"}
        assert report.get("run.overfit").message.startswith("skipped: the run diverged before its first epoch ended")
    folder = doctor.diagnose(result.run_dir).get("run.diverged")
    assert folder.value["step"] == result.summary["steps"] and folder.value["epoch"] == 1
    done = cli_in_process("doctor", str(result.run_dir), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "run.diverged" in done.stdout and "7 skipped" in done.stdout and "Traceback" not in done.stderr
    saved = json.loads((result.run_dir / "doctor.json").read_text())
    assert saved["verdict"] == "FAIL"
    assert [c["status"] for c in saved["checks"]].count("SKIP") == 7


def test_exact_copies_are_never_counted_as_near_duplicates():
    (x, y), (x_val, y_val) = breast_cancer()
    x_val, y_val = x_val.copy(), y_val.copy()
    x_val[:40], y_val[:40] = x[:40], y[:40]  # 40 exact copies of train rows
    report = doctor.check(relu_mlp(30), tensors(x, y), tensors(x_val, y_val), only=["data."], baselines=False)
    assert report.get("data.split_overlap").status == "FAIL"
    near = report.get("data.near_duplicates")
    assert near.status == "PASS" and near.value == {"train": 0.0, "val": 0.0}
    # 20 near copies (1e-5 off) beside the exact ones: only those 20 count
    x_val[40:60] = x[100:120] + 1e-5 * np.random.RandomState(1).standard_normal((20, 30)).astype(np.float32)
    near = doctor.check(relu_mlp(30), tensors(x, y), tensors(x_val, y_val), only=["data.near_duplicates"],
                        baselines=False).get("data.near_duplicates")
    assert near.status == "WARN" and near.value == {"train": 0.0, "val": pytest.approx(20 / 142)}
    # within train: a row and its exact copy are duplicates (data.duplicates), not near duplicates
    doubled = np.concatenate([x, x[:60]]), np.concatenate([y, y[:60]])
    report = doctor.check(relu_mlp(30), tensors(*doubled), only=["data.duplicates", "data.near_duplicates"],
                          baselines=False)
    assert report.get("data.duplicates").status == "WARN"
    assert report.get("data.near_duplicates").value == {"train": 0.0}


def imbalanced_95_5() -> tuple:
    x, y = make_classification(n_samples=2000, n_features=10, n_informative=4, weights=[0.95, 0.05], random_state=0)
    x = standardized(x, x[:1280])
    return tensors(x[:1280], y[:1280]), tensors(x[1280:1600], y[1280:1600]), tensors(x[1600:], y[1600:])


def test_imbalanced_baselines_are_judged_by_macro_f1_not_called_uninformative():
    train, val, _ = imbalanced_95_5()
    report = doctor.check(relu_mlp(10), train, val, only=["baseline."], lr=3e-3)
    comparison = report.get("baseline.comparison")
    assert comparison.status == "PASS", comparison.message
    assert comparison.value["metric"] == "macro_f1" and comparison.value["best"] == "shallow_mlp"
    assert comparison.value["imbalance_ratio"] == pytest.approx(1210 / 70)
    assert comparison.message.startswith("the classes are imbalanced (largest/smallest 17.3 > 10, data.imbalance), "
                                         "so the baselines are judged by macro-F1")
    assert "aligned" not in comparison.message + comparison.fix
    majority = report.get("baseline.majority")
    assert majority.value == pytest.approx(307 / 320)  # accuracy, as before; macro-F1 in the message
    assert majority.message == "the majority class scores validation accuracy 0.9594, macro-F1 0.4896"
    mlp = report.get("baseline.shallow_mlp")
    assert mlp.message.endswith("(trained with a class-balanced loss: the classes are imbalanced)")
    assert mlp.value < majority.value  # no longer a majority predictor
    # the same labels shuffled apart from the inputs: judged by macro-F1 too, and still caught
    shuffled = train[1][torch.randperm(len(train[1]), generator=torch.Generator().manual_seed(0))]
    bad = doctor.check(relu_mlp(10), (train[0], shuffled), val, only=["baseline."], lr=3e-3).get("baseline.comparison")
    assert bad.status == "WARN" and bad.value["metric"] == "macro_f1"
    assert "even with a class-balanced loss" in bad.message


def test_worse_than_baseline_holds_the_test_accuracy_against_the_test_splits_majority(tmp_path):
    train, val, test = imbalanced_95_5()
    model = relu_mlp(10)
    with torch.no_grad():  # a model that always says the majority class
        model[4].weight.zero_()
        model[4].bias.copy_(torch.tensor([5.0, 0.0]))
    result = Trainer(model, lr=1e-7, epochs=2, schedule="constant", run_dir=tmp_path / "run", progress=False,
                     report=False).fit(train, val, test=test)
    check = doctor.diagnose(result.run_dir).get("run.worse_than_baseline")
    test_share = float((test[1] == 0).double().mean())  # 0.95: the test split's own majority share
    assert check.status == "WARN"
    assert check.value["test_accuracy"] == pytest.approx(test_share)
    assert f"test accuracy {test_share:.4g} against test majority {test_share:.4g} (gain 0)" in check.message
    assert f"best validation accuracy {float((val[1] == 0).double().mean()):.4g} against chance 0.5" in check.message
    assert "test_accuracy (test majority)" in check.fix


def test_a_feature_that_is_the_label_fails_and_a_near_perfect_one_warns(tmp_path):
    (x, y), (x_val, y_val) = breast_cancer()
    leak = np.c_[x, y].astype(np.float32), np.c_[x_val, y_val].astype(np.float32)
    report = doctor.check(relu_mlp(31), tensors(leak[0], y), tensors(leak[1], y_val), only=["data.leakage"])
    check = report.get("data.leakage")
    assert check.status == "FAIL" and check.value == {"feature": 30, "score": 1.0, "copy": 1.0}
    assert check.message.startswith("the best single feature (feature 30) alone predicts the validation target with "
                                    "balanced accuracy 1 and is a copy of it (the label explains 100.00% of its "
                                    "variance, η²); WARN at 0.99")
    assert "FAIL at 0.999 when the label also explains 0.99 of the feature's variance" in check.message
    assert check.threshold == [0.99, 0.999] and "copy of the label" in check.fix
    near = leak[1].copy()
    near[np.flatnonzero(y_val == 1)[0], 30] = 0.0  # one validation row where the copy is wrong
    check = doctor.check(relu_mlp(31), tensors(leak[0], y), tensors(near, y_val),
                         only=["data.leakage"]).get("data.leakage")
    assert check.status == "WARN" and 0.99 <= check.value["score"] < 0.999 and "copy" not in check.value
    # a measured feature that separates two far-apart classes perfectly is no copy of the label: WARN, not FAIL
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(300) % 2
    blobs = torch.randn(300, 4, generator=g) + 8.0 * labels[:, None]
    check = doctor.check(relu_mlp(4), (blobs[:240], labels[:240]), (blobs[240:], labels[240:]),
                         only=["data.leakage"]).get("data.leakage")
    assert check.status == "WARN" and check.value["score"] == 1.0 and "copy" not in check.value
    # regression: the target again, in other units
    target = torch.tensor(load_breast_cancer().data[:, 0], dtype=torch.float32)
    inputs = torch.cat([torch.tensor(np.r_[x, x_val][:, 1:4]), (target * 2.54 + 1)[:, None]], dim=1)
    check = doctor.check(nn.Linear(4, 1), (inputs[:427], target[:427]), (inputs[427:], target[427:]), loss="mse",
                         only=["data.leakage"]).get("data.leakage")
    assert check.status == "FAIL" and check.value["feature"] == 3 and check.value["copy"] == pytest.approx(1.0)
    assert "and is a copy of it in other units (r² 1)" in check.message
    for name, (low, high) in (("leakage_fail", (0.0, 1.0)), ("leakage_copy", (0.0, 1.0))):
        assert name in SOURCES and RANGES[name] == (low, high)
    assert (Thresholds().leakage_fail, Thresholds().leakage_copy) == (0.999, 0.99)
    # train --doctor stops before training on a CSV whose column copies the label
    frame_x, frame_y = load_wine(return_X_y=True, as_frame=True)
    frame = frame_x.assign(leak=frame_y * 1.0, target=frame_y)
    frame.to_csv(tmp_path / "wine.csv", index=False)
    (tmp_path / "wine.yaml").write_text(
        "name: wine\nseed: 0\ndata: {dataset: csv, path: wine.csv, target: target, batch_size: 32, val_fraction: 0.2,"
        " test_fraction: 0.2, normalize: true}\nmodel: {name: mlp, hidden: [32]}\noptimizer: {name: adamw, lr: 3.0e-3}"
        "\ntrain: {epochs: 2}\n")
    done = run_cli("train", "wine.yaml", "--doctor", "--run-dir", "run", "--quiet", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "data.leakage" in done.stdout and "not training" in done.stdout
    checks = {c["id"]: c for c in json.loads((tmp_path / "run" / "doctor.json").read_text())["checks"]}
    assert checks["data.leakage"]["status"] == "FAIL" and "(feature 'leak')" in checks["data.leakage"]["message"]
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_a_dead_relu_layer_fails_with_advice_for_relus_and_no_lr_read_off_it():
    (x, y), (x_val, y_val) = breast_cancer()
    model = relu_mlp(30)
    with torch.no_grad():
        model[2].bias.fill_(-100.0)  # every unit of the second ReLU layer is dead
    report = doctor.check(model, tensors(x, y), tensors(x_val, y_val), only=["model.", "train.lr"], lr=3e-3)
    dead = report.get("model.dead_units")
    assert dead.status == "FAIL" and dead.value == [0.0, 1.0]
    assert "ReLU layer 2 of 2 (counted from the input) is dead as a whole" in dead.message
    assert "biases" in dead.fix and "init='he'" in dead.fix
    flow = report.get("model.gradient_flow")
    assert flow.status == "WARN" and "ReLU layer 2 (from the input) is dead on every sample" in flow.message
    assert "sigmoid" not in flow.fix and "LeakyReLU/GELU" in flow.fix
    lr = report.get("train.lr")
    assert lr.status == "SKIP" and lr.value == 3e-3
    assert lr.message.startswith("not judged: model.dead_units FAILed, and the lr range test on a broken model")
    # softmax before cross-entropy: the range test's curve is the bug's too
    torch.manual_seed(0)
    softmax = nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 2), nn.Softmax(dim=1))
    report = doctor.check(softmax, tensors(x, y), only=["model.output_activation", "train.lr"], lr=3e-3)
    assert report.get("model.output_activation").status == "FAIL"
    lr = report.get("train.lr")
    assert lr.status == "SKIP" and "model.output_activation FAILed" in lr.message
    # a deep sigmoid stack keeps the advice to swap its activations
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(30, 5), nn.Sigmoid()]
    for _ in range(7):
        layers += [nn.Linear(5, 5), nn.Sigmoid()]
    flow = doctor.check(nn.Sequential(*layers, nn.Linear(5, 2)), tensors(x, y),
                        only=["model.gradient_flow"]).get("model.gradient_flow")
    assert flow.status == "WARN" and flow.fix.startswith("use ReLU/GELU instead of sigmoid in deep stacks")


def test_nan_in_the_inputs_fails_nonfinite_and_leaves_the_statistics_finite():
    (x, y), _ = breast_cancer()
    x = x.copy()
    x[5, 3] = x[17, 3] = np.nan
    report = doctor.check(relu_mlp(30), tensors(x, y), only=["data."], baselines=False)
    assert report.get("data.nonfinite").status == "FAIL" and report.get("data.nonfinite").value == 2
    normalization, scale = report.get("data.normalization"), report.get("data.input_scale")
    assert normalization.status == "PASS" and scale.status == "PASS"
    finite = torch.tensor(x[np.isfinite(x)], dtype=torch.float64)
    assert normalization.value == {"mean": pytest.approx(float(finite.mean())),
                                   "std": pytest.approx(float(finite.std()))}
    assert normalization.message.endswith("(over the finite values; 2 NaN/Inf left out, see data.nonfinite)")
    assert scale.value == pytest.approx(float(finite.abs().quantile(0.99)))
    assert "is nan" not in scale.message and "2 NaN/Inf left out" in scale.message


def test_the_report_shows_skipped_checks_and_counts_them(tmp_path):
    import json as _json

    from trainwise.report.doctor_section import doctor_section

    checks = [{"id": "run.diverged", "status": "FAIL", "message": "diverged"},
              {"id": "run.overfit", "status": "SKIP", "message": "needs epochs"},
              {"id": "run.plateau", "status": "PASS", "message": "ok"}]
    (tmp_path / "doctor.json").write_text(_json.dumps({"verdict": "FAIL", "checks": checks}))
    page = doctor_section(tmp_path)
    assert "0 warn, 1 fail, 1 skipped" in page
    assert page.index("run.diverged") < page.index("run.plateau") < page.index("run.overfit")  # FAIL, PASS, SKIP
    assert 'color:#57606a;font-weight:600">SKIP' in page
