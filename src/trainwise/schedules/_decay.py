"""Decay schedules: closed-form formulas of the step, no state.

Every formula is the closed form of its ``torch.optim.lr_scheduler`` counterpart where
one exists, so the values agree with PyTorch's to rounding; the tests step both side
by side.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass

from trainwise.errors import ConfigError
from trainwise.schedules._base import Schedule
from trainwise.checks import check_increasing, check_int, check_list, check_range


@dataclass(frozen=True, kw_only=True)
class ConstantSchedule(Schedule):
    """The same lr at every step.

    Example:
        >>> ConstantSchedule(lr=0.01).lr_at(1000)
        0.01
    """

    lr: float

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0, low_open=True)

    def _lr(self, step: int) -> float:
        return self.lr


@dataclass(frozen=True, kw_only=True)
class StepSchedule(Schedule):
    """``lr * gamma ** (step // step_size)``: multiply by ``gamma`` every ``step_size`` steps.

    Same values as ``torch.optim.lr_scheduler.StepLR``.

    Example:
        >>> StepSchedule(lr=0.1, step_size=30, gamma=0.5).lr_at(60)
        0.025
    """

    lr: float
    step_size: int
    gamma: float = 0.1

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0, low_open=True)
        check_int("step_size", self.step_size, 1)
        check_range("gamma", self.gamma, 0, 1, low_open=True)

    def _lr(self, step: int) -> float:
        return self.lr * self.gamma ** (step // self.step_size)


@dataclass(frozen=True, kw_only=True)
class MultiStepSchedule(Schedule):
    """Multiply the lr by ``gamma`` at each milestone step (the lr used from that step on).

    Same values as ``torch.optim.lr_scheduler.MultiStepLR``.

    Example:
        >>> schedule = MultiStepSchedule(lr=1.0, milestones=(10, 20), gamma=0.1)
        >>> schedule.lr_at(9), schedule.lr_at(10), schedule.lr_at(25)
        (1.0, 0.1, 0.010000000000000002)
    """

    lr: float
    milestones: tuple[int, ...]
    gamma: float = 0.1

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0, low_open=True)
        object.__setattr__(self, "milestones", check_increasing("milestones", self.milestones))
        check_range("gamma", self.gamma, 0, 1, low_open=True)

    def _lr(self, step: int) -> float:
        return self.lr * self.gamma ** bisect_right(self.milestones, step)


@dataclass(frozen=True, kw_only=True)
class ExponentialSchedule(Schedule):
    """``lr * gamma ** (step // interval)``: decay by ``gamma`` every ``interval`` steps.

    ``interval=1`` decays every step (``torch`` ``ExponentialLR`` stepped per batch);
    ``interval=steps_per_epoch`` decays once per epoch, as ``ExponentialLR`` stepped per
    epoch.

    Example:
        >>> ExponentialSchedule(lr=1.0, gamma=0.5).lr_at(3)
        0.125
    """

    lr: float
    gamma: float
    interval: int = 1

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0, low_open=True)
        check_range("gamma", self.gamma, 0, 1, low_open=True)
        check_int("interval", self.interval, 1)

    def _lr(self, step: int) -> float:
        return self.lr * self.gamma ** (step // self.interval)


@dataclass(frozen=True, kw_only=True)
class InverseTimeSchedule(Schedule):
    """``lr / (1 + decay * step)``: the classic 1/t decay of stochastic approximation.

    Example:
        >>> InverseTimeSchedule(lr=1.0, decay=0.5).lr_at(2)
        0.5
    """

    lr: float
    decay: float

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0, low_open=True)
        check_range("decay", self.decay, 0, low_open=True)

    def _lr(self, step: int) -> float:
        return self.lr / (1.0 + self.decay * step)


@dataclass(frozen=True, kw_only=True)
class PolynomialSchedule(Schedule):
    """``end_lr + (lr - end_lr) * (1 - t / total_steps) ** power``, ``t = min(step, total_steps)``.

    Reaches ``end_lr`` at ``total_steps`` and stays there. With ``end_lr=0`` the values are
    those of ``torch.optim.lr_scheduler.PolynomialLR(total_iters=total_steps)``.

    Example:
        >>> PolynomialSchedule(lr=1.0, total_steps=10, power=2.0).lr_at(5)
        0.25
    """

    lr: float
    total_steps: int
    power: float = 1.0
    end_lr: float = 0.0

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0, low_open=True)
        check_int("total_steps", self.total_steps, 1)
        check_range("power", self.power, 0, low_open=True)
        check_range("end_lr", self.end_lr, 0, self.lr)

    def _lr(self, step: int) -> float:
        remaining = 1.0 - min(step, self.total_steps) / self.total_steps
        return self.end_lr + (self.lr - self.end_lr) * remaining**self.power


@dataclass(frozen=True, kw_only=True)
class CosineSchedule(Schedule):
    """Half a cosine from ``lr`` at step 0 to ``min_lr`` at ``total_steps``, then ``min_lr``.

    Same values as ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=total_steps)`` up to
    ``total_steps`` (torch's curve rises again after it; this one stays at ``min_lr``).

    Example:
        >>> CosineSchedule(lr=1.0, total_steps=10, min_lr=0.1).lr_at(5)
        0.55
    """

    lr: float
    total_steps: int
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0, low_open=True)
        check_int("total_steps", self.total_steps, 1)
        check_range("min_lr", self.min_lr, 0, self.lr)

    def _lr(self, step: int) -> float:
        progress = min(step, self.total_steps) / self.total_steps
        return self.min_lr + (self.lr - self.min_lr) * (1 + math.cos(math.pi * progress)) / 2


@dataclass(frozen=True, kw_only=True)
class CosineRestartsSchedule(Schedule):
    """Cosine annealing with warm restarts (SGDR, Loshchilov & Hutter 2017).

    The first cycle lasts ``cycle_steps`` steps, each later one ``cycle_mult`` times longer;
    every cycle starts at ``lr`` and falls towards ``min_lr``. Same values as
    ``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(T_0=cycle_steps, T_mult=cycle_mult)``.

    Example:
        >>> schedule = CosineRestartsSchedule(lr=1.0, cycle_steps=10, cycle_mult=2)
        >>> schedule.lr_at(10), schedule.lr_at(20)  # restarts at 10 and at 10 + 20 = 30
        (1.0, 0.5)
    """

    lr: float
    cycle_steps: int
    cycle_mult: int = 1
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0, low_open=True)
        check_int("cycle_steps", self.cycle_steps, 1)
        check_int("cycle_mult", self.cycle_mult, 1)
        check_range("min_lr", self.min_lr, 0, self.lr)

    def _lr(self, step: int) -> float:
        position, length = self._position(step)
        cosine = 1 + math.cos(math.pi * position / length)
        return self.min_lr + (self.lr - self.min_lr) * cosine / 2

    def _position(self, step: int) -> tuple[int, int]:
        """Return (steps into the current cycle, length of the current cycle), in integers."""
        if self.cycle_mult == 1:
            return step % self.cycle_steps, self.cycle_steps
        start, length = 0, self.cycle_steps
        while step >= start + length:  # cycles grow geometrically: O(log step) iterations
            start, length = start + length, length * self.cycle_mult
        return step - start, length


@dataclass(frozen=True, kw_only=True)
class PiecewiseSchedule(Schedule):
    """A constant lr between boundaries: ``values[i]`` from ``boundaries[i-1]`` to ``boundaries[i]``.

    ``values`` are absolute learning rates (one more than there are boundaries), as in
    Keras' ``PiecewiseConstantDecay``; the step at a boundary already uses the next value.

    Example:
        >>> schedule = PiecewiseSchedule(boundaries=(100,), values=(0.1, 0.01))
        >>> schedule.lr_at(99), schedule.lr_at(100)
        (0.1, 0.01)
    """

    boundaries: tuple[int, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "boundaries", check_increasing("boundaries", self.boundaries))
        values = tuple(
            check_range("every entry of values", value, 0, low_open=True)
            for value in check_list("values", self.values)
        )
        if len(values) != len(self.boundaries) + 1:
            raise ConfigError(
                f"values must have one entry more than boundaries ({len(self.boundaries) + 1}), "
                f"got {len(values)}"
            )
        object.__setattr__(self, "values", values)

    def _lr(self, step: int) -> float:
        return self.values[bisect_right(self.boundaries, step)]
