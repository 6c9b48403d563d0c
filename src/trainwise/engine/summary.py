"""summary.json from a run's state, and the check that a model beats the trivial predictor."""

from __future__ import annotations

import math
from typing import Any, Optional

from trainwise.engine.state import RunState

# Figures copied from the best epoch's history row into the summary as best_<name>.
_BEST_FIGURES = ("val_accuracy", "val_exact_match", "val_macro_f1", "val_rmse", "val_r2")


def build_summary(state: RunState, *, task: Optional[str], test_metrics: dict[str, float],
                  wall_seconds: float, extra: dict[str, Any]) -> dict[str, Any]:
    """``best_val_loss`` is the val loss *at* the best epoch (the one restored and in best.pt), not
    the lowest val loss of the run, which may belong to another epoch."""
    best = state.best
    if best.step is not None:  # validations every N steps: several rows per epoch, one per validation
        row = next((r for r in state.history if r.get("step") == best.step), None)
    else:
        row = next((r for r in state.history if r["epoch"] == best.epoch), None) if best.epoch else None
    val_loss = row.get("val_loss") if row else None
    summary: dict[str, Any] = {
        "status": state.status,
        "epochs_run": state.epoch,
        "steps": state.step,
        "best_epoch": best.epoch,
        "best_step": best.step,
        "best_val_loss": val_loss if val_loss is not None and math.isfinite(val_loss) else None,
        "monitor": best.monitor,
        "best_value": best.value,
        "wall_seconds": round(wall_seconds, 3),
        "train_seconds": round(state.train_seconds, 3),
        "train_samples_per_second": (round(state.samples_seen / state.train_seconds, 1)
                                     if state.train_seconds else None),
        "task": task,
        "final_lr": state.lr,
    }
    for key in _BEST_FIGURES:
        if row and key in row:
            summary[f"best_{key}"] = row[key]
    for key, value in test_metrics.items():
        summary[f"test_{key}"] = value
    if state.stop_reason:
        summary["stop_reason"] = state.stop_reason
    if state.status == "diverged":
        summary["message"] = state.stop_reason
    if state.status == "pruned":  # the last epoch trained: the one whose figure the pruner judged
        summary["pruned_at_epoch"] = state.epoch
    summary.update(extra)
    summary["warnings"] = list(state.warnings)
    summary["events"] = state.events
    return summary


def trivial_predictor_warning(task: Optional[str], metrics: dict[str, float], split: str,
                              majority_fraction: Optional[float], lr_was_auto: bool = False) -> Optional[str]:
    """A warning when the model does no better than a constant: R² < 0 (worse than predicting the
    mean) for regression, accuracy at or below the majority class's share for classification (a split
    holding one class alone, majority 1, cannot tell). ``lr_was_auto``: lr=auto is not advice then."""
    lr = "another lr (the range test's curve is in report.html)" if lr_was_auto else "lr=auto"
    if task == "regression" and "r2" in metrics and metrics["r2"] < 0:
        return (f"the model is worse than predicting the mean: {split} R² {metrics['r2']:.3f} < 0; try {lr}, "
                "standardized targets, more epochs, or a check of the data (trainwise doctor)")
    accuracy = metrics.get("accuracy")
    if task in ("classification", "binary") and accuracy is not None and majority_fraction is not None \
            and accuracy <= majority_fraction < 1:
        return (f"the model is no better than always predicting the majority class: {split} accuracy "
                f"{accuracy:.3f} <= {majority_fraction:.3f}; try {lr}, more epochs, class_weights, or a "
                "check of the data (trainwise doctor)")
    return None
