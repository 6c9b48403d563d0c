"""Numbers as a person reads them: counts with separators, accuracies in percent, durations.

The key (a summary.json field or a metric name) picks the format, so the summary table and
the final metrics table show the same quantity the same way.
"""

from __future__ import annotations

import json
import math
from typing import Any

MISSING = "—"
_MAX_TEXT = 200


def format_duration(seconds: float) -> str:
    """Seconds as ``12.3 s``, ``2 min 05 s`` or ``1 h 02 min``.

    Example:
        >>> format_duration(125.4)
        '2 min 05 s'
    """
    if round(seconds, 1) < 60:
        return f"{seconds:.1f} s"
    if round(seconds) < 3600:
        whole_seconds = round(seconds)
        return f"{whole_seconds // 60} min {whole_seconds % 60:02d} s"
    whole_minutes = round(seconds / 60)
    return f"{whole_minutes // 60} h {whole_minutes % 60:02d} min"


def format_value(key: str, value: Any) -> str:
    """Format one figure for display; ``key`` names what it is.

    Accuracies in [0, 1] become percent, ``*_seconds`` a duration, ``*_per_second`` a rate,
    other floats four significant digits, integers get thousands separators, nan and inf
    stay visible as ``nan``/``inf``, lists and mappings become compact JSON.

    Example:
        >>> format_value("test_accuracy", 0.97222)
        '97.22%'
        >>> format_value("steps", 12500)
        '12,500'
        >>> format_value("best_val_loss", 0.0812345)
        '0.08123'
    """
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return _format_float(key, value)
    if isinstance(value, (list, dict)):
        value = json.dumps(value, separators=(", ", ": "), default=str)
    text = str(value)
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def _format_float(key: str, value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if "accuracy" in key and 0.0 <= value <= 1.0:
        return f"{100 * value:.2f}%"
    if key.endswith("_seconds") and value >= 0:
        return format_duration(value)
    if key.endswith("per_second"):
        rate = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
        return f"{rate}/s"
    return f"{value:.4g}"


def is_number(value: Any) -> bool:
    """Whether a value is shown as a number (right-aligned in tables)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
