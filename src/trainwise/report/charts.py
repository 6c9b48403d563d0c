"""The report's charts as SVG, from the run folder's rows: no matplotlib, a few milliseconds.

- ``curves.svg``: train and val loss per epoch (log scale when it spans a decade or more) with
  summary.json's best epoch marked, and the main metric per epoch (accuracy or rmse).
- ``lr.svg``: the planned lr of every step (schedule.csv) as a line with the logged lr rows of
  metrics.csv as points; without schedule.csv the logged rows alone; momentum (or Adam's beta1)
  in a second panel when it was logged.
- the LR range test's curve (lr_find.json), shown in the report's range-test section.

Epochs are drawn as metrics.csv numbers them (1 is the first epoch). The PNG versions of the
same figures are :func:`trainwise.report.plots.write_run_plots` (matplotlib, on request).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from trainwise.report.lr_text import format_lr
from trainwise.report.series import (
    Row,
    epoch_series,
    has_metric,
    main_metric,
    non_finite_count,
    step_series,
    y_scale,
)
from trainwise.report.svg import Panel, Series, render_chart

SPLIT_COLORS = (("train", "#1f77b4"), ("val", "#ff7f0e"))  # matplotlib's C0 and C1, as the PNGs
SCHEDULE_COLOR = "#d62728"  # C3: the lr line
LOGGED_COLOR = "#1f77b4"
MOMENTUM_COLOR = "#2ca02c"
FINDER_COLOR = "#1f77b4"
MARKER_MAX_POINTS = 30  # lines with at most this many points also get a marker on each
Schedule = tuple[Sequence[int], Sequence[float]]  # schedule.csv: (steps, lrs)


def curves_svg(rows: Sequence[Row], *, task: str = "classification", best_epoch: int | None = None) -> str:
    """The loss and main-metric panels, train and val per epoch, best epoch marked on the loss.

    Raises:
        ConfigError: ``task`` is not classification, binary or regression.

    Example:
        >>> rows = [{"step": 9, "epoch": 1, "split": "val", "metric": "loss", "value": 0.5}]
        >>> curves_svg(rows, best_epoch=1).count('class="marker"')
        1
    """
    metric = main_metric(task)
    loss = _epoch_panel(rows, "loss")
    if best_epoch is not None:
        loss.marker_x, loss.marker_label = best_epoch, f"best (epoch {best_epoch})"
    return render_chart([loss, _epoch_panel(rows, metric)], title=f"Training curves ({task})",
                        description=f"Train and validation loss and {metric} per epoch"
                        + (f"; the best epoch, {best_epoch}, is marked with a dashed line." if best_epoch
                           is not None else "."), chart_id="curves")


def lr_svg(rows: Sequence[Row], schedule: Schedule | None = None) -> str:
    """The learning rate against the optimizer step, and momentum when it was logged."""
    panels = [_lr_panel(rows, schedule)]
    title = "Learning rate"
    if has_metric(rows, "train", "momentum"):
        steps, momenta = step_series(rows, "train", "momentum")
        panels.append(Panel("momentum", [Series("momentum", steps, momenta, MOMENTUM_COLOR,
                                                points=len(steps) <= MARKER_MAX_POINTS)],
                            x_label="optimizer step", integer_x=True,
                            notes=_non_finite_notes(rows, "momentum", ("train",))))
        title = "Learning rate and momentum"
    planned = "the planned schedule of every step as a line, the logged values as points" \
        if schedule is not None and len(schedule[0]) else "the logged values"
    return render_chart(panels, title=title, chart_id="lr",
                        description=f"Learning rate against the optimizer step: {planned}.")


def has_lr(rows: Sequence[Row], schedule: Schedule | None) -> bool:
    """Whether there is an lr to draw: schedule.csv rows or logged lr rows."""
    return bool(schedule and len(schedule[0])) or has_metric(rows, "train", "lr")


def lr_find_svg(info: Mapping[str, Any]) -> str | None:
    """The range test's smoothed loss against the lr (log axis), the chosen lr marked; None when
    ``info`` (lr_find.json) holds no curve."""
    lrs, losses = info.get("lrs"), info.get("losses")
    if not isinstance(lrs, list) or not isinstance(losses, list) or not lrs or len(lrs) != len(losses):
        return None
    try:
        xs, ys = [float(value) for value in lrs], [float(value) for value in losses]
    except (TypeError, ValueError):
        return None
    suggestion = info.get("suggestion")
    repeats = info.get("repeats")
    name = f"smoothed loss, mean of {len(repeats)} tests" if isinstance(repeats, list) and repeats else "smoothed loss"
    panel = Panel(name, [Series(name, xs, ys, FINDER_COLOR)],
                  x_label="learning rate", y_label="smoothed training loss", x_scale="log",
                  y_scale=y_scale(ys))
    if isinstance(suggestion, (int, float)) and not isinstance(suggestion, bool) and suggestion > 0:
        panel.marker_x, panel.marker_label = float(suggestion), f"suggested lr {format_lr(suggestion)}"
    return render_chart([panel], title="LR range test", chart_id="lr-find", panel_width=520,
                        description="Smoothed training loss against the learning rate, on a log axis"
                        + ("; the suggested lr is marked with a dashed line." if panel.marker_x else "."))


def _epoch_panel(rows: Sequence[Row], metric: str) -> Panel:
    series = []
    drawn: list[float] = []
    for split, color in SPLIT_COLORS:
        epochs, values = epoch_series(rows, split, metric)
        if values:
            series.append(Series(split, epochs, values, color, points=len(values) <= MARKER_MAX_POINTS))
            drawn.extend(values)
    return Panel(metric, series, x_label="epoch", integer_x=True, y_scale=y_scale(drawn),
                 notes=_non_finite_notes(rows, metric, ("train", "val")))


def _lr_panel(rows: Sequence[Row], schedule: Schedule | None) -> Panel:
    """The planned lr as a line and the logged lr as points on it; without a schedule, the logged
    lr as the line. Short runs get a marker on every point."""
    steps, values = step_series(rows, "train", "lr")
    series: list[Series] = []
    drawn = list(values)
    if schedule is not None and len(schedule[0]):
        planned_steps, planned = schedule
        series.append(Series("schedule", planned_steps, planned, SCHEDULE_COLOR,
                             points=len(planned) <= MARKER_MAX_POINTS))
        if values:
            series.append(Series("logged", steps, values, LOGGED_COLOR, line=False, points=True))
        drawn.extend(value for value in planned if math.isfinite(value))
    elif values:
        series.append(Series("lr (logged)", steps, values, SCHEDULE_COLOR,
                             points=len(values) <= MARKER_MAX_POINTS))
    return Panel("lr", series, x_label="optimizer step", integer_x=True, y_scale=y_scale(drawn),
                 notes=_non_finite_notes(rows, "lr", ("train",)))


def _non_finite_notes(rows: Sequence[Row], metric: str, splits: Sequence[str]) -> list[str]:
    skipped = non_finite_count(rows, metric, splits)
    return [f"{skipped} non-finite {metric} value{'s' if skipped > 1 else ''} logged"] if skipped else []
