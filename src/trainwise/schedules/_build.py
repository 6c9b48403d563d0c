"""``build_schedule``: a schedule from its name and parameters, the way a config names it.

Each schedule has one small builder function below. Its keyword parameters are the
schedule's parameters, read by ``inspect`` to reject unknown names and report missing
ones; a few names are context the builder asks for instead (``lr``, ``total_steps``,
``steps_per_epoch``, and ``steps``, the converter of durations that makes a schedule
accept ``unit: step|epoch``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Optional

from trainwise.errors import ConfigError
from trainwise.schedules._base import Schedule
from trainwise.checks import (
    check_choice,
    check_int,
    check_list,
    check_range,
    did_you_mean,
)
from trainwise.schedules._cyclic import CyclicSchedule, OneCycleSchedule
from trainwise.schedules._decay import (
    ConstantSchedule,
    CosineRestartsSchedule,
    CosineSchedule,
    ExponentialSchedule,
    InverseTimeSchedule,
    MultiStepSchedule,
    PiecewiseSchedule,
    PolynomialSchedule,
    StepSchedule,
)
from trainwise.schedules._plateau import PlateauSchedule
from trainwise.schedules._warmup import WARMUP_MODES, Warmup

UNITS = ("step", "epoch")
SHORT_RUN_STEPS = 10  # a run under this many steps may be too short for its schedule (1cycle must rise and fall)
LONG_RUN_STEPS = 1000  # the length that tells "too short" from a wrong name or parameter
_CONTEXT = frozenset({"lr", "total_steps", "steps_per_epoch", "steps"})
Steps = Callable[[str, Any], Any]


def _constant(*, lr: float) -> Schedule:
    return ConstantSchedule(lr=lr)


def _step(*, lr: float, steps: Steps, step_size: int, gamma: float = 0.1) -> Schedule:
    return StepSchedule(lr=lr, step_size=steps("step_size", step_size), gamma=gamma)


def _multistep(*, lr: float, steps: Steps, milestones: list[int], gamma: float = 0.1) -> Schedule:
    return MultiStepSchedule(lr=lr, milestones=steps("milestones", milestones), gamma=gamma)


def _exponential(*, lr: float, steps: Steps, gamma: float) -> Schedule:
    # gamma applies once per unit: every step, or at every epoch boundary
    return ExponentialSchedule(lr=lr, gamma=gamma, interval=steps("gamma's interval", 1))


def _inverse_time(*, lr: float, decay: float) -> Schedule:
    return InverseTimeSchedule(lr=lr, decay=decay)


def _polynomial(
    *, lr: float, total_steps: int, power: float = 1.0, end_lr: float = 0.0
) -> Schedule:
    return PolynomialSchedule(lr=lr, total_steps=total_steps, power=power, end_lr=end_lr)


def _cosine(*, lr: float, total_steps: int, min_lr: float = 0.0) -> Schedule:
    return CosineSchedule(lr=lr, total_steps=total_steps, min_lr=min_lr)


def _cosine_restarts(
    *, lr: float, steps: Steps, cycle_steps: int, cycle_mult: int = 1, min_lr: float = 0.0
) -> Schedule:
    return CosineRestartsSchedule(
        lr=lr, cycle_steps=steps("cycle_steps", cycle_steps), cycle_mult=cycle_mult, min_lr=min_lr
    )


def _onecycle(
    *,
    lr: float,
    total_steps: int,
    max_lr: float | None = None,
    pct_start: float = 0.3,
    anneal: str = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
    cycle_momentum: bool = True,
    base_momentum: float = 0.85,
    max_momentum: float = 0.95,
) -> Schedule:
    return OneCycleSchedule(
        max_lr=lr if max_lr is None else max_lr,
        total_steps=total_steps,
        pct_start=pct_start,
        anneal=anneal,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
        three_phase=three_phase,
        cycle_momentum=cycle_momentum,
        base_momentum=base_momentum,
        max_momentum=max_momentum,
    )


def _cyclic(
    *,
    lr: float,
    steps: Steps,
    steps_per_epoch: int,
    max_lr: float | None = None,
    base_lr: float | None = None,
    step_size_up: int | None = None,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
    cycle_momentum: bool = True,
    base_momentum: float = 0.8,
    max_momentum: float = 0.9,
) -> Schedule:
    max_lr = lr if max_lr is None else check_range("max_lr", max_lr, 0, low_open=True)
    return CyclicSchedule(
        # Smith (2017): base_lr 3-4x below max_lr, half-cycles of 2-10 epochs
        base_lr=max_lr / 4 if base_lr is None else base_lr,
        max_lr=max_lr,
        step_size_up=(
            2 * steps_per_epoch if step_size_up is None else steps("step_size_up", step_size_up)
        ),
        step_size_down=None if step_size_down is None else steps("step_size_down", step_size_down),
        mode=mode,
        gamma=gamma,
        cycle_momentum=cycle_momentum,
        base_momentum=base_momentum,
        max_momentum=max_momentum,
    )


def _piecewise(*, steps: Steps, boundaries: list[int], values: list[float]) -> Schedule:
    return PiecewiseSchedule(boundaries=steps("boundaries", boundaries), values=values)


def _plateau(
    *,
    lr: float,
    total_steps: int,
    steps_per_epoch: int,
    base: str | Mapping[str, Any] = "constant",
    mode: str = "min",
    factor: float = 0.1,
    patience: int = 10,
    threshold: float = 1e-4,
    threshold_mode: str = "rel",
    cooldown: int = 0,
    min_lr: float = 0.0,
) -> Schedule:
    if isinstance(base, str):
        base_name, base_params = base, {}
    elif isinstance(base, Mapping) and "name" in base:
        base_name, base_params = base["name"], {k: v for k, v in base.items() if k != "name"}
    else:
        raise ConfigError(f"base must be a schedule name or a mapping with a 'name', got {base!r}")
    if base_name == "plateau":
        raise ConfigError("base of a plateau schedule cannot itself be 'plateau'")
    base_schedule = build_schedule(
        base_name, lr=lr, total_steps=total_steps, steps_per_epoch=steps_per_epoch, **base_params
    )
    return PlateauSchedule(
        base=base_schedule,
        mode=mode,
        factor=factor,
        patience=patience,
        threshold=threshold,
        threshold_mode=threshold_mode,
        cooldown=cooldown,
        min_lr=check_range("min_lr", min_lr, 0, lr),
    )


_BUILDERS: dict[str, Callable[..., Schedule]] = {
    "constant": _constant,
    "step": _step,
    "multistep": _multistep,
    "exponential": _exponential,
    "inverse_time": _inverse_time,
    "polynomial": _polynomial,
    "cosine": _cosine,
    "cosine_restarts": _cosine_restarts,
    "onecycle": _onecycle,
    "cyclic": _cyclic,
    "piecewise": _piecewise,
    "plateau": _plateau,
}
SCHEDULE_NAMES: tuple[str, ...] = tuple(_BUILDERS)
_ALIASES = {"sgdr": "cosine_restarts"}


def schedule_params(name: str) -> tuple[str, ...]:
    """Return the parameter names schedule ``name`` accepts, ``unit`` included where it applies."""
    builder = _BUILDERS[check_choice("schedule", _ALIASES.get(name, name), SCHEDULE_NAMES)]
    signature = inspect.signature(builder).parameters
    names = [p for p in signature if p not in _CONTEXT]
    return tuple(sorted([*names, "unit"] if "steps" in signature else names))


def build_schedule(
    name: str,
    *,
    lr: float,
    total_steps: int,
    steps_per_epoch: int,
    warmup: float = 0,
    warmup_mode: str = "linear",
    warmup_start_factor: float = 0.0,
    **params: Any,
) -> Schedule:
    """Build a schedule from its name and parameters, wrapped in warmup when asked.

    Args:
        name: one of ``SCHEDULE_NAMES`` (``sgdr`` is accepted for ``cosine_restarts``).
        lr: the peak learning rate: the constant value, the start of a decay, onecycle's
            and cyclic's default ``max_lr``. Piecewise uses its own absolute ``values``.
        total_steps: optimizer steps in the whole run; cosine and polynomial reach their
            end value at this step, onecycle at the step before (the last update).
        steps_per_epoch: optimizer steps per epoch, to convert durations given with
            ``unit='epoch'``.
        warmup: steps of warmup, or a fraction of ``total_steps`` when ``0 < warmup < 1``;
            0 for none. The schedule keeps counting from step 0 (see ``Warmup``).
        warmup_mode: ``linear`` or ``exponential``.
        warmup_start_factor: the warmup starts at ``warmup_start_factor * lr``.
        **params: the schedule's own parameters (``schedule_params(name)`` lists them);
            ``unit: step|epoch`` says in which unit its durations (step_size, milestones,
            cycle_steps, step_size_up/down, boundaries, exponential's gamma interval) are
            given. Defaults that depend on the run: onecycle's and cyclic's ``max_lr`` is
            ``lr``, cyclic's ``base_lr`` is ``max_lr / 4`` and its ``step_size_up`` two
            epochs (Smith 2017); plateau's ``base`` is ``constant``, or a name, or a
            mapping ``{"name": ..., **params}``.

    Raises:
        ConfigError: an unknown name or parameter, a missing or out-of-range value.

    Example:
        >>> schedule = build_schedule("cosine", lr=0.1, total_steps=1000, steps_per_epoch=100,
        ...                           warmup=0.1, min_lr=1e-4)
        >>> schedule.lr_at(0), schedule.lr_at(1000)
        (0.0, 0.0001)
    """
    canonical = _ALIASES.get(name, name)
    check_choice("schedule", canonical, SCHEDULE_NAMES)
    check_range("lr", lr, 0, low_open=True)
    check_int("total_steps", total_steps, 1)
    check_int("steps_per_epoch", steps_per_epoch, 1)
    warmup_steps = _warmup_steps(warmup, total_steps)
    check_choice("warmup_mode", warmup_mode, WARMUP_MODES)
    low_open = warmup_mode == "exponential"  # a geometric ramp cannot start at 0
    start_factor = check_range(
        f"warmup_start_factor{' of an exponential warmup' if low_open else ''}",
        warmup_start_factor, 0, 1, low_open=low_open,
    )

    builder = _BUILDERS[canonical]
    _check_param_names(canonical, params)
    unit = check_choice("unit", params.pop("unit", "step"), UNITS)
    context = {
        "lr": lr,
        "total_steps": total_steps,
        "steps_per_epoch": steps_per_epoch,
        "steps": _step_converter(unit, steps_per_epoch),
    }
    signature = inspect.signature(builder).parameters
    schedule = builder(**{k: v for k, v in context.items() if k in signature}, **params)
    if warmup_steps == 0:
        return schedule
    return Warmup(schedule, warmup_steps=warmup_steps, start_lr=start_factor * lr, mode=warmup_mode)


def build_schedule_or_hold(name: str, *, lr: float, total_steps: int, steps_per_epoch: int,
                           **kwargs: Any) -> tuple[Schedule, Optional[str]]:
    """``(schedule, None)``, or for a run too short for the named schedule (under ``SHORT_RUN_STEPS``
    steps, where the same schedule over a long run builds: a smoke test's ``max_steps=3`` under the
    default 1cycle) a constant ``lr`` and why. A wrong name or parameter is raised whatever the length.
    ``kwargs``: ``build_schedule``'s warmup arguments and the schedule's parameters."""
    try:
        return build_schedule(name, lr=lr, total_steps=total_steps, steps_per_epoch=steps_per_epoch, **kwargs), None
    except ConfigError as exc:
        if total_steps >= SHORT_RUN_STEPS:
            raise
        build_schedule(name, lr=lr, total_steps=LONG_RUN_STEPS, steps_per_epoch=steps_per_epoch, **kwargs)
        held = build_schedule("constant", lr=lr, total_steps=max(total_steps, 1), steps_per_epoch=steps_per_epoch)
        return held, f"{total_steps} steps are too few for schedule {name!r} ({exc}); lr held at {lr:g}"


def _check_param_names(name: str, params: Mapping[str, Any]) -> None:
    accepted = schedule_params(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        hint = did_you_mean(unknown[0], accepted) if len(unknown) == 1 else ""
        raise ConfigError(
            f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"for schedule {name!r}{hint} (valid: {', '.join(accepted) or 'none'})"
        )
    signature = inspect.signature(_BUILDERS[name]).parameters
    missing = [
        p for p, spec in signature.items()
        if p not in _CONTEXT and spec.default is inspect.Parameter.empty and p not in params
    ]
    if missing:
        raise ConfigError(f"schedule {name!r} needs parameter{'s' if len(missing) > 1 else ''} "
                          f"{', '.join(map(repr, missing))}")


def _step_converter(unit: str, steps_per_epoch: int) -> Steps:
    """Return a function that turns a duration (or a list of them) in ``unit`` into steps."""

    def to_steps(name: str, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [to_steps(f"every entry of {name}", item) for item in check_list(name, value)]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be a whole number of {unit}s, got {value!r}")
        return value * steps_per_epoch if unit == "epoch" else value

    return to_steps


def _warmup_steps(warmup: float, total_steps: int) -> int:
    """Return the warmup length in steps: ``warmup`` itself, or that fraction of ``total_steps``."""
    value = check_range("warmup", warmup, 0)
    if value == 0:
        return 0
    if value < 1:
        return max(1, round(value * total_steps))
    if value != int(value):
        raise ConfigError(
            f"warmup must be a whole number of steps or a fraction in (0, 1), got {warmup!r}"
        )
    if value > total_steps:
        raise ConfigError(f"warmup must be <= total_steps={total_steps}, got {warmup!r}")
    return int(value)
