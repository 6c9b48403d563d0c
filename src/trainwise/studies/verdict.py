"""The honest verdict: a difference between two variants is called real only when it holds across
seeds.

Runs of two variants at the same seed share the data split, the model's initial random state and
the batch order, so they are compared in pairs: ``d_k = metric(a, seed k) - metric(b, seed k)``
(signed so that positive means ``a`` is better). The difference is **real** when both

- the bootstrap 95% interval of the mean of ``d`` (10,000 resamples of the seeds) excludes 0, and
- a paired t-test on ``d`` gives p < 0.05 (the exact sign test when ``d`` is constant);

otherwise it is **within noise**. With one seed nothing can be told apart. Each variant is compared
with the best variant of its group, and the p-values of all of a study's comparisons are corrected
together by Holm's step-down method (Holm 1979), so that the chance of calling any difference real
by luck stays under 5% however many variants the study has.

Example:
    >>> paired_comparison([0.9, 0.8, 0.85], [0.8, 0.9, 0.85], mode="max")["verdict"]
    'within noise'
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np

RESAMPLES = 10_000
ALPHA = 0.05
MIN_SEEDS = 3  # with 2 seeds the bootstrap has 3 distinct means and the t-test 1 degree of freedom: too few to tell
TEST = ("paired over seeds: real when the bootstrap 95% interval of the mean difference (10,000 resamples) "
        "excludes 0 and a paired t-test (a sign test when every seed gives the same difference) gives p < 0.05 "
        "after Holm's correction across all of the study's comparisons, with at least 3 seeds; otherwise within "
        "noise")


def paired_comparison(a: Sequence[float], b: Sequence[float], *, mode: str) -> dict[str, Any]:
    """Compare ``a`` and ``b`` (one value per seed, same order); ``mode`` ``max`` when higher is
    better. Returns ``mean_diff`` (positive: ``a`` better), ``ci`` (95%), ``p``, ``n`` and ``verdict``
    (``real`` or ``within noise``). Pairs where either value is missing or not finite are left out."""
    pairs = [(x, y) for x, y in zip(a, b) if _finite(x) and _finite(y)]
    sign = 1.0 if mode == "max" else -1.0
    d = np.array([sign * (x - y) for x, y in pairs], dtype=float)
    n = len(d)
    if n < MIN_SEEDS:
        return {"n": n, "mean_diff": float(d.mean()) if n else None, "ci": None, "p": None,
                "verdict": "within noise", "why": f"{n} seed(s): at least {MIN_SEEDS} are needed to call a difference real"}
    rng = np.random.default_rng(0)
    means = d[rng.integers(0, n, size=(RESAMPLES, n))].mean(axis=1)
    low, high = (float(v) for v in np.percentile(means, [2.5, 97.5]))
    p = t_test_p(d)
    real = (low > 0 or high < 0) and p < ALPHA
    return {"n": n, "mean_diff": float(d.mean()), "ci": [low, high], "p": p,
            "verdict": "real" if real else "within noise"}


def t_test_p(d: np.ndarray) -> float:
    """Two-sided p of a paired t-test on the differences ``d``. When every seed gives the same
    difference (accuracy on a small split moves in whole samples) the t statistic is undefined and
    the exact sign test's p, ``2 * 0.5**n``, stands in: one sample's worth at 3 seeds is not real."""
    mean, sd, n = float(d.mean()), float(d.std(ddof=1)), len(d)
    if sd <= 1e-9 * max(1.0, abs(mean)):  # the same difference up to float rounding (0.0139 = 2/144 every time)
        return 1.0 if mean == 0.0 else min(1.0, 2 * 0.5**n)
    from scipy import stats  # installed with scikit-learn

    t = mean / (sd / math.sqrt(n))
    return float(2 * stats.t.sf(abs(t), df=n - 1))


def judge(variants: list[dict[str, Any]], groups: dict[str, list[str]], *, mode: str) -> list[dict[str, Any]]:
    """Compare each variant with the best (by mean final value) of each group it is in, then
    correct the p-values across every comparison (Holm).

    ``variants``: ``[{"name", "label", "finals": {seed: value}, "final": {"mean"}}]``;
    ``groups``: ``{group title: [variant names]}``. Returns one comparison per pair."""
    by_name = {v["name"]: v for v in variants}
    comparisons = []
    for title, names in groups.items():
        ranked = [by_name[n] for n in names if by_name[n]["final"]["mean"] is not None]
        if len(ranked) < 2:
            continue
        best = max(ranked, key=lambda v: v["final"]["mean"] * (1 if mode == "max" else -1))
        for other in ranked:
            if other is best:
                continue
            a, b = best.get("scored", best["finals"]), other.get("scored", other["finals"])
            seeds = sorted(set(a) & set(b))
            result = paired_comparison([a[s] for s in seeds], [b[s] for s in seeds], mode=mode)
            comparisons.append({"group": title, "better": best["name"], "other": other["name"], **result})
    for c, p_holm in zip(comparisons, holm([c["p"] for c in comparisons])):
        c["p_holm"] = p_holm
        if c["verdict"] == "real" and not (p_holm is not None and p_holm < ALPHA):
            c["verdict"], c["why"] = "within noise", f"p = {c['p']:.2g} but {p_holm:.2g} after Holm's correction"
    return comparisons


def holm(p_values: Sequence[Any]) -> list[Any]:
    """Holm's step-down adjusted p-values (None stays None): the k-th smallest of m p-values is
    multiplied by m - k + 1, and the adjusted values are made non-decreasing.

    Example:
        >>> holm([0.01, 0.04, 0.03])
        [0.03, 0.06, 0.06]
    """
    present = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m, running = len(present), 0.0
    adjusted: list[Any] = [None] * len(p_values)
    for k, (p, i) in enumerate(present):
        running = max(running, min(1.0, (m - k) * p))
        adjusted[i] = round(running, 12)
    return adjusted


def mean_interval(values: Sequence[float]) -> Optional[list[float]]:
    """The 95% t-interval of the mean of ``values`` (one per seed); None with fewer than 2."""
    finite = [v for v in values if _finite(v)]
    n = len(finite)
    if n < 2:
        return None
    from scipy import stats

    mean, sd = float(np.mean(finite)), float(np.std(finite, ddof=1))
    half = float(stats.t.ppf(1 - ALPHA / 2, df=n - 1)) * sd / math.sqrt(n)
    return [mean - half, mean + half]


# Figures that are shares, in [0, 1]: a mean's interval past those bounds is cut at them.
UNIT_FIGURES = ("accuracy", "acc", "f1", "precision", "recall", "iou", "dice", "auc")


def metric_bounds(metric: str) -> Optional[tuple[float, float]]:
    """``(0, 1)`` for a share (``val_accuracy``, ``val_macro_f1``, ``val_top2_accuracy``); None for an
    unbounded figure (any loss, ``val_dice_loss`` too), whose t-interval is kept as it is.

    Example:
        >>> metric_bounds("val_accuracy"), metric_bounds("val_loss")
        ((0.0, 1.0), None)
    """
    words = metric.lower().replace("-", "_").split("_")
    if "loss" in words or not any(word in UNIT_FIGURES for word in words):
        return None
    return (0.0, 1.0)


def bounded_interval(values: Sequence[float], bounds: Optional[tuple[float, float]]
                     ) -> tuple[Optional[list[float]], bool]:
    """The 95% t-interval of the mean (``mean_interval``) cut at ``bounds``, and whether it was cut:
    a t-interval of three accuracies near 1 can reach 1.37, which no accuracy can.

    Example:
        >>> ci, clipped = bounded_interval([0.6, 1.0, 1.0], (0.0, 1.0))
        >>> [round(x, 3) for x in ci], clipped
        ([0.293, 1.0], True)
    """
    ci = mean_interval(values)
    if ci is None or bounds is None:
        return ci, False
    cut = [max(ci[0], bounds[0]), min(ci[1], bounds[1])]
    return cut, cut != ci


def sentence(c: dict[str, Any], metric: str, labels: dict[str, str]) -> str:
    """One line a person reads: ``he beats uniform[-1,1] by 0.31 val_accuracy (95% CI ...): real``."""
    better, other = labels.get(c["better"], c["better"]), labels.get(c["other"], c["other"])
    if c["ci"] is None:
        return f"{better} vs {other}: {c.get('why', 'cannot tell')}: within noise"
    holm_p = f", Holm {c['p_holm']:.2g}" if c.get("p_holm") is not None else ""
    stats = f"95% CI [{c['ci'][0]:+.4g}, {c['ci'][1]:+.4g}], p = {c['p']:.2g}{holm_p}, {c['n']} seeds"
    if c["verdict"] == "real":
        return f"{better} beats {other} by {abs(c['mean_diff']):.4g} {metric} ({stats}): real"
    return f"{better} vs {other}: {c['mean_diff']:+.4g} {metric} ({stats}): within noise"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
