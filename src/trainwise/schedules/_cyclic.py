"""Schedules that go up and down: one-cycle and cyclical learning rates.

Both cycle momentum inversely to the lr when asked (high lr, low momentum), the way
``torch.optim.lr_scheduler.OneCycleLR`` and ``CyclicLR`` do; the arithmetic follows
theirs term by term so the values agree to the last bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

from trainwise.errors import ConfigError
from trainwise.schedules._base import Schedule
from trainwise.checks import check_bool, check_choice, check_int, check_range

ANNEAL_NAMES = ("cos", "linear")
CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


class _Phase(NamedTuple):
    end_step: float
    start_lr: float
    end_lr: float
    start_momentum: float
    end_momentum: float


def _anneal_cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def _anneal_linear(start: float, end: float, pct: float) -> float:
    return (end - start) * pct + start


def _check_momentum_pair(base_momentum: float, max_momentum: float) -> None:
    check_range("max_momentum", max_momentum, 0, 1, high_open=True)
    check_range("base_momentum", base_momentum, 0, max_momentum)


@dataclass(frozen=True, kw_only=True)
class OneCycleSchedule(Schedule):
    """The 1cycle policy (Smith 2018; fastai's two-phase default).

    The lr rises from ``max_lr / div_factor`` to ``max_lr`` over the first ``pct_start`` of
    ``total_steps``, then anneals to ``max_lr / div_factor / final_div_factor`` at step
    ``total_steps - 1`` (the last update) and stays there. With ``three_phase`` it comes
    back down to the starting lr symmetrically before the final annealing, as in the
    paper. With ``cycle_momentum`` the momentum moves the other way, between
    ``max_momentum`` and ``base_momentum``. Same values as
    ``torch.optim.lr_scheduler.OneCycleLR``.

    Example:
        >>> schedule = OneCycleSchedule(max_lr=0.1, total_steps=100)
        >>> round(schedule.lr_at(0), 6), round(schedule.lr_at(29), 6), schedule.momentum_at(0)
        (0.004, 0.1, 0.95)
    """

    max_lr: float
    total_steps: int
    pct_start: float = 0.3
    anneal: str = "cos"
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    three_phase: bool = False
    cycle_momentum: bool = True
    base_momentum: float = 0.85
    max_momentum: float = 0.95
    _phases: tuple[_Phase, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_range("max_lr", self.max_lr, 0, low_open=True)
        check_int("total_steps", self.total_steps, 2)
        check_range("pct_start", self.pct_start, 0, 1, low_open=True, high_open=True)
        check_choice("anneal", self.anneal, ANNEAL_NAMES)
        check_range("div_factor", self.div_factor, 0, low_open=True)
        check_range("final_div_factor", self.final_div_factor, 0, low_open=True)
        check_bool("three_phase", self.three_phase)
        check_bool("cycle_momentum", self.cycle_momentum)
        _check_momentum_pair(self.base_momentum, self.max_momentum)
        object.__setattr__(self, "_phases", self._build_phases())

    def _build_phases(self) -> tuple[_Phase, ...]:
        total, pct = self.total_steps, self.pct_start
        initial_lr = self.max_lr / self.div_factor
        final_lr = initial_lr / self.final_div_factor
        low_m, high_m = self.base_momentum, self.max_momentum
        rise = _Phase(float(pct * total) - 1, initial_lr, self.max_lr, high_m, low_m)
        if rise.end_step <= 0:
            raise ConfigError(
                f"pct_start * total_steps must be > 1 so the rising phase has a step, "
                f"got {pct} * {total} = {pct * total:g}"
            )
        if not self.three_phase:
            return (rise, _Phase(total - 1, self.max_lr, final_lr, low_m, high_m))
        fall = _Phase(float(2 * pct * total) - 2, self.max_lr, initial_lr, low_m, high_m)
        if not fall.end_step < total - 1:
            raise ConfigError(
                f"three_phase needs pct_start < {(total + 1) / (2 * total):g} with "
                f"total_steps={total}, got {pct}"
            )
        return (rise, fall, _Phase(total - 1, initial_lr, final_lr, high_m, high_m))

    def _lr(self, step: int) -> float:
        return self._interpolate(step)[0]

    def _momentum(self, step: int) -> float | None:
        return self._interpolate(step)[1] if self.cycle_momentum else None

    def _interpolate(self, step: int) -> tuple[float, float]:
        anneal = _anneal_cos if self.anneal == "cos" else _anneal_linear
        step = min(step, self.total_steps - 1)
        start_step, phase = 0.0, self._phases[-1]
        for candidate in self._phases[:-1]:
            if step <= candidate.end_step:
                phase = candidate
                break
            start_step = candidate.end_step
        pct = (step - start_step) / (phase.end_step - start_step)
        return (
            anneal(phase.start_lr, phase.end_lr, pct),
            anneal(phase.start_momentum, phase.end_momentum, pct),
        )


@dataclass(frozen=True, kw_only=True)
class CyclicSchedule(Schedule):
    """Cyclical learning rates (Smith 2017): a triangle between ``base_lr`` and ``max_lr``.

    Each cycle rises for ``step_size_up`` steps and falls for ``step_size_down`` (default:
    the same). ``mode``: ``triangular`` keeps the height, ``triangular2`` halves it every
    cycle, ``exp_range`` multiplies it by ``gamma ** step``. With ``cycle_momentum`` the
    momentum moves inversely between ``max_momentum`` and ``base_momentum``. Same values as
    ``torch.optim.lr_scheduler.CyclicLR``.

    Example:
        >>> schedule = CyclicSchedule(base_lr=0.01, max_lr=0.1, step_size_up=10)
        >>> schedule.lr_at(0), schedule.lr_at(10), schedule.lr_at(20)
        (0.01, 0.1, 0.01)
    """

    base_lr: float
    max_lr: float
    step_size_up: int
    step_size_down: int | None = None
    mode: str = "triangular"
    gamma: float = 1.0
    cycle_momentum: bool = True
    base_momentum: float = 0.8
    max_momentum: float = 0.9

    def __post_init__(self) -> None:
        check_range("max_lr", self.max_lr, 0, low_open=True)
        check_range("base_lr", self.base_lr, 0, self.max_lr, high_open=True)
        check_int("step_size_up", self.step_size_up, 1)
        if self.step_size_down is not None:
            check_int("step_size_down", self.step_size_down, 1)
        check_choice("mode", self.mode, CYCLIC_MODES)
        check_range("gamma", self.gamma, 0, 1, low_open=True)
        check_bool("cycle_momentum", self.cycle_momentum)
        _check_momentum_pair(self.base_momentum, self.max_momentum)

    def _lr(self, step: int) -> float:
        fraction, scale = self._fraction_and_scale(step)
        return self.base_lr + (self.max_lr - self.base_lr) * fraction * scale

    def _momentum(self, step: int) -> float | None:
        if not self.cycle_momentum:
            return None
        fraction, scale = self._fraction_and_scale(step)
        return self.max_momentum - (self.max_momentum - self.base_momentum) * fraction * scale

    def _fraction_and_scale(self, step: int) -> tuple[float, float]:
        """Return (height in the cycle, 0..1; the mode's amplitude factor)."""
        up = float(self.step_size_up)
        total = up + float(self.step_size_down if self.step_size_down is not None else up)
        ratio = up / total
        cycle = math.floor(1 + step / total)
        position = 1.0 + step / total - cycle
        fraction = position / ratio if position <= ratio else (position - 1) / (ratio - 1)
        if self.mode == "triangular":
            return fraction, 1.0
        if self.mode == "triangular2":
            return fraction, 1 / (2.0 ** (cycle - 1))
        return fraction, self.gamma**step
