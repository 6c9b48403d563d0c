"""Warmup: a combinator that ramps the lr up in front of any schedule."""

from __future__ import annotations

from typing import Any

from trainwise.errors import ConfigError
from trainwise.schedules._base import Schedule
from trainwise.checks import check_choice, check_int, check_range

WARMUP_MODES = ("linear", "exponential")


class Warmup(Schedule):
    """Ramp from ``start_lr`` to the wrapped schedule's value at ``warmup_steps``.

    The wrapped schedule keeps its own clock from step 0; warmup only overrides the first
    ``warmup_steps`` steps (nanoGPT style). So a cosine over ``total_steps`` still ends at
    ``min_lr`` exactly at ``total_steps``, milestones stay where they were written, and the
    lr is continuous: step ``warmup_steps`` is the first step of the wrapped schedule,
    which is also where the ramp was heading. The ramp is linear, or exponential
    (geometric, which needs ``start_lr > 0``). Momentum, ``observe`` and the state go
    straight to the wrapped schedule, so warmup in front of reduce-on-plateau works: a
    plateau reduction made during warmup lowers the ramp's target with it. With a
    constant schedule, linear warmup has the values of
    ``torch.optim.lr_scheduler.LinearLR(start_factor=start_lr / lr, total_iters=warmup_steps)``.

    Example:
        >>> from trainwise.schedules import CosineSchedule
        >>> schedule = Warmup(CosineSchedule(lr=1.0, total_steps=100), warmup_steps=10)
        >>> schedule.lr_at(0), schedule.lr_at(5) == schedule.lr_at(10) / 2
        (0.0, True)
    """

    def __init__(
        self,
        schedule: Schedule,
        *,
        warmup_steps: int,
        start_lr: float = 0.0,
        mode: str = "linear",
    ) -> None:
        if not isinstance(schedule, Schedule):
            raise ConfigError(f"Warmup wraps a Schedule, got {type(schedule).__name__}")
        self.schedule = schedule
        self.warmup_steps = check_int("warmup_steps", warmup_steps, 1)
        self.mode = check_choice("warmup mode", mode, WARMUP_MODES)
        if self.mode == "exponential":
            name = "start_lr of an exponential warmup"
            self.start_lr = check_range(name, start_lr, 0, low_open=True)
        else:
            self.start_lr = check_range("start_lr", start_lr, 0)

    def __repr__(self) -> str:
        return (
            f"Warmup({self.schedule!r}, warmup_steps={self.warmup_steps}, "
            f"start_lr={self.start_lr}, mode={self.mode!r})"
        )

    def _lr(self, step: int) -> float:
        if step >= self.warmup_steps:
            return self.schedule.lr_at(step)
        target = self.schedule.lr_at(self.warmup_steps)
        progress = step / self.warmup_steps
        if self.mode == "linear":
            return self.start_lr + (target - self.start_lr) * progress
        return self.start_lr * (target / self.start_lr) ** progress

    def _momentum(self, step: int) -> float | None:
        return self.schedule.momentum_at(step)

    def observe(self, metric: float) -> None:
        """Pass a validation result to the wrapped schedule."""
        self.schedule.observe(metric)

    def state_dict(self) -> dict[str, Any]:
        """Return the wrapped schedule's state (warmup itself has none)."""
        return self.schedule.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the wrapped schedule's state."""
        self.schedule.load_state_dict(state)
