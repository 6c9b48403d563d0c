"""A slow learner's floor that ends without a cliff near it is read at its edge (issue 22, rounds 5-6): the curve
check, the finder's branch on scripted curves (a retried curve that creeps up, one that diverges near its edge, one
that diverges only far past it, a first test that creeps), and a whole fit through the Trainer with the summary,
lr_find.json and the report's sentence."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from trainwise.lr.finder import LRFinder
from trainwise.lr.suggest import CALM_DECADES, CALM_STOP_DECADES, EDGE_BACKOFF, calm_edge, suggest
from trainwise.report.lr_text import lr_finder_text
from trainwise.trainer import Trainer

CHANCE = 2.3


def creep(lr: float) -> float:
    """Falls from the chance loss to 1.9 at lr 1e-2, then creeps up 0.1 a decade: never 4x its best."""
    decades = math.log10(lr / 1e-2)
    return 1.9 + 0.1 * decades if decades > 0 else min(CHANCE, 1.9 - 0.2 * decades)


def cliff(lr: float) -> float:
    """The same descent, then a loss that triples every half decade: the stop rule ends the test."""
    decades = math.log10(lr / 1e-2)
    return 1.9 * 9 ** decades if decades > 0 else creep(lr)


def early_creep(lr: float) -> float:
    """The creep a decade lower: its floor's edge (~8e-3) leaves three decades of the test's lrs past it."""
    return creep(10 * lr)


def far_cliff(lr: float) -> float:
    """The early creep, then a cliff 2.55 decades past its floor's edge (the stop rule ends the test ~0.3 decades
    later, the smoothed loss lagging), as an LSTM 128's on MNIST-1D."""
    decades = math.log10(lr / 8e-3)
    return early_creep(lr) * (1 + 1e9 ** (decades - 2.55) if decades > 2.55 else 1)


class Scripted:
    """``batch_loss`` for the finder: each test (a new one starts when the lr falls back) gets its curve, the first
    one flat at the chance loss (a slow learner: no suggestion), the retry the profile. A tiny noise per step keeps
    the curve from being exactly flat; the product with 0 gives the weights a gradient."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, profiles: list) -> None:
        self.model, self.optimizer, self.profiles = model, optimizer, profiles
        self.test, self.last_lr, self.rng = -1, math.inf, np.random.default_rng(0)

    def __call__(self, batch: object) -> torch.Tensor:
        lr = self.optimizer.param_groups[0]["lr"]
        if lr < self.last_lr:
            self.test += 1
        self.last_lr = lr
        profile = self.profiles[min(self.test, len(self.profiles) - 1)]
        value = (CHANCE if profile is None else profile(lr)) + 1e-4 * self.rng.standard_normal()
        return torch.tensor(value) + 0 * sum(p.sum() for p in self.model.parameters())


def find(profiles: list, retry_repeats: int = 1) -> object:
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    finder = LRFinder(model, optimizer, None, num_steps=60, batch_loss=Scripted(model, optimizer, profiles),
                      retry_repeats=retry_repeats)
    return finder.run([torch.zeros(1)])


def test_a_retried_curve_that_creeps_past_its_floor_is_read_at_the_edge_itself() -> None:
    result = find([None, creep])
    assert len(result.lrs) == 120 and result.calm_edge  # the retry ran all its steps: no divergence
    edge_over_three = suggest(result.lrs, result.losses, "edge", result.raw_losses)[0]
    assert result.suggestion == pytest.approx(EDGE_BACKOFF * edge_over_three, rel=1e-12)
    # the creep has risen 15% of the drop (0.06) 0.6 decades past the floor's lowest point (1e-2): ~4e-2, widened by
    # the decade smoothing
    assert 3e-2 < result.suggestion < 1.2e-1
    assert result.to_json()["calm_edge"] is True


def test_the_mean_of_several_retries_is_calm_only_when_every_one_ran_its_whole_length() -> None:
    result = find([None, creep], retry_repeats=3)
    assert len(result.repeats) == 3 and result.calm_edge
    assert result.suggestion == pytest.approx(
        EDGE_BACKOFF * suggest(result.lrs, result.losses, "edge", result.raw_losses)[0], rel=1e-12)
    mixed = find([None, creep, cliff, creep], retry_repeats=3)  # one of the three falls off a cliff
    assert len(mixed.lrs) < 120 and not mixed.calm_edge


def test_a_retried_curve_that_diverges_keeps_the_backoff() -> None:
    result = find([None, cliff])
    assert len(result.lrs) < 120 and not result.calm_edge  # the stop rule ended the retry
    assert result.suggestion == suggest(result.lrs, result.losses, "edge", result.raw_losses)[0]
    assert result.suggestion < 1e-2


def test_a_retried_curve_that_diverges_only_far_past_its_edge_is_read_at_the_edge() -> None:
    result = find([None, far_cliff])
    assert len(result.lrs) < 120 and result.calm_edge  # the stop rule fired, but far past the edge
    assert result.suggestion == pytest.approx(
        EDGE_BACKOFF * suggest(result.lrs, result.losses, "edge", result.raw_losses)[0], rel=1e-12)


def test_a_curve_read_on_its_first_test_keeps_the_backoff_even_when_it_never_diverges() -> None:
    # a CNN on MNIST-1D never diverges up to lr 10 either, and trains well at edge / 3: only slow learners change
    result = find([creep])
    assert len(result.lrs) == 60 and not result.calm_edge
    assert result.suggestion == suggest(result.lrs, result.losses, "edge", result.raw_losses)[0]


def test_calm_edge_needs_a_decade_past_the_edge_or_a_cliff_far_from_it() -> None:
    lrs = np.geomspace(1e-7, 10, 120)
    losses = np.array([early_creep(lr) for lr in lrs])
    edge = suggest(lrs, losses, "edge", edge_backoff=1.0)[0]
    assert 3e-3 < edge < 3e-2 and lrs[-1] > edge * 10 ** CALM_STOP_DECADES
    assert calm_edge(lrs, losses, reached_end=True) is True
    assert calm_edge(lrs, losses, reached_end=False) is True  # the stop rule fired 3 decades past the edge: far
    near = lrs <= edge * 10 ** (CALM_STOP_DECADES - 0.3)  # ... or 2.2 decades past it: a cliff near the floor
    assert not calm_edge(lrs[near], losses[near], reached_end=False)
    assert calm_edge(lrs[near], losses[near], reached_end=True)  # the same span, run to its end: no cliff at all
    short = lrs <= edge * 10 ** (CALM_DECADES - 0.2)  # the test ended less than a decade past the edge
    assert not calm_edge(lrs[short], losses[short], reached_end=True)
    falling = np.linspace(CHANCE, 1.0, 120)  # no floor edge at all: nothing to read at
    assert not calm_edge(lrs, falling, reached_end=True)
    assert suggest(lrs, losses, "edge", edge_backoff=1.0)[0] == pytest.approx(
        EDGE_BACKOFF * suggest(lrs, losses, "edge")[0], rel=1e-12)


class ScriptedTrainer(Trainer):
    """A Trainer whose loss follows ``profiles`` during the range test (see ``Scripted``), then the model's own MSE."""

    profiles: list = [None, None]

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.script: Scripted | None = None

    def compute_loss(self, model: nn.Module, batch: object) -> torch.Tensor:
        x, y = batch[0], batch[1]
        real = nn.functional.mse_loss(model(x), y)
        if self.reference_lr is not None:  # the range test is over: train on the real loss
            return real
        if self.script is None:
            self.script = Scripted(model, self.optimizer, self.profiles)
        return self.script(batch) + 0 * real


class SlowLearner(ScriptedTrainer):
    """A slow learner's creeping curve during the range test."""

    profiles = [None, creep]


def test_a_fit_records_the_calm_edge_and_the_report_says_why(tmp_path) -> None:
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    y = x.sum(dim=1, keepdim=True)
    trainer = SlowLearner(nn.Linear(4, 1), lr="auto", epochs=20, batch_size=8, run_dir=tmp_path / "run",
                          progress=False, report=False)
    result = trainer.fit((x, y), (x, y))
    info = result.summary["lr_finder"]
    assert info["calm_edge"] is True and info["suggestion"] == result.summary["lr"]
    assert json.loads((tmp_path / "run" / "lr_find.json").read_text())["calm_edge"] is True
    assert "edge of the loss's floor itself" in lr_finder_text(info)
    assert any("read at its floor's edge" in str(event) for event in result.summary.get("events", []))
    assert "edge of the loss's floor" not in lr_finder_text({**info, "calm_edge": False})
