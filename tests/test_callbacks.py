"""Callbacks on their own: the improvement rule, early stopping's counting, freezing, progress."""

from __future__ import annotations

import io
import math

import pytest
import torch
from rich.console import Console
from torch import nn

from trainwise.callbacks import Callback, EarlyStopping, ModuleFreezer, ProgressBar
from trainwise.callbacks.base import overrides
from trainwise.callbacks.monitor import resolve_mode
from trainwise.errors import ConfigError
from trainwise.engine.state import Best, RunState
from trainwise.trainer import Trainer


class FakeTrainer:
    """What a callback sees of a trainer: the state, the model, the verbs."""

    def __init__(self, monitor="val_loss", mode="min"):
        self.state = RunState(best=Best(monitor, mode))
        self.model = nn.Linear(2, 2)
        self.stops = []
        self.events = []

    def stop(self, reason, status="stopped_early"):
        self.stops.append((self.state.epoch, reason, status))

    def record_event(self, kind, message):
        self.events.append((kind, message))

    def end_epoch(self, callback, logs):
        """What the loop does at an epoch's end: update best, count the epoch, fire the event."""
        self.state.best.update(logs[self.state.best.monitor], self.state.epoch + 1)
        self.state.epoch += 1
        callback.on_epoch_end(self, logs)


def test_best_never_takes_a_non_finite_value():
    best = Best("val_loss", "min")
    assert not best.update(math.nan, 1)
    assert best.update(1.0, 2)
    assert not best.update(math.inf, 3)
    assert not best.update(-math.inf, 4)
    assert best.value == 1.0 and best.epoch == 2


@pytest.mark.parametrize("monitor, mode", [("val_loss", "min"), ("val_accuracy", "max"), ("val_macro_f1", "max"),
                                           ("val_rmse", "min"), ("val_r2", "max"), ("train_loss", "min")])
def test_auto_mode(monitor, mode):
    assert resolve_mode(monitor, "auto") == mode


def test_min_delta_and_max_mode():
    best = Best("val_accuracy", resolve_mode("val_accuracy", "auto"), min_delta=0.01)
    assert best.update(0.90, 1)
    assert not best.update(0.905, 2)  # not by more than min_delta
    assert best.update(0.92, 3)
    assert best.value == 0.92


@pytest.mark.parametrize("patience, stop_epoch", [(0, 3), (1, 3), (3, 5), (15, 17)])
def test_early_stopping_counts_patience_exactly(patience, stop_epoch):
    es = EarlyStopping("val_loss", patience=patience)
    trainer = FakeTrainer()
    for value in [1.0, 0.5] + [0.6] * 20:
        trainer.end_epoch(es, {"val_loss": value})
        if trainer.stops:
            break
    # best at epoch 2; patience p stops at the p-th epoch without improvement (Keras' rule; 0 acts as 1)
    assert trainer.stops[0][0] == stop_epoch
    assert f"did not improve for {stop_epoch - 2} epochs (best 0.5 at epoch 2)" in trainer.stops[0][1]


def test_early_stopping_state_round_trips():
    es = EarlyStopping("val_loss", patience=5)
    trainer = FakeTrainer()
    for value in (0.1, 0.2, 0.3):
        trainer.end_epoch(es, {"val_loss": value})
    copy = EarlyStopping("val_loss", patience=5)
    copy.load_state_dict(es.state_dict())
    assert copy.wait == 2


def test_early_stopping_rejects_negative_patience():
    with pytest.raises(ConfigError, match="patience must be an integer >= 0, got -1"):
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
            snapshots[trainer.state.epoch] = trainer.model[0].weight.detach().clone()

    start = model[0].weight.detach().clone()
    Trainer(model, epochs=3, lr=1e-2, batch_size=16, progress=False, report=False, run_dir=tmp_path / "r",
            callbacks=[ModuleFreezer({"0": 2}), Snap()], early_stopping=False).fit((x, y))
    assert torch.equal(snapshots[1], start) and torch.equal(snapshots[2], start)
    assert not torch.equal(snapshots[3], start)


def test_progress_prints_plain_epoch_lines_when_not_a_terminal(tmp_path):
    buffer = io.StringIO()
    bar = ProgressBar(console=Console(file=buffer, force_terminal=False, width=200))
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    Trainer(nn.Linear(4, 2), epochs=2, batch_size=16, progress=False, report=False, run_dir=tmp_path / "r",
            callbacks=[bar]).fit((x, y), (x, y))
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("epoch 1/2  train_loss ") and "val_accuracy" in lines[0] and "samples/s" in lines[0]
