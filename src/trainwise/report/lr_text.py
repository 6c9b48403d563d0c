"""The LR range test's result in words, for the report: never raw JSON.

The result is summary.json's ``lr_finder`` object (``suggestion``, ``rule``, ``suggestions``
by rule, or ``reused_from_run`` on a resumed run) or, for a bare range test, lr_find.json,
which has the same keys plus ``reason``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def format_lr(value: Any) -> str:
    """A learning rate in two significant digits, the exponent without padding.

    Example:
        >>> format_lr(0.0032), format_lr(0.005), format_lr(0.0112)
        ('3.2e-3', '5e-3', '1.1e-2')
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "none"
    if value == 0:
        return "0"
    mantissa, exponent = f"{value:.1e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def lr_finder_text(info: Mapping[str, Any]) -> str:
    """One sentence: the suggestion, its rule, and what the other rules said.

    Example:
        >>> lr_finder_text({"suggestion": 0.0032, "rule": "valley",
        ...                 "suggestions": {"valley": 0.0032, "steepest": 0.011, "minimum": 0.005}})
        'suggested lr 3.2e-3 by the valley rule; other rules: steepest 1.1e-2, minimum 5e-3'
    """
    if info.get("reused_from_run"):
        return ("lr reused from the run's first start: a resumed run keeps the lr the range test "
                "chose then")
    rule = info.get("rule")
    suggestion = info.get("suggestion")
    reason = info.get("reason")
    if suggestion is None:
        text = "the range test gave no suggestion"
        return f"{text}: {reason}" if reason else text
    text = f"suggested lr {format_lr(suggestion)}" + (f" by the {rule} rule" if rule else "")
    averaged = info.get("tests_averaged") or len(info.get("repeats") or [])
    if averaged:
        text += f" on the mean of {averaged} range tests over different batch orders (the first test gave no suggestion)"
    if info.get("unread_curve"):  # read under where the retried test diverged (issue 22, round 7)
        lrs = info.get("lrs")
        diverged = info.get("diverged_at", lrs[-1] if isinstance(lrs, list) and lrs else None)
        decades = info.get("decades_under_divergence")
        how_far = f"{decades:g} decades of lr" if isinstance(decades, (int, float)) else "decades of lr"
        text += (f", read {how_far} under where the retried range test diverged (lr {format_lr(diverged)}): its "
                 f"curve gave no reading ({info['unread_curve']})")
    if info.get("calm_edge"):
        text += (" at the edge of the loss's floor itself: a slow learner (the first test gave no suggestion) whose "
                 "loss did not diverge near it")
    suggestions = info.get("suggestions")
    others = []
    if isinstance(suggestions, Mapping):
        others = [f"{name} {format_lr(value)}" for name, value in suggestions.items() if name != rule]
    if others:
        text += "; other rules: " + ", ".join(others)
    return text
