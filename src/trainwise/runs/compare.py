"""What ``trainwise runs compare`` shows: the parameters that differ (all with ``--all``), final and
best figures with their change against the first run, environment differences, and each run's
per-epoch curves (read from metrics.csv)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from trainwise.errors import ConfigError
from trainwise.runs.store import Run

DRAWN_RUNS = 10  # curves and parallel coordinates draw at most this many runs unless asked for more
# Summary figures compared first, in this order; other numeric figures follow alphabetically.
FIGURE_ORDER = ("best_val_loss", "best_val_accuracy", "best_val_macro_f1", "best_val_rmse", "best_val_r2",
                "test_loss", "test_accuracy", "test_macro_f1", "test_rmse", "test_mae", "test_r2", "best_epoch",
                "epochs_run", "steps", "lr", "wall_seconds", "train_samples_per_second")
_NOT_FIGURES = {"best_value", "final_lr", "train_seconds", "loss_spikes", "nonfinite_rollbacks", "nonfinite_skipped",
                "pruned_at_epoch"}
LOWER_IS_BETTER = ("loss", "rmse", "mae", "wall_seconds")
ENV_KEYS = ("host", "git.commit", "git.dirty", "python", "torch", "cuda", "cudnn", "device", "gpu", "platform",
            "trainwise")


@dataclass
class Comparison:
    runs: list[Run]
    params: list[tuple[str, list[Any]]]
    figures: list[tuple[str, list[Optional[float]]]]
    environment: list[tuple[str, list[Any]]]
    curves: dict[str, list[tuple[list[int], list[float]]]] = field(default_factory=dict)
    drawn: int = DRAWN_RUNS
    all_params: bool = False


def compare_runs(runs: Sequence[Run], *, all_params: bool = False, drawn: int = DRAWN_RUNS) -> Comparison:
    if len(runs) < 2:
        raise ConfigError(f"runs compare needs at least two runs, got {len(runs)}")
    if len({run.id for run in runs}) < len(runs):
        raise ConfigError("runs compare got the same run twice; name each run once")
    runs = list(runs)
    keys = sorted({key for run in runs for key in run.config})
    params = [(key, [run.config.get(key) for run in runs]) for key in keys]
    if not all_params:
        params = [(key, values) for key, values in params if not _all_equal(values)]
    comparison = Comparison(runs=runs, params=params, figures=_figures(runs), environment=_environment(runs),
                            drawn=drawn, all_params=all_params)
    comparison.curves = curves(runs[:drawn])
    return comparison


def _all_equal(values: list[Any]) -> bool:
    return all(value == values[0] for value in values[1:])


def _figures(runs: list[Run]) -> list[tuple[str, list[Optional[float]]]]:
    numeric = {key for run in runs for key, value in run.summary.items()
               if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in _NOT_FIGURES}
    ordered = [key for key in FIGURE_ORDER if key in numeric] + sorted(numeric - set(FIGURE_ORDER))
    return [(key, [_number(run.summary.get(key)) for run in runs]) for key in ordered]


def _number(value: Any) -> Optional[float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def delta(values: list[Optional[float]], index: int) -> Optional[float]:
    """The change of run ``index`` against the first run (None when either is missing)."""
    if index == 0 or values[0] is None or values[index] is None:
        return None
    return values[index] - values[0]  # type: ignore[operator]


def better(key: str, change: float) -> Optional[bool]:
    """Whether a change of ``key`` is an improvement (lower loss/rmse, higher accuracy/r2)."""
    if change == 0 or not (key.startswith(("best_val", "test_")) or key == "wall_seconds"):
        return None
    lower = any(key.endswith(suffix) for suffix in LOWER_IS_BETTER)
    return change < 0 if lower else change > 0


def _environment(runs: list[Run]) -> list[tuple[str, list[Any]]]:
    rows = []
    for key in ENV_KEYS:
        values = [run.field(key)[1] if key in ("host", "git.commit", "git.dirty") else run.env.get(key)
                  for run in runs]
        if any(value is not None for value in values):
            rows.append((key, values))
    return rows


def curves(runs: Sequence[Run]) -> dict[str, list[tuple[list[int], list[float]]]]:
    """``{"val_loss": [(epochs, values) per run], ...}`` for each per-epoch figure any run logged."""
    from trainwise.errors import TrainwiseError
    from trainwise.report.run_files import read_metrics
    from trainwise.report.series import epoch_series

    per_run = []
    for run in runs:
        try:
            per_run.append(read_metrics(run.folder / "metrics.csv"))
        except (TrainwiseError, OSError):
            per_run.append([])
    names = []
    for rows in per_run:
        for row in rows:
            if row["split"] in ("train", "val") and row["metric"] not in ("lr", "grad_norm", "clip_fraction"):
                names.append((row["split"], row["metric"]))
    out: dict[str, list[tuple[list[int], list[float]]]] = {}
    for split, metric in sorted(dict.fromkeys(names), key=lambda sm: (sm[1] != "loss", sm[1], sm[0])):
        out[f"{split}_{metric}"] = [epoch_series(rows, split, metric) for rows in per_run]
    return out
