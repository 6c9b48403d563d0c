"""Where the time goes: the phase clock of every fit, its summary.json ``timings``, the bottleneck
in words, and the report's section."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from trainwise.report.timing_section import timing_section
from trainwise.engine.timing import PHASES, PhaseClock, bottleneck
from trainwise.trainer import Trainer
from trainwise.callbacks import CheckpointSaver


def _data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return x, (x[:, 0] > 0).long()


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))


class SlowDataset(Dataset):
    """Each sample costs 4 ms to "read": a run through it waits for data far more than it computes."""

    def __init__(self, n: int) -> None:
        self.x, self.y = _data(n)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        time.sleep(0.004)
        return self.x[index], self.y[index]


def test_the_breakdown_covers_the_whole_run_and_each_epoch(tmp_path):
    trainer = Trainer(_model(), lr=1e-2, epochs=4, batch_size=32, run_dir=tmp_path / "run", progress=False,
                      report=False, checkpoint=CheckpointSaver(every_n_steps=10))
    outside = time.perf_counter()
    result = trainer.fit(_data(1024), _data(256, seed=1), test=_data(256, seed=2))
    outside = time.perf_counter() - outside
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    timings = summary["timings"]
    assert timings == result.summary["timings"]
    total = sum(timings["seconds"].values())
    assert set(timings["seconds"]) == set(PHASES)
    assert abs(total - outside) <= 0.05 * outside  # the acceptance bar: within 5% of the run's wall time
    assert total == pytest.approx(summary["wall_seconds"], abs=2e-3)
    assert sum(timings["fractions"].values()) == pytest.approx(1.0, abs=1e-3)
    for phase in ("setup", "data", "forward_backward", "optimizer", "evaluation", "checkpoint"):
        assert timings["seconds"][phase] > 0, phase
    assert [e["epoch"] for e in timings["epochs"]] == [1, 2, 3, 4]
    for epoch in timings["epochs"]:
        assert sum(epoch["seconds"].values()) == pytest.approx(epoch["wall_seconds"], abs=1e-4)
        assert epoch["seconds"]["setup"] == 0.0
        assert epoch["peak_memory_mb"] > 10  # the process's RSS high-water, in MB
    assert sum(e["wall_seconds"] for e in timings["epochs"]) < total
    assert timings["peak_memory_mb"] >= max(e["peak_memory_mb"] for e in timings["epochs"])


def test_a_run_fed_by_a_slow_dataset_is_named_data_bound_in_the_report(tmp_path):
    trainer = Trainer(_model(), lr=1e-2, epochs=2, batch_size=16, run_dir=tmp_path / "run", progress=False,
                      early_stopping=False)
    trainer.fit(SlowDataset(160))
    timings = json.loads((tmp_path / "run" / "summary.json").read_text())["timings"]
    assert timings["fractions"]["data"] == max(timings["fractions"].values())
    assert timings["bottleneck"][0].startswith("data-bound: ")
    assert "raise the DataLoader's num_workers" in timings["bottleneck"][0]
    page = (tmp_path / "run" / "report.html").read_text()
    assert "Where the time went" in page and "data-bound: " in page


def test_a_run_on_in_memory_tensors_is_not_data_bound(tmp_path):
    trainer = Trainer(_model(), lr=1e-2, epochs=2, batch_size=32, run_dir=tmp_path / "run", progress=False,
                      report=False, early_stopping=False, checkpoint=CheckpointSaver(every_epoch=False))
    result = trainer.fit(_data(2048))
    assert not any(line.startswith("data-bound") for line in result.summary["timings"]["bottleneck"])


@pytest.mark.parametrize("fractions, expected", [
    ({"evaluation": 0.4, "forward_backward": 0.5, "optimizer": 0.1},
     "evaluation is 40% of the run: evaluate less often or on less data (data.val_fraction), or raise "
     "data.eval_batch_size"),
    ({"data": 0.55, "forward_backward": 0.45}, "data-bound: 55% of the run waits for data; raise the DataLoader's "
     "num_workers (Trainer(num_workers=N)), or pass the data as in-memory tensors"),
    ({"checkpoint": 0.12, "forward_backward": 0.88},
     "checkpointing is 12% of the run: save less often (train.checkpoint.every_n_steps, "
     "train.checkpoint.every_epoch=false)"),
    ({"forward_backward": 0.7, "optimizer": 0.2, "evaluation": 0.1},
     "compute-bound: 90% of the run is forward, backward and the optimizer step, as it should be; a larger "
     "batch, train.precision=bf16 on a GPU, or train.compile=true may help"),
])
def test_the_bottleneck_in_words(fractions, expected):
    assert bottleneck(fractions)[0] == expected


def test_several_bottlenecks_come_largest_first():
    lines = bottleneck({"data": 0.3, "evaluation": 0.45, "forward_backward": 0.25})
    assert [line.split(" ")[0] for line in lines] == ["evaluation", "data-bound:"]


def test_the_clock_charges_each_interval_to_the_phase_it_leaves():
    clock = PhaseClock(start=0.0)
    assert clock.switch("data", now=1.0) == "setup"
    clock.switch("forward_backward", now=1.5)
    clock.switch("checkpoint", now=4.0)
    clock.switch("forward_backward", now=4.25)
    timings = clock.finish(now=5.0)
    assert timings["seconds"] == {"setup": 1.0, "data": 0.5, "forward_backward": 3.25, "optimizer": 0.0,
                                  "evaluation": 0.0, "checkpoint": 0.25, "other": 0.0}
    assert timings["wall_seconds"] == 5.0
    assert math.isclose(timings["fractions"]["forward_backward"], 0.65)


def test_no_section_without_timings():
    assert timing_section({"status": "completed"}) == ""
    assert timing_section(None) == ""
