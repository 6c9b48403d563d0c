"""Reduce-on-plateau: the one schedule that listens to validation results."""

from __future__ import annotations

import math
from typing import Any

from trainwise.errors import CheckpointError, ConfigError
from trainwise.schedules._base import Schedule
from trainwise.checks import check_choice, check_int, check_range

PLATEAU_MODES = ("min", "max")
THRESHOLD_MODES = ("rel", "abs")
_STATE_KEYS = ("scale", "best", "bad_evaluations", "cooldown_left")


class PlateauSchedule(Schedule):
    """Multiply a base schedule by ``factor`` each time the monitored metric stops improving.

    The trainer chooses the metric and calls ``observe`` after each validation. A result
    improves on the best so far when it beats it by more than ``threshold`` (relative to
    the best with ``threshold_mode='rel'``, absolute with ``'abs'``), in the direction of
    ``mode``. After more than ``patience`` results without improvement the scale is
    multiplied by ``factor``; then ``cooldown`` results are ignored. The lr is
    ``max(base.lr_at(step) * scale, min_lr)``, so ``min_lr`` is a floor under the whole
    schedule. With a constant base the values are those of
    ``torch.optim.lr_scheduler.ReduceLROnPlateau``.

    Args:
        base: the schedule the plateau factor multiplies (a ``ConstantSchedule`` for the
            classic behaviour); its momentum passes through unchanged.
        mode: ``min`` for losses, ``max`` for accuracies.
        factor: multiplier applied at each plateau, in (0, 1).
        patience: validation results without improvement tolerated before a reduction.
        threshold: how much better a result must be to count as an improvement.
        threshold_mode: ``rel`` (a fraction of the best) or ``abs``.
        cooldown: validation results ignored after a reduction.
        min_lr: the lowest lr the schedule returns.

    Example:
        >>> from trainwise.schedules import ConstantSchedule
        >>> schedule = PlateauSchedule(base=ConstantSchedule(lr=0.1), patience=0, factor=0.5)
        >>> for loss in (1.0, 1.0):
        ...     schedule.observe(loss)
        >>> schedule.lr_at(10)
        0.05
    """

    def __init__(
        self,
        *,
        base: Schedule,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float = 0.0,
    ) -> None:
        if not isinstance(base, Schedule):
            raise ConfigError(f"base must be a Schedule, got {type(base).__name__}")
        if isinstance(base, PlateauSchedule):
            raise ConfigError("base of a plateau schedule cannot itself be a plateau schedule")
        self.base = base
        self.mode = check_choice("mode", mode, PLATEAU_MODES)
        self.factor = check_range("factor", factor, 0, 1, low_open=True, high_open=True)
        self.patience = check_int("patience", patience, 0)
        self.threshold = check_range("threshold", threshold, 0)
        self.threshold_mode = check_choice("threshold_mode", threshold_mode, THRESHOLD_MODES)
        self.cooldown = check_int("cooldown", cooldown, 0)
        self.min_lr = check_range("min_lr", min_lr, 0)
        self.scale = 1.0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.bad_evaluations = 0
        self.cooldown_left = 0

    def __repr__(self) -> str:
        return (
            f"PlateauSchedule(base={self.base!r}, mode={self.mode!r}, factor={self.factor}, "
            f"patience={self.patience}, threshold={self.threshold}, "
            f"threshold_mode={self.threshold_mode!r}, cooldown={self.cooldown}, "
            f"min_lr={self.min_lr})"
        )

    def observe(self, metric: float) -> None:
        """Hear one validation result; reduce the scale when patience runs out."""
        current = float(metric)
        if self._is_improvement(current):
            self.best = current
            self.bad_evaluations = 0
        else:
            self.bad_evaluations += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.bad_evaluations = 0  # results inside the cooldown do not count
        if self.bad_evaluations > self.patience:
            self.scale *= self.factor
            self.cooldown_left = self.cooldown
            self.bad_evaluations = 0

    def _is_improvement(self, current: float) -> bool:
        if self.mode == "min":
            if self.threshold_mode == "rel":
                return current < self.best * (1.0 - self.threshold)
            return current < self.best - self.threshold
        if self.threshold_mode == "rel":
            return current > self.best * (self.threshold + 1.0)
        return current > self.best + self.threshold

    def _lr(self, step: int) -> float:
        return max(self.base.lr_at(step) * self.scale, self.min_lr)

    def _momentum(self, step: int) -> float | None:
        return self.base.momentum_at(step)

    def state_dict(self) -> dict[str, Any]:
        """Return the scale and the improvement counters."""
        return {key: getattr(self, key) for key in _STATE_KEYS}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the scale and counters saved by ``state_dict()``."""
        missing = [key for key in _STATE_KEYS if key not in state]
        unknown = sorted(set(state) - set(_STATE_KEYS))
        if missing or unknown:
            raise CheckpointError(
                f"plateau schedule state must have keys {list(_STATE_KEYS)}, "
                f"missing {missing}, unknown {unknown}"
            )
        self.scale = float(state["scale"])
        self.best = float(state["best"])
        self.bad_evaluations = int(state["bad_evaluations"])
        self.cooldown_left = int(state["cooldown_left"])
