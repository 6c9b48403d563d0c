"""A retried range test whose curve still gives no reading, but diverged, is read DIVERGENCE_DECADES decades of lr
under where it diverged (issue 22, round 7), not at the fixed fallback lr: the finder on scripted curves (a shallow
dip then a cliff, a flat retry, no retry), and a whole fit through the Trainer with the summary, the event,
lr_find.json and the report's sentence."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
from test_lr_calm_edge import CHANCE, Scripted, ScriptedTrainer
from torch import nn

from trainwise.lr.finder import LRFinder
from trainwise.lr.suggest import DIVERGENCE_DECADES, MIN_RELATIVE_DROP, unusable_curve_reason
from trainwise.report.lr_text import lr_finder_text
from trainwise.trainer import Trainer

CLIFF_LR = 0.3


def shallow_cliff(lr: float) -> float:
    """Falls 2.6% of the chance loss over the decade from 1e-3 (under the 5% a reading needs), then rises
    a thousandfold a decade from CLIFF_LR on: a GRU 128's retried test on MNIST-1D."""
    if lr > CLIFF_LR:
        return (CHANCE - 0.06) * 1000 ** math.log10(lr / CLIFF_LR)
    return CHANCE - 0.06 * min(1.0, max(0.0, math.log10(lr / 1e-3)))


def find(profiles: list, *, retry: bool = True) -> object:
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    finder = LRFinder(model, optimizer, None, num_steps=60, retry=retry,
                      batch_loss=Scripted(model, optimizer, profiles))
    return finder.run([torch.zeros(1)])


def test_a_retried_curve_without_reading_that_diverged_is_read_two_decades_under_the_divergence() -> None:
    result = find([None, shallow_cliff])
    assert 10 <= len(result.lrs) < 120  # the stop rule ended the retry
    unread = unusable_curve_reason(result.losses)
    assert unread is not None and "diverged without first falling" in unread
    assert result.unread_curve == unread and result.reason is None
    assert result.suggestion == pytest.approx(result.lrs[-1] / 10 ** DIVERGENCE_DECADES, rel=1e-12)
    assert CLIFF_LR / 100 < result.suggestion < 10 / 100  # the stop rule fires past the cliff, before lr 10
    assert result.suggestions["edge"] == result.suggestion
    assert result.to_json()["unread_curve"] == unread


def test_a_flat_retry_or_no_retry_still_gives_no_suggestion() -> None:
    """A model that learns at no lr keeps the fallback and its warning, even when its test ends in a NaN."""
    flat = find([None, None])  # never diverged: nothing to read under
    assert flat.suggestion is None and flat.unread_curve is None and "flat" in flat.reason
    nan_ended = find([None, lambda lr: CHANCE if lr < CLIFF_LR else math.nan])  # flat, then a non-finite loss
    assert len(nan_ended.lrs) < 120 and nan_ended.suggestion is None and "flat" in nan_ended.reason
    first_only = find([shallow_cliff], retry=False)  # the rule was shaped on retried (longer) tests only
    assert first_only.suggestion is None and first_only.unread_curve is None
    assert "diverged without first falling" in first_only.reason


def test_a_curve_that_falls_enough_is_read_by_its_rule_not_under_its_divergence() -> None:
    def deep_cliff(lr: float) -> float:  # the same cliff after a fall of 20%: the edge rule reads it
        return shallow_cliff(lr) if lr > CLIFF_LR else CHANCE * (1 - 0.2 * min(1.0, max(0.0, math.log10(lr / 1e-3))))

    result = find([None, deep_cliff])
    assert result.unread_curve is None and result.suggestion is not None
    assert result.suggestion != pytest.approx(result.lrs[-1] / 10 ** DIVERGENCE_DECADES)
    assert MIN_RELATIVE_DROP < 0.2


class ShallowLearner(ScriptedTrainer):
    """The shallow dip and cliff during the range test."""

    profiles = [None, shallow_cliff]


def test_a_fit_trains_at_the_reading_and_says_where_it_came_from(tmp_path) -> None:
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    y = x.sum(dim=1, keepdim=True)
    trainer = ShallowLearner(nn.Linear(4, 1), lr="auto", epochs=20, batch_size=8, run_dir=tmp_path / "run",
                             progress=False, report=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = trainer.fit((x, y), (x, y))
    assert not any("gave no suggestion" in str(warning.message) for warning in caught)  # no fallback to 1e-3
    info = result.summary["lr_finder"]
    saved = json.loads((tmp_path / "run" / "lr_find.json").read_text())
    assert info["suggestion"] == result.summary["lr"] == pytest.approx(saved["lrs"][-1] / 100, rel=1e-12)
    assert info["diverged_at"] == saved["lrs"][-1] and info["decades_under_divergence"] == DIVERGENCE_DECADES
    assert info["unread_curve"] == saved["unread_curve"] and "diverged without first falling" in info["unread_curve"]
    text = lr_finder_text(info)
    assert "read 2 decades of lr under where the retried range test diverged (lr " in text
    assert "its curve gave no reading (loss diverged without first falling" in text
    assert any("decades of lr under where the test diverged" in str(event)
               for event in result.summary.get("events", []))
    assert not any("gave no suggestion" in str(event) for event in result.summary.get("events", []))


def test_the_lr_find_command_says_where_a_reading_under_the_divergence_came_from(tmp_path, monkeypatch) -> None:
    from pathlib import Path

    from cli_helpers import cli_in_process

    unread = "loss diverged without first falling: it dropped 3.4% (< 5%) then rose 317%"
    found = {"suggestion": 0.00622, "rule": "edge", "suggestions": {"edge": 0.00622, "valley": None},
             "unread_curve": unread, "diverged_at": 0.622, "decades_under_divergence": 2.0}
    monkeypatch.setattr(Trainer, "find_lr", lambda self, train: found)
    digits = Path(__file__).resolve().parents[1] / "examples" / "digits.yaml"
    done = cli_in_process("lr-find", str(digits), "--run-dir", "lf", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "suggested lr: 0.00622 (rule edge)" in done.stdout
    assert (f"  the curve gave no reading ({unread}): read 2 decades of lr under where the retried test "
            "diverged (0.622)") in done.stdout
