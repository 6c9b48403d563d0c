"""The doctor's thresholds, each with where it comes from. Every one can be changed:
``doctor.check(..., thresholds={"imbalance_ratio": 5})`` or ``trainwise doctor CONFIG
--threshold imbalance_ratio=5``."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Mapping, Optional, Union

from trainwise.checks import did_you_mean
from trainwise.errors import ConfigError


@dataclass(frozen=True)
class Thresholds:
    """Limits of the doctor's rules (sources in brackets, see ``SOURCES``)."""

    imbalance_ratio: float = 10.0          # largest/smallest class count [SageMaker ClassImbalance]
    split_overlap_warn: float = 0.0        # share of val/test rows also in train: WARN above
    split_overlap_fail: float = 0.05       # ... FAIL above [deepchecks TrainTestSamplesMix 5%]
    duplicates: float = 0.05               # share of duplicate rows within train [deepchecks DataDuplicates]
    normalization_mean: float = 0.2        # |mean| of the inputs [SageMaker CheckInputImages]
    normalization_std: float = 3.0         # std outside [1/x, x]
    input_scale: float = 10.0              # largest |input| / std-free scale [AutoTrainer omega_1 = 10]
    constant_features: float = 0.0         # share of constant tabular features (images: 0.5)
    init_loss_ratio: float = 1.5           # loss at init / ln C (or the constant predictor's loss) [Karpathy]
    dead_fraction: float = 0.7             # share of ReLU units dead on a batch [AutoTrainer gamma, DeepDiagnosis]
    vanishing_ratio: float = 1e-3          # first/last layer gradient norm [AutoTrainer beta_1]
    vanishing_norm: float = 1e-4           # first layer gradient norm [AutoTrainer beta_2]
    exploding_ratio: float = 70.0          # first/last layer gradient norm [AutoTrainer beta_3]
    bn_min_batch: int = 16                 # BatchNorm batch size [Tuning Playbook: ~64 works better]
    dropout: float = 0.5                   # dropout rate [UMLAUT HighDropout]
    one_step_change: float = 1e-4          # relative change of the batch loss after one step
    overfit_samples: int = 32              # samples of the overfit-one-batch check
    overfit_steps: int = 300               # optimizer steps it may take
    overfit_accuracy: float = 0.95         # accuracy it must reach (classification)
    overfit_ce_ratio: float = 0.25         # and the loss / ln C it must reach (classification)
    overfit_loss_ratio: float = 0.05       # loss / the constant predictor's loss (regression)
    lr_factor: float = 10.0                # configured lr vs the range test's suggestion, either way
    baseline_gain: float = 0.1             # (best baseline - majority) / (1 - majority) [deepchecks]
    baseline_samples: int = 5000           # training samples the baselines see
    overfit_rise: float = 0.01             # drop of val accuracy (or rise of val loss x10) from its best
    plateau_window: int = 5                # epochs [SageMaker LossNotDecreasing, DeepDiagnosis N=5]
    plateau_decrease: float = 0.001        # relative train-loss decrease per epoch [SageMaker 0.1%]
    still_improving: float = 0.01          # relative improvement per epoch over the last 3 epochs
    oscillation_swing: float = 0.03        # accuracy swing between turns [AutoTrainer zeta]
    oscillation_share: float = 0.2         # share of epochs with such a swing [AutoTrainer eta]
    underfit_accuracy: float = 0.6         # best val accuracy [AutoTrainer Theta]
    lr_low_decrease: float = 0.05          # relative train-loss decrease over the whole run
    lr_high_rise: float = 0.2              # train loss above its minimum by this share
    diverged_loss: float = 1e3             # loss at or above this counts as diverged [AutoTrainer]


SOURCES = {
    "imbalance_ratio": "SageMaker Debugger ClassImbalance (ratio > 10); deepchecks ClassImbalance (< 0.1)",
    "split_overlap_fail": "deepchecks TrainTestSamplesMix (> 5% FAIL)",
    "duplicates": "deepchecks DataDuplicates (> 5% WARN)",
    "normalization_mean": "SageMaker Debugger CheckInputImages (|mean| > 0.2)",
    "input_scale": "AutoTrainer abnormal data (omega_1 = 10); UMLAUT input outside [-1, 1]",
    "init_loss_ratio": "Karpathy, A Recipe for Training Neural Networks: verify loss @ init",
    "dead_fraction": "AutoTrainer dying ReLU (gamma = 0.7); DeepDiagnosis dead node (0.7)",
    "vanishing_ratio": "AutoTrainer gradient vanish (beta_1 = 1e-3, beta_2 = 1e-4)",
    "exploding_ratio": "AutoTrainer gradient explode (beta_3 = 70)",
    "bn_min_batch": "Tuning Playbook (BatchNorm statistics of ~64 examples work better)",
    "dropout": "UMLAUT HighDropout (> 0.5)",
    "baseline_gain": "deepchecks SimpleModelComparison (gain > 0.1)",
    "plateau_decrease": "SageMaker Debugger LossNotDecreasing (0.1%); DeepDiagnosis window of 5",
    "oscillation_swing": "AutoTrainer oscillating loss (zeta = 0.03, eta = 0.2)",
    "underfit_accuracy": "AutoTrainer not_converge (Theta = 0.6)",
    "overfit_rise": "Tuning Playbook: problematic overfitting = validation error starts increasing",
    "diverged_loss": "AutoTrainer NaN rule (loss >= 1e3); Keras TerminateOnNaN",
}


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
        value = kind(float(raw)) if kind is int else float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"doctor threshold {key} must be a number, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"doctor threshold {key} must be >= 0, got {raw!r}")
    return value
