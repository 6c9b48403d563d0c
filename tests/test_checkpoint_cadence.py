"""The checkpoint cadence: an epoch end saves only when the last save cost at most ``max_cost_share``
of the training time since it; the best epoch and the last epoch always save. Time is a fake clock."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from trainwise import Trainer
from trainwise.callbacks import checkpoint_saver
from trainwise.checkpoint import step_checkpoint_name
from trainwise.callbacks.checkpoint_saver import CheckpointSaver
from trainwise.errors import ConfigError


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


class FakeTrainer:
    """Epochs of ``epoch_seconds``; each save costs ``save_seconds`` on the fake clock."""

    def __init__(self, clock: FakeClock, epochs: int, save_seconds: float) -> None:
        self.clock, self.save_seconds = clock, save_seconds
        self.state = SimpleNamespace(epoch=0, step=0, max_epochs=epochs, max_steps=None, should_stop=False,
                                     best=SimpleNamespace(improved=False))
        self.saved: list[tuple[int, bool]] = []

    def save_checkpoint(self, best: bool = False) -> None:
        self.clock.now += self.save_seconds
        self.saved.append((self.state.epoch, best))


def run(saver: CheckpointSaver, trainer: FakeTrainer, clock: FakeClock, epoch_seconds: float,
        improved_at: tuple[int, ...] = ()) -> list[tuple[int, bool]]:
    saver.on_fit_start(trainer)
    for epoch in range(1, trainer.state.max_epochs + 1):
        clock.now += epoch_seconds
        trainer.state.epoch, trainer.state.step = epoch, epoch * 10
        trainer.state.best.improved = epoch in improved_at
        saver.on_epoch_end(trainer, {})
    return trainer.saved


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(checkpoint_saver, "time", fake)
    return fake


def test_a_save_waits_for_ten_times_its_cost_of_training(clock) -> None:
    # a save costs 0.045 s, an epoch 0.1 s: after a save, the next waits for 0.45 s of training (5 epochs)
    trainer = FakeTrainer(clock, epochs=12, save_seconds=0.045)
    saver = CheckpointSaver()
    saver.on_fit_start = lambda trainer: None  # the rule between two saves alone: no run budget
    assert run(saver, trainer, clock, 0.1)[:3] == [(1, False), (6, False), (11, False)]


def test_the_saves_of_a_run_fit_in_a_tenth_of_it_best_saves_included(clock) -> None:
    # the first save put the run at 0.045 s of saving for 0.1 s of training: the next fits the run's
    # budget at epoch 9 (0.09 <= 0.1 * 0.945; the rule between two saves alone allowed epoch 6); at epoch
    # 13 the budget allows one more (0.135 <= 0.139) but 0.4 s since epoch 9 do not; 14 is the last
    trainer = FakeTrainer(clock, epochs=14, save_seconds=0.045)
    saver = CheckpointSaver()
    assert run(saver, trainer, clock, 0.1) == [(1, False), (9, False), (14, False)]
    assert saver.skipped == 11
    best = FakeTrainer(clock, epochs=14, save_seconds=0.045)  # best saves at 2-4 spend the budget of the later ones
    saved = run(CheckpointSaver(), best, clock, 0.1, improved_at=(2, 3, 4))
    assert saved == [(1, False), (2, True), (3, True), (4, True), (14, False)]


def test_the_best_epoch_and_the_last_always_save_and_none_saves_every_epoch(clock) -> None:
    trainer = FakeTrainer(clock, epochs=6, save_seconds=0.05)
    assert run(CheckpointSaver(), trainer, clock, 0.1, improved_at=(2, 3)) == \
        [(1, False), (2, True), (3, True), (6, False)]
    every = FakeTrainer(clock, epochs=4, save_seconds=0.05)
    assert run(CheckpointSaver(max_cost_share=None), every, clock, 0.1) == [(e, False) for e in (1, 2, 3, 4)]
    cheap = FakeTrainer(clock, epochs=4, save_seconds=0.001)  # a save of 1 ms is worth every 0.1 s epoch
    assert run(CheckpointSaver(), cheap, clock, 0.1) == [(e, False) for e in (1, 2, 3, 4)]


def test_an_early_stop_saves_the_epoch_it_ends_at(clock) -> None:
    trainer = FakeTrainer(clock, epochs=10, save_seconds=0.05)
    saver = CheckpointSaver()
    for epoch in (1, 2, 3):
        clock.now += 0.1
        trainer.state.epoch = epoch
        trainer.state.should_stop = epoch == 3
        saver.on_epoch_end(trainer, {})
    assert trainer.saved == [(1, False), (3, False)]


def test_max_cost_share_out_of_range_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"max_cost_share must be in \(0, 1\] or None, got 0"):
        CheckpointSaver(max_cost_share=0)


def test_a_real_run_ends_with_its_last_epoch_saved_and_resumable(tmp_path) -> None:
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    y = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    result = Trainer(model, lr=1e-2, epochs=5, batch_size=64, run_dir=tmp_path / "run", progress=False,
                     report=False, early_stopping=False).fit((x, y), (x[:64], y[:64]))
    folder = tmp_path / "run" / "checkpoints"
    assert result.status == "completed" and result.summary["steps"] == 20
    assert (folder / step_checkpoint_name(20)).is_file()  # the last epoch's own checkpoint
    assert (folder / "last.pt").read_bytes() == (folder / step_checkpoint_name(20)).read_bytes()
