"""The run folder: resolved config, metrics.csv, summary.json (the contract in DESIGN.md)."""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Optional

import yaml

from trainwise.errors import ConfigError

METRICS_HEADER = ("step", "epoch", "split", "metric", "value")


def check_run_name(name: str) -> str:
    """A run's name is a folder name under the runs root, never a path that leaves it."""
    text = str(name)
    if not text or "/" in text or "\\" in text or text.startswith(".") or "\0" in text:
        raise ConfigError(f"run name {text!r} must be a plain folder name (no '/', no leading '.'): it names the "
                          "folder runs/<name>-<time>; to write the run elsewhere, give its folder (--run-dir, "
                          "Python: run_dir=)")
    return text


def default_run_dir(name: str, root: str | Path = "runs", claim: bool = True) -> Path:
    """``runs/<name>-<timestamp>``, made unique if two runs start in the same second. ``claim``: create
    the folder now (an atomic ``mkdir``), so that two Trainers built in the same second, in one
    process or two, never get the same folder (only rank 0 of a job claims: RANK is set by torchrun)."""
    check_run_name(name)
    claim = claim and os.environ.get("RANK", "0") == "0"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{name}-{stamp}"
    suffix = 1
    while True:
        try:
            if not claim:
                if path.exists():
                    raise FileExistsError(path)
                return path
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            suffix += 1
            path = Path(root) / f"{name}-{stamp}-{suffix}"


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (tmp + rename) so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_json_safe(data), indent=2) + "\n")
    os.replace(tmp, path)


def write_config(path: Path, config: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    os.replace(tmp, path)


def _json_safe(value: Any) -> Any:
    """NaN/Inf are not JSON; write them as null so every JSON reader can read the summary."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


class MetricsLog:
    """Appends ``step,epoch,split,metric,value`` rows to metrics.csv and keeps the rows in memory.

    ``rows_written`` goes into each checkpoint; a resume truncates the file back to it, so rows
    written after the checkpoint by a killed run are not duplicated.
    """

    def __init__(self, path: Optional[Path]) -> None:
        self.path = path
        self.rows: list[tuple[int, int, str, str, float]] = []
        self._file = None
        self._writer = None
        if path is not None:
            self._open("w")

    def _open(self, mode: str) -> None:
        self._file = open(self.path, mode, newline="")  # type: ignore[arg-type]
        self._writer = csv.writer(self._file)
        if mode == "w":
            self._writer.writerow(METRICS_HEADER)
            self._file.flush()

    @classmethod
    def reopen(cls, path: Path) -> "MetricsLog":
        """For a resume: the file is read and cut back by ``truncate`` before anything is written."""
        metrics_log = cls(None)
        metrics_log.path = path
        return metrics_log

    @property
    def rows_written(self) -> int:
        return len(self.rows)

    def log(self, step: int, epoch: int, split: str, values: dict[str, float]) -> None:
        new = [(step, epoch, split, metric, float(value)) for metric, value in values.items()]
        self.rows.extend(new)
        if self._writer is not None:
            self._writer.writerows([(s, e, sp, m, repr(v)) for s, e, sp, m, v in new])
            self._file.flush()  # type: ignore[union-attr]

    def truncate(self, rows: int) -> None:
        """Keep the first ``rows`` data rows (after a resume), rewriting the file."""
        if self.path is not None and self.path.exists() and not self.rows:
            with open(self.path, newline="") as handle:
                reader = csv.reader(handle)
                next(reader, None)
                # Only the rows the checkpoint counted are kept, so a half-written line after
                # them (a kill mid-write) is never parsed.
                self.rows = [(int(s), int(e), sp, m, float(v)) for (s, e, sp, m, v), _ in zip(reader, range(rows))]
        self.rows = self.rows[:rows]
        if self.path is not None:
            self.close()
            self._open("w")
            self._writer.writerows([(s, e, sp, m, repr(v)) for s, e, sp, m, v in self.rows])  # type: ignore[union-attr]
            self._file.flush()  # type: ignore[union-attr]

    @classmethod
    def append_to(cls, path: Path) -> "MetricsLog":
        """Continue an existing metrics.csv (a second ``fit`` of the same trainer)."""
        metrics_log = cls.reopen(path)
        with open(path, newline="") as handle:
            rows = sum(1 for _ in handle) - 1
        metrics_log.truncate(max(rows, 0))
        return metrics_log

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self._writer = None


# Per-epoch figures that are not in the loop's history (step-level diagnostics).
_STEP_ONLY = {("train", "grad_norm")}


def history_from_rows(rows: list[tuple[int, int, str, str, float]], epochs: int,
                      last_step: Optional[int] = None) -> list[dict[str, float]]:
    """The loop's history rebuilt from metrics rows (after a resume): for each of the first ``epochs``
    epochs, the last value of each train/val/user figure logged in it, and the step it ended at.
    ``last_step``: validations every N steps, one row per validation up to that step instead."""
    history: dict[int, dict[str, float]] = {}
    for step, epoch, split, metric, value in rows:
        if split not in ("train", "val", "user") or (split, metric) in _STEP_ONLY:
            continue
        if last_step is not None:
            if split == "train" or step > last_step:
                continue
            row = history.setdefault(step, {"epoch": epoch, "step": step})
        elif 1 <= epoch <= epochs:
            row = history.setdefault(epoch, {"epoch": epoch})
            row["step"] = max(row.get("step", step), step)
        else:
            continue
        row[metric if split == "user" or (split, metric) == ("train", "lr") else f"{split}_{metric}"] = value
    return [history[key] for key in sorted(history)]


def write_schedule(path: Path, lrs: list[tuple[int, float]]) -> None:
    """schedule.csv: ``step,lr`` of the planned schedule, for the report's lr plot."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("step", "lr"))
        writer.writerows((step, repr(lr)) for step, lr in lrs)
    os.replace(tmp, path)


def refuse_used_run_dir(run_dir: Path) -> None:
    """A new run never writes into another run's folder: its checkpoints and metrics would mix."""
    used = [name for name in ("summary.json", "metrics.csv", "checkpoints/manifest.json") if (run_dir / name).exists()]
    if used:
        raise ConfigError(f"run folder {run_dir} already holds a run ({', '.join(used)}); continue it with "
                          "--resume auto (Python: fit(..., resume='auto')) or choose a new --run-dir")
