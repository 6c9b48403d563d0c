"""The run's figures: training curves, the learning rate, the confusion matrix.

Figures are built with matplotlib's object API on the Agg canvas (``Figure`` plus
``FigureCanvasAgg``), never through pyplot: nothing touches the global backend or the
pyplot figure registry, so there is nothing left open after saving, and plotting works the
same in a headless worker as in a notebook. A panel with nothing to draw says so instead of
being left blank, and non-finite values are skipped and counted.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullLocator

from trainwise.errors import DataError
from trainwise.report.run_files import read_json_object, read_metrics, read_schedule, run_folder
from trainwise.report.series import (
    Row,
    epoch_series,
    has_metric,
    main_metric,
    non_finite_count,
    step_series,
    y_scale,
)

logger = logging.getLogger(__name__)

ANNOTATE_MAX_CLASSES = 20  # beyond this the count labels no longer fit in the cells
TICK_LABEL_MAX_CLASSES = 40
_DPI = 100
_SPLIT_COLORS = (("train", "C0"), ("val", "C1"))
MARKER_MAX_POINTS = 30  # lines with at most this many points also get a marker on each
# A log axis spanning more than this ratio gets no minor ticks: matplotlib labels none of them
# there, and laying out their (empty) labels was about a third of the plots' time.
MINOR_TICKS_MAX_SPAN = 100.0
Schedule = tuple[Sequence[int], Sequence[float]]  # schedule.csv: (steps, lrs)


def plot_curves(rows: Sequence[Row], path: str | os.PathLike[str], *,
                task: str = "classification", best_epoch: int | None = None,
                schedule: Schedule | None = None) -> Path:
    """Draw curves.png: loss, the main metric and the learning rate.

    Panel 1 is train and val loss per epoch (log scale when it spans a decade or more) with
    the best epoch marked; panel 2 the main metric per epoch (accuracy for
    classification and binary, rmse for regression); panel 3 the lr against the optimizer step.
    Epochs are drawn as metrics.csv numbers them (1 is the first epoch).

    Args:
        rows: metrics rows as :func:`read_metrics` returns them.
        path: the PNG file to write; its folder is created.
        task: ``"classification"``, ``"binary"`` or ``"regression"``; picks the main metric.
        best_epoch: summary.json's ``best_epoch``, marked on the loss panel; None for no mark.
        schedule: the planned lr of every step (schedule.csv), drawn as a line with the
            logged lr as points; None draws the logged lr alone.

    Returns:
        ``path`` as a Path.

    Raises:
        ConfigError: ``task`` is not one of the three.

    Example:
        >>> plot_curves(read_metrics("run/metrics.csv"), "run/curves.png")  # doctest: +SKIP
    """
    metric = main_metric(task)
    figure = Figure(figsize=(15, 4.2), dpi=_DPI, layout="constrained")
    loss_axes, metric_axes, lr_axes = figure.subplots(1, 3)
    _draw_epoch_panel(loss_axes, rows, "loss")
    _mark_best_epoch(loss_axes, best_epoch)
    _draw_epoch_panel(metric_axes, rows, metric)
    _draw_lr_panel(lr_axes, rows, schedule)
    figure.suptitle(f"Training curves ({task})")
    return _save(figure, path)


def plot_lr(rows: Sequence[Row], path: str | os.PathLike[str], *,
            schedule: Schedule | None = None) -> Path:
    """Draw lr.png: the learning rate against the step, and momentum if it was logged.

    With ``schedule`` (schedule.csv: the planned lr of every step) the lr is that line, with
    the logged lr rows as points on it; without, the logged rows alone. Momentum goes on a
    second y axis on the right.

    Example:
        >>> plot_lr(read_metrics("run/metrics.csv"), "run/lr.png")  # doctest: +SKIP
    """
    figure = Figure(figsize=(8, 4), dpi=_DPI, layout="constrained")
    lr_axes = figure.subplots()
    _draw_lr_panel(lr_axes, rows, schedule)
    if has_metric(rows, "train", "momentum"):
        steps, momenta = step_series(rows, "train", "momentum")
        momentum_axes = lr_axes.twinx()
        momentum_axes.plot(steps, momenta, color="C2", label="momentum")
        momentum_axes.set_ylabel("momentum", color="C2")
        lr_axes.set_title("Learning rate and momentum")
    return _save(figure, path)


def plot_confusion(matrix: Sequence[Sequence[float]], class_names: Sequence[str] | None,
                   path: str | os.PathLike[str]) -> Path:
    """Draw confusion.png: rows are true classes, normalized to sum to 1.

    The colour is the fraction of each true class predicted as each class; the raw counts
    are written in the cells when there are at most 20 classes.

    Args:
        matrix: counts, ``matrix[true][predicted]``, square and non-negative.
        class_names: one name per class, or None for ``0, 1, ...``.
        path: the PNG file to write.

    Raises:
        DataError: the matrix is not square, is empty, holds negative or non-finite counts,
            or ``class_names`` has the wrong length.

    Example:
        >>> plot_confusion([[5, 1], [0, 6]], ["cat", "dog"], "run/confusion.png")  # doctest: +SKIP
    """
    counts = _as_count_matrix(matrix)
    n_classes = counts.shape[0]
    names = [str(i) for i in range(n_classes)] if class_names is None else list(class_names)
    if len(names) != n_classes:
        raise DataError(f"class_names must have one name per class ({n_classes}), "
                        f"got {len(names)}")
    row_sums = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)

    side = float(np.clip(0.45 * n_classes + 2.5, 4.5, 16))
    figure = Figure(figsize=(side + 1.2, side), dpi=_DPI, layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, label="fraction of the true class", fraction=0.05, shrink=0.8)
    if n_classes <= ANNOTATE_MAX_CLASSES:
        _annotate_counts(axes, counts, fractions)
    if n_classes <= TICK_LABEL_MAX_CLASSES:
        axes.set_xticks(range(n_classes), names, rotation=45 if n_classes > 8 else 0,
                        ha="right" if n_classes > 8 else "center")
        axes.set_yticks(range(n_classes), names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"Confusion matrix ({int(counts.sum()):,} samples, rows normalized)")
    return _save(figure, path)


def write_run_plots(run_dir: str | os.PathLike[str], *, task: str) -> list[Path]:
    """Write curves.png, lr.png and confusion.png into a run folder from its files.

    curves.png needs metrics.csv (its best-epoch mark summary.json's ``best_epoch``), lr.png
    schedule.csv or lr rows in metrics.csv, and confusion.png a ``confusion_matrix`` in
    summary.json; a plot whose input is missing is skipped with a log message, so this works
    on a run that crashed early.

    Args:
        run_dir: the run folder.
        task: ``"classification"``, ``"binary"`` or ``"regression"``.

    Returns:
        The PNG files written, in that order.

    Raises:
        DataNotFoundError: ``run_dir`` is not a folder.
        ConfigError: ``task`` is not one of the three.
        DataError: metrics.csv or summary.json is malformed.

    Example:
        >>> write_run_plots("runs/digits-mlp", task="classification")  # doctest: +SKIP
        [PosixPath('runs/digits-mlp/curves.png'), PosixPath('runs/digits-mlp/lr.png')]
    """
    main_metric(task)
    folder = run_folder(run_dir)
    written: list[Path] = []
    summary_path, schedule_path = folder / "summary.json", folder / "schedule.csv"
    summary = read_json_object(summary_path) if summary_path.is_file() else {}
    schedule = read_schedule(schedule_path) if schedule_path.is_file() else None
    metrics_path = folder / "metrics.csv"
    rows = read_metrics(metrics_path) if metrics_path.is_file() else None
    if rows is not None:
        best_epoch = summary.get("best_epoch")
        written.append(plot_curves(rows, folder / "curves.png", task=task, schedule=schedule,
                                   best_epoch=best_epoch if isinstance(best_epoch, int) else None))
    else:
        logger.info("no metrics.csv in %s: curves.png not drawn", folder)
    if (schedule and schedule[0]) or has_metric(rows or [], "train", "lr"):
        written.append(plot_lr(rows or [], folder / "lr.png", schedule=schedule))
    if summary.get("confusion_matrix"):
        written.append(plot_confusion(summary["confusion_matrix"],
                                      summary.get("class_names"), folder / "confusion.png"))
    return written


def _draw_epoch_panel(axes: Axes, rows: Sequence[Row], metric: str) -> None:
    """Train and val ``metric`` per epoch, or a note saying it was not logged."""
    drawn: list[float] = []
    for split, color in _SPLIT_COLORS:
        epochs, values = epoch_series(rows, split, metric)
        if values:
            marker = "o" if len(values) <= MARKER_MAX_POINTS else None
            axes.plot(epochs, values, color=color, label=split, marker=marker, markersize=4)
            drawn.extend(values)
    axes.set_title(metric)
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    _finish_panel(axes, drawn, non_finite_count(rows, metric, ("train", "val")), metric)


def _draw_lr_panel(axes: Axes, rows: Sequence[Row], schedule: Schedule | None) -> None:
    """The planned lr of every step as a line, the logged lr as points on it; without a
    schedule, the logged lr as the line. Short runs get a marker on every point."""
    steps, values = step_series(rows, "train", "lr")
    drawn = list(values)
    if schedule is not None and len(schedule[0]):
        planned_steps, planned = schedule
        marker = "o" if len(planned) <= MARKER_MAX_POINTS else None
        axes.plot(planned_steps, planned, color="C3", label="schedule", marker=marker, markersize=3)
        if values:
            axes.scatter(steps, values, color="C0", s=14, zorder=3, label="logged")
        drawn.extend(planned)
    elif values:
        marker = "o" if len(values) <= MARKER_MAX_POINTS else None
        axes.plot(steps, values, color="C3", label="lr (logged)", marker=marker, markersize=3)
    axes.set_title("lr")
    axes.set_xlabel("optimizer step")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    _finish_panel(axes, drawn, non_finite_count(rows, "lr", ("train",)), "lr")


def _finish_panel(axes: Axes, values: list[float], skipped: int, metric: str) -> None:
    """Scale, legend and notes shared by every line panel."""
    if not values:
        _note(axes, f"no finite {metric} logged", (0.5, 0.5), center=True)
    else:
        scale = y_scale(values)
        axes.set_yscale(scale)
        if scale == "log":
            finite = [value for value in values if math.isfinite(value)]
            if max(finite) / min(finite) > MINOR_TICKS_MAX_SPAN:
                axes.yaxis.set_minor_locator(NullLocator())
        axes.legend(loc="best", fontsize="small")
    if skipped:
        _note(axes, f"{skipped} non-finite {metric} value{'s' if skipped > 1 else ''} logged",
              (0.02, 0.02), center=False)
    axes.grid(alpha=0.3)


def _mark_best_epoch(axes: Axes, best_epoch: int | None) -> None:
    """Mark summary.json's best epoch: the one whose weights best.pt holds."""
    if best_epoch is not None:
        axes.axvline(best_epoch, color="0.5", linestyle=":", label=f"best (epoch {best_epoch})")
        axes.legend(loc="best", fontsize="small")


def _note(axes: Axes, text: str, position: tuple[float, float], *, center: bool) -> None:
    axes.text(*position, text, transform=axes.transAxes, color="0.4", fontsize="small",
              ha="center" if center else "left", va="center" if center else "bottom")


def _as_count_matrix(matrix: Sequence[Sequence[float]]) -> np.ndarray:
    """The confusion matrix as a float array, checked square, finite and non-negative."""
    try:
        lengths = [len(row) for row in matrix]
    except TypeError as err:
        raise DataError(f"confusion matrix must be a list of rows, got {matrix!r:.80}") from err
    if not lengths or any(length != len(lengths) for length in lengths):
        raise DataError(f"confusion matrix must be square and non-empty, got {len(lengths)} "
                        f"rows of lengths {lengths}")
    try:
        counts = np.asarray(matrix, dtype=float)
    except (TypeError, ValueError) as err:
        raise DataError(f"confusion matrix must hold numbers: {err}") from err
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise DataError(f"confusion matrix counts must be finite and >= 0, got min "
                        f"{np.nanmin(counts)!r} and {int(np.sum(~np.isfinite(counts)))} non-finite")
    return counts


def _annotate_counts(axes: Axes, counts: np.ndarray, fractions: np.ndarray) -> None:
    fontsize = 10 if counts.shape[0] <= 10 else 7
    for (true_class, predicted), count in np.ndenumerate(counts):
        dark_cell = fractions[true_class, predicted] > 0.5
        axes.text(predicted, true_class, f"{count:.0f}", ha="center", va="center",
                  fontsize=fontsize, color="white" if dark_cell else "black")


def _save(figure: Figure, path: str | os.PathLike[str]) -> Path:
    """Draw into a temporary file beside ``path`` and rename it over ``path``: a kill while drawing
    leaves the previous PNG whole (and a ``.<name>.<pid>.partial`` that ``runs gc`` removes)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        figure.savefig(partial, format="png")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target
