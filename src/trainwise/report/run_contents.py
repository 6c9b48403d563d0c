"""What the report reads from a run folder: config.yaml, summary.json, metrics.csv, schedule.csv,
lr_find.json, data.json and the PNGs, with a note for each file that is missing or unreadable, and
the charts (SVG) drawn from them. Nothing here raises on a broken folder: the page says instead."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainwise.errors import DataError
from trainwise.report.charts import curves_svg, has_lr, lr_svg
from trainwise.report.run_files import read_json_object, read_metrics, read_schedule
from trainwise.report.series import MAIN_METRIC, Row, has_metric, main_metric

logger = logging.getLogger(__name__)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# PNG versions of the figures (trainwise report RUN --png), listed in this order, then any other.
FIGURE_CAPTIONS = {
    "curves.png": "Loss, main metric and learning rate",
    "lr.png": "Learning rate by step",
    "confusion.png": "Confusion matrix (rows normalized, counts in cells)",
    "lr_find.png": "Learning-rate range test",
}


@dataclass
class RunContents:
    """What was found in the run folder, and notes on what was missing or unreadable."""

    folder: Path
    config_text: str | None = None
    config: Any = None
    summary: dict[str, Any] | None = None
    rows: list[Row] | None = None
    schedule: tuple[list[int], list[float]] | None = None
    lr_find: dict[str, Any] | None = None
    data_info: dict[str, Any] | None = None
    task: str = "classification"
    charts: dict[str, str] = field(default_factory=dict)  # file name -> SVG
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def load_run(folder: Path, task: str | None = None) -> RunContents:
    """Read what the report shows from ``folder`` and draw its charts; ``task`` as in
    :func:`trainwise.report.write_report` (ConfigError for an unknown task)."""
    run = RunContents(folder=folder)
    config_path = folder / "config.yaml"
    if config_path.is_file():
        run.config_text = config_path.read_text(encoding="utf-8", errors="replace")
        try:
            run.config = yaml.safe_load(run.config_text)
        except yaml.YAMLError as err:
            run.notes.append(f"config.yaml is not valid YAML ({err}); shown as written.")
    else:
        run.notes.append("config.yaml not found: the resolved config is unknown.")
    run.summary = _load_json(folder / "summary.json", run.notes,
                             "summary.json not found: the run has not finished (it may have "
                             "crashed or still be running), so there are no final figures.")
    run.lr_find = _load_json(folder / "lr_find.json", run.notes, missing_note=None)
    run.rows = _read_optional(folder / "metrics.csv", read_metrics, run.notes,
                         "metrics.csv not found: no metrics were logged.")
    run.schedule = _read_optional(folder / "schedule.csv", read_schedule, run.notes, None)
    run.data_info = _load_json(folder / "data.json", [], missing_note=None)
    run.task = _resolve_task(run, task)
    run.charts = _charts(run)
    run.figures = _find_figures(folder, run.notes)
    return run


def _resolve_task(run: RunContents, task: str | None) -> str:
    """The task given, else summary.json's, data.json's or the config's, else what was logged."""
    if task is not None:
        main_metric(task)  # ConfigError for an unknown task
        return task
    data_section = run.config.get("data") if isinstance(run.config, dict) else None
    for source in (run.summary, run.data_info, data_section):
        if isinstance(source, dict) and source.get("task") in MAIN_METRIC:
            return str(source["task"])
    rows = run.rows or []
    if not has_metric(rows, "val", "accuracy") and (has_metric(rows, "val", "rmse") or has_metric(rows, "train", "rmse")):
        return "regression"
    return "classification"


def _charts(run: RunContents) -> dict[str, str]:
    """curves.svg and lr.svg from the rows, schedule.csv and summary.json's best epoch."""
    charts: dict[str, str] = {}
    if run.rows is None and run.schedule is None:
        return charts
    rows = run.rows or []
    best_epoch = (run.summary or {}).get("best_epoch")
    try:
        if run.rows is not None:
            charts["curves.svg"] = curves_svg(rows, task=run.task, best_epoch=best_epoch
                                              if isinstance(best_epoch, int) and not isinstance(best_epoch, bool)
                                              else None)
        if has_lr(rows, run.schedule):
            charts["lr.svg"] = lr_svg(rows, run.schedule)
    except Exception as err:  # noqa: BLE001 - a chart must never cost the page
        logger.warning("could not draw the report's charts for %s", run.folder, exc_info=True)
        run.notes.append(f"the charts could not be drawn: {err!r}")
    return charts


def _load_json(path: Path, notes: list[str], missing_note: str | None) -> dict[str, Any] | None:
    return _read_optional(path, read_json_object, notes, missing_note)


def _find_figures(folder: Path, notes: list[str]) -> list[Path]:
    """The folder's PNGs (checked to be PNGs), the known ones first in a fixed order, then the
    rest by name."""
    found = {path.name: path for path in folder.glob("*.png") if path.is_file()}
    ordered = [found.pop(name) for name in FIGURE_CAPTIONS if name in found]
    ordered += [found[name] for name in sorted(found)]
    figures = []
    for path in ordered:
        with path.open("rb") as file:
            if file.read(len(PNG_MAGIC)) == PNG_MAGIC:
                figures.append(path)
            else:
                notes.append(f"{path.name} is not a PNG image and was left out.")
    return figures


def _read_optional(path: Path, reader: Any, notes: list[str], missing_note: str | None) -> Any:
    """``reader(path)``, or None with a note when the file is missing (if that is worth saying) or unreadable."""
    if not path.is_file():
        if missing_note:
            notes.append(missing_note)
        return None
    try:
        return reader(path)
    except DataError as err:
        notes.append(f"{path.name} could not be read: {err}")
        return None
