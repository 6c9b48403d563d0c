"""A whole optimizer step's loss as its mean: taken where it needs no op (in-memory targets that hold no
ignore_index, no accumulation, one process), never where it would be wrong (ignored positions, a batch
whose every position is ignored, accumulation), and the figures equal the summed form's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import trainwise.engine.loss_rule as loss_rule
from trainwise.engine import loop as loop_module
from trainwise.trainer import Trainer


def quiet(tmp_path, **extra):
    return dict(run_dir=tmp_path / "run", progress=False, report=False, **extra)


def counting_mean(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = loss_rule.cross_entropy_mean

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(loss_rule, "cross_entropy_mean", counted)
    return calls


def frozen_fit(tmp_path, x, y, **options):
    """One epoch at lr 1e-12 (the weights stay, to float precision): the epoch's train loss is exactly the data's mean loss."""
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-12)
    trainer = Trainer(model, optimizer=optimizer, loss="cross_entropy", epochs=1, batch_size=8, schedule="constant",
                      **quiet(tmp_path, **options))
    result = trainer.fit((x, y))
    with torch.no_grad():
        expected = F.cross_entropy(model(x), y, ignore_index=-100).item()
    return result, expected


def accelerator_mode(monkeypatch) -> None:
    """The loop as on a GPU: no host sync per step (the loss summed on the device)."""
    original = loop_module.FitLoop.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.sync_each_step = False

    monkeypatch.setattr(loop_module.FitLoop, "__init__", init)


@pytest.mark.parametrize("mode", ["host", "accelerator"])
def test_in_memory_labels_without_ignored_positions_train_on_the_mean(tmp_path, monkeypatch, mode):
    if mode == "accelerator":
        accelerator_mode(monkeypatch)
    calls = counting_mean(monkeypatch)
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))
    result, expected = frozen_fit(tmp_path, x, y)
    assert len(calls) == 5  # every one of the 5 steps (the loss rule was decided before training)
    assert result.history[-1]["train_loss"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("mode", ["host", "accelerator"])
def test_ignored_labels_keep_the_summed_form_and_count_only_the_counted(tmp_path, monkeypatch, mode):
    if mode == "accelerator":
        accelerator_mode(monkeypatch)
    calls = counting_mean(monkeypatch)
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))
    y[::3] = -100
    y[8:16] = -100  # the second batch: every position ignored (a mean would be 0/0)
    result, expected = frozen_fit(tmp_path, x, y)
    assert calls == [] and result.status == "completed"
    assert result.history[-1]["train_loss"] == pytest.approx(expected, rel=1e-6)


def test_accumulation_keeps_the_summed_form(tmp_path, monkeypatch):
    calls = counting_mean(monkeypatch)
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))
    result, expected = frozen_fit(tmp_path, x, y, accumulate=2)
    assert calls == [] and result.history[-1]["train_loss"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_the_mean_form_trains_the_weights_the_summed_form_trains(tmp_path, monkeypatch, loss):
    x = torch.randn(64, 4)
    y = torch.randint(0, 3, (64,)) if loss == "cross_entropy" else torch.randn(64, 3)

    def trained(folder, mean_form: bool):
        torch.manual_seed(1)
        model = nn.Linear(4, 3)
        trainer = Trainer(model, loss=loss, lr=1e-2, epochs=3, batch_size=16, **quiet(folder))
        if not mean_form:
            monkeypatch.setattr(trainer.batch_loss, "step_terms",
                                lambda m, split, batch: (*trainer.batch_loss.terms(m, split, batch)[:2], False))
        trainer.fit((x, y))
        monkeypatch.undo()
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.allclose(trained(tmp_path / "mean", True), trained(tmp_path / "sum", False), rtol=1e-5, atol=1e-6)
