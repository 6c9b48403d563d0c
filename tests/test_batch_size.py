"""The batch-size finder (trainwise.engine.batch_size), ``data.batch_size: auto`` and ``trainwise find-batch-size``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from trainwise.engine.batch_size import Trial, find_batch_size, knee, with_accumulation
from trainwise.config.schema import load_config
from trainwise.errors import BatchSizeError, ConfigError

ROOT = Path(__file__).resolve().parents[1]


class FakeOOM(nn.Module):
    """A small MLP whose forward fails as CUDA does when the batch is over ``limit`` samples."""

    def __init__(self, limit: int, norm: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.limit = limit
        self.net = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16) if norm else nn.Identity(), nn.ReLU(),
                                 nn.Linear(16, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) > self.limit:
            raise RuntimeError(f"CUDA out of memory. Tried to allocate {len(x)} MiB (fake, over {self.limit})")
        return self.net(x)


def _data(n: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


def _adamw(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=1e-3)


def test_memory_mode_returns_the_largest_power_of_two_that_ran_a_real_step():
    result = find_batch_size(FakeOOM(48), _adamw, _data(), loss_fn=F.cross_entropy, mode="memory")
    assert result.batch_size == 32
    assert [(t.batch_size, t.fits) for t in result.trials] == [(2, True), (4, True), (8, True), (16, True),
                                                               (32, True), (64, False)]  # batch norm: from 2
    assert "out of memory" in result.trials[-1].error
    assert result.rule.startswith("largest power of two that ran a real training step (out of memory")


def test_memory_mode_stops_at_the_data_size_and_never_returns_an_untested_size():
    result = find_batch_size(FakeOOM(10_000, norm=False), _adamw, _data(100), loss_fn=F.cross_entropy,
                             mode="memory")
    assert [t.batch_size for t in result.trials] == [1, 2, 4, 8, 16, 32, 64]
    assert result.batch_size == 64


def test_throughput_mode_picks_a_size_it_timed():
    result = find_batch_size(FakeOOM(10_000), _adamw, _data(), loss_fn=F.cross_entropy, mode="throughput",
                             min_seconds=0.01, max_size=64)
    timed = [t.batch_size for t in result.trials if t.fits and t.samples_per_second]
    assert result.batch_size in timed and result.mode == "throughput"


def test_the_knee_is_the_smallest_size_within_the_tolerance_of_the_best():
    speeds = {1: 100.0, 2: 190.0, 4: 350.0, 8: 380.0, 16: 400.0, 32: 395.0}
    trials = [Trial(size, True, samples_per_second=speed) for size, speed in speeds.items()]
    assert knee(trials, 0.1).batch_size == 8  # 380 >= 0.9 * 400; 350 is not
    assert knee(trials, 0.01).batch_size == 16
    assert knee(trials + [Trial(64, False, error="out of memory")], 0.1).batch_size == 8


def test_a_model_that_does_not_fit_at_batch_one_gets_one_clear_message():
    with pytest.raises(BatchSizeError, match=r"does not fit in memory on cpu at batch size 1: .*CUDA out of memory.*"
                                             r"model.checkpointing=true"):
        find_batch_size(FakeOOM(0, norm=False), _adamw, _data(), loss_fn=F.cross_entropy, mode="memory")


def test_other_errors_are_not_taken_for_out_of_memory():
    model = nn.Linear(5, 3)  # the data have 8 features
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        find_batch_size(model, _adamw, _data(), loss_fn=F.cross_entropy, mode="memory")


def test_the_model_and_the_rng_are_put_back():
    model = FakeOOM(20)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    find_batch_size(model, _adamw, _data(), loss_fn=F.cross_entropy, mode="memory")
    assert torch.equal(torch.rand(3), expected)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm's running stats too
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("found, effective, expected", [
    (64, 256, (64, 4)), (64, None, (64, 1)), (64, 16, (16, 1)), (64, 96, (32, 3)), (64, 100, (4, 25))])
def test_accumulation_keeps_the_effective_batch(found, effective, expected):
    assert with_accumulation(found, effective, [1, 2, 4, 8, 16, 32, 64]) == expected


def test_the_issue_spelling_train_batch_size_is_data_batch_size(tmp_path):
    assert load_config(None, ["train.batch_size=auto"]).data.batch_size == "auto"
    assert load_config(ROOT / "examples" / "digits.yaml", ["train.batch_size=32"]).data.batch_size == 32
    config = tmp_path / "both.yaml"
    config.write_text("data: {batch_size: 64}\ntrain: {batch_size: 32}\n")
    with pytest.raises(ConfigError, match="train.batch_size=32 and data.batch_size=64 disagree"):
        load_config(config)
    with pytest.raises(ConfigError, match="data.batch_size: must be > 0 or 'auto', got 0"):
        load_config(None, ["data.batch_size=0"])


def _trainwise(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(cwd)]))
    return subprocess.run([sys.executable, "-m", "trainwise", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_train_with_batch_size_auto_keeps_the_effective_batch_and_scales_the_lr(tmp_path):
    proc = _trainwise("train", str(ROOT / "examples" / "digits.yaml"), "data.dataset=synthetic",
                      "train.batch_size=auto", "data.effective_batch_size=512", "train.epochs=1",
                      "optimizer.lr=0.01", "optimizer.lr_scaling=linear", "optimizer.base_batch_size=256",
                      "train.report=false", "--run-dir", "run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    finder = json.loads((tmp_path / "run" / "summary.json").read_text())["batch_size_finder"]
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    micro, accumulate = config["data"]["batch_size"], config["train"]["accumulate"]
    assert micro == finder["micro_batch_size"] and micro * accumulate == 512 == finder["effective_batch_size"]
    assert micro in [t["batch_size"] for t in finder["trials"] if t["fits"]]
    assert config["optimizer"]["lr"] == pytest.approx(0.02)  # linear: 0.01 x 512 / 256


def test_find_batch_size_cli_on_a_model_that_never_fits_says_so_in_one_line(tmp_path):
    (tmp_path / "oom_model.py").write_text(
        "import torch\n\n\nclass Huge(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.linear = torch.nn.Linear(20, 10)\n\n"
        "    def forward(self, x):\n"
        "        raise RuntimeError('CUDA out of memory. Tried to allocate 80.00 GiB')\n\n\n"
        "def build():\n    return Huge()\n")
    proc = _trainwise("find-batch-size", str(ROOT / "examples" / "digits.yaml"), "data.dataset=synthetic",
                      "model.name=oom_model:build", "model.init=default", cwd=tmp_path)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert errors[0].startswith("error: the model does not fit in memory on cpu at batch size 1")
