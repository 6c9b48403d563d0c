"""What a search leaves in its study folder: ``trials.csv``, ``best.yaml`` (a complete config that
``trainwise train`` runs), the terminal table, and the progress shown by ``--status``.

Example:
    >>> rows = trial_rows(study)
    >>> print(format_table(rows, maximize=True))
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from trainwise.tune.space import decoded


@dataclass
class TuneResult:
    """The search's outcome: the best finished trial's number, value and parameters, the study
    folder (trials.csv, best.yaml for a config search, plots, report.html) and every trial's row."""

    study: str
    folder: Path
    best_trial: Optional[int]
    best_value: Optional[float]
    best_params: dict[str, Any]
    best_config: Optional[Path]
    rows: list[dict[str, Any]] = field(default_factory=list)

STATE_NAMES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running",
               "WAITING": "queued"}


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """One plain row per trial, by number."""
    rows = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        attrs = t.user_attrs
        epochs = attrs.get("epochs")
        if epochs is None and t.intermediate_values:
            epochs = max(t.intermediate_values)
        duration = (t.datetime_complete - t.datetime_start).total_seconds() \
            if t.datetime_complete and t.datetime_start else None
        rows.append({
            "number": t.number, "state": STATE_NAMES.get(t.state.name, t.state.name.lower()),
            "value": t.value, "epochs": epochs, "pruned_at_epoch": attrs.get("pruned_at_epoch"),
            "retry_of": t.system_attrs.get("failed_trial"), "seconds": None if duration is None else round(duration, 2),
            "params": decoded(t.params), "run_dir": attrs.get("run_dir"), "error": attrs.get("error"),
            "config": attrs.get("config"),
        })
    return rows


def ranked(rows: list[dict[str, Any]], maximize: bool) -> list[dict[str, Any]]:
    done = [r for r in rows if r["state"] == "complete" and r["value"] is not None and math.isfinite(r["value"])]
    return sorted(done, key=lambda r: -r["value"] if maximize else r["value"])


def write_trials_csv(rows: list[dict[str, Any]], path: Path) -> None:
    names = sorted({name for r in rows for name in r["params"]})
    columns = ["number", "state", "value", "epochs", "pruned_at_epoch", "retry_of", "seconds", *names, "run_dir",
               "error"]
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for r in rows:
            writer.writerow([_cell(r.get(c, r["params"].get(c))) for c in columns])
    tmp.replace(path)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return value


def write_best_config(rows: list[dict[str, Any]], maximize: bool, study_name: str, path: Path) -> Optional[dict]:
    """best.yaml: the best finished trial's complete config, named ``<study>-best``, with its report
    back on. Training it with ``trainwise train`` (same seed) gives the trial's value again."""
    best = ranked(rows, maximize)
    if not best or best[0]["config"] is None:
        return None
    config = dict(best[0]["config"])
    config["name"] = f"{study_name}-best"
    config["train"] = {**config.get("train", {}), "report": True}
    header = (f"# best trial of study {study_name}: trial {best[0]['number']}, value {best[0]['value']:.6g}\n"
              f"# train it: trainwise train {path}\n")
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(header + yaml.safe_dump(config, sort_keys=False))
    tmp.replace(path)
    return best[0]


def format_table(rows: list[dict[str, Any]], maximize: bool, limit: int = 10, metric: str = "value") -> str:
    """The best trials first, then a count of every state."""
    best = ranked(rows, maximize)[:limit]
    names = sorted({name for r in best for name in r["params"]})
    header = ["trial", metric, "epochs", *names]
    lines = [header]
    for r in best:
        lines.append([str(r["number"]), f"{r['value']:.4f}", str(r["epochs"] or ""),
                      *[short_text(r["params"].get(n)) for n in names]])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]
    return "\n".join(text) + "\n" + counts_line(rows)


def counts_line(rows: list[dict[str, Any]], budget: Optional[int] = None) -> str:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    order = ("complete", "pruned", "running", "queued", "failed")
    parts = [f"{counts[s]} {s}" for s in order if counts.get(s)]
    total = f" of {budget}" if budget else ""
    return f"{len(rows)} trials{total}: " + (", ".join(parts) if parts else "none yet")


def short_text(value: Any) -> str:
    """A parameter value or figure for a table cell: floats to 4 significant digits, None empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
