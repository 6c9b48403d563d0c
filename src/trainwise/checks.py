"""The one set of argument checks and the one did-you-mean: one message template (what is wrong,
the value given, what would be right), raised when an object is built, before any training."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Any

from trainwise.errors import ConfigError


def closest(value: Any, choices: Iterable[str]) -> str | None:
    """The choice closest to ``value`` when one is close enough to be a typo of it, else None."""
    matches = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    return matches[0] if matches else None


def did_you_mean(value: Any, choices: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest choice, or ``""`` when none is close."""
    match = closest(value, choices)
    return f"; did you mean {match!r}?" if match else ""


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a ConfigError naming them."""
    options = tuple(choices)
    if value not in options:
        raise ConfigError(
            f"unknown {name} {value!r}{did_you_mean(value, options)} "
            f"(valid: {', '.join(options)})"
        )
    return str(value)


def check_number(name: str, value: Any) -> float:
    """Return ``value`` as a float if it is a finite real number (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_range(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a float if it lies in the interval, else raise a ConfigError.

    Example: ``check_range("gamma", 1.5, 0, 1, low_open=True)`` raises
    ``gamma must be in (0, 1], got 1.5``.
    """
    number = check_number(name, value)
    below = low is not None and (number <= low if low_open else number < low)
    above = high is not None and (number >= high if high_open else number > high)
    if below or above:
        interval = _interval(low, high, low_open, high_open)
        raise ConfigError(f"{name} must be {interval}, got {value!r}")
    return number


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool (a string such as ``"no"`` is not), else raise."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return value


def check_int(name: str, value: Any, minimum: int = 0) -> int:
    """Return ``value`` if it is an integer >= ``minimum``, else raise a ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_list(name: str, values: Any) -> tuple[Any, ...]:
    """Return ``values`` as a tuple if it is a list-like of items (a string is not)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ConfigError(f"{name} must be a list, got {values!r}")
    return tuple(values)


def check_increasing(name: str, values: Any, minimum: int = 1) -> tuple[int, ...]:
    """Return ``values`` as a tuple of strictly increasing integers >= ``minimum``."""
    items = check_list(name, values)
    for item in items:
        check_int(f"every entry of {name}", item, minimum)
    if any(later <= earlier for earlier, later in zip(items, items[1:])):
        raise ConfigError(f"{name} must be strictly increasing, got {list(items)}")
    return items


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if high is None:
        return f"{'>' if low_open else '>='} {low:g}"
    if low is None:
        return f"{'<' if high_open else '<='} {high:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
