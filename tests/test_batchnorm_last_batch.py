"""A last training batch too small for BatchNorm (one sample per process: "Expected more than 1 value per channel
when training") is left out of the batches trainwise cuts, with an event, instead of crashing the fit at the end of
its first epoch; a user's own DataLoader keeps its batches, and the doctor still FAILs that case."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from trainwise import doctor
from trainwise.data.sharding import BatchPlan
from trainwise.errors import DataError
from trainwise.trainer import Trainer


def test_the_plan_leaves_out_a_last_batch_that_gives_some_process_fewer_than_min_share_samples() -> None:
    assert BatchPlan(129, 64).global_batch_sizes() == [64, 64, 1]
    assert BatchPlan(129, 64, min_share=2).global_batch_sizes() == [64, 64]
    assert BatchPlan(129, 64, min_share=2).samples_left_out() == 1
    assert BatchPlan(130, 64, min_share=2).global_batch_sizes() == [64, 64, 2]
    # two processes: a last batch of 3 gives rank 0 one sample; of 4, two each
    assert BatchPlan(131, 64, rank=0, world_size=2, min_share=2).global_batch_sizes() == [64, 64]
    assert BatchPlan(132, 64, rank=1, world_size=2, min_share=2).batch_sizes() == [32, 32, 2]
    assert BatchPlan(129, 64, min_share=2, training=False).global_batch_sizes() == [64, 64, 1]  # evaluation: all
    # full batches, even of one sample (pix2pix trains BatchNorm at batch 1), and a lone batch are the user's choice
    assert BatchPlan(5, 1, min_share=2).global_batch_sizes() == [1, 1, 1, 1, 1]
    assert BatchPlan(1, 64, min_share=2).global_batch_sizes() == [1]


def model(norm: bool) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), *([nn.BatchNorm1d(16)] if norm else []), nn.ReLU(), nn.Linear(16, 2))


def data(n: int = 129) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, 8, generator=torch.Generator().manual_seed(0))
    return x, (x[:, 0] > 0).long()


def fit(net: nn.Module, train, tmp_path, name: str, **kwargs):
    return Trainer(net, lr=1e-2, epochs=2, batch_size=64, progress=False, report=False, run_dir=tmp_path / name,
                   **kwargs).fit(train, data(40))


@pytest.mark.parametrize("as_dataset", [False, True], ids=["tensors", "dataset"])
def test_a_batchnorm_model_trains_without_the_last_batch_of_one_and_says_so(tmp_path, as_dataset) -> None:
    train = list(zip(*data())) if as_dataset else data()  # a list of (input, target) samples: a Dataset
    result = fit(model(norm=True), train, tmp_path, "bn")
    assert result.status == "completed" and result.summary["steps"] == 4  # 2 batches an epoch, not 3
    events = [e["message"] for e in result.summary["events"] if e["kind"] == "data"]
    assert any("would hold 1 sample(s) (129 samples in batches of 64), and the model has BatchNorm" in e
               for e in events), events
    plain = fit(model(norm=False), train, tmp_path, "plain")  # no BatchNorm: every sample trains
    assert plain.summary["steps"] == 6
    assert not any("BatchNorm" in e["message"] for e in plain.summary["events"])


def test_lr_auto_runs_its_range_test_on_the_same_batches(tmp_path) -> None:
    result = Trainer(model(norm=True), lr="auto", epochs=3, batch_size=64, progress=False, report=False,
                     run_dir=tmp_path / "auto").fit(data(), data(40))
    assert result.status == "completed" and result.summary["lr_finder"]["suggestion"] is not None


def test_the_doctor_passes_trainwise_batches_and_fails_a_users_loader_without_drop_last() -> None:
    x, y = data()
    own = doctor.check(model(norm=True), (x, y), only=["data.batch_remainder"], batch_size=64, lr=1e-2)
    (check,) = own.checks
    assert check.status == "PASS" and "leave a last batch of 1, which BatchNorm cannot train on: it is left out" \
        in check.message
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
    (check,) = doctor.check(model(norm=True), loader, only=["data.batch_remainder"], lr=1e-2).checks
    assert check.status == "FAIL" and "cannot train on one sample" in check.message
    dropped = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, drop_last=True)
    (check,) = doctor.check(model(norm=True), dropped, only=["data.batch_remainder"], lr=1e-2).checks
    assert check.status == "PASS"


def test_batchnorm1d_on_batches_of_one_fails_with_one_clear_error_and_a_failed_summary(tmp_path) -> None:
    x, y = data(20)
    with pytest.raises(DataError, match=r"BatchNorm layer got a training batch with one value per channel .*"
                       r"batches of 2 or more \(data.batch_size"):
        Trainer(model(norm=True), lr=1e-2, epochs=1, batch_size=1, progress=False, report=False,
                run_dir=tmp_path / "one").fit((x, y))
    summary = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert summary["status"] == "failed" and "drop_last=True" in summary["stop_reason"]


def test_batchnorm2d_on_batches_of_one_image_still_trains(tmp_path) -> None:
    torch.manual_seed(0)  # pix2pix's way: BatchNorm2d normalizes over the pixels of one image
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2))
    x = torch.randn(6, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    result = Trainer(net, lr=1e-2, epochs=1, batch_size=1, progress=False, report=False,
                     run_dir=tmp_path / "img").fit((x, (x.mean((1, 2, 3)) > 0).long()))
    assert result.status == "completed" and result.summary["steps"] == 6


def test_the_cli_says_the_batchnorm_error_in_one_line_without_a_traceback(tmp_path) -> None:
    config = tmp_path / "bn.yaml"
    config.write_text("data: {dataset: digits, batch_size: 1}\nmodel: {name: mlp, hidden: [16], norm: batch}\n"
                      "train: {epochs: 1, max_steps: 3}\noptimizer: {lr: 0.001}\n")
    done = subprocess.run([sys.executable, "-m", "trainwise", "train", str(config), "--run-dir", str(tmp_path / "r")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert "BatchNorm layer got a training batch with one value per channel" in line and "data.batch_size" in line
