"""What "improvement" means for a monitored metric, and the strict lookup of a monitored value."""

from __future__ import annotations

from trainwise.checks import check_choice
from trainwise.errors import ConfigError

# Metrics where larger is better; everything else (losses, errors) is minimized.
_MAXIMIZED = ("accuracy", "f1", "r2", "top5", "auc", "precision", "recall")


def resolve_mode(monitor: str, mode: str) -> str:
    """``auto`` picks ``max`` for accuracy-like metrics and ``min`` otherwise."""
    check_choice("mode", mode, ("auto", "min", "max"))
    if mode != "auto":
        return mode
    return "max" if any(word in monitor for word in _MAXIMIZED) else "min"


def require_metric(monitor: str, metrics: dict[str, float], who: str) -> float:
    """The monitored value, or a strict error listing what is available (never a silent skip)."""
    if monitor not in metrics:
        available = ", ".join(sorted(metrics)) or "none"
        raise ConfigError(f"{who} monitors {monitor!r}, which this run does not log; available metrics: {available}")
    return metrics[monitor]
