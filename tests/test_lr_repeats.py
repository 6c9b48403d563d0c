"""A retried range test (a slow learner) is measured over several batch orders and read off their mean (issue 22,
round 4): the mechanics on tiny real models, and a recorded slow learner's curves where one test reads far too low."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from trainwise.data.loader import InMemoryBatches
from trainwise.lr.finder import LRFinder, _mean_curve
from trainwise.lr.result import save_lr_find
from trainwise.lr.suggest import suggest

CURVES = Path(__file__).parent / "data" / "lr_repeats_lstm2.json"


class Silent(nn.Module):
    """Outputs 0 whatever the weights: the MSE is the batch's mean squared target, so the curve is flat (the test
    is retried) and each batch order gives its own raw losses."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0 * self.layer(x)


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 4, generator=g)
    return x, 1 + 0.01 * torch.randn(96, 1, generator=g)


def run(source, retry_repeats=3, **arguments):
    torch.manual_seed(3)
    model = Silent()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return LRFinder(model, optimizer, nn.MSELoss(), num_steps=20, retry_repeats=retry_repeats, **arguments).run(source)


def test_a_retry_is_the_mean_of_tests_over_other_batch_orders_and_its_first_is_the_single_retry() -> None:
    loader = InMemoryBatches(*data(), batch_size=8, shuffle=True, seed=0)
    loader.set_epoch(2)  # the run that follows starts at epoch 2
    state = copy.deepcopy(loader.state_dict())
    result = run(loader)
    assert result.suggestion is None and len(result.lrs) == 40 and len(result.repeats) == 3
    np.testing.assert_allclose(result.raw_losses, np.mean(result.repeats, axis=0), rtol=1e-12)
    # the first test is the one a single retry measures, bit for bit; the others saw other batches
    assert result.repeats[0] == run(loader, retry_repeats=1).raw_losses
    assert result.repeats[0] != result.repeats[1] != result.repeats[2] != result.repeats[0]
    assert run(loader).repeats == result.repeats  # the same for the same seed
    after = loader.state_dict()  # the repeats' far epochs are not left behind for the run
    assert (after["epoch"], after["position"]) == (state["epoch"], state["position"])
    assert torch.equal(after["order"], state["order"])


def test_a_shuffling_dataloader_is_reshuffled_for_each_repeat() -> None:
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*data()), batch_size=8, shuffle=True)
    result = run(loader)
    assert result.repeats[0] != result.repeats[1] != result.repeats[2]
    assert run(loader).repeats == result.repeats


def test_a_single_retry_keeps_no_repeats_and_a_curve_with_a_suggestion_is_never_repeated() -> None:
    loader = InMemoryBatches(*data(), batch_size=8, shuffle=True, seed=0)
    assert run(loader, retry_repeats=1).repeats == []
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    result = LRFinder(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.MSELoss(), num_steps=60,
                      retry_repeats=3).run(loader)
    assert result.suggestion is not None and result.repeats == [] and len(result.lrs) <= 60


def test_the_mean_is_taken_over_the_steps_every_test_recorded() -> None:
    short = ([1e-3 * 2**i for i in range(12)], [1.0] * 12, [2.0] * 12)
    long = ([1e-3 * 2**i for i in range(15)], [3.0] * 15, [4.0] * 15)
    cut = ([1e-3], [9.0], [9.0])  # stopped at its first step: left out
    assert _mean_curve([short, long, cut]) == (short[0], [2.0] * 12, [3.0] * 12)


def test_the_plot_draws_each_averaged_test(tmp_path: Path) -> None:
    result = run(InMemoryBatches(*data(), batch_size=8, shuffle=True, seed=0))
    json_path, png_path = save_lr_find(result, tmp_path)
    assert len(json.loads(json_path.read_text())["repeats"]) == 3
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads(CURVES.read_text())


def test_a_recorded_slow_learner_read_far_too_low_by_one_test_is_outvoted_by_the_mean(recorded: dict) -> None:
    """Three retries of one shaping recipe's range test, from the same weights: one alone reads 5.1e-3 (where the
    recipe trains to ~70%), the mean of the three reads 1.29e-2. That is not the recipe's best lr (3e-2): the mean
    halves the spread of the reading, it does not move its centre (docs/notes/issue-22-r4-lr.md)."""
    lrs = recorded["lrs"]
    curves = [(lrs[: len(losses)], losses, raw) for losses, raw in zip(recorded["losses"], recorded["raw"])]
    alone = [round(suggest(*curve[:2], "edge", curve[2])[0], 5) for curve in curves]
    mean_curve = _mean_curve(curves)
    mean = round(suggest(mean_curve[0], mean_curve[1], "edge", mean_curve[2])[0], 5)
    assert alone == recorded["alone"] == [0.01869, 0.00511, 0.02969]
    assert mean == recorded["mean"] == 0.01291
    assert len(mean_curve[0]) == min(len(losses) for losses in recorded["losses"]) == 198
    assert min(alone) < mean / 2 and sorted(alone)[1] / 1.5 < mean < max(alone)
