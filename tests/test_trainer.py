"""The Trainer's loop: data sources, accumulation, clipping, early stopping, seeds, run folder."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from trainwise.callbacks import Callback, EarlyStopping
from trainwise.errors import ConfigError, DataError
from trainwise.trainer import Trainer


def blobs(n: int = 200, features: int = 8, classes: int = 3, seed: int = 0):
    centers = torch.randn(classes, features, generator=torch.Generator().manual_seed(100)) * 3
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = centers[y] + torch.randn(n, features, generator=g)
    return x, y


def mlp(features: int = 8, classes: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(features, 16), nn.ReLU(), nn.Linear(16, classes))


def trainer(model, tmp_path, **kwargs) -> Trainer:
    defaults = dict(lr=1e-2, epochs=3, batch_size=32, progress=False, report=False, run_dir=tmp_path / "run",
                    schedule="constant")
    defaults.update(kwargs)
    return Trainer(model, **defaults)


class GradCapture(Callback):
    def __init__(self):
        self.grads = []

    def on_before_optimizer_step(self, trainer, optimizer):
        self.grads.append([p.grad.detach().clone() for p in trainer.model.parameters()])


class MapDataset(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


@pytest.mark.parametrize("kind", ["tensors", "numpy", "tensor_dataset", "map_dataset", "dataloader"])
def test_every_data_source_trains(kind, tmp_path):
    x, y = blobs()
    xv, yv = blobs(60, seed=1)
    sources = {
        "tensors": lambda a, b: (a, b),
        "numpy": lambda a, b: (a.numpy(), b.numpy()),
        "tensor_dataset": TensorDataset,
        "map_dataset": MapDataset,
        "dataloader": lambda a, b: DataLoader(TensorDataset(a, b), batch_size=32, shuffle=True),
    }
    make = sources[kind]
    result = trainer(mlp(), tmp_path, epochs=5).fit(make(x, y), make(xv, yv))
    assert result.status == "completed"
    assert len(result.history) == 5
    assert result.history[-1]["val_accuracy"] > 0.9
    assert result.best_val_loss == min(row["val_loss"] for row in result.history)


def test_run_folder_contract(tmp_path):
    x, y = blobs()
    xv, yv = blobs(60, seed=1)
    xt, yt = blobs(60, seed=2)
    result = trainer(mlp(), tmp_path, config={"name": "blobs"}, report=True).fit((x, y), (xv, yv), test=(xt, yt))
    run = result.run_dir
    summary = json.loads((run / "summary.json").read_text())
    for key in ("status", "epochs_run", "steps", "best_epoch", "best_val_loss", "wall_seconds",
                "train_samples_per_second", "best_val_accuracy", "test_accuracy"):
        assert key in summary, key
    assert summary["steps"] == 3 * 7  # ceil(200 / 32) steps per epoch
    assert (run / "config.yaml").read_text().startswith("name: blobs")
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "checkpoints" / "best.pt").is_file()
    assert (run / "report.html").is_file() and (run / "curves.svg").is_file()
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert set(rows[0]) == {"step", "epoch", "split", "metric", "value"}
    assert {(r["split"], r["metric"]) for r in rows} >= {("train", "loss"), ("val", "loss"), ("val", "accuracy"),
                                                          ("test", "accuracy")}


def test_test_accuracy_is_that_of_the_returned_model(tmp_path):
    x, y = blobs()
    xt, yt = blobs(60, seed=2)
    t = trainer(mlp(), tmp_path)
    result = t.fit((x, y), (xt, yt), test=(xt, yt))
    assert result.summary["test_accuracy"] == pytest.approx(t.evaluate((xt, yt))["accuracy"])


def test_same_seed_gives_identical_metrics(tmp_path):
    x, y = blobs()
    xv, yv = blobs(60, seed=1)
    losses = []
    for name in ("a", "b"):
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
        torch.manual_seed(0)
        for p in model.parameters():
            nn.init.normal_(p, std=0.1)
        result = trainer(model, tmp_path, run_dir=tmp_path / name, schedule="onecycle").fit((x, y), (xv, yv))
        rows = list(csv.DictReader((result.run_dir / "metrics.csv").open()))
        losses.append([(r["step"], r["split"], r["metric"], r["value"]) for r in rows if r["metric"] == "loss"])
    assert losses[0] == losses[1]
    assert len(losses[0]) >= 6


def test_accumulation_matches_the_larger_batch(tmp_path):
    x, y = blobs(100)  # 100 = 64 + 36: the second group is partial
    small = GradCapture()
    big = GradCapture()
    trainer(mlp(), tmp_path, run_dir=tmp_path / "a", batch_size=16, accumulate=4, epochs=1,
            early_stopping=False, callbacks=[small]).fit((x, y))
    trainer(mlp(), tmp_path, run_dir=tmp_path / "b", batch_size=64, accumulate=1, epochs=1,
            early_stopping=False, callbacks=[big]).fit((x, y))
    assert len(small.grads) == len(big.grads) == 2
    for step_small, step_big in zip(small.grads, big.grads):
        for a, b in zip(step_small, step_big):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_clip_by_norm_and_value(tmp_path):
    x, y = blobs()
    capture = GradCapture()
    t = trainer(mlp(), tmp_path, optimizer="sgd", lr=1e-3, grad_clip=1e-4, callbacks=[capture], early_stopping=False)
    t.fit((x, y))
    norms = [torch.linalg.vector_norm(torch.stack([g.norm() for g in step])) for step in capture.grads]
    assert max(norms) <= 1e-4 * (1 + 1e-4)
    rows = list(csv.DictReader((t.run_dir / "metrics.csv").open()))
    fractions = [float(r["value"]) for r in rows if r["metric"] == "clip_fraction"]
    assert fractions == [1.0, 1.0, 1.0]

    capture = GradCapture()
    trainer(mlp(), tmp_path, run_dir=tmp_path / "v", grad_clip=1e-3, grad_clip_mode="value",
            callbacks=[capture], early_stopping=False).fit((x, y))
    assert max(g.abs().max() for step in capture.grads for g in step) <= 1e-3


class Snapshots(Callback):
    def __init__(self):
        self.weights = {}

    def on_epoch_end(self, trainer, logs):
        self.weights[trainer.state.epoch] = {k: v.clone() for k, v in trainer.model.state_dict().items()}


def test_early_stopping_restores_the_best_weights(tmp_path):
    x, y = blobs(200)
    xv, _ = blobs(100, seed=5)
    yv = torch.randint(0, 3, (100,), generator=torch.Generator().manual_seed(9))  # noise: val loss rises
    snapshots = Snapshots()
    t = trainer(mlp(), tmp_path, lr=5e-2, epochs=40, callbacks=[snapshots],
                early_stopping=EarlyStopping("val_loss", patience=2))
    result = t.fit((x, y), (xv, yv))
    assert result.status == "stopped_early"
    assert len(result.history) < 40
    best = min(result.history, key=lambda row: row["val_loss"])["epoch"]
    assert result.best_epoch == best
    assert len(result.history) == best + 2  # patience 2: stops at the second epoch without improvement
    for key, value in t.model.state_dict().items():
        assert torch.equal(value, snapshots.weights[best][key]), key
    assert "did not improve for 2 epochs" in result.summary["stop_reason"]


def test_early_stopping_unknown_monitor_lists_metrics(tmp_path):
    x, y = blobs()
    with pytest.raises(ConfigError, match="monitors 'val_acc'.*available metrics: .*val_accuracy"):
        trainer(mlp(), tmp_path, early_stopping=EarlyStopping("val_acc")).fit((x, y), (x, y))


def test_bad_data_gets_clear_errors(tmp_path):
    x, y = blobs()
    bad = x.clone()
    bad[7, 2] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        trainer(mlp(), tmp_path).fit((bad, y))
    with pytest.raises(DataError, match="label"):
        trainer(mlp(), tmp_path).fit((x, y + 5))
    with pytest.raises(DataError, match="model cannot take inputs of shape \\(5,\\)"):
        trainer(mlp(), tmp_path).fit((x[:, :5], y))
    with pytest.raises(DataError, match="x has 200 samples but y has 10"):
        trainer(mlp(), tmp_path).fit((x, y[:10]))


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
    ({"batch_size": -1}, "batch_size must be an integer >= 1, got -1"),
    ({"precision": "fp8"}, "unknown precision 'fp8' \\(valid: fp32, bf16, fp16\\)"),
    ({"grad_clip": -1.0}, "grad_clip must be > 0, got -1.0"),
    ({"on_nonfinite": "pray"}, "unknown on_nonfinite 'pray' \\(valid: rollback, skip, stop\\)"),
    ({"loss": "hinge"}, "unknown loss 'hinge'"),
])
def test_trainer_arguments_are_checked(kwargs, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        trainer(mlp(), tmp_path, **kwargs)


def test_regression_reports_rmse(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.01 * torch.randn(300, generator=g)
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    result = trainer(model, tmp_path, loss="mse", epochs=30, lr=0.05, early_stopping=False).fit(
        (x[:200], y[:200]), (x[200:250], y[200:250]), test=(x[250:], y[250:]))
    assert result.summary["test_rmse"] < 0.1
    assert result.summary["test_r2"] > 0.99


def test_bf16_autocast_trains(tmp_path):
    x, y = blobs()
    result = trainer(mlp(), tmp_path, precision="bf16", epochs=5).fit((x, y), (x, y))
    assert result.history[-1]["val_accuracy"] > 0.9


def test_evaluate_and_predict(tmp_path):
    x, y = blobs()
    t = trainer(mlp(), tmp_path, epochs=5)
    t.fit((x, y), (x, y))
    metrics = t.evaluate((x, y))
    assert set(metrics) == {"loss", "accuracy", "macro_f1"}
    outputs = t.predict(x)
    assert outputs.shape == (200, 3)
    assert (outputs.argmax(1) == y).float().mean().item() == pytest.approx(metrics["accuracy"])
    np_outputs = t.predict(x.numpy())
    torch.testing.assert_close(outputs, np_outputs)


def test_max_steps_stops_mid_epoch(tmp_path):
    x, y = blobs()
    result = trainer(mlp(), tmp_path, max_steps=10, epochs=5).fit((x, y), (x, y))
    assert result.summary["steps"] == 10
    assert result.status == "completed"


def test_train_eval_modes_are_switched(tmp_path):
    seen = []

    class ModeSpy(Callback):
        def on_batch_start(self, trainer, batch):
            seen.append(("train", trainer.model.training))

        def on_validation_end(self, trainer, metrics):
            seen.append(("after_val", trainer.model.training))

    x, y = blobs()
    trainer(mlp(), tmp_path, epochs=2, callbacks=[ModeSpy()]).fit((x, y), (x, y))
    assert all(mode for kind, mode in seen if kind == "train")
    assert any(kind == "after_val" for kind, _ in seen)

    class EvalSpy(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = mlp()
            self.modes = []

        def forward(self, x):
            self.modes.append((self.training, torch.is_inference_mode_enabled()))
            return self.inner(x)

    spy = EvalSpy()
    t = trainer(spy, tmp_path, run_dir=tmp_path / "spy", epochs=1)
    t.fit((x, y), (x, y))
    assert (True, False) in spy.modes and (False, True) in spy.modes
    assert all(not inference for training, inference in spy.modes if training)


def test_a_new_run_refuses_a_used_run_folder(tmp_path):
    x, y = blobs()
    trainer(mlp(), tmp_path, epochs=1).fit((x, y), (x, y))
    before = (tmp_path / "run" / "metrics.csv").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run .*resume auto"):
        trainer(mlp(), tmp_path, epochs=1).fit((x, y), (x, y))
    assert (tmp_path / "run" / "metrics.csv").read_bytes() == before


def test_best_checkpoint_holds_the_restored_weights(tmp_path):
    from trainwise.checkpoint import load_checkpoint

    x, y = blobs(200)
    xv, _ = blobs(100, seed=5)
    yv = torch.randint(0, 3, (100,), generator=torch.Generator().manual_seed(9))
    t = trainer(mlp(), tmp_path, lr=5e-2, epochs=12, early_stopping=EarlyStopping("val_loss", patience=3,
                                                                                  min_delta=0.05))
    t.fit((x, y), (xv, yv))
    best = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["model"]
    for key, value in t.model.state_dict().items():
        assert torch.equal(value, best[key]), key
