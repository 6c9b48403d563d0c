"""Non-finite values the way an accelerator sees them (the loss is not read each step), and the lr
a rollback lowers whoever owns the schedule.

The loop on a GPU does not sync per step; here the CPU loop is put in that mode
(``sync_each_step = False``), so finiteness is only known from the device-side accumulators, read
at log steps, epoch ends and before every checkpoint write."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from test_nonfinite import BATCHES_PER_EPOCH, EPOCHS, FailsOnCalls, blobs, events, metric_rows
from trainwise import checkpoint as ckpt
from trainwise.engine import loop as loop_module
from trainwise.engine.nonfinite import DeviceFiniteness, cpu_copy, scale_torch_scheduler
from trainwise.errors import RunEndedBadlyWarning
from trainwise.trainer import Trainer
from trainwise.callbacks import CheckpointSaver


@pytest.fixture
def accelerator_mode(monkeypatch):
    """The loop as on a GPU: no host sync per step."""
    original = loop_module.FitLoop.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.sync_each_step = False

    monkeypatch.setattr(loop_module.FitLoop, "__init__", init)


def fit(run_dir: Path, model, **kwargs):
    x, y = blobs()
    options = dict(lr=1e-2, schedule="constant", epochs=EPOCHS, batch_size=32, run_dir=run_dir, progress=False,
                   report=False, log_every_n_steps=50)
    options.update(kwargs)
    return Trainer(model, **options).fit((x[:128], y[:128]), (x[128:], y[128:]))


def every_checkpoint_is_finite(folder: Path) -> bool:
    for path in folder.glob("*.pt"):
        state = ckpt.load_checkpoint(path)
        tensors = list(state["model"].values()) + [value for param in state["optimizer"]["state"].values()
                                                   for value in param.values() if isinstance(value, torch.Tensor)]
        if not all(torch.isfinite(t).all() for t in tensors if t.is_floating_point()):
            return False
    return True


def test_a_nan_late_in_an_epoch_never_reaches_last_pt(tmp_path, accelerator_mode):
    # NaN loss at the 4th (last) batch of epoch 2: no log step reads it (every 50 steps); the epoch's end does.
    result = fit(tmp_path, FailsOnCalls(nan_loss_calls=[8]))
    assert result.status == "completed"
    (event,) = events(result, "nonfinite_rollback")
    assert "rolled back to step-00000004.pt (step 4)" in event["message"]  # epoch 1's end: finite
    assert every_checkpoint_is_finite(tmp_path / "checkpoints")
    assert result.summary["nonfinite_rollbacks"] == 1


def test_a_save_of_a_non_finite_state_is_refused_and_rolled_back_from(tmp_path, accelerator_mode):
    result = fit(tmp_path, FailsOnCalls(nan_loss_calls=[6]), checkpoint=CheckpointSaver(every_n_steps=1))
    assert result.status == "completed"
    (refused, *_) = events(result, "nonfinite_not_saved")
    assert refused["message"].startswith("the state at step 6 holds NaN or Inf; no checkpoint was written")
    (rollback,) = events(result, "nonfinite_rollback")
    assert "rolled back to step-00000005.pt (step 5)" in rollback["message"]
    assert every_checkpoint_is_finite(tmp_path / "checkpoints")


def test_a_users_steplr_is_halved_by_a_rollback_and_stays_halved(tmp_path):
    model = FailsOnCalls(nan_loss_calls=[10])  # epoch 3, batch 2
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.1)  # epoch 4 at a tenth
    x, y = blobs()
    result = Trainer(model, optimizer=optimizer, schedule=scheduler, epochs=EPOCHS, batch_size=32, run_dir=tmp_path,
                     log_every_n_steps=1, progress=False, report=False).fit((x[:128], y[:128]), (x[128:], y[128:]))
    assert result.status == "completed"
    (event,) = events(result, "nonfinite_rollback")
    assert "lr scaled by 0.5" in event["message"]
    lrs = [(step, value) for step, split, metric, value in metric_rows(tmp_path) if (split, metric) == ("train", "lr")]
    rollback_step = 8  # back to the end of epoch 2
    before = [value for step, value in lrs if step <= rollback_step]
    assert before and all(value == pytest.approx(1e-2) for value in before)
    epoch3 = [value for step, value in lrs if rollback_step < step <= 3 * BATCHES_PER_EPOCH - 1]
    assert epoch3 and all(value == pytest.approx(5e-3) for value in epoch3)  # halved
    assert optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)  # StepLR's decay still applies, halved


def test_scaling_reaches_every_kind_of_torch_scheduler():
    from torch.optim import lr_scheduler

    for make in (lambda o: lr_scheduler.StepLR(o, 2), lambda o: lr_scheduler.LambdaLR(o, lambda e: 1 / (e + 1)),
                 lambda o: lr_scheduler.CosineAnnealingLR(o, 10), lambda o: lr_scheduler.OneCycleLR(o, 0.1, 20)):
        reference_params = [torch.nn.Parameter(torch.zeros(1))]
        scaled_params = [torch.nn.Parameter(torch.zeros(1))]
        reference, scaled = torch.optim.SGD(reference_params, lr=0.1), torch.optim.SGD(scaled_params, lr=0.1)
        ref_scheduler, scheduler = make(reference), make(scaled)
        for _ in range(3):
            reference.step(), ref_scheduler.step(), scaled.step(), scheduler.step()
        scale_torch_scheduler(scaled, scheduler, 0.5)
        for _ in range(4):
            reference.step(), ref_scheduler.step(), scaled.step(), scheduler.step()
            assert scaled.param_groups[0]["lr"] == pytest.approx(0.5 * reference.param_groups[0]["lr"]), make


def test_device_finiteness_needs_no_sync_per_step_and_snapshots_live_on_the_cpu():
    finiteness = DeviceFiniteness(torch.device("cpu"))
    loss_sum = torch.zeros((), dtype=torch.float64)
    for value in (1.0, 2.0, float("inf"), -float("inf"), 3.0):
        loss_sum += value
    assert finiteness.all_finite(torch.zeros((), dtype=torch.float64))
    assert not finiteness.all_finite(loss_sum)  # inf + -inf = nan: still caught
    finiteness.observe(torch.tensor(float("nan")))
    assert not finiteness.all_finite(torch.zeros((), dtype=torch.float64))
    finiteness.reset()
    model = torch.nn.Linear(2, 2)
    assert finiteness.all_finite(torch.zeros((), dtype=torch.float64), model)
    with torch.no_grad():
        model.weight[0, 0] = float("inf")
    assert not finiteness.all_finite(torch.zeros((), dtype=torch.float64), model)
    copied = cpu_copy({"a": [model.weight], "b": (1, "x")})
    assert copied["a"][0].device.type == "cpu" and copied["a"][0].data_ptr() != model.weight.data_ptr()
    assert copied["b"] == (1, "x")


@pytest.mark.parametrize("policy", ["rollback", "skip"])
def test_a_nan_in_the_data_is_found_by_a_checked_replay_and_named(tmp_path, accelerator_mode, policy):
    """On an accelerator the bad batch is unknown when a late read finds the NaN: the rollback replays
    the steps up to there reading each step's loss, so the data is named (rollback policy) or the
    batch skipped before its update (skip policy, which then reads every step)."""
    from test_nonfinite import Poison, PoisonedRows

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x)

    data = PoisonedRows()
    trainer = Trainer(Net(), lr=1e-2, epochs=3, batch_size=16, progress=False, report=False, on_nonfinite=policy,
                      callbacks=[Poison(data)], run_dir=tmp_path / "run", log_every_n_steps=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunEndedBadlyWarning)  # the diverged run warns its caller
        result = trainer.fit(data, PoisonedRows())
    (rollback,) = events(result, "nonfinite_rollback")  # the epoch's end read the NaN: one rollback, then the replay
    assert "the steps up to step 8 are replayed reading the loss at every step, to find the batch" in rollback["message"]
    if policy == "skip":
        assert result.status == "completed", result.summary["stop_reason"]
        skips = events(result, "nonfinite_skip")
        assert len(skips) == 2 and "(epoch 2, batch " in skips[0]["message"]  # epochs 2 and 3 meet the NaN once each
        assert skips[0]["message"].endswith("the loss is read at every step from now on, to skip such batches "
                                            "before their update")
        assert all(torch.isfinite(torch.tensor(row["train_loss"])) for row in result.history)
        assert every_checkpoint_is_finite(tmp_path / "run" / "checkpoints")
        return
    assert result.status == "diverged" and result.summary["nonfinite_rollbacks"] == 1
    reason = result.summary["stop_reason"]
    assert reason.startswith("training stopped: loss is nan at step ") and "(epoch 2, batch " in reason
    assert "the batch's inputs contain NaN or Inf; clean the data (or fill the missing values)" in reason



def test_a_replayed_epoch_reports_its_train_loss_from_both_sums(tmp_path, monkeypatch):
    """An epoch whose steps read their loss (a checked replay) sums on the host, the others on the
    device: the epoch's figure counts both. Same run, same figures, whichever mode each epoch ran in."""
    x, y = blobs()

    def run(name: str, checked_until: float) -> list[float]:
        original = loop_module.FitLoop.__init__

        def init(self, *args, **kwargs):
            original(self, *args, **kwargs)
            self.sync_each_step, self.checked_until = False, checked_until

        monkeypatch.setattr(loop_module.FitLoop, "__init__", init)
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
        result = Trainer(net, lr=1e-2, schedule="constant", epochs=3, batch_size=32, run_dir=tmp_path / name,
                         progress=False, report=False).fit((x[:128], y[:128]), (x[128:], y[128:]))
        return [row["train_loss"] for row in result.history]

    device_only, replayed = run("device", 0), run("replayed", 6)  # epochs 1-2 read each step, epoch 3 does not
    assert replayed == pytest.approx(device_only, rel=1e-6) and len(set(device_only)) == 3
