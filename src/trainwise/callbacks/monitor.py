"""The shared "is this an improvement?" rule for anything that watches a metric."""

from __future__ import annotations

import math
from typing import Optional

from trainwise.errors import ConfigError

# Metrics where larger is better; everything else (losses, errors) is minimized.
_MAXIMIZED = ("accuracy", "f1", "r2", "top5")


def resolve_mode(monitor: str, mode: str) -> str:
    """``auto`` picks ``max`` for accuracy-like metrics and ``min`` otherwise."""
    if mode not in ("auto", "min", "max"):
        raise ConfigError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    return "max" if any(word in monitor for word in _MAXIMIZED) else "min"


class MetricTracker:
    """Remembers the best value of one metric and says whether a new value improves on it.

    A non-finite value is never an improvement, so NaN can never become "best".

    Args:
        monitor: metric name, e.g. ``val_loss``.
        mode: ``min``, ``max`` or ``auto``.
        min_delta: an improvement must beat the best by more than this (absolute).
    """

    def __init__(self, monitor: str, mode: str = "auto", min_delta: float = 0.0) -> None:
        if min_delta < 0:
            raise ConfigError(f"min_delta must be >= 0, got {min_delta}")
        self.monitor = monitor
        self.mode = resolve_mode(monitor, mode)
        self.min_delta = min_delta
        self.best: Optional[float] = None
        self.best_epoch: Optional[int] = None

    def is_improvement(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, value: float, epoch: int) -> bool:
        improved = self.is_improvement(value)
        if improved:
            self.best, self.best_epoch = value, epoch
        return improved

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]


def require_metric(monitor: str, metrics: dict[str, float], who: str) -> float:
    """The monitored value, or a strict error listing what is available (never a silent skip)."""
    if monitor not in metrics:
        available = ", ".join(sorted(metrics)) or "none"
        raise ConfigError(f"{who} monitors {monitor!r}, which this run does not log; available metrics: {available}")
    return metrics[monitor]
