"""Shaping metrics rows into the series the plots draw and the table the report shows.

metrics.csv holds per-epoch rows (train/val/test loss, accuracy, ...) and per-step rows
(train lr, loss, grad_norm, ...) side by side; train ``loss`` is logged both ways. Epochs are
taken as the file numbers them (1 is the first epoch) and shown as they are. The
trainer writes an epoch's summary row after that epoch's step rows, so "the last row logged
in an epoch" is the per-epoch value, and that is the rule used here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from trainwise.errors import ConfigError

Row = dict[str, Any]

# Logged per optimizer step as diagnostics; the final table of metrics leaves them out.
STEP_METRICS = frozenset({"lr", "momentum", "grad_norm"})
EVENT_SPLIT = "event"
# The metric drawn beside the loss, by task ("binary": one logit per sample, or K labels per sample,
# whose accuracy is label-wise).
MAIN_METRIC = {"classification": "accuracy", "binary": "accuracy", "regression": "rmse"}


def main_metric(task: str) -> str:
    """The task's main metric (accuracy or rmse).

    Raises:
        ConfigError: ``task`` is not ``"classification"``, ``"binary"`` or ``"regression"``.
    """
    if task not in MAIN_METRIC:
        raise ConfigError(f"task must be one of {sorted(MAIN_METRIC)}, got {task!r}")
    return MAIN_METRIC[task]


def epoch_series(rows: Iterable[Row], split: str, metric: str) -> tuple[list[int], list[float]]:
    """The last value logged in each epoch for one split and metric, sorted by epoch.

    Epochs whose value is nan or inf are left out rather than drawn.

    Example:
        >>> rows = [{"step": 5, "epoch": 1, "split": "val", "metric": "loss", "value": 0.5},
        ...         {"step": 9, "epoch": 2, "split": "val", "metric": "loss",
        ...          "value": float("nan")}]
        >>> epoch_series(rows, "val", "loss")
        ([1], [0.5])
    """
    last_by_epoch: dict[int, float] = {}
    for row in rows:
        if row["split"] == split and row["metric"] == metric:
            last_by_epoch[row["epoch"]] = row["value"]
    epochs = sorted(epoch for epoch, value in last_by_epoch.items() if math.isfinite(value))
    return epochs, [last_by_epoch[epoch] for epoch in epochs]


def step_series(rows: Iterable[Row], split: str, metric: str) -> tuple[list[int], list[float]]:
    """Every finite value of one split and metric against its step, sorted by step."""
    points = sorted(
        (row["step"], row["value"])
        for row in rows
        if row["split"] == split and row["metric"] == metric and math.isfinite(row["value"])
    )
    return [step for step, _ in points], [value for _, value in points]


def non_finite_count(rows: Iterable[Row], metric: str, splits: Sequence[str]) -> int:
    """How many rows of ``metric`` in ``splits`` hold nan or inf."""
    return sum(
        1 for row in rows
        if row["metric"] == metric and row["split"] in splits and not math.isfinite(row["value"])
    )


def has_metric(rows: Iterable[Row], split: str, metric: str) -> bool:
    """Whether any row of ``split`` logs ``metric``, finite or not."""
    return any(row["split"] == split and row["metric"] == metric for row in rows)


def final_epochs(rows: Sequence[Row]) -> dict[str, int]:
    """Each split's last epoch with a per-epoch metric: ``{split: epoch}``, in first-logged order.

    Example:
        >>> final_epochs([{"step": 9, "epoch": 1, "split": "val", "metric": "loss", "value": 0.9},
        ...               {"step": 19, "epoch": 2, "split": "val", "metric": "loss", "value": 0.4}])
        {'val': 2}
    """
    last_epoch: dict[str, int] = {}
    for row in rows:
        if row["split"] != EVENT_SPLIT and row["metric"] not in STEP_METRICS:
            last_epoch[row["split"]] = max(row["epoch"], last_epoch.get(row["split"], row["epoch"]))
    return last_epoch


def final_metrics(rows: Sequence[Row]) -> dict[str, dict[str, float]]:
    """Each split's metrics at that split's last epoch: ``{split: {metric: value}}``.

    Event rows and per-step diagnostics (lr, momentum, grad_norm) are left
    out. Splits keep their first-logged order, metrics too; values may be non-finite, since
    a run that ended on nan should say so.

    Example:
        >>> rows = [{"step": 9, "epoch": 1, "split": "val", "metric": "loss", "value": 0.9},
        ...         {"step": 19, "epoch": 2, "split": "val", "metric": "loss", "value": 0.4}]
        >>> final_metrics(rows)
        {'val': {'loss': 0.4}}
    """
    last_epoch = final_epochs(rows)
    table: dict[str, dict[str, float]] = {split: {} for split in last_epoch}
    for row in rows:
        split = row["split"]
        if split in last_epoch and row["epoch"] == last_epoch[split] \
                and row["metric"] not in STEP_METRICS:
            table[split][row["metric"]] = row["value"]
    return table


def y_scale(values: Iterable[float]) -> str:
    """``"log"`` when the finite values are all positive and span a decade or more."""
    finite = [value for value in values if math.isfinite(value)]
    if not finite or min(finite) <= 0:
        return "linear"
    return "log" if max(finite) / min(finite) >= 10 else "linear"
