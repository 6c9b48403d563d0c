"""lr='auto' at a cost in proportion to the run: the range test's steps follow the run's length, and
a rerun of the same run on the same data reuses the suggestion (and trains the same run), while a
change of data or of the model's code tests again."""

from __future__ import annotations

import torch
from torch import nn

from trainwise import Trainer
from trainwise.lr.budget import budget_steps, data_fingerprint
from trainwise.data.loader import make_batches


def test_budget_steps_are_a_tenth_of_the_run_within_the_configured_and_the_minimum() -> None:
    assert [budget_steps(100, n) for n in (40, 300, 840, 1000, 10_000)] == [50, 50, 84, 100, 100]
    assert budget_steps(200, 1500) == 150 and budget_steps(20, 10) == 20 and budget_steps(100, None) == 100


class Skip(nn.Module):
    def __init__(self, skip: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.first, self.second, self.skip = nn.Linear(6, 6), nn.Linear(6, 2), skip

    def forward(self, x):
        return self.second(torch.relu(self.first(x)) + x)


class NoSkip(Skip):
    def forward(self, x):
        return self.second(torch.relu(self.first(x)))


def _fit(model, data, run_dir):
    return Trainer(model, lr="auto", epochs=2, batch_size=32, run_dir=run_dir, progress=False, report=False,
                   seed=0).fit(data, (data[0][:32], data[1][:32]))


def test_a_rerun_reuses_the_range_test_and_trains_the_same_run(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(320, 6, generator=g)
    data = (x, (x[:, 0] > 0).long())
    first, second = _fit(Skip(True), data, tmp_path / "a"), _fit(Skip(True), data, tmp_path / "b")
    assert first.summary["lr_finder"]["num_steps"] == 50  # 20 steps of training: the minimum sweep
    assert "reused_from_cache" not in first.summary["lr_finder"]
    assert second.summary["lr_finder"]["reused_from_cache"].startswith(str(tmp_path / ".lr_cache"))
    assert second.summary["lr"] == first.summary["lr"] and second.history == first.history
    assert (tmp_path / "b" / "lr_find.json").read_text() == (tmp_path / "a" / "lr_find.json").read_text()
    assert any(e["kind"] == "lr_find" and "reused" in e["message"] for e in second.summary["events"])
    other_data = (data[0] * 2, data[1])
    assert "reused_from_cache" not in _fit(Skip(True), other_data, tmp_path / "c").summary["lr_finder"]
    assert "reused_from_cache" not in _fit(NoSkip(True), data, tmp_path / "d").summary["lr_finder"]


def test_a_users_dataloader_is_never_fingerprinted() -> None:
    x, y = torch.randn(64, 3), torch.zeros(64, dtype=torch.long)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    assert data_fingerprint(make_batches(loader, batch_size=8, shuffle=True, seed=0, device=torch.device("cpu"))) is None
    assert data_fingerprint(make_batches((x, y), batch_size=8, shuffle=True, seed=0, device=torch.device("cpu"))) == \
        data_fingerprint(make_batches((x.clone(), y.clone()), batch_size=8, shuffle=True, seed=0, device=torch.device("cpu")))


class Flat(nn.Module):
    """A model whose loss no lr changes: every range test curve is flat (no suggestion)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(6, 2)

    def forward(self, x):
        return 0 * self.layer(x)


def test_a_curve_without_suggestion_is_measured_again_at_the_unbudgeted_length(tmp_path) -> None:
    import json

    g = torch.Generator().manual_seed(0)
    x = torch.randn(320, 6, generator=g)
    data = (x, (x[:, 0] > 0).long())
    result = _fit(Flat(), data, tmp_path / "a")
    finder = result.summary["lr_finder"]
    assert finder["num_steps"] == 50 and finder["suggestion"] is None  # the budgeted first test read nothing
    curve = json.loads((tmp_path / "a" / "lr_find.json").read_text())
    assert len(curve["lrs"]) == 200  # the retry: twice the configured 100 steps, not twice the budget's 50


def test_under_early_stopping_the_budget_is_a_share_of_the_steps_the_run_trains_at_least(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1600, 6, generator=g)
    data = (x, (x[:, 0] > 0).long())
    val = (x[:200], data[1][:200])

    def fit(**kwargs):
        return Trainer(nn.Linear(6, 2), lr="auto", epochs=20, batch_size=16, progress=False, report=False, seed=0,
                       run_dir=tmp_path / "-".join(kwargs), **kwargs).fit(data, val).summary["lr_finder"]

    assert fit(early_stopping=False)["num_steps"] == 100  # 2,000 steps: the configured 100
    stopped = fit(patience=5)  # it may stop after epoch 6: 600 steps are sure
    assert stopped["num_steps"] == 60
    assert stopped["budget"] == ("60 of the configured 100 steps: 10% of the 600 steps the run trains at least "
                                 "(early stopping may end its 2000 sooner), at least 50")
