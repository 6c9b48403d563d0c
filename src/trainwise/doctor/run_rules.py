"""The post-run rules that judge what a run learned: overfitting, still improving at the end,
underfitting and worse than the baselines, as the Tuning Playbook and trust.md section 4.5 state
them. Every limit is a ``Thresholds`` field; every message names it and its source.

Noise: a change counts when it exceeds ``noise_sigmas`` times sigma, the standard deviation of the
differences between consecutive evaluations in the second half of the run; the series are smoothed
by a median over 3 epochs first, so one noisy epoch is no trend.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Optional

from trainwise.doctor.report import Check
from trainwise.doctor.thresholds import SOURCES, Thresholds

Curves = dict[str, list[float]]  # per-epoch series: train_loss, val_loss, val_accuracy, val_macro_f1, val_r2 ...

OVERFIT_FIX = ("regularize: weight decay (optimizer.weight_decay), dropout (model.dropout), augmentation "
               "(data.augment), more data; keep early stopping on (restore_best keeps the best epoch)")


@dataclass
class RunFacts:
    """What a finished run wrote, as the rules read it."""

    curves: Curves
    summary: dict[str, Any] = field(default_factory=dict)
    baselines: dict[str, float] = field(default_factory=dict)  # doctor.json's baseline.* scores
    num_classes: Optional[int] = None
    class_shares: Optional[list[float]] = None  # from the confusion matrix (the test split) when there is one
    steps: list[tuple[int, int, str, float]] = field(default_factory=list)  # (step, epoch, "loss" or event, value)

    def series(self, name: str) -> list[float]:
        return list(self.curves.get(name) or [])

    @property
    def classification(self) -> bool:
        return bool(_finite(self.series("val_accuracy")))

    def restored_epoch(self) -> Optional[int]:
        """The epoch whose weights the run ended with, when early stopping restored the best."""
        restored = any(e.get("kind") == "restore_best" for e in self.summary.get("events") or [])
        return self.summary.get("best_epoch") if restored else None

    def chance(self) -> Optional[float]:
        classes = self.num_classes or (len(self.class_shares) if self.class_shares else None)
        return 1.0 / classes if classes and classes > 1 else None

    def majority(self) -> Optional[float]:
        """The validation split's majority share (the pre-flight's baseline.majority), or None."""
        return self.baselines.get("majority")

    def test_majority(self) -> Optional[float]:
        """The test split's majority share (summary.json's confusion matrix), or None."""
        return max(self.class_shares) if self.class_shares else None


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def median3(values: list[float]) -> list[float]:
    """Each value replaced by the median of itself and its neighbours (the ends keep two)."""
    return [statistics.median(values[max(0, i - 1):i + 2]) for i in range(len(values))]


def noise(values: list[float]) -> float:
    """Sigma of the epoch-to-epoch differences in the second half of ``values`` (0 when too few)."""
    half = values[len(values) // 2:]
    diffs = [b - a for a, b in zip(half, half[1:])]
    return statistics.stdev(diffs) if len(diffs) > 1 else 0.0


def slope(values: list[float]) -> float:
    """Least-squares change per epoch of ``values``."""
    n = len(values)
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    den = sum((i - mean_x) ** 2 for i in range(n))
    return sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values)) / den if den else 0.0


def _task_metric(f: RunFacts) -> tuple[str, list[float]]:
    for name in ("val_accuracy", "val_r2"):
        if _finite(f.series(name)):
            return name, f.series(name)
    return "", []


def overfit(f: RunFacts, th: Thresholds) -> Check:
    """Overfitting (trust.md 4.5): the val loss rose from its minimum, at least ``overfit_patience``
    epochs (and 20% of the run) before the end, by more than ``overfit_rise`` and the noise, while
    the train loss fell and the task metric did not improve. The generalization gap is reported."""
    val, train = f.series("val_loss"), f.series("train_loss")
    n = len(val)
    if n < th.overfit_min_epochs or len(_finite(val)) < n:
        return Check("run.overfit", "PASS", None, th.overfit_min_epochs,
                     f"insufficient data: {n} validated epoch(s), {th.overfit_min_epochs} needed to judge "
                     f"overfitting ({SOURCES['overfit_min_epochs']})")
    smooth = median3(val)
    best = min(range(n), key=lambda i: (smooth[i], i))
    rise, sigma = smooth[-1] - smooth[best], noise(val)
    need = max(th.overfit_patience, math.ceil(0.2 * n))
    waited = n - 1 - best >= need
    rising = waited and rise > max(th.overfit_rise * abs(smooth[best]), th.noise_sigmas * sigma)
    train_fell = len(train) == n and all(map(math.isfinite, train)) and \
        median3(train)[best] - median3(train)[-1] > th.noise_sigmas * noise(train)
    name, metric = _task_metric(f)
    metric_change = None
    if len(metric) == n and len(_finite(metric)) == n:
        sm = median3(metric)  # progress since the loss's best epoch and over the last `need` epochs
        metric_change = sm[-1] - max(sm[best], sm[max(best, n - 1 - need)])
    stalled = metric_change is None or metric_change <= max(th.metric_progress, th.noise_sigmas * noise(metric))
    gap = val[-1] - train[-1] if len(train) == n else None
    value = {"best_epoch": best + 1, "val_loss_rise": rise / abs(smooth[best]) if smooth[best] else None,
             "metric_change": metric_change, "generalization_gap": gap,
             "gap_ratio": gap / abs(train[-1]) if gap is not None and train[-1] else None}
    gap_text = (f"; generalization gap (final val - train loss) {gap:.4g}" if gap is not None else "")
    found = (f"the validation loss (3-epoch median) was lowest at epoch {best + 1} and ended "
             f"{value['val_loss_rise']:+.1%} above it; the train loss {'fell' if train_fell else 'did not fall'} "
             f"beyond noise" + (f"; {name} {metric_change:+.4g} since then (and over the last {need} epochs)"
                if metric_change is not None else "")
             + gap_text)
    rule = (f"WARN when the val loss rises over {th.overfit_rise:.0%} and {th.noise_sigmas:g} sigma for "
            f"{th.overfit_patience}+ epochs while the train loss falls and the task metric gains under "
            f"{th.metric_progress:g} ({SOURCES['overfit_rise']}; {SOURCES['metric_progress']})")
    if rising and train_fell and stalled:
        restored = f.restored_epoch()
        if restored is not None:
            return Check("run.overfit", "PASS", value, th.overfit_rise,
                         f"{found}. Early stopping restored the weights of epoch {restored}: the later epochs "
                         f"overfit, the model you have does not. {rule}")
        return Check("run.overfit", "WARN", value, th.overfit_rise, f"overfitting: {found}. {rule}", OVERFIT_FIX)
    note = (f". The val loss rose while {name} kept improving: the model grows more confident without losing "
            "accuracy (Guo et al. 2017); choose the checkpoint by the task metric, consider temperature scaling"
            if rising and train_fell else "")
    return Check("run.overfit", "PASS", value, th.overfit_rise, f"{found}{note}. {rule}")


def still_improving(f: RunFacts, th: Thresholds) -> Check:
    """The Playbook's "still improving at the end": the least-squares slope of the last
    ``still_improving_window`` epochs (both epochs of a 2-epoch run) of the validation loss (the
    train loss without validation) beats ``still_improving`` per epoch and the noise."""
    series = f.series("val_loss") if _finite(f.series("val_loss")) else f.series("train_loss")
    name = "validation" if _finite(f.series("val_loss")) else "train"
    if f.summary.get("status") == "stopped_early":
        return Check("run.still_improving", "PASS", None, th.still_improving, "early stopping ended the run: it had "
                     "stopped improving")
    window = series[-th.still_improving_window:]
    if len(window) < 2 or len(_finite(window)) < len(window):
        return Check("run.still_improving", "PASS", None, th.still_improving,
                     "one epoch (or a non-finite loss at the end): no slope to judge")
    per_epoch = -slope(window) / abs(window[-1]) if window[-1] else 0.0
    sigma = noise(series) if len(series) >= 2 * len(window) else 0.0
    total = -slope(window) * (len(window) - 1)
    # the Playbook asks about the metric of interest: a loss near zero keeps falling in relative terms
    # (separable data) while the accuracy has nothing left to gain
    metric_name, metric = _task_metric(f)
    metric = metric[-len(window):]
    gain = slope(metric) * (len(metric) - 1) if len(_finite(metric)) == len(window) else None
    bad = per_epoch > th.still_improving and total > th.noise_sigmas * sigma and \
        (gain is None or gain > th.metric_progress)
    gained = f"; {metric_name} {gain:+.4g} over them (needs > {th.metric_progress:g})" if gain is not None else ""
    return Check("run.still_improving", "WARN" if bad else "PASS", per_epoch, th.still_improving,
                 f"over the last {len(window)} epochs the {name} loss fell {per_epoch:.2%} per epoch (least-squares "
                 f"slope against its last value){gained}; WARN above {th.still_improving:.0%} "
                 f"({SOURCES['still_improving']})",
                 "train for more epochs (train.epochs): the run ended while it was still learning" if bad else "")


def _gain(score: float, trivial: float) -> float:
    return (score - trivial) / (1.0 - trivial) if trivial < 1.0 else 0.0


def _scores(f: RunFacts) -> dict[str, float]:
    """The best validation score of each figure the rules judge (accuracy, macro_f1, r2)."""
    return {k[4:]: max(_finite(f.series(k))) for k in ("val_accuracy", "val_macro_f1", "val_r2")
            if _finite(f.series(k))}


def underfit(f: RunFacts, th: Thresholds) -> Check:
    """Underfitting: the best validation score gains less than ``underfit_gain`` of the way from
    chance (1/C for C classes) to perfect, on accuracy and, where logged, macro-F1 (which a
    majority-class guess cannot game on imbalanced classes); R² (a gain over the mean) for regression."""
    scores, chance = _scores(f), f.chance()
    if "accuracy" in scores and chance is not None:
        gains = {m: _gain(scores[m], chance) for m in ("accuracy", "macro_f1") if m in scores}
    elif "r2" in scores:
        gains = {"r2": scores["r2"]}
    else:
        return Check("run.underfit", "PASS", None, th.underfit_gain, "no validation accuracy (with the class count) "
                     "or R² to judge underfitting by")
    worst = min(gains, key=gains.__getitem__)
    bad = gains[worst] < th.underfit_gain
    text = ", ".join(f"{m} {scores[m]:.4g} (gain {g:.3g})" for m, g in gains.items())
    bar = f"chance 1/{round(1 / chance)} = {chance:.3g}" if chance is not None and "r2" not in gains else "the mean"
    return Check("run.underfit", "WARN" if bad else "PASS", gains, th.underfit_gain,
                 f"best validation {text}, as the share of the way from {bar} to perfect; WARN below "
                 f"{th.underfit_gain:g} ({SOURCES['underfit_gain']})",
                 "train longer or with a better lr (lr='auto'), use a bigger model, lower dropout and weight decay; "
                 "on imbalanced classes use class_weights='balanced'; check run.lr_too_low and the pre-flight"
                 if bad else "")


def worse_than_baseline(f: RunFacts, th: Thresholds) -> Check:
    """The best validation score against what needs no learning (the majority class or the mean,
    random guesses, chance 1/C for macro-F1) and the pre-flight's linear baseline: WARN at or below
    any of them, or with a gain under ``baseline_gain`` over the best trivial one. Each score meets
    the bars of its own split: validation scores the pre-flight's validation baselines (or chance),
    the test accuracy the test split's majority share (summary.json's confusion matrix)."""
    scores, chance = _scores(f), f.chance()
    if not scores:
        return Check("run.worse_than_baseline", "PASS", None, None, "no validation metric to compare")
    bars: dict[str, dict[str, float]] = {}  # figure -> the bars it is held against
    if "accuracy" in scores:
        acc = {k: v for k, v in f.baselines.items() if k in ("random", "linear")}
        majority, test_majority = f.majority(), f.test_majority()
        test_accuracy = f.summary.get("test_accuracy")
        if majority is not None:
            acc["majority"] = majority
        elif chance is not None:
            acc["chance"] = chance
        bars["accuracy"] = acc
        # the test split's majority share judges the test accuracy (never a validation score)
        if test_majority is not None and isinstance(test_accuracy, (int, float)) and math.isfinite(test_accuracy):
            scores["test_accuracy"] = float(test_accuracy)
            bars["test_accuracy"] = {"test majority": test_majority}
        if "macro_f1" in scores and chance is not None:
            bars["macro_f1"] = {"chance": chance}
    else:
        bars["r2"] = {"mean": 0.0, **{k: v for k, v in f.baselines.items() if k in ("random", "linear")}}
    beaten, lines = [], []
    for metric, bar in bars.items():
        if not bar:
            continue
        trivial = max(v for k, v in bar.items() if k != "linear")
        gain = _gain(scores[metric], trivial)
        under = [k for k, v in bar.items() if scores[metric] <= v + 1e-9]
        if under or gain < th.baseline_gain:
            beaten.append(f"{metric} ({', '.join(under) or f'gain {gain:.3g}'})")
        what = "test accuracy" if metric == "test_accuracy" else f"best validation {metric}"
        lines.append(f"{what} {scores[metric]:.4g} against " + ", ".join(f"{k} {v:.4g}" for k, v in bar.items())
                     + f" (gain {gain:.3g})")
    source = ("the pre-flight baselines (doctor.json)" if f.baselines else "chance or the mean") + \
        (", the test split's majority class (summary.json)" if "test_accuracy" in bars else "")
    return Check("run.worse_than_baseline", "WARN" if beaten else "PASS", scores, th.baseline_gain,
                 f"{'; '.join(lines)}, from {source}; each score is held against bars of its own split; WARN at or "
                 "below a baseline or with a gain "
                 f"under {th.baseline_gain:g} over the best trivial one ({SOURCES['baseline_gain']})",
                 f"the model does no better than a guess on {', '.join(beaten)}: check the pre-flight (trainwise "
                 "doctor CONFIG), the lr, class_weights='balanced' for imbalanced classes, and that the model has "
                 "nonlinearities" if beaten else "")
