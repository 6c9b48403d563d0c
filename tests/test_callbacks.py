"""Callbacks on their own: the improvement rule, early stopping's counting, freezing, progress."""

from __future__ import annotations

import io
import math

import pytest
import torch
from rich.console import Console
from torch import nn

from trainwise.callbacks import Callback, EarlyStopping, MetricTracker, ModuleFreezer, ProgressBar
from trainwise.callbacks.base import overrides
from trainwise.callbacks.monitor import resolve_mode
from trainwise.errors import ConfigError
from trainwise.trainer import Trainer


class FakeTrainer:
    def __init__(self):
        self.epoch = 0
        self.model = nn.Linear(2, 2)
        self.stops = []
        self.events = []

    def request_stop(self, reason, status="stopped_early"):
        self.stops.append((self.epoch, reason, status))

    def record_event(self, kind, message):
        self.events.append((kind, message))


def test_tracker_never_takes_a_non_finite_value():
    tracker = MetricTracker("val_loss")
    assert not tracker.update(math.nan, 0)
    assert tracker.update(1.0, 1)
    assert not tracker.update(math.inf, 2)
    assert not tracker.update(-math.inf, 3)
    assert tracker.best == 1.0 and tracker.best_epoch == 1


@pytest.mark.parametrize("monitor, mode", [("val_loss", "min"), ("val_accuracy", "max"), ("val_macro_f1", "max"),
                                           ("val_rmse", "min"), ("val_r2", "max"), ("train_loss", "min")])
def test_auto_mode(monitor, mode):
    assert resolve_mode(monitor, "auto") == mode


def test_min_delta_and_max_mode():
    tracker = MetricTracker("val_accuracy", "auto", min_delta=0.01)
    assert tracker.update(0.90, 0)
    assert not tracker.update(0.905, 1)  # not by more than min_delta
    assert tracker.update(0.92, 2)
    assert tracker.best == 0.92


@pytest.mark.parametrize("patience", [0, 1, 3])
def test_early_stopping_counts_patience_exactly(patience):
    es = EarlyStopping("val_loss", patience=patience)
    trainer = FakeTrainer()
    values = [1.0, 0.5] + [0.6] * 10
    for epoch, value in enumerate(values):
        trainer.epoch = epoch
        es.on_epoch_end(trainer, {"val_loss": value})
        if trainer.stops:
            break
    # best at epoch 1; stops at the (patience + 1)-th epoch without improvement
    assert trainer.stops[0][0] == 1 + patience + 1
    assert f"did not improve for {patience + 1} epochs" in trainer.stops[0][1]


def test_early_stopping_restores_and_round_trips_state():
    es = EarlyStopping("val_loss", patience=5)
    trainer = FakeTrainer()
    with torch.no_grad():
        trainer.model.weight.fill_(1.0)
    es.on_epoch_end(trainer, {"val_loss": 0.1})
    with torch.no_grad():
        trainer.model.weight.fill_(2.0)
    trainer.epoch = 1
    es.on_epoch_end(trainer, {"val_loss": 0.2})
    copy = EarlyStopping("val_loss", patience=5)
    copy.load_state_dict(es.state_dict())
    assert copy.wait == 1 and copy.tracker.best == 0.1
    copy.on_fit_end(trainer)
    assert torch.all(trainer.model.weight == 1.0)
    assert trainer.events[0][0] == "restore_best"


def test_early_stopping_rejects_negative_patience():
    with pytest.raises(ConfigError, match="patience must be >= 0, got -1"):
        EarlyStopping(patience=-1)


def test_only_overridden_events_are_dispatched():
    class OnlyEpochEnd(Callback):
        def on_epoch_end(self, trainer, logs):
            pass

    cb = OnlyEpochEnd()
    assert overrides(cb, "on_epoch_end")
    assert not overrides(cb, "on_batch_end")


def test_module_freezer_keeps_a_module_fixed_until_its_epoch(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    snapshots = {}

    class Snap(Callback):
        def on_epoch_end(self, trainer, logs):
            snapshots[trainer.epoch] = trainer.model[0].weight.detach().clone()

    start = model[0].weight.detach().clone()
    Trainer(model, epochs=3, lr=1e-2, batch_size=16, progress=False, report=False, run_dir=tmp_path / "r",
            callbacks=[ModuleFreezer({"0": 2}), Snap()], early_stopping=False).fit((x, y))
    assert torch.equal(snapshots[0], start) and torch.equal(snapshots[1], start)
    assert not torch.equal(snapshots[2], start)


def test_progress_prints_plain_epoch_lines_when_not_a_terminal(tmp_path):
    buffer = io.StringIO()
    bar = ProgressBar(console=Console(file=buffer, force_terminal=False, width=200))
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    Trainer(nn.Linear(4, 2), epochs=2, batch_size=16, progress=False, report=False, run_dir=tmp_path / "r",
            callbacks=[bar]).fit((x, y), (x, y))
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("epoch 1/2  train_loss ") and "val_accuracy" in lines[0] and "samples/s" in lines[0]
