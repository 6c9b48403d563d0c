"""Plot and tabulate learning-rate schedules before a run, to see what a config will do.

Like the run's figures, these are drawn with matplotlib's object API on the Agg canvas
(``Figure`` plus ``FigureCanvasAgg``), never through pyplot. Reduce-on-plateau is drawn
as it runs while the metric keeps improving: its base schedule, unreduced.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from trainwise.errors import ConfigError
from trainwise.schedules import Schedule
from trainwise.checks import check_int

MAX_POINTS = 20_000  # longer runs are drawn on an even grid of this many steps
_DPI = 100


def plot_schedules(schedules: Mapping[str, Schedule], total_steps: int,
                   path: str | os.PathLike[str], *, note: str | None = None) -> Path:
    """Draw the lr of each schedule against the optimizer step, overlaid, into a PNG.

    When any schedule cycles momentum, a second panel below shows the momentum (or
    Adam's beta1) of those that do.

    Args:
        schedules: label -> schedule, drawn in this order.
        total_steps: the run's length; steps ``0 .. total_steps - 1`` are drawn.
        path: the PNG to write; its folder is created.
        note: a second line under the title (``lr 0.001 is a placeholder ...``).

    Returns:
        ``path`` as a Path.

    Raises:
        ConfigError: no schedules, or ``total_steps`` < 1.

    Example:
        >>> from trainwise.schedules import build_schedule
        >>> cosine = build_schedule("cosine", lr=0.1, total_steps=500, steps_per_epoch=50)
        >>> plot_schedules({"cosine": cosine}, 500, "schedule.png")  # doctest: +SKIP
    """
    if not schedules:
        raise ConfigError("plot_schedules needs at least one schedule, got none")
    steps = _plotted_steps(total_steps)
    as_ints = steps.tolist()
    lrs = {label: [s.lr_at(step) for step in as_ints] for label, s in schedules.items()}
    momentums = {}
    for label, schedule in schedules.items():
        values = [schedule.momentum_at(step) for step in as_ints]
        if any(value is not None for value in values):
            momentums[label] = [np.nan if value is None else value for value in values]

    colors = {label: f"C{index % 10}" for index, label in enumerate(schedules)}  # same in both panels
    figure = Figure(figsize=(9, 6.5 if momentums else 4.5), dpi=_DPI, layout="constrained")
    if momentums:
        lr_axes, momentum_axes = figure.subplots(2, 1, sharex=True, height_ratios=(2, 1))
        _draw(momentum_axes, steps, momentums, colors, "momentum / beta1")
        momentum_axes.set_xlabel("optimizer step")
        lr_axes.tick_params(labelbottom=False)
    else:
        lr_axes = figure.subplots(1, 1)
        lr_axes.set_xlabel("optimizer step")
    _draw(lr_axes, steps, lrs, colors, "learning rate")
    plural = "s" if len(schedules) > 1 else ""
    figure.suptitle(f"Learning-rate schedule{plural} over {total_steps} steps" + (f"\n{note}" if note else ""),
                    fontsize="medium" if note else "large")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(target, format="png")
    return target


def schedule_table(
    schedule: Schedule, total_steps: int, rows: int = 10
) -> list[tuple[int, float, float | None]]:
    """Return ``(step, lr, momentum)`` at ``rows`` even steps from 0 to ``total_steps - 1``.

    Momentum is None where the schedule leaves it alone. Fewer rows come back when the
    run has fewer steps than ``rows``.

    Example:
        >>> from trainwise.schedules import CosineSchedule
        >>> schedule_table(CosineSchedule(lr=1.0, total_steps=4), 4, rows=3)
        [(0, 1.0, None), (2, 0.5, None), (3, 0.14644660940672627, None)]
    """
    check_int("total_steps", total_steps, 1)
    check_int("rows", rows, 1)
    grid = np.linspace(0, total_steps - 1, rows) if rows > 1 else np.zeros(1)
    steps = sorted({int(round(step)) for step in grid})
    return [(step, schedule.lr_at(step), schedule.momentum_at(step)) for step in steps]


def _plotted_steps(total_steps: int) -> np.ndarray:
    check_int("total_steps", total_steps, 1)
    if total_steps <= MAX_POINTS:
        return np.arange(total_steps)
    return np.unique(np.linspace(0, total_steps - 1, MAX_POINTS).round().astype(np.int64))


def _draw(axes: Axes, steps: np.ndarray, series: Mapping[str, list[float]],
          colors: Mapping[str, str], ylabel: str) -> None:
    for label, values in series.items():
        axes.plot(steps, values, label=label, color=colors[label], linewidth=1.6)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize="small")
