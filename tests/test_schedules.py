"""Tests for trainwise.schedules: exact values against torch.optim.lr_scheduler and by hand."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler

from trainwise.errors import CheckpointError, ConfigError
from trainwise.schedules import (
    SCHEDULE_NAMES,
    ConstantSchedule,
    CosineSchedule,
    PlateauSchedule,
    Schedule,
    Warmup,
    build_schedule,
    schedule_params,
)

RELATIVE = 1e-12

# the fewest parameters each schedule needs, for tests that run over all of them
MINIMAL_PARAMS: dict[str, dict[str, Any]] = {
    "constant": {},
    "step": {"step_size": 50},
    "multistep": {"milestones": [50, 100]},
    "exponential": {"gamma": 0.99},
    "inverse_time": {"decay": 0.01},
    "polynomial": {},
    "cosine": {},
    "cosine_restarts": {"cycle_steps": 50},
    "onecycle": {},
    "cyclic": {},
    "piecewise": {"boundaries": [50], "values": [0.1, 0.01]},
    "plateau": {},
}


def build(name: str, *, lr: float = 0.1, total_steps: int = 200, steps_per_epoch: int = 10,
          **params: Any) -> Schedule:
    return build_schedule(name, lr=lr, total_steps=total_steps, steps_per_epoch=steps_per_epoch,
                          **params)


def torch_values(
    make: Callable[[torch.optim.Optimizer], Any],
    steps: int,
    *,
    lr: float,
    per: int = 1,
    optimizer: str = "sgd",
) -> tuple[list[float], list[float]]:
    """Run a torch scheduler the usual way; return the lr and momentum of each update."""
    param = torch.nn.Parameter(torch.zeros(1))
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD([param], lr=lr, momentum=0.9)
    else:
        opt = torch.optim.Adam([param], lr=lr)
    scheduler = make(opt)
    lrs, momentums = [], []
    for step in range(steps):
        group = opt.param_groups[0]
        lrs.append(group["lr"])
        momentums.append(group["momentum"] if "momentum" in group else group["betas"][0])
        opt.step()
        if (step + 1) % per == 0:
            scheduler.step()
    return lrs, momentums


def our_values(schedule: Schedule, steps: int) -> tuple[list[float], list[float | None]]:
    return ([schedule.lr_at(s) for s in range(steps)], [schedule.momentum_at(s) for s in range(steps)])


def test_minimal_params_cover_every_schedule() -> None:
    assert set(MINIMAL_PARAMS) == set(SCHEDULE_NAMES)


# (id, build kwargs, torch scheduler factory, steps, steps_per_epoch, torch steps per scheduler step)
TORCH_CASES = [
    ("step", dict(name="step", step_size=7, gamma=0.5),
     lambda o: lr_scheduler.StepLR(o, step_size=7, gamma=0.5), 60, 10, 1),
    ("step-epoch", dict(name="step", step_size=2, gamma=0.5, unit="epoch"),
     lambda o: lr_scheduler.StepLR(o, step_size=2, gamma=0.5), 60, 5, 5),
    ("multistep", dict(name="multistep", milestones=[10, 25, 40], gamma=0.3),
     lambda o: lr_scheduler.MultiStepLR(o, milestones=[10, 25, 40], gamma=0.3), 60, 10, 1),
    ("multistep-epoch", dict(name="multistep", milestones=[3, 5], unit="epoch"),
     lambda o: lr_scheduler.MultiStepLR(o, milestones=[3, 5], gamma=0.1), 80, 10, 10),
    ("exponential", dict(name="exponential", gamma=0.97),
     lambda o: lr_scheduler.ExponentialLR(o, gamma=0.97), 300, 10, 1),
    ("exponential-epoch", dict(name="exponential", gamma=0.8, unit="epoch"),
     lambda o: lr_scheduler.ExponentialLR(o, gamma=0.8), 100, 7, 7),
    ("polynomial-2", dict(name="polynomial", power=2.0, total_steps=120),
     lambda o: lr_scheduler.PolynomialLR(o, total_iters=120, power=2.0), 150, 10, 1),
    ("polynomial-0.5", dict(name="polynomial", power=0.5, total_steps=50),
     lambda o: lr_scheduler.PolynomialLR(o, total_iters=50, power=0.5), 50, 10, 1),
    ("cosine", dict(name="cosine", total_steps=100),
     lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=100), 101, 10, 1),
    ("cosine-min_lr", dict(name="cosine", total_steps=150, min_lr=1e-3),
     lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=150, eta_min=1e-3), 151, 10, 1),
    ("cosine_restarts", dict(name="cosine_restarts", cycle_steps=10),
     lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=10), 95, 10, 1),
    ("cosine_restarts-mult", dict(name="cosine_restarts", cycle_steps=7, cycle_mult=2, min_lr=0.01),
     lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=7, T_mult=2, eta_min=0.01), 200, 10, 1),
    ("cosine_restarts-epoch", dict(name="sgdr", cycle_steps=2, cycle_mult=3, unit="epoch"),
     lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=8, T_mult=3), 200, 4, 1),
    ("linear-warmup", dict(name="constant", total_steps=60, warmup=12, warmup_start_factor=0.1),
     lambda o: lr_scheduler.LinearLR(o, start_factor=0.1, total_iters=12), 60, 10, 1),
]


@pytest.mark.parametrize(
    ("params", "make", "steps", "steps_per_epoch", "per"),
    [case[1:] for case in TORCH_CASES],
    ids=[case[0] for case in TORCH_CASES],
)
def test_lr_equals_torch_scheduler(
    params: dict[str, Any], make: Callable[..., Any], steps: int, steps_per_epoch: int, per: int
) -> None:
    params = {"total_steps": steps, **params}
    schedule = build(params.pop("name"), lr=0.1, steps_per_epoch=steps_per_epoch, **params)
    expected, _ = torch_values(make, steps, lr=0.1, per=per)
    assert our_values(schedule, steps)[0] == pytest.approx(expected, rel=RELATIVE, abs=0)


MOMENTUM_CASES = [
    ("onecycle-cos", dict(name="onecycle"),
     lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=100)),
    ("onecycle-linear", dict(name="onecycle", anneal="linear", pct_start=0.25, div_factor=10.0),
     lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=100, anneal_strategy="linear",
                                       pct_start=0.25, div_factor=10.0)),
    ("onecycle-three-phase", dict(name="onecycle", three_phase=True, max_lr=0.5,
                                  base_momentum=0.8, max_momentum=0.9, final_div_factor=100.0),
     lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.5, total_steps=100, three_phase=True,
                                       base_momentum=0.8, max_momentum=0.9, final_div_factor=100.0)),
    ("cyclic-triangular", dict(name="cyclic", base_lr=0.01, max_lr=0.1, step_size_up=7),
     lambda o: lr_scheduler.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=7)),
    ("cyclic-triangular2", dict(name="cyclic", base_lr=0.01, max_lr=0.1, step_size_up=6,
                                step_size_down=9, mode="triangular2"),
     lambda o: lr_scheduler.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=6,
                                     step_size_down=9, mode="triangular2")),
    ("cyclic-exp_range", dict(name="cyclic", base_lr=0.01, max_lr=0.1, step_size_up=5,
                              mode="exp_range", gamma=0.99),
     lambda o: lr_scheduler.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=5,
                                     mode="exp_range", gamma=0.99)),
    ("cyclic-epoch", dict(name="cyclic", base_lr=0.02, max_lr=0.1, step_size_up=1,
                          step_size_down=2, unit="epoch"),
     lambda o: lr_scheduler.CyclicLR(o, base_lr=0.02, max_lr=0.1, step_size_up=10,
                                     step_size_down=20)),
]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize(
    ("params", "make"), [case[1:] for case in MOMENTUM_CASES], ids=[case[0] for case in MOMENTUM_CASES]
)
def test_lr_and_momentum_equal_torch_scheduler(
    params: dict[str, Any], make: Callable[..., Any], optimizer: str
) -> None:
    params = dict(params)
    schedule = build(params.pop("name"), lr=0.1, total_steps=100, steps_per_epoch=10, **params)
    expected_lr, expected_momentum = torch_values(make, 100, lr=0.1, optimizer=optimizer)
    lrs, momentums = our_values(schedule, 100)
    assert lrs == pytest.approx(expected_lr, rel=RELATIVE, abs=0)
    assert momentums == pytest.approx(expected_momentum, rel=RELATIVE, abs=0)


@pytest.mark.parametrize("name", ["onecycle", "cyclic"])
def test_cycle_momentum_off_leaves_momentum_alone(name: str) -> None:
    schedule = build(name, cycle_momentum=False)
    assert {schedule.momentum_at(s) for s in range(200)} == {None}


def test_onecycle_holds_final_lr_after_total_steps() -> None:
    schedule = build("onecycle", lr=0.1, total_steps=100)
    assert schedule.lr_at(99) == pytest.approx(0.1 / 25 / 1e4, rel=RELATIVE)
    assert schedule.lr_at(250) == schedule.lr_at(99)
    assert schedule.momentum_at(250) == 0.95


PLATEAU_CASES = [
    ("min-rel", dict(patience=1), dict(patience=1),
     [1.0, 0.9, 0.95, 0.95, 0.95, 0.8, 0.85, 0.9, 0.9, 0.9, 0.9, 0.9]),
    ("max-abs-cooldown", dict(mode="max", threshold=0.05, threshold_mode="abs", cooldown=2,
                              patience=0, factor=0.5),
     dict(mode="max", threshold=0.05, threshold_mode="abs", cooldown=2, patience=0, factor=0.5),
     [0.5, 0.6, 0.62, 0.63, 0.64, 0.7, 0.71, 0.72, 0.73, 0.8, 0.8, 0.8]),
    ("min_lr-floor", dict(patience=0, min_lr=2e-3), dict(patience=0, min_lr=2e-3),
     [1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]),
]


@pytest.mark.parametrize(
    ("ours", "theirs", "metrics"), [c[1:] for c in PLATEAU_CASES], ids=[c[0] for c in PLATEAU_CASES]
)
def test_plateau_equals_reduce_lr_on_plateau(
    ours: dict[str, Any], theirs: dict[str, Any], metrics: list[float]
) -> None:
    steps_per_epoch = 5
    schedule = build("plateau", lr=0.1, steps_per_epoch=steps_per_epoch, **ours)
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1)
    reference = lr_scheduler.ReduceLROnPlateau(opt, **theirs)
    for epoch, metric in enumerate(metrics):
        for step in range(epoch * steps_per_epoch, (epoch + 1) * steps_per_epoch):
            assert schedule.lr_at(step) == pytest.approx(opt.param_groups[0]["lr"], rel=RELATIVE)
        schedule.observe(metric)
        reference.step(metric)
    assert schedule.scale < 1.0  # every case reduces at least once


def test_plateau_multiplies_its_base_schedule() -> None:
    schedule = build("plateau", lr=1.0, total_steps=100, patience=0, factor=0.5, min_lr=0.08,
                     base={"name": "cosine", "min_lr": 0.1})
    cosine = CosineSchedule(lr=1.0, total_steps=100, min_lr=0.1)
    assert schedule.lr_at(30) == cosine.lr_at(30)
    schedule.observe(1.0)
    schedule.observe(1.0)
    # min_lr floors the product: 0.5 * 0.1 at the end of the cosine becomes 0.08
    assert [schedule.lr_at(s) for s in (30, 100)] == [0.5 * cosine.lr_at(30), 0.08]


def test_plateau_state_round_trip_through_torch_save(tmp_path: Any) -> None:
    schedule = build("plateau", lr=0.1, patience=1, cooldown=1)
    for metric in (1.0, 1.0, 1.0, 0.5, 0.6):
        schedule.observe(metric)
    path = tmp_path / "schedule.pt"
    torch.save(schedule.state_dict(), path)
    fresh = build("plateau", lr=0.1, patience=1, cooldown=1)
    fresh.load_state_dict(torch.load(path, weights_only=True))
    assert fresh.state_dict() == schedule.state_dict()
    assert fresh.state_dict() == {"scale": pytest.approx(0.1), "best": 0.5, "bad_evaluations": 1,
                                  "cooldown_left": 0}
    for other in (fresh, schedule):
        other.observe(0.7)  # second bad result with patience 1: both reduce again
    assert fresh.lr_at(5) == schedule.lr_at(5) == pytest.approx(1e-3)


def test_plateau_before_any_observation_is_its_base() -> None:
    schedule = build("plateau", lr=0.1, base="cosine")
    assert schedule.lr_at(50) == CosineSchedule(lr=0.1, total_steps=200).lr_at(50)


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_resume_needs_only_the_step_and_state(name: str) -> None:
    ran = build(name, **MINIMAL_PARAMS[name])
    for step in range(120):
        ran.lr_at(step)
        ran.momentum_at(step)
        if step % 10 == 9:
            ran.observe(1.0 + step)  # a worsening loss: plateau reduces, the others must not care
    fresh = build(name, **MINIMAL_PARAMS[name])
    fresh.load_state_dict(ran.state_dict())
    if name != "plateau":
        assert ran.state_dict() == {}
    later = range(120, 200)
    assert [fresh.lr_at(s) for s in later] == [ran.lr_at(s) for s in later]
    assert [fresh.momentum_at(s) for s in later] == [ran.momentum_at(s) for s in later]


def test_inverse_time_values() -> None:
    schedule = build("inverse_time", lr=0.5, decay=0.1)
    assert [schedule.lr_at(s) for s in (0, 10, 30)] == [0.5, 0.25, 0.125]


@pytest.mark.parametrize(
    ("params", "steps_per_epoch"),
    [({"boundaries": [10, 20]}, 1), ({"boundaries": [2, 4], "unit": "epoch"}, 5)],
)
def test_piecewise_values(params: dict[str, Any], steps_per_epoch: int) -> None:
    schedule = build("piecewise", steps_per_epoch=steps_per_epoch, values=[0.1, 0.05, 0.01], **params)
    steps = (0, 9, 10, 19, 20, 10_000)
    assert [schedule.lr_at(s) for s in steps] == [0.1, 0.1, 0.05, 0.05, 0.01, 0.01]


def test_warmup_then_cosine_values() -> None:
    schedule = build("cosine", lr=1.0, total_steps=110, warmup=10, warmup_start_factor=0.1)
    target = (1 + math.cos(math.pi * 10 / 110)) / 2
    assert schedule.lr_at(0) == 0.1
    assert schedule.lr_at(5) == pytest.approx(0.1 + (target - 0.1) * 0.5, rel=RELATIVE)
    assert schedule.lr_at(10) == pytest.approx(target, rel=RELATIVE)
    assert schedule.lr_at(60) == pytest.approx((1 + math.cos(math.pi * 60 / 110)) / 2, rel=RELATIVE)
    assert schedule.lr_at(110) == 0.0  # the wrapped clock counts from 0: min_lr at total_steps


def test_exponential_warmup_values() -> None:
    schedule = build("constant", lr=1.0, total_steps=10, warmup=4, warmup_mode="exponential",
                     warmup_start_factor=0.01)
    expected = [0.01, 0.01 * 10**0.5, 0.1, 0.1 * 10**0.5, 1.0, 1.0]
    assert [schedule.lr_at(s) for s in range(6)] == pytest.approx(expected, rel=RELATIVE)


def test_warmup_fraction_of_total_steps() -> None:
    schedule = build("cosine", total_steps=1000, warmup=0.05)
    assert isinstance(schedule, Warmup)
    assert schedule.warmup_steps == 50
    assert schedule.lr_at(50) == schedule.schedule.lr_at(50)


def test_warmup_in_front_of_plateau() -> None:
    schedule = build("plateau", lr=1.0, total_steps=100, warmup=10, patience=0, factor=0.5)
    assert [schedule.lr_at(s) for s in (0, 5, 10, 50)] == [0.0, 0.5, 1.0, 1.0]
    schedule.observe(1.0)
    schedule.observe(1.0)
    assert [schedule.lr_at(s) for s in (5, 10, 50)] == [0.25, 0.5, 0.5]
    assert schedule.state_dict()["scale"] == 0.5


@pytest.mark.parametrize("mode", ["linear", "exponential"])
@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_warmup_composes_with_every_schedule(name: str, mode: str) -> None:
    warmup_steps, start_factor, lr = 20, 0.01, 0.1
    schedule = build(name, lr=lr, warmup=warmup_steps, warmup_mode=mode,
                     warmup_start_factor=start_factor, **MINIMAL_PARAMS[name])
    inner = build(name, lr=lr, **MINIMAL_PARAMS[name])
    ramp = [schedule.lr_at(s) for s in range(warmup_steps + 1)]
    assert ramp[0] == pytest.approx(start_factor * lr, rel=RELATIVE)
    assert all(later > earlier for earlier, later in zip(ramp, ramp[1:]))
    assert ramp[-1] == inner.lr_at(warmup_steps)
    # continuous: the last warmup step is one ordinary ramp increment below the wrapped schedule
    start, target = ramp[0], ramp[-1]
    if mode == "linear":
        increment = (target - start) / warmup_steps
    else:
        increment = target * (1 - (start / target) ** (1 / warmup_steps))
    assert ramp[-1] - ramp[-2] == pytest.approx(increment, rel=1e-9)
    later = range(warmup_steps, 200)
    assert [schedule.lr_at(s) for s in later] == [inner.lr_at(s) for s in later]


def test_schedule_params_lists_unit_only_where_durations_exist() -> None:
    assert schedule_params("step") == ("gamma", "step_size", "unit")
    assert schedule_params("cosine") == ("min_lr",)
    assert schedule_params("constant") == ()
    assert schedule_params("sgdr") == ("cycle_mult", "cycle_steps", "min_lr", "unit")
    with pytest.raises(ConfigError, match=r"unknown schedule 'cosin'; did you mean 'cosine'\?"):
        schedule_params("cosin")


def test_cyclic_defaults_follow_lr_and_epoch_length() -> None:
    schedule = build("cyclic", lr=0.4, steps_per_epoch=10, cycle_momentum=False)
    assert [schedule.lr_at(s) for s in (0, 10, 20, 30, 40)] == pytest.approx([0.1, 0.25, 0.4, 0.25, 0.1])


def test_negative_step_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"step must be >= 0, got -1"):
        ConstantSchedule(lr=0.1).lr_at(-1)


BUILD_ERRORS = [
    ("cosin", {}, r"unknown schedule 'cosin'; did you mean 'cosine'\?"),
    ("step", {"step_size": 1, "gama": 0.5},
     r"unknown parameter 'gama' for schedule 'step'; did you mean 'gamma'\? "
     r"\(valid: gamma, step_size, unit\)"),
    ("constant", {"foo": 1, "bar": 2}, r"unknown parameters 'bar', 'foo' for schedule 'constant' \(valid: none\)"),
    ("cosine", {"unit": "epoch"}, r"unknown parameter 'unit' for schedule 'cosine'"),
    ("step", {}, r"schedule 'step' needs parameter 'step_size'"),
    ("step", {"step_size": 10, "gamma": 1.5}, r"gamma must be in \(0, 1\], got 1.5"),
    ("step", {"step_size": 0}, r"step_size must be an integer >= 1, got 0"),
    ("step", {"step_size": 1.5, "unit": "epoch"}, r"step_size must be a whole number of epochs, got 1.5"),
    ("step", {"step_size": 2, "unit": "epochs"}, r"unknown unit 'epochs'; did you mean 'epoch'\?"),
    ("exponential", {"gamma": 0}, r"gamma must be in \(0, 1\], got 0"),
    ("inverse_time", {"decay": -1.0}, r"decay must be > 0, got -1.0"),
    ("multistep", {"milestones": [30, 10]}, r"milestones must be strictly increasing, got \[30, 10\]"),
    ("multistep", {"milestones": 30}, r"milestones must be a list, got 30"),
    ("polynomial", {"power": 0}, r"power must be > 0, got 0"),
    ("cosine", {"min_lr": 0.5}, r"min_lr must be in \[0, 0.1\], got 0.5"),
    ("cosine_restarts", {"cycle_steps": 10, "cycle_mult": 1.5}, r"cycle_mult must be an integer >= 1, got 1.5"),
    ("piecewise", {"boundaries": [10, 20], "values": [0.1, 0.01]},
     r"values must have one entry more than boundaries \(3\), got 2"),
    ("onecycle", {"pct_start": 0.004}, r"pct_start \* total_steps must be > 1 .*got 0.004 \* 200 = 0.8"),
    ("onecycle", {"pct_start": 0.6, "three_phase": True}, r"three_phase needs pct_start < 0.5025 with total_steps=200, got 0.6"),
    ("onecycle", {"anneal": "cosine"}, r"unknown anneal 'cosine'; did you mean 'cos'\?"),
    ("onecycle", {"base_momentum": 0.99}, r"base_momentum must be in \[0, 0.95\], got 0.99"),
    ("onecycle", {"three_phase": "yes"}, r"three_phase must be true or false, got 'yes'"),
    ("cyclic", {"cycle_momentum": 1}, r"cycle_momentum must be true or false, got 1"),
    ("cyclic", {"mode": "triangle"}, r"unknown mode 'triangle'; did you mean 'triangular'\?"),
    ("cyclic", {"base_lr": 0.2}, r"base_lr must be in \[0, 0.1\), got 0.2"),
    ("plateau", {"factor": 1.0}, r"factor must be in \(0, 1\), got 1.0"),
    ("plateau", {"patience": -1}, r"patience must be an integer >= 0, got -1"),
    ("plateau", {"mode": "mni"}, r"unknown mode 'mni'; did you mean 'min'\?"),
    ("plateau", {"min_lr": 1.0}, r"min_lr must be in \[0, 0.1\], got 1.0"),
    ("plateau", {"base": "plateau"}, r"base of a plateau schedule cannot itself be 'plateau'"),
    ("plateau", {"base": {"name": "cosin"}}, r"unknown schedule 'cosin'; did you mean 'cosine'\?"),
    ("plateau", {"base": 3}, r"base must be a schedule name or a mapping with a 'name', got 3"),
]


@pytest.mark.parametrize(("name", "params", "message"), BUILD_ERRORS)
def test_build_errors(name: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build(name, **params)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": 0}, r"lr must be > 0, got 0"),
        ({"total_steps": 0}, r"total_steps must be an integer >= 1, got 0"),
        ({"steps_per_epoch": 2.5}, r"steps_per_epoch must be an integer >= 1, got 2.5"),
        ({"warmup": 150}, r"warmup must be <= total_steps=100, got 150"),
        ({"warmup": 1.5}, r"warmup must be a whole number of steps or a fraction in \(0, 1\), got 1.5"),
        ({"warmup": -1}, r"warmup must be >= 0, got -1"),
        ({"warmup": 10, "warmup_mode": "cosine"}, r"unknown warmup_mode 'cosine'"),
        ({"warmup": 10, "warmup_start_factor": 2.0}, r"warmup_start_factor must be in \[0, 1\], got 2.0"),
        ({"warmup": 10, "warmup_mode": "exponential"},
         r"warmup_start_factor of an exponential warmup must be in \(0, 1\], got 0.0"),
    ],
)
def test_build_argument_errors(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"lr": 0.1, "total_steps": 100, "steps_per_epoch": 10, **kwargs}
    with pytest.raises(ConfigError, match=message):
        build_schedule("cosine", **arguments)


def test_class_errors() -> None:
    with pytest.raises(ConfigError, match=r"Warmup wraps a Schedule, got float"):
        Warmup(0.1, warmup_steps=10)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"base of a plateau schedule cannot itself be a plateau"):
        PlateauSchedule(base=PlateauSchedule(base=ConstantSchedule(lr=0.1)))
    with pytest.raises(ConfigError, match=r"lr must be a finite number, got nan"):
        ConstantSchedule(lr=float("nan"))


def test_state_errors() -> None:
    with pytest.raises(CheckpointError, match=r"CosineSchedule keeps no state, got state with keys \['scale'\]"):
        CosineSchedule(lr=0.1, total_steps=10).load_state_dict({"scale": 0.5})
    plateau = PlateauSchedule(base=ConstantSchedule(lr=0.1))
    with pytest.raises(CheckpointError, match=r"missing \['bad_evaluations', 'cooldown_left'\], unknown \['x'\]"):
        plateau.load_state_dict({"scale": 1.0, "best": 1.0, "x": 0})


# --------------------------------------------------------------------------- report.schedule_plot
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("names", [["cosine"], ["onecycle", "cosine", "plateau"]], ids=["lr-only", "with-momentum"])
def test_plot_schedules_writes_a_png(tmp_path: Any, names: list[str]) -> None:
    from trainwise.report.schedule_plot import plot_schedules

    schedules = {name: build(name, warmup=10, **MINIMAL_PARAMS[name]) for name in names}
    path = plot_schedules(schedules, 200, tmp_path / "plots" / "schedule.png")
    assert path == tmp_path / "plots" / "schedule.png"
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    # the momentum panel makes the figure taller: 9 x 6.5 inches instead of 9 x 4.5 at 100 dpi
    assert (width, height) == ((900, 650) if "onecycle" in names else (900, 450))
    assert len(data) > 15_000


def test_plot_schedules_needs_a_schedule(tmp_path: Any) -> None:
    from trainwise.report.schedule_plot import plot_schedules

    with pytest.raises(ConfigError, match=r"needs at least one schedule, got none"):
        plot_schedules({}, 100, tmp_path / "x.png")
    with pytest.raises(ConfigError, match=r"total_steps must be an integer >= 1, got 0"):
        plot_schedules({"c": ConstantSchedule(lr=0.1)}, 0, tmp_path / "x.png")


def test_schedule_table_rows() -> None:
    from trainwise.report.schedule_plot import schedule_table

    table = schedule_table(build("onecycle", total_steps=101), 101, rows=5)
    assert [row[0] for row in table] == [0, 25, 50, 75, 100]
    assert table[0] == (0, pytest.approx(0.1 / 25), 0.95)
    assert schedule_table(ConstantSchedule(lr=0.1), 3, rows=10) == [(0, 0.1, None), (1, 0.1, None), (2, 0.1, None)]
    assert schedule_table(ConstantSchedule(lr=0.1), 50, rows=1) == [(0, 0.1, None)]
