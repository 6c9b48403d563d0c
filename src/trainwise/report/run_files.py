"""Reading the files of a run folder: metrics.csv, schedule.csv, summary.json, lr_find.json.

The run folder is the contract in docs/DESIGN.md. These readers are strict about files that
are wrong (a bad header, a non-numeric step) and lenient about the one thing a crash leaves
behind: a last metrics line cut off mid-write, which is skipped with a warning.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path
from typing import Any

from trainwise.errors import DataError, DataNotFoundError

logger = logging.getLogger(__name__)

METRICS_HEADER = ("step", "epoch", "split", "metric", "value")
SCHEDULE_HEADER = ("step", "lr")


def run_folder(run_dir: str | os.PathLike[str]) -> Path:
    """Return ``run_dir`` as a Path, or raise if it is not an existing folder.

    Raises:
        DataNotFoundError: ``run_dir`` does not exist or is not a folder.
    """
    folder = Path(run_dir)
    if not folder.is_dir():
        raise DataNotFoundError(f"run folder not found: {str(folder)!r} is not a directory")
    return folder


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a run's metrics.csv into rows.

    Each row is ``{"step": int, "epoch": int, "split": str, "metric": str, "value": float}``
    in file order; ``value`` may be ``nan`` or ``inf``. A last line cut off by a crash (the
    file does not end with a newline and the line does not parse) is skipped with a warning.

    Args:
        path: the metrics.csv file, header ``step,epoch,split,metric,value``.

    Returns:
        The rows, in the order they were logged.

    Raises:
        DataNotFoundError: the file does not exist.
        DataError: the header is wrong or a row does not parse.

    Example:
        >>> rows = read_metrics("runs/digits-mlp/metrics.csv")  # doctest: +SKIP
        >>> rows[0]  # doctest: +SKIP
        {'step': 0, 'epoch': 0, 'split': 'train', 'metric': 'lr', 'value': 0.0001}
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"metrics file not found: {str(path)!r}")
    text = path.read_text(encoding="utf-8")
    lines = list(csv.reader(text.splitlines()))
    if not lines:
        raise DataError(f"metrics file {str(path)!r} is empty, expected the header "
                        f"{','.join(METRICS_HEADER)}")
    header = tuple(field.strip() for field in lines[0])
    if header != METRICS_HEADER:
        raise DataError(f"metrics file {str(path)!r} has header {','.join(header)!r}, "
                        f"expected {','.join(METRICS_HEADER)!r}")
    cut_off_last_line = not text.endswith("\n")
    rows = []
    for line_number, fields in enumerate(lines[1:], start=2):
        if not fields:
            continue
        try:
            rows.append(_parse_metrics_row(fields))
        except DataError as err:
            if cut_off_last_line and line_number == len(lines):
                logger.warning("skipping line %d of %s, cut off mid-write: %s",
                               line_number, path, err)
                continue
            raise DataError(f"line {line_number} of {str(path)!r}: {err}") from err
    return rows


def _parse_metrics_row(fields: list[str]) -> dict[str, Any]:
    """Turn one csv record into a typed row; DataError names the field that is wrong."""
    if len(fields) != len(METRICS_HEADER):
        raise DataError(f"expected {len(METRICS_HEADER)} fields "
                        f"({','.join(METRICS_HEADER)}), got {len(fields)}: {fields!r}")
    step, epoch, split, metric, value = (field.strip() for field in fields)
    row: dict[str, Any] = {"split": split, "metric": metric}
    for name, raw in (("step", step), ("epoch", epoch)):
        try:
            row[name] = int(raw)
        except ValueError as err:
            raise DataError(f"{name} must be an integer, got {raw!r}") from err
    try:
        row["value"] = float(value)
    except ValueError as err:
        raise DataError(f"value must be a number (nan and inf allowed), got {value!r}") from err
    return {name: row[name] for name in METRICS_HEADER}


def read_json_object(path: Path) -> dict[str, Any]:
    """Read a JSON file that must hold one object (summary.json, lr_find.json).

    Raises:
        DataNotFoundError: the file does not exist.
        DataError: the file is not valid JSON or holds something other than an object.
    """
    if not path.is_file():
        raise DataNotFoundError(f"file not found: {str(path)!r}")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path.name} is not valid JSON: {err}") from err
    if not isinstance(content, dict):
        raise DataError(f"{path.name} must hold a JSON object, got {type(content).__name__}")
    return content


def read_schedule(path: str | os.PathLike[str]) -> tuple[list[int], list[float]]:
    """Read a run's schedule.csv: the planned lr of every optimizer step (or an even sample).

    Args:
        path: the schedule.csv file, header ``step,lr``, one row per planned step.

    Returns:
        ``(steps, lrs)`` sorted by step.

    Raises:
        DataNotFoundError: the file does not exist.
        DataError: the header is wrong or a row does not parse.

    Example:
        >>> steps, lrs = read_schedule("runs/digits-mlp/schedule.csv")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"schedule file not found: {str(path)!r}")
    lines = [fields for fields in csv.reader(path.read_text(encoding="utf-8").splitlines()) if fields]
    header = tuple(field.strip() for field in lines[0]) if lines else ()
    if header != SCHEDULE_HEADER:
        raise DataError(f"schedule file {str(path)!r} has header {','.join(header)!r}, "
                        f"expected {','.join(SCHEDULE_HEADER)!r}")
    points = []
    for line_number, fields in enumerate(lines[1:], start=2):
        try:
            step, lr = fields
            points.append((int(step), float(lr)))
        except ValueError as err:
            raise DataError(f"line {line_number} of {str(path)!r}: expected an integer step and a "
                            f"number lr, got {','.join(fields)!r}") from err
    points.sort()
    return [step for step, _ in points], [lr for _, lr in points]
