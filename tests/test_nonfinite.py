"""A NaN loss or gradient forced at a chosen step: rollback recovers (and gives up after
``max_rollbacks``), skip drops the batch, stop ends the run ``diverged`` with advice (the CLI exits
1); every event is recorded, and neither best.pt nor "best" ever holds a non-finite value."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any, Iterable

import pytest
import torch
import yaml
from torch import nn

from trainwise import checkpoint as ckpt
from trainwise.callbacks import Callback, CheckpointSaver
from trainwise.engine.nonfinite import NonFiniteGuard
from trainwise.errors import DataError, RunEndedBadlyWarning
from trainwise.trainer import FitResult, Trainer

BATCHES_PER_EPOCH, EPOCHS = 4, 4  # 128 samples in batches of 32
ADVICE = ("lower learning rate", "gradient clipping", "warmup", "bf16 instead of fp16")


class NaNGradient(torch.autograd.Function):
    """Identity forward, NaN gradient backward: a finite loss whose gradients are not."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad * math.nan


class FailsOnCalls(nn.Module):
    """A small MLP whose training forward number ``n`` (1-based) yields a NaN loss when ``n`` is in
    ``nan_loss_calls``, NaN gradients when in ``nan_grad_calls``; NaN outputs in eval mode while
    ``nan_in_eval`` is set."""

    def __init__(self, nan_loss_calls: Iterable[int] = (), nan_grad_calls: Iterable[int] = ()) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3))
        self.nan_loss_calls, self.nan_grad_calls = set(nan_loss_calls), set(nan_grad_calls)
        self.calls = 0
        self.nan_in_eval = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if not self.training:
            return out * math.nan if self.nan_in_eval else out
        self.calls += 1
        if self.calls in self.nan_loss_calls:
            return out * math.nan
        if self.calls in self.nan_grad_calls:
            return NaNGradient.apply(out)
        return out


class NaNValidationInEpoch(Callback):
    """Makes the model's validation outputs NaN during one epoch."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_start(self, trainer: Trainer) -> None:
        trainer.model.nan_in_eval = trainer.state.epoch == self.epoch


def blobs(n: int = 160, features: int = 8, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    y = torch.randint(0, classes, (n,), generator=generator)
    centers = torch.randn(classes, features, generator=generator) * 3
    return centers[y] + torch.randn(n, features, generator=generator), y


def fit(run_dir: Path, model: FailsOnCalls, policy: Any = "rollback", **kwargs: Any) -> FitResult:
    x, y = blobs()
    trainer = Trainer(model, lr=1e-2, schedule="constant", epochs=EPOCHS, batch_size=32, run_dir=run_dir,
                      on_nonfinite=policy, log_every_n_steps=1, progress=False, report=False, **kwargs)
    return trainer.fit((x[:128], y[:128]), (x[128:], y[128:]))


def events(result: FitResult, kind: str) -> list[dict[str, Any]]:
    return [event for event in result.summary["events"] if event["kind"] == kind]


def metric_rows(run_dir: Path) -> list[tuple[int, str, str, float]]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [(int(step), split, metric, float(value)) for step, _, split, metric, value
                in list(csv.reader(handle))[1:]]


def assert_best_is_finite(run_dir: Path) -> None:
    state = ckpt.load_checkpoint(run_dir / "checkpoints" / "best.pt")
    tensors = list(state["model"].values()) + [
        value for param_state in state["optimizer"]["state"].values() for value in param_state.values()]
    assert tensors and all(torch.isfinite(tensor).all() for tensor in tensors)


@pytest.mark.parametrize("failure, every_n_steps, where, rolled_back_to", [
    ({"nan_loss_calls": [10]}, None, "loss is nan at step 9 (epoch 3, batch 2)", "step-00000008.pt (step 8)"),
    ({"nan_loss_calls": [2]}, None, "loss is nan at step 1 (epoch 1, batch 2)", "the start of the run (step 0)"),
    ({"nan_grad_calls": [10]}, 1, "gradient norm is nan at step 9 (epoch 3, batch 2)", "step-00000009.pt (step 9)"),
])
def test_rollback_restores_the_last_checkpoint_lowers_the_lr_and_completes(failure, every_n_steps, where,
                                                                           rolled_back_to, tmp_path):
    result = fit(tmp_path, FailsOnCalls(**failure), grad_clip=5.0,
                 checkpoint=CheckpointSaver(every_n_steps=every_n_steps))
    assert result.status == "completed"
    assert result.summary["nonfinite_rollbacks"] == 1
    (event,) = events(result, "nonfinite_rollback")
    assert event["message"] == (f"{where}; rolled back to {rolled_back_to}, lr scaled by 0.5, "
                                "that batch will be skipped")
    rows = metric_rows(tmp_path)
    assert [row[2:] for row in rows if row[2].startswith("nonfinite")] == [("nonfinite_rollback", 5e-3)]
    event_row = next(index for index, row in enumerate(rows) if row[2] == "nonfinite_rollback")
    lrs = [(index > event_row, value) for index, (_, split, metric, value) in enumerate(rows)
           if (split, metric) == ("train", "lr")]
    assert {value for after, value in lrs if not after} <= {1e-2} and {value for after, value in lrs if after} == {5e-3}
    assert result.summary["steps"] == EPOCHS * BATCHES_PER_EPOCH - 1  # the bad batch is skipped
    steps = [row[0] for row in rows]
    assert steps == sorted(steps)  # rows logged after the checkpoint were cut, not repeated
    assert_best_is_finite(tmp_path)


def test_rollback_that_keeps_hitting_nan_gives_up_as_diverged(tmp_path):
    result = fit(tmp_path, FailsOnCalls(nan_loss_calls=range(10, 1000)),
                 policy=NonFiniteGuard("rollback", max_rollbacks=3))
    assert result.status == "diverged"
    assert result.summary["nonfinite_rollbacks"] == 3
    # the first rollback skips batch 1, the next ones the first batch not yet skipped
    assert [event["message"].split("; rolled back")[0] for event in events(result, "nonfinite_rollback")] == [
        "loss is nan at step 9 (epoch 3, batch 2)", "loss is nan at step 8 (epoch 3, batch 1)",
        "loss is nan at step 8 (epoch 3, batch 3)"]
    assert [row[2] for row in metric_rows(tmp_path) if row[2].startswith("nonfinite")] == ["nonfinite_rollback"] * 3
    assert result.summary["message"].startswith(
        "training diverged: loss is nan at step 8 (epoch 3, batch 4) after 3 rollbacks; try a lower learning rate")
    assert result.summary["final_lr"] == pytest.approx(1e-2 * 0.5 ** 3)
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "diverged"
    assert_best_is_finite(tmp_path)


def test_stop_ends_the_run_diverged_with_advice(tmp_path):
    result = fit(tmp_path, FailsOnCalls(nan_loss_calls=[6]), policy="stop")
    assert (result.status, result.summary["steps"], result.summary["epochs_run"]) == ("diverged", 5, 1)
    message = result.summary["message"]
    assert message.startswith("training diverged: loss is nan at step 5 (epoch 2, batch 2); ")
    assert all(advice in message for advice in ADVICE), message
    assert ("event", "diverged") in [row[1:3] for row in metric_rows(tmp_path)]
    assert_best_is_finite(tmp_path)


def test_skip_drops_the_batch_and_completes(tmp_path):
    result = fit(tmp_path, FailsOnCalls(nan_loss_calls=[6]), policy="skip")
    assert result.status == "completed"
    assert (result.summary["nonfinite_skipped"], result.summary["steps"]) == (1, EPOCHS * BATCHES_PER_EPOCH - 1)
    (event,) = events(result, "nonfinite_skip")
    assert event["message"] == "loss is nan at step 5 (epoch 2, batch 2); skipped that batch"
    assert ("event", "nonfinite_skip") in [row[1:3] for row in metric_rows(tmp_path)]


def test_a_nan_validation_loss_never_becomes_best(tmp_path):
    result = fit(tmp_path, FailsOnCalls(), callbacks=[NaNValidationInEpoch(1)], patience=10)
    assert math.isnan(result.history[1]["val_loss"])
    assert all(math.isfinite(row["val_loss"]) for row in result.history if row["epoch"] != 2)
    assert result.best_epoch != 2 and math.isfinite(result.best_val_loss)
    manifest = json.loads((tmp_path / "checkpoints" / ckpt.MANIFEST_NAME).read_text())
    best_step = manifest["checkpoints"]["best.pt"]["step"]
    assert best_step == result.best_epoch * BATCHES_PER_EPOCH != 2 * BATCHES_PER_EPOCH
    assert_best_is_finite(tmp_path)


NAN_MODEL = textwrap.dedent('''
    import math
    from torch import nn

    class NaNAt(nn.Module):
        def __init__(self, features, classes, nan_at):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(features, classes))
            self.calls, self.nan_at = 0, nan_at

        def forward(self, x):
            out = self.net(x)
            if self.training:
                self.calls += 1
                if self.calls == self.nan_at:
                    return out * math.nan
            return out

    def factory(input_shape, num_outputs, nan_at):
        return NaNAt(math.prod(input_shape), num_outputs, nan_at)
''')


@pytest.mark.slow
def test_cli_run_that_diverges_exits_1_with_the_message(tmp_path):
    (tmp_path / "nan_model.py").write_text(NAN_MODEL)
    config = {"name": "nan", "data": {"dataset": "digits"},
              "model": {"name": "nan_model:factory", "args": {"nan_at": 5}},
              "optimizer": {"lr": 1.0e-3},  # lr=auto's range test would meet the NaN first
              "train": {"epochs": 1, "threads": 1, "on_nonfinite": "stop"}}
    (tmp_path / "nan.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run([sys.executable, "-m", "trainwise", "train", "nan.yaml", "--run-dir", "run", "--quiet"],
                          cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "status diverged" in proc.stdout
    assert "training diverged: loss is nan at step 4 (epoch 1, batch 5); try a lower learning rate" in proc.stdout
    assert all(advice in proc.stdout for advice in ADVICE)
    assert "Traceback" not in proc.stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "diverged"


def test_without_a_per_step_read_a_late_nan_still_rolls_back(tmp_path, monkeypatch):
    """Accelerators read the loss only at log steps; simulate that on the CPU."""
    from trainwise.engine import loop

    original = loop.FitLoop.__init__

    def no_sync(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.sync_each_step = False

    monkeypatch.setattr(loop.FitLoop, "__init__", no_sync)
    x, y = blobs()
    trainer = Trainer(FailsOnCalls(nan_loss_calls=[6]), lr=1e-2, schedule="constant", epochs=EPOCHS, batch_size=32,
                      run_dir=tmp_path, log_every_n_steps=2, progress=False, report=False)
    result = trainer.fit((x[:128], y[:128]), (x[128:], y[128:]))
    assert result.status == "completed"
    (event,) = events(result, "nonfinite_rollback")
    assert event["message"].startswith("the loss became non-finite in the 2 steps before step 6 (epoch 2;")
    assert "that batch will be skipped" not in event["message"]
    assert all(math.isfinite(row["train_loss"]) for row in result.history)
    assert_best_is_finite(tmp_path)


def test_a_model_nan_from_its_first_forward_is_told_the_lr_plays_no_part(tmp_path):
    """At step 0 no lr has touched the weights: the message names the forward pass, not the lr, and a
    Python caller is warned (a diverged fit returns; it must not pass unnoticed)."""
    with pytest.warns(RunEndedBadlyWarning, match="FailsOnCalls returns NaN or Inf for finite inputs"):
        result = fit(tmp_path, FailsOnCalls(nan_loss_calls=range(1, 10_000)))
    message = result.summary["message"]
    assert result.status == "diverged" and result.summary["steps"] == 0
    assert message.startswith("training diverged: loss is nan at step 0 (epoch 1, batch 4) after 3 rollbacks; "
                              "the loss was non-finite at the model's initial weights, before any optimizer step")
    assert "check its forward pass" in message and not any(advice in message for advice in ADVICE)


def test_finite_outputs_with_a_nan_loss_at_step_0_point_at_the_loss(tmp_path):
    def log_of_negative(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return torch.log(outputs.sum(dim=1) - 1e6).mean()  # NaN for every finite output of this model

    with pytest.warns(RunEndedBadlyWarning):
        result = fit(tmp_path, FailsOnCalls(), policy="stop", loss=log_of_negative)
    assert result.summary["message"].endswith(
        "the model's outputs are finite but the loss is not; check the loss against the targets (a log of 0 or "
        "of a negative value in a custom loss, targets outside the loss's range)")



class PoisonedRows(torch.utils.data.Dataset):
    """Dict samples; once ``poisoned``, sample 5's inputs are NaN (a Dataset: nothing scans it in advance)."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(64, 4, generator=generator), torch.randint(0, 2, (64,), generator=generator)
        self.poisoned = False

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        x = self.x[i] * math.nan if self.poisoned and i == 5 else self.x[i]
        return {"x": x, "y": self.y[i]}


class Poison(Callback):
    def __init__(self, data: PoisonedRows) -> None:
        self.data = data

    def on_epoch_end(self, trainer, logs) -> None:
        self.data.poisoned = True  # from epoch 2 on: the NaN is met mid-run, after optimizer steps


@pytest.mark.parametrize("policy", ["rollback", "stop", "skip"])
def test_a_nan_in_a_datasets_inputs_mid_run_is_named_as_a_data_error_not_rolled_back(tmp_path, policy):
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x)

    data = PoisonedRows()
    trainer = Trainer(Net(), lr=1e-2, epochs=3, batch_size=16, progress=False, report=False, on_nonfinite=policy,
                      callbacks=[Poison(data)], run_dir=tmp_path / "run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunEndedBadlyWarning)
        result = trainer.fit(data, PoisonedRows())
    if policy == "skip":  # dropped as asked, once per epoch that meets it
        assert result.status == "completed" and result.summary["nonfinite_skipped"] == 2
        return
    assert result.status == "diverged" and result.summary["nonfinite_rollbacks"] == 0
    assert result.summary["stop_reason"].startswith("training stopped: loss is nan at step ")
    assert "(epoch 2, batch " in result.summary["stop_reason"]
    assert "the batch's inputs contain NaN or Inf; clean the data (or fill the missing values), or set " \
           "on_nonfinite='skip'" in result.summary["stop_reason"]


class EvalNaN(nn.Module):
    """Finite in training, NaN in eval mode: outputs broken only where validation and test read them."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x)
        return out if self.training else out * math.nan


def test_a_nan_validation_loss_with_finite_training_ends_the_run_as_failed_and_says_where(tmp_path):
    """Outputs broken only in eval mode: every later figure, "best" and early stopping would be read off NaN."""
    x, y = blobs()
    with pytest.warns(RunEndedBadlyWarning, match="the validation loss is nan at epoch 1 while the training loss is"):
        result = Trainer(EvalNaN(), lr=1e-2, epochs=EPOCHS, batch_size=32, run_dir=tmp_path, progress=False,
                         report=False).fit((x[:128], y[:128]), (x[128:], y[128:]))
    assert result.status == "failed" and result.summary["epochs_run"] == 1 and result.summary["best_epoch"] is None
    assert "what model.eval() changes (BatchNorm running statistics" in result.summary["stop_reason"]


def test_a_nan_test_loss_is_warned_about_not_read_as_a_trivial_predictor(tmp_path):
    x, y = blobs()
    result = Trainer(EvalNaN(), lr=1e-2, epochs=2, batch_size=32, run_dir=tmp_path, progress=False,
                     report=False).fit((x[:128], y[:128]), test=(x[128:], y[128:]))
    assert result.status == "completed" and len(result.warnings) == 1  # not also "no better than the majority class"
    assert result.warnings[0].startswith("the test loss is nan: the model's outputs on the test data are NaN or Inf")
    assert result.summary["warnings"] == result.warnings


def test_a_nan_sample_weight_is_a_data_error_in_memory_and_in_a_dataset(tmp_path):
    x, y = blobs()
    weights = torch.ones(len(y))
    weights[7] = math.nan
    trainer = Trainer(nn.Linear(8, 3), lr=1e-2, epochs=1, batch_size=32, run_dir=tmp_path / "mem", progress=False,
                      report=False)
    with pytest.raises(DataError, match=r"train: sample weight nan in row 7; weights must be finite and >= 0"):
        trainer.fit((x, y, weights))  # in memory: refused before training (it used to roll the lr back twice)

    class Weighted(torch.utils.data.Dataset):  # a Dataset is not scanned in advance: met in training
        def __len__(self) -> int:
            return len(y)

        def __getitem__(self, i: int) -> dict:
            return {"x": x[i], "y": y[i], "weight": weights[i]}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunEndedBadlyWarning)
        result = Trainer(nn.Linear(8, 3), lr=1e-2, epochs=1, batch_size=32, run_dir=tmp_path / "ds", progress=False,
                         report=False).fit(Weighted())
    assert result.status == "diverged" and result.summary["nonfinite_rollbacks"] == 0
    assert "the batch's sample weights contain NaN or Inf" in result.summary["stop_reason"]
