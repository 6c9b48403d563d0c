"""The ``Schedule`` interface every learning-rate schedule implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from trainwise.errors import CheckpointError, ConfigError


class Schedule(ABC):
    """Learning rate (and optionally momentum) as a function of the optimizer step.

    ``step`` is 0-based and names an update: ``lr_at(0)`` is the lr used for the first
    optimizer step. Pure schedules keep no state, so resuming needs nothing but the step;
    reduce-on-plateau, the one schedule that listens to validation results, keeps its
    counters in ``state_dict()``.

    Subclasses implement ``_lr`` (and ``_momentum`` when they cycle momentum); the public
    methods check the step once so every schedule rejects a negative one the same way.

    Example:
        >>> from trainwise.schedules import CosineSchedule
        >>> schedule = CosineSchedule(lr=0.1, total_steps=100)
        >>> schedule.lr_at(0), schedule.lr_at(100)
        (0.1, 0.0)
    """

    def lr_at(self, step: int) -> float:
        """Return the learning rate for optimizer update number ``step`` (0-based)."""
        return self._lr(_check_step(step))

    def momentum_at(self, step: int) -> float | None:
        """Return the momentum (or Adam's beta1) for update ``step``; None leaves it alone."""
        return self._momentum(_check_step(step))

    def observe(self, metric: float) -> None:
        """Hear one validation result; only reduce-on-plateau acts on it."""

    def state_dict(self) -> dict[str, Any]:
        """Return the state that resume needs beyond the step: empty for pure schedules."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()``; a pure schedule accepts only an empty state."""
        if state:
            raise CheckpointError(
                f"{type(self).__name__} keeps no state, got state with keys {sorted(state)}; "
                "was the checkpoint written with a different schedule?"
            )

    @abstractmethod
    def _lr(self, step: int) -> float:
        """Learning rate at a step already known to be a non-negative integer."""

    def _momentum(self, step: int) -> float | None:
        return None


def _check_step(step: int) -> int:
    if step < 0:
        raise ConfigError(f"step must be >= 0, got {step}")
    return step
