"""The doctor's thresholds, each with where it comes from. Every one can be changed:
``doctor.check(..., thresholds={"imbalance_ratio": 5})``, ``doctor.diagnose(run, thresholds=...)``
or ``trainwise doctor CONFIG --threshold imbalance_ratio=5``. A value outside a threshold's range
(a share above 1, a window of 0 epochs) is refused with one line naming the range."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping, Optional, Union

from trainwise.checks import did_you_mean
from trainwise.errors import ConfigError


@dataclass(frozen=True)
class Thresholds:
    """Limits of the doctor's rules (where each comes from: ``SOURCES``; allowed values: ``RANGES``)."""

    # data
    imbalance_ratio: float = 10.0          # largest/smallest class count
    split_overlap_warn: float = 0.0        # share of val/test rows also in train: WARN above
    split_overlap_fail: float = 0.05       # ... FAIL above
    duplicates: float = 0.05               # share of duplicate rows within train
    near_duplicate_distance: float = 1e-3  # standardized distance / sqrt(features) under which rows are near copies
    conflicting_labels: float = 0.0        # share of train rows whose exact input has another label too
    drift: float = 0.2                     # Kolmogorov-Smirnov statistic of a feature, train vs validation
    leakage_score: float = 0.99            # balanced accuracy (R²) one feature alone reaches on validation: WARN
    leakage_fail: float = 0.999            # ... FAIL when it also copies the target (leakage_copy; r² for regression)
    leakage_copy: float = 0.99             # share of such a feature's variance the label explains (η²): a copy of it
    outliers: float = 0.01                 # share of train rows beyond the outlier_iqr fence
    outlier_iqr: float = 10.0              # interquartile ranges above the third quartile of the rows' distances
    normalization_mean: float = 0.2        # |mean| of the inputs
    normalization_std: float = 3.0         # std outside [1/x, x]
    input_scale: float = 10.0              # 99th percentile of |input|
    constant_features: float = 0.0         # share of constant tabular features (images: 0.5)
    # model and a few steps
    init_loss_ratio: float = 1.5           # loss at init / ln C (or the constant predictor's loss)
    dead_fraction: float = 0.7             # share of ReLU units dead on a batch: WARN
    dead_layer_fail: float = 1.0           # share of one layer's ReLU units dead that FAILs (no gradient passes)
    vanishing_ratio: float = 1e-3          # first/last layer gradient norm
    vanishing_norm: float = 1e-4           # first layer gradient norm
    exploding_ratio: float = 70.0          # first/last layer gradient norm
    bn_min_batch: int = 16                 # BatchNorm batch size
    dropout: float = 0.5                   # dropout rate
    one_step_change: float = 1e-4          # relative fall of the batch loss one step must beat
    one_step_fail: float = 0.5             # relative rise of the batch loss after one step that FAILs
    overfit_samples: int = 32              # samples of the overfit-one-batch check
    overfit_steps: int = 300               # optimizer steps it may take
    overfit_accuracy: float = 0.95         # accuracy it must reach (classification)
    overfit_ce_ratio: float = 0.25         # and the loss / ln C it must reach (classification)
    overfit_loss_ratio: float = 0.05       # loss / the constant predictor's loss (regression)
    lr_factor: float = 10.0                # configured lr vs the range test's suggestion, either way
    baseline_gain: float = 0.1             # (score - trivial) / (1 - trivial) a model must reach
    baseline_samples: int = 5000           # training samples the baselines see
    baseline_steps: int = 400              # optimizer steps of each trained baseline
    # after a run
    noise_sigmas: float = 2.0              # a change counts when above this many sigmas of epoch-to-epoch noise
    overfit_min_epochs: int = 5            # validated epochs needed to judge overfitting
    overfit_patience: int = 3              # epochs after the best val loss (at least 20% of the run)
    overfit_rise: float = 0.05             # relative rise of the val loss above its minimum
    metric_progress: float = 0.01          # task-metric gain (accuracy, R²) below which it counts as stalled
    plateau_window: int = 5                # epochs
    plateau_decrease: float = 0.001        # relative train-loss decrease per epoch
    plateau_level: float = 0.5             # a plateau counts while the train loss is above this share of epoch 1's
    still_improving_window: int = 4        # last epochs whose slope is fitted (2-epoch runs use both)
    still_improving: float = 0.01          # relative improvement per epoch of the validation loss
    oscillation_swing: float = 0.03        # accuracy swing between turns
    oscillation_loss_swing: float = 0.1    # loss swing between turns, as a share of its descent (no accuracy)
    oscillation_share: float = 0.2         # share of epochs with such a swing
    underfit_gain: float = 0.2             # (best score - chance) / (1 - chance); R² for regression
    lr_low_decrease: float = 0.05          # relative train-loss decrease over the whole run
    lr_high_rise: float = 0.2              # train loss above its minimum by this share
    lr_high_min_rise: float = 0.05         # ... and by this share of the first epoch's loss
    diverged_loss: float = 1e3             # loss at or above this counts as diverged


SOURCES = {
    "imbalance_ratio": "SageMaker Debugger ClassImbalance (ratio > 10); deepchecks ClassImbalance (< 0.1)",
    "split_overlap_warn": "deepchecks TrainTestSamplesMix (any shared sample is reported)",
    "split_overlap_fail": "deepchecks TrainTestSamplesMix (> 5% FAIL)",
    "duplicates": "deepchecks DataDuplicates (> 5% WARN)",
    "near_duplicate_distance": "deepchecks DataDuplicates compares rows after rounding; here: distance of "
                               "standardized rows per feature",
    "conflicting_labels": "deepchecks ConflictingLabels (any ambiguous sample is reported)",
    "drift": "deepchecks FeatureDrift (Kolmogorov-Smirnov 0.2 for numerical features)",
    "leakage_score": "deepchecks FeatureLabelCorrelation flags a predictive power score over 0.8; here the balanced "
                     "accuracy (R²) of one feature binned, high enough that well-separated clean data stays quiet",
    "leakage_fail": "deepchecks FeatureLabelCorrelation at its extreme (predictive power score 1: the feature "
                    "determines the label); 0.999 allows rounding, not one error in 1,000",
    "leakage_copy": "Pearson's correlation ratio η²: a feature computed from the label varies (almost) only with it; "
                    "a measured feature that separates well-apart classes still varies within each (for two balanced "
                    "classes, 0.99 needs their means 20 within-class sigmas apart)",
    "outliers": "deepchecks OutlierSampleDetection (reported share); Tukey fences",
    "outlier_iqr": "Tukey fences (far out: 3 IQR), widened to 10 IQR so that scikit-learn's clean digits, wine, "
                   "breast cancer and diabetes tables stay under 1% (digits has rare pixels at z 35)",
    "normalization_mean": "SageMaker Debugger CheckInputImages (|mean| > 0.2)",
    "normalization_std": "standardized inputs have std 1; SageMaker CheckInputImages",
    "input_scale": "AutoTrainer abnormal data (omega_1 = 10); UMLAUT input outside [-1, 1]",
    "constant_features": "deepchecks IsSingleValue",
    "init_loss_ratio": "Karpathy, A Recipe for Training Neural Networks: verify loss @ init",
    "dead_fraction": "AutoTrainer dying ReLU (gamma = 0.7); DeepDiagnosis dead node (0.7)",
    "dead_layer_fail": "DeepLocalize stops training on a layer whose output is all zero: a layer with every unit dead "
                       "passes no gradient to the layers before it, so nothing before it can learn",
    "vanishing_ratio": "AutoTrainer gradient vanish (beta_1 = 1e-3)",
    "vanishing_norm": "AutoTrainer gradient vanish (beta_2 = 1e-4)",
    "exploding_ratio": "AutoTrainer gradient explode (beta_3 = 70)",
    "bn_min_batch": "Tuning Playbook (BatchNorm statistics of ~64 examples work better)",
    "dropout": "UMLAUT HighDropout (> 0.5)",
    "one_step_change": "DeepDiagnosis/DeepLocalize 'loss not decreasing', as a relative change (doctor.md 0.6)",
    "one_step_fail": "Tuning Playbook: a rising training loss usually indicates a bug",
    "overfit_samples": "Karpathy: overfit one batch (a few samples)",
    "overfit_steps": "Karpathy: overfit one batch",
    "overfit_accuracy": "Karpathy: overfit one batch (near-perfect accuracy)",
    "overfit_ce_ratio": "below the softmax-before-cross-entropy floor log(1 + (C-1)/e) for every C",
    "overfit_loss_ratio": "Karpathy: overfit one batch (loss near zero against the constant predictor's)",
    "lr_factor": "Smith 2015 LR range test: useful lrs lie within about a decade of the valley",
    "baseline_gain": "deepchecks SimpleModelComparison (gain > 0.1)",
    "baseline_samples": "deepchecks SimpleModelComparison trains its simple models on the train split",
    "baseline_steps": "enough for a linear model to converge on standardized inputs",
    "noise_sigmas": "trust.md 4.5: changes beyond 2 sigma of the differences between consecutive evaluations",
    "overfit_min_epochs": "trust.md 4.5: at least 5 evaluations, else insufficient data",
    "overfit_patience": "trust.md 4.5: the best eval at least max(3, 0.2 n) evaluations before the end",
    "overfit_rise": "Tuning Playbook: problematic overfitting = validation error starts increasing; "
                    "trust.md 4.5: final - best > max(2 sigma, 5%)",
    "metric_progress": "AutoTrainer slow convergence (delta = 0.01: a smaller accuracy gain is no progress)",
    "plateau_window": "DeepDiagnosis window of 5 epochs",
    "plateau_decrease": "SageMaker Debugger LossNotDecreasing (0.1%)",
    "plateau_level": "AutoTrainer gates slow convergence on a bad outcome; a loss halved is no plateau",
    "still_improving_window": "Tuning Playbook: are the trials still improving at the end of training?",
    "still_improving": "Tuning Playbook: still improving at the end means train longer",
    "oscillation_swing": "AutoTrainer oscillating loss (zeta = 0.03)",
    "oscillation_loss_swing": "AutoTrainer oscillating loss, zeta read on the loss as a share of its descent",
    "oscillation_share": "AutoTrainer (eta = 0.2)",
    "underfit_gain": "AutoTrainer not_converge (Theta = 0.6 on its binary tasks: 0.2 of the way from chance 0.5)",
    "lr_low_decrease": "SageMaker Debugger LossNotDecreasing, over the whole run",
    "lr_high_rise": "Tuning Playbook: training loss increasing",
    "lr_high_min_rise": "Tuning Playbook: training loss increasing (a rise near zero loss is noise)",
    "diverged_loss": "AutoTrainer NaN rule (loss >= 1e3); Keras TerminateOnNaN",
}

_SHARES = ("split_overlap_warn", "split_overlap_fail", "duplicates", "conflicting_labels", "drift", "leakage_score",
           "leakage_fail", "leakage_copy", "outliers", "constant_features", "dead_fraction", "dead_layer_fail",
           "dropout", "overfit_accuracy", "overfit_ce_ratio", "overfit_loss_ratio", "baseline_gain", "overfit_rise",
           "metric_progress", "plateau_decrease", "plateau_level", "still_improving", "oscillation_swing",
           "oscillation_share", "underfit_gain", "lr_low_decrease", "one_step_change")
_COUNTS = {"bn_min_batch": 1, "overfit_samples": 1, "overfit_steps": 1, "baseline_samples": 10, "baseline_steps": 1,
           "overfit_min_epochs": 3, "overfit_patience": 1, "plateau_window": 1, "still_improving_window": 2}
# (low, high): the values each threshold may take; a share lies in [0, 1], a count is a whole number.
RANGES: dict[str, tuple[float, float]] = {
    **{name: (0.0, 1.0) for name in _SHARES},
    **{name: (float(low), math.inf) for name, low in _COUNTS.items()},
    "imbalance_ratio": (1.0, math.inf), "lr_factor": (1.0, math.inf), "normalization_std": (1.0, math.inf),
    "init_loss_ratio": (1.0, math.inf), "exploding_ratio": (1.0, math.inf),
}


def range_of(name: str) -> tuple[float, float]:
    """The values ``name`` may take (default: any number >= 0)."""
    return RANGES.get(name, (0.0, math.inf))


def thresholds_of(value: Union[Thresholds, Mapping[str, Any], None]) -> Thresholds:
    """A ``Thresholds`` from None (the defaults), a ``Thresholds`` or a dict of changes."""
    if value is None:
        return Thresholds()
    if isinstance(value, Thresholds):
        return value
    names = {f.name: f for f in fields(Thresholds)}
    changes: dict[str, Any] = {}
    for key, raw in dict(value).items():
        if key not in names:
            raise ConfigError(f"unknown doctor threshold {key!r}{did_you_mean(key, names)}; "
                              f"valid: {', '.join(names)}")
        changes[key] = _number(key, raw, int if names[key].type in ("int", int) else float)
    return replace(Thresholds(), **changes)


def parse_threshold_options(items: Optional[list[str]]) -> dict[str, Any]:
    """``["imbalance_ratio=5", ...]`` (CLI ``--threshold``) as a dict."""
    parsed: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--threshold must look like name=value, got {item!r}")
        parsed[key.strip()] = text.strip()
    return parsed


def _number(key: str, raw: Any, kind: type) -> Any:
    try:
        number = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"doctor threshold {key} must be a number, got {raw!r}") from None
    low, high = range_of(key)
    if math.isnan(number):
        raise ConfigError(f"doctor threshold {key} must be a number, got {raw!r}")
    if kind is int and not (math.isfinite(number) and number == int(number)):
        raise ConfigError(f"doctor threshold {key} must be a whole number >= {low:g}, got {raw!r}")
    if not low <= number <= high:
        where = f"between {low:g} and {high:g}" if math.isfinite(high) else f">= {low:g}"
        raise ConfigError(f"doctor threshold {key} must be {where}, got {raw!r} ({SOURCES[key]})")
    return int(number) if kind is int else number
