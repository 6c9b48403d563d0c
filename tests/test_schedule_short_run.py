"""A run too short for its schedule trains at a constant lr and says so; a wrong name or parameter
is an error whatever the run's length (it used to be swallowed on runs under 10 steps)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from trainwise.errors import ConfigError
from trainwise.schedules import ConstantSchedule, OneCycleSchedule, build_schedule_or_hold
from trainwise.trainer import Trainer


def test_a_onecycle_over_three_steps_is_held_constant_with_the_reason() -> None:
    schedule, held = build_schedule_or_hold("onecycle", lr=0.1, total_steps=3, steps_per_epoch=3)
    assert isinstance(schedule, ConstantSchedule) and [schedule.lr_at(s) for s in range(3)] == [0.1] * 3
    assert held is not None and held.startswith("3 steps are too few for schedule 'onecycle' (pct_start")


def test_a_long_enough_run_gets_its_schedule() -> None:
    schedule, held = build_schedule_or_hold("onecycle", lr=0.1, total_steps=10, steps_per_epoch=5)
    assert isinstance(schedule, OneCycleSchedule) and held is None


@pytest.mark.parametrize("total", [3, 50])
def test_a_wrong_parameter_is_an_error_on_short_and_long_runs(total: int) -> None:
    with pytest.raises(ConfigError, match="unknown parameter 'min_lrr' for schedule 'cosine'; did you mean 'min_lr'"):
        build_schedule_or_hold("cosine", lr=0.1, total_steps=total, steps_per_epoch=total, min_lrr=1e-4)


def test_a_short_python_fit_refuses_a_parameter_typo(tmp_path) -> None:
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    trainer = Trainer(net, lr=1e-2, epochs=1, batch_size=32, schedule="cosine", schedule_params={"min_lrr": 1e-5},
                      progress=False, report=False, run_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match="did you mean 'min_lr'"):
        trainer.fit((x, (x[:, 0] > 0).long()))


def test_the_cli_smoke_test_with_max_steps_3_trains_under_the_default_schedule(tmp_path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text("data: {dataset: digits}\nmodel: {name: mlp, hidden: [16]}\n"
                      "train: {epochs: 1, max_steps: 3, report: false}\noptimizer: {lr: 0.01}\n")
    done = subprocess.run([sys.executable, "-m", "trainwise", "train", str(config), "--run-dir", str(tmp_path / "r")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "schedule: 3 steps are too few for schedule 'onecycle'" in done.stdout + done.stderr
    assert "steps 3" in done.stdout
