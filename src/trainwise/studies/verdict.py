"""The honest verdict: a difference between two variants is called real only when it holds across
seeds.

Runs of two variants at the same seed share the data split, the model's initial random state and
the batch order, so they are compared in pairs: ``d_k = metric(a, seed k) - metric(b, seed k)``
(signed so that positive means ``a`` is better). The difference is **real** when both

- the bootstrap 95% interval of the mean of ``d`` (10,000 resamples of the seeds) excludes 0, and
- a paired t-test on ``d`` gives p < 0.05 (the exact sign test when ``d`` is constant);

otherwise it is **within noise**. With one seed nothing can be told apart. Each variant is compared
with the best variant of its group; there is no correction for the number of comparisons, so with
many variants one "real" difference in twenty may be luck.

Example:
    >>> paired_comparison([0.9, 0.8, 0.85], [0.8, 0.9, 0.85], mode="max")["verdict"]
    'within noise'
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

RESAMPLES = 10_000
ALPHA = 0.05
MIN_SEEDS = 3  # with 2 seeds the bootstrap has 3 distinct means and the t-test 1 degree of freedom: too few to tell
TEST = ("paired over seeds: real when the bootstrap 95% interval of the mean difference (10,000 resamples) "
        "excludes 0 and a paired t-test (a sign test when every seed gives the same difference) gives p < 0.05, "
        "with at least 3 seeds; otherwise within noise")


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
    """Compare each variant with the best (by mean final value) of each group it is in.

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
            seeds = sorted(set(best["finals"]) & set(other["finals"]))
            result = paired_comparison([best["finals"][s] for s in seeds], [other["finals"][s] for s in seeds],
                                       mode=mode)
            comparisons.append({"group": title, "better": best["name"], "other": other["name"], **result})
    return comparisons


def sentence(c: dict[str, Any], metric: str, labels: dict[str, str]) -> str:
    """One line a person reads: ``he beats uniform[-1,1] by 0.31 val_accuracy (95% CI ...): real``."""
    better, other = labels.get(c["better"], c["better"]), labels.get(c["other"], c["other"])
    if c["ci"] is None:
        return f"{better} vs {other}: {c.get('why', 'cannot tell')}: within noise"
    stats = f"95% CI [{c['ci'][0]:+.4g}, {c['ci'][1]:+.4g}], p = {c['p']:.2g}, {c['n']} seeds"
    if c["verdict"] == "real":
        return f"{better} beats {other} by {abs(c['mean_diff']):.4g} {metric} ({stats}): real"
    return f"{better} vs {other}: {c['mean_diff']:+.4g} {metric} ({stats}): within noise"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
