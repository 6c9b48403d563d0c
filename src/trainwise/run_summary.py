"""summary.json and the files written when a run ends (plots, report)."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Optional

from trainwise.run_folder import write_json

if TYPE_CHECKING:
    from trainwise.loop import FitLoop
    from trainwise.trainer import FitResult, Trainer

log = logging.getLogger(__name__)


def _best_epoch(trainer: "Trainer") -> Optional[dict[str, float]]:
    """The history row of the best epoch: the one early stopping restored, else the lowest val_loss."""
    from trainwise.callbacks import EarlyStopping

    for callback in trainer.callbacks:
        if isinstance(callback, EarlyStopping) and callback.tracker.best_epoch is not None:
            return next((row for row in trainer.history if row["epoch"] == callback.tracker.best_epoch), None)
    finite = [row for row in trainer.history if math.isfinite(row.get("val_loss", math.nan))]
    return min(finite, key=lambda row: row["val_loss"]) if finite else None


def build_summary(trainer: "Trainer", loop: "FitLoop", test_metrics: dict[str, float],
                  wall_seconds: float) -> dict[str, Any]:
    best = _best_epoch(trainer)
    val_losses = [row["val_loss"] for row in trainer.history if math.isfinite(row.get("val_loss", math.nan))]
    summary: dict[str, Any] = {
        "status": trainer.status,
        "epochs_run": len(trainer.history),
        "steps": trainer.step,
        "best_epoch": None if best is None else int(best["epoch"]),
        "best_val_loss": min(val_losses) if val_losses else None,
        "wall_seconds": round(wall_seconds, 3),
        "train_seconds": round(loop.train_seconds, 3),
        "train_samples_per_second": round(loop.train_samples / loop.train_seconds, 1) if loop.train_seconds else None,
        "task": trainer.task,
        "lr": trainer.lr,
        "final_lr": trainer.current_lr,
        "precision": trainer.precision,
        "device": str(trainer.device),
        "loss_spikes": trainer.spikes.count,
        "nonfinite_rollbacks": trainer.guard.rollbacks,
        "nonfinite_skipped": trainer.guard.skipped,
    }
    if best is not None:
        for key in ("val_accuracy", "val_macro_f1", "val_rmse"):
            if key in best:
                summary[f"best_{key}"] = best[key]
    for key, value in test_metrics.items():
        summary[f"test_{key}"] = value
    confusion = getattr(loop, "confusion", None)
    if confusion is not None:
        summary["confusion_matrix"] = confusion
    if trainer.stop_reason:
        summary["stop_reason"] = trainer.stop_reason
    if trainer.status == "diverged":
        summary["message"] = trainer.stop_reason
    summary["events"] = trainer.events
    summary.update(trainer.summary_extra)
    return summary


def finish_run_folder(trainer: "Trainer", summary: dict[str, Any], test_metrics: dict[str, float]) -> "FitResult":
    from trainwise.trainer import FitResult

    run_dir = trainer.run_dir
    write_json(run_dir / "summary.json", summary)
    if trainer.write_report:
        write_plots_and_report(run_dir, trainer.task)
    return FitResult(status=trainer.status, history=trainer.history, best_val_loss=summary["best_val_loss"],
                     best_epoch=summary["best_epoch"], run_dir=run_dir, summary=summary, test_metrics=test_metrics)


def write_plots_and_report(run_dir, task: str) -> None:
    try:
        from trainwise.report import write_report, write_run_plots

        write_run_plots(run_dir, task=task)
        write_report(run_dir)
    except Exception:  # a broken plot must not lose a finished run; say so loudly instead
        log.exception("could not write the plots or report.html for %s", run_dir)
