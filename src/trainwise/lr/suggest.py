"""Reading a learning rate off a range-test curve: the suggestion rules and the curve checks.

``suggest(lrs, losses, rule)`` is a pure function of the recorded curve, kept apart from the
code that runs the test (``trainwise.lr.finder``) so that a rule can be studied, tested and
benchmarked on saved curves without training anything.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from trainwise.checks import closest
from trainwise.errors import ConfigError

__all__ = [
    "CALM_EDGE_BACKOFF",
    "CALM_DECADES",
    "CALM_STOP_DECADES",
    "DIVERGENCE_DECADES",
    "EDGE_BACKOFF",
    "EDGE_RISE",
    "EDGE_WINDOW_DECADES",
    "MINIMUM_BACKOFF",
    "MIN_POINTS",
    "MIN_RELATIVE_DROP",
    "STEEPEST_EDGE_FRACTION",
    "SUGGESTION_RULES",
    "VALLEY_POSITION",
    "check_rule",
    "divergence_reading",
    "smooth_in_decades",
    "suggest",
    "unusable_curve_reason",
]

SUGGESTION_RULES = ("edge", "valley", "steepest", "minimum")

# Below this many recorded points no rule can tell noise from a trend.
MIN_POINTS = 10
# A curve whose smoothed loss never falls by 5% (relative to its peak before the minimum)
# shows no learning-rate range where training works: a suggestion would be noise.
MIN_RELATIVE_DROP = 0.05
# The steepest rule skips this fraction of points at each end: the first smoothed points
# rest on few samples and the last ones are the divergence itself.
STEEPEST_EDGE_FRACTION = 0.1
# Where the valley rule picks its point among the descending points of the longest valley,
# from the first (0) to the last (1). fastai lands about halfway; the smoothed curve lags the
# raw loss, and the suggestion is the peak lr of 1cycle, which is held only briefly. On the
# recipes of benchmarks/lr_suggestion.py (AdamW + 1cycle, range tests of seeds 0-4), 2/3
# suggested ~5e-3 on MNIST-1D, 1 point under its best lr; 4/5 overshot on digits and MNIST
# (~0.6 point); 3/4 suggests digits ~1e-2, MNIST ~5e-3, MNIST-1D ~1.3e-2, all near the best.
# Held out since (other models on each data set, and a table): within 1 point of the best
# sweep lr on 4 of 5 recipes; an LSTM on MNIST-1D gets 3.1 points less (needs ~3e-2, gets
# ~1e-2). No position serves it and the others together (read off the same curves and
# interpolated in the sweeps: 4/5 costs the GRU 4.8 points, 0.85 costs digits and MNIST ~2),
# so 3/4 stays. (Since issue 22's round 3 the default rule is ``edge``, which gives that LSTM ~1.6e-2.)
VALLEY_POSITION = 3 / 4
# The edge rule (issue 22, round 3): 1cycle's peak lr is where the loss stops improving and starts to rise
# (Smith 2018, "A disciplined approach...", 4.1), read off the raw losses smoothed by a centered Gaussian whose
# width is in decades of lr, not in steps: the range test's moving average (0.98 a step) lags by ~50 steps,
# 4 decades of a 100-step test, 8 of the budget's 50-step one, and 2 of a 200-step retry, so where it puts the
# descent depends on the test's length. The floor is the stretch after the minimum where the loss stays within
# EDGE_RISE of the curve's drop above it; its upper edge, backed off by EDGE_BACKOFF, is the suggestion (the
# minimum of a flat floor is noise; where the floor ends is not). Shaped on the recipes of
# benchmarks/lr_suggestion.py marked "valley position", "retry" and "recurrent reading" (digits, MNIST and
# MNIST-1D MLP/CNN; GRU on MNIST-1D; LSTM and GRU on digits' rows; LSTM on MNIST's rows), never on the held-out
# ones that report the figure (among them the LSTM on MNIST-1D): see benchmarks/README.md.
EDGE_WINDOW_DECADES = 0.4
EDGE_RISE = 0.15
EDGE_BACKOFF = 3.0
# A slow learner's floor that ends without a cliff (issue 22, round 5): when a curve needed the retry (it sat at its
# chance loss through the budgeted test) and the loss, once past the floor's edge, never diverged for CALM_DECADES
# decades of lr, that edge is where progress stops, not where training breaks, and it is read without backoff. The
# two MNIST-1D slow learners among the shaping recipes part exactly there: a GRU 64's retried tests diverge 1.4-1.8
# decades past the edge (the stop rule: 4x the best loss) and a 1cycle run at 3x its reading falls off a cliff
# (5.6e-2: 84.5%), while two LSTM layers of 32 never diverge up to lr 10 (their loss creeps from 1.9 to 2.0-2.9:
# saturating gates) and train best near the edge itself: 95.8% at it against 92.0% at edge / 3 (sweep best 96.4% at
# 3e-2). Held out, the LSTM 64 on MNIST-1D, seeds 0-7: 96.6% against 96.9% at its best fixed lr (89.2% with the
# backoff of 3): benchmarks/README.md, docs/notes/issue-22-r5-lr.md.
CALM_EDGE_BACKOFF = 1.0
CALM_DECADES = 1.0
# A retried test that diverges only far past its floor's edge is calm too (round 6): the cliff is too far from the
# edge to be what ends progress there. Where the stop rule fired, in decades of lr past the edge: a GRU 64 on
# MNIST-1D 1.41-1.81 (39 tests, 12 seeds; its cliff is real: 3x its reading fails), an LSTM 128's 2.9 and 2.9 (seeds
# 0 and 2: read at edge / 3, 67.7% and 90.4% against 98.0% at its best lr; its seed 1, which never diverged, 97.1%
# at its edge). 2.5 sits between them with 0.7 decades to the GRU's farthest (docs/notes/issue-22-r6.md).
CALM_STOP_DECADES = 2.5
# A retried test whose curve still gives no reading (its loss fell under MIN_RELATIVE_DROP before the stop rule ended
# it: a slow learner near its chance loss) is read this many decades of lr under where it diverged (round 7), not at
# a fixed fallback lr that knows nothing of the model. Shaped on the GRU 64 on MNIST-1D, the one shaping recipe whose
# retried tests all diverge: its 36 tests stopped at lr 1.08-3.29 (log10 0.03-0.52) and it trains to 97.2-97.5% from
# 1e-2 to 3e-2 (70.1% at 3e-3, 81.6% at 0.1): 2 decades under the stop lands every one of its tests in that band.
DIVERGENCE_DECADES = 2.0
# The minimum rule backs off tenfold from the loss minimum, which sits at the edge of
# divergence (fastai's "minimum / 10").
MINIMUM_BACKOFF = 10.0


def check_rule(rule: str) -> None:
    """Raise ConfigError with a did-you-mean unless ``rule`` is one of ``SUGGESTION_RULES``."""
    if rule not in SUGGESTION_RULES:
        match = closest(rule, SUGGESTION_RULES)
        hint = f"did you mean {match!r}?" if match else f"expected one of {SUGGESTION_RULES}"
        raise ConfigError(f"unknown suggestion rule {rule!r}; {hint}")


def unusable_curve_reason(losses: np.ndarray) -> str | None:
    """Say why no rule can read this curve, or None when it has a usable descent."""
    if len(losses) < MIN_POINTS:
        return f"too few points recorded: {len(losses)}, need >= {MIN_POINTS}"
    lowest = int(np.argmin(losses))
    peak = float(np.max(losses[: lowest + 1]))
    scale = max(abs(peak), 1e-12)
    drop = (peak - float(losses[lowest])) / scale
    rise = (float(np.max(losses[lowest:])) - float(losses[lowest])) / scale
    if drop >= MIN_RELATIVE_DROP:
        return None
    if rise >= MIN_RELATIVE_DROP:
        return (
            f"loss diverged without first falling: it dropped {drop:.1%} (< "
            f"{MIN_RELATIVE_DROP:.0%}) then rose {rise:.0%}; try a lower start_lr or check "
            "the model and data"
        )
    return (
        f"loss curve is flat: it dropped {drop:.1%} and rose {rise:.1%} (both < "
        f"{MIN_RELATIVE_DROP:.0%}); widen the lr range or check that the model can learn"
    )


def _longest_descent(losses: np.ndarray) -> list[int]:
    """Indices of the longest strictly decreasing subsequence of losses (the valley).

    A subsequence, not a contiguous run: noise in the smoothed loss breaks every run, while
    the points that keep descending still trace the valley.
    """
    n = len(losses)
    length = np.ones(n, dtype=np.int64)
    previous = np.full(n, -1, dtype=np.int64)
    for i in range(1, n):
        higher = np.flatnonzero(losses[:i] > losses[i])
        if len(higher):
            best = higher[np.argmax(length[higher])]
            length[i], previous[i] = length[best] + 1, best
    members = [int(np.argmax(length))]
    while previous[members[-1]] >= 0:
        members.append(int(previous[members[-1]]))
    return members[::-1]


def smooth_in_decades(lrs: np.ndarray, losses: np.ndarray, sigma: float = EDGE_WINDOW_DECADES) -> np.ndarray:
    """Losses smoothed by a centered Gaussian of ``sigma`` decades of lr (no lag; the ends average
    the points they have). Points beyond 3 sigma are left out, so a long test costs O(n * window).

    Example:
        >>> smooth_in_decades(np.array([1e-3, 1e-2, 1e-1]), np.array([1.0, 2.0, 3.0]), 0.1).round(3).tolist()
        [1.0, 2.0, 3.0]
    """
    x = np.log10(lrs)
    smoothed = np.empty(len(losses))
    low = np.searchsorted(x, x - 3 * sigma)
    high = np.searchsorted(x, x + 3 * sigma, side="right")
    for i in range(len(losses)):
        weights = np.exp(-0.5 * ((x[low[i]:high[i]] - x[i]) / sigma) ** 2)
        smoothed[i] = weights @ losses[low[i]:high[i]] / weights.sum()
    return smoothed


def _floor_edge(losses: np.ndarray) -> int | None:
    """Index of the floor's upper edge: the last point, from the minimum on, before the loss rises more
    than ``EDGE_RISE`` of its drop (from its highest point before the minimum) above the minimum; None
    when it never does (the test ended before the edge: a loss still falling, or a floor at zero)."""
    lowest = int(np.argmin(losses))
    drop = float(np.max(losses[: lowest + 1]) - losses[lowest])
    above = np.flatnonzero(losses[lowest:] > losses[lowest] + EDGE_RISE * drop)
    return lowest + int(above[0]) - 1 if len(above) else None


def _suggest_index(log_lrs: np.ndarray, losses: np.ndarray, rule: str) -> int:
    """Index of the point the rule picks; the minimum rule's backoff is applied later."""
    if rule == "valley":
        valley = _longest_descent(losses)
        return valley[round(VALLEY_POSITION * (len(valley) - 1))]
    if rule == "steepest":
        edge = max(1, int(len(losses) * STEEPEST_EDGE_FRACTION))
        slope = np.gradient(losses, log_lrs)
        # Only the descent before the minimum counts: a dip after it is noise.
        stop = max(min(int(np.argmin(losses)), len(losses) - edge), edge + 1)
        return edge + int(np.argmin(slope[edge:stop]))
    return int(np.argmin(losses))


def suggest(
    lrs: Iterable[float], losses: Iterable[float], rule: str, raw_losses: Iterable[float] | None = None,
    *, edge_backoff: float = EDGE_BACKOFF,
) -> tuple[float | None, str | None]:
    """Read a learning rate off a range-test curve.

    Args:
        lrs: Learning rates, positive and increasing.
        losses: Smoothed loss at each learning rate, finite (the range test's moving average): whether
            the curve is usable is judged on these.
        rule: ``edge`` (the upper edge of the loss's floor, backed off by ``EDGE_BACKOFF``, on
            the raw losses smoothed over ``EDGE_WINDOW_DECADES`` decades), ``valley`` (3/4 of the way down the longest descending stretch, after fastai),
            ``steepest`` (most negative slope of loss against log lr before the minimum,
            ignoring the first and last 10% of points) or ``minimum`` (lr of the lowest
            loss, divided by 10).
        raw_losses: The unsmoothed loss at each learning rate, which the ``edge`` rule reads
            (it reads ``losses`` when these are not given). A curve whose loss never rises past
            its floor shows no edge: the ``edge`` rule then gives the ``valley`` rule's lr.

    Returns:
        ``(lr, None)``, or ``(None, reason)`` when the curve has too few points, is flat,
        or diverges without first falling.

    Example:
        >>> lrs = np.geomspace(1e-6, 1.0, 50)
        >>> suggest(lrs, (np.log10(lrs) + 2) ** 2, "minimum")[0] < 1e-2
        True
    """
    check_rule(rule)
    lr_array = np.asarray(list(lrs), dtype=np.float64)
    loss_array = np.asarray(list(losses), dtype=np.float64)
    if lr_array.shape != loss_array.shape:
        raise ConfigError(
            f"lrs and losses must have the same length, got {len(lr_array)} and {len(loss_array)}"
        )
    bad_lrs = ~np.isfinite(lr_array) | (lr_array <= 0) | (np.diff(lr_array, prepend=0.0) <= 0)
    if bad_lrs.any():
        index = int(np.argmax(bad_lrs))
        raise ConfigError(
            f"lrs must be finite, > 0 and increasing, got {lr_array[index]} at index {index}"
        )
    _check_finite(loss_array, "losses")
    reason = unusable_curve_reason(loss_array)
    if reason is not None:
        return None, reason
    if rule == "edge":
        raw = loss_array if raw_losses is None else _finite_like(raw_losses, loss_array, "raw_losses")
        edge = _floor_edge(smooth_in_decades(lr_array, raw))
        if edge is not None:
            return float(lr_array[edge]) / edge_backoff, None
        rule = "valley"  # no edge in the curve: the last lr tested / 3 could be anything, the valley is read
    index = _suggest_index(np.log(lr_array), loss_array, rule)
    lr = float(lr_array[index])
    return (lr / MINIMUM_BACKOFF if rule == "minimum" else lr), None


def calm_edge(lrs: Iterable[float], raw_losses: Iterable[float], reached_end: bool) -> bool:
    """Whether a curve's floor ends without a cliff near it: past the floor's edge, the loss stayed under
    ``diverge_factor`` times its best for ``CALM_DECADES`` decades of lr to the end of a test that ran all its steps
    (``reached_end``), or for ``CALM_STOP_DECADES`` decades before the stop rule ended it. False when the curve
    has no edge.

    Example:
        >>> lrs = np.geomspace(1e-4, 10, 60)
        >>> creep = np.where(lrs < 1e-2, 2.3 - 0.1 * np.log10(lrs / 1e-4), 2.1 + 0.2 * np.log10(lrs / 1e-2))
        >>> near = lrs <= 1.0  # a test stopped 2 decades past the edge (~1e-2): a cliff near it
        >>> calm_edge(lrs, creep, True), calm_edge(lrs, creep, False), calm_edge(lrs[near], creep[near], False)
        (True, True, False)
    """
    lr_array, raw = np.asarray(list(lrs), dtype=np.float64), np.asarray(list(raw_losses), dtype=np.float64)
    if len(raw) < MIN_POINTS:
        return False
    edge = _floor_edge(smooth_in_decades(lr_array, raw))
    if edge is None:
        return False
    decades = CALM_DECADES if reached_end else CALM_STOP_DECADES
    return bool(lr_array[-1] >= lr_array[edge] * 10 ** decades)


def divergence_reading(lrs: Iterable[float], losses: Iterable[float], stopped: bool) -> float | None:
    """The lr ``DIVERGENCE_DECADES`` decades under the last one a range test recorded, when the test was ended early
    (``stopped``: the stop rule, or a non-finite loss) after at least ``MIN_POINTS`` steps and its smoothed loss had
    risen at least ``MIN_RELATIVE_DROP`` above its lowest point by then; None otherwise: a test that ran all its steps
    never diverged, and a flat curve that ends in a NaN says the model does not learn at any lr, which no reading
    should hide.

    Example:
        >>> lrs = np.geomspace(1e-6, 0.8, 40)
        >>> dip_then_rise = np.concatenate([np.linspace(2.3, 2.25, 35), [2.4, 3, 5, 8, 10]])
        >>> divergence_reading(lrs, dip_then_rise, True), divergence_reading(lrs, dip_then_rise, False)
        (0.008, None)
        >>> divergence_reading(lrs, np.full(40, 2.3), True) is None  # flat, then a non-finite loss
        True
    """
    lr_array, loss_array = np.asarray(list(lrs), dtype=np.float64), np.asarray(list(losses), dtype=np.float64)
    if not stopped or len(lr_array) < MIN_POINTS or len(loss_array) != len(lr_array):
        return None
    lowest = float(loss_array.min())
    if lowest <= 0 or float(loss_array[int(np.argmin(loss_array)):].max()) < lowest * (1 + MIN_RELATIVE_DROP):
        return None
    return float(lr_array[-1] / 10 ** DIVERGENCE_DECADES)


def _finite_like(values: Iterable[float], like: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(list(values), dtype=np.float64)
    if array.shape != like.shape:
        raise ConfigError(f"{name} must have the length of losses, got {len(array)} and {len(like)}")
    return _check_finite(array, name)


def _check_finite(array: np.ndarray, name: str) -> np.ndarray:
    """``array`` when every value is finite, else one ConfigError naming the first that is not."""
    if not np.isfinite(array).all():
        index = int(np.argmax(~np.isfinite(array)))
        raise ConfigError(f"{name} must be finite, got {array[index]} at index {index}")
    return array
