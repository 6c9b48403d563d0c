"""``trainwise runs list``: filter, sort and lay out runs as a table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from typing import Any, Optional, Sequence

from trainwise.checks import did_you_mean
from trainwise.errors import ConfigError
from trainwise.runs.filter import parse_filter
from trainwise.runs.store import Run, known_keys

BASE_COLUMNS = ("id", "name", "status", "started", "duration")
# Figures shown by default, the first ones any listed run has.
FIGURE_COLUMNS = ("best_val_loss", "best_val_accuracy", "test_accuracy", "best_val_rmse", "test_rmse", "test_r2")
MAX_DEFAULT_FIGURES = 3


def select(runs: list[Run], *, where: Optional[str], sort: Optional[str], limit: Optional[int]) -> list[Run]:
    """The runs matching ``where``, sorted by ``sort`` (``-key`` descending; default newest first)."""
    everything = runs
    if where:
        expression = parse_filter(where)
        seen: set[str] = set()

        def lookup(key: str) -> tuple[bool, Any]:
            found, value = run.field(key)
            if found:
                seen.add(key)
            return found, value

        chosen = []
        for run in runs:
            if expression.matches(lookup):
                chosen.append(run)
        if expression.keys(canonical=True) - seen:  # a key no run was found to have may be a typo
            expression.check_keys(seen | known_keys(everything))
        runs = chosen
    if sort:
        key, descending = (sort[1:], True) if sort.startswith("-") else (sort.lstrip("+"), False)
        values = [(run.field(key)[1], run) for run in runs]
        present = [(value, run) for value, run in values if value is not None]
        if not present and key not in known_keys(everything):
            raise ConfigError(f"--sort: unknown key {key!r}{did_you_mean(key, sorted(known_keys(everything)))}")
        present.sort(key=lambda pair: _sort_key(pair[0]), reverse=descending)
        runs = [run for _, run in present] + [run for value, run in values if value is None]  # missing: last
    return runs[:limit] if limit else runs


def query_keys(where: Optional[str], sort: Optional[str]) -> list[str]:
    """The keys a ``--where`` and ``--sort`` read (for :func:`trainwise.runs.store.load_runs`)."""
    keys = sorted(parse_filter(where).keys(canonical=True)) if where else []
    return keys + ([sort.lstrip("+-")] if sort else [])


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value))


def columns_for(runs: Sequence[Run], *, where: Optional[str], sort: Optional[str],
                extra: Optional[str]) -> list[str]:
    """id, name, status, started, duration, up to three figures the runs have, and every key named
    in ``--where``, ``--sort`` or ``--columns``."""
    figures = [key for key in FIGURE_COLUMNS if any(key in run.summary for run in runs)][:MAX_DEFAULT_FIGURES]
    named: list[str] = []
    if where:
        named += sorted(k.split(".", 1)[1] if k.startswith(("config.", "summary.")) else k
                        for k in parse_filter(where).keys())
    if sort:
        named.append(sort.lstrip("+-"))
    if extra:
        named += [key.strip() for key in extra.split(",") if key.strip()]
    return list(dict.fromkeys([*BASE_COLUMNS, *named, *figures]))


def cell(run: Run, key: str) -> Any:
    return run.field(key)[1]


def display(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key in ("started", "ended") and isinstance(value, (int, float)):
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(value))
    if key == "duration" and isinstance(value, (int, float)):
        return _duration(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"
    return str(value)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def to_csv(runs: Sequence[Run], columns: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for run in runs:
        writer.writerow([_csv_value(key, cell(run, key)) for key in columns])
    return out.getvalue()


def _csv_value(key: str, value: Any) -> Any:
    """Times as ISO 8601 UTC, durations in seconds, a missing value as an empty cell."""
    if value is None:
        return ""
    if key in ("started", "ended") and isinstance(value, (int, float)):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))
    if key == "duration" and isinstance(value, float):
        return round(value, 3)
    return value


def to_json(runs: Sequence[Run]) -> str:
    return json.dumps([as_dict(run) for run in runs], default=str)


def as_dict(run: Run) -> dict[str, Any]:
    return {"id": run.id, "name": run.name, "status": run.status, "recorded_status": run.recorded_status,
            "folder": str(run.folder), "host": run.host, "pid": run.pid, "started": run.started, "ended": run.ended,
            "heartbeat": run.heartbeat, "git": {"commit": run.git_commit, "dirty": run.git_dirty},
            "summary": run.summary, "config": run.config, "environment": run.env}


STATUS_STYLES = {"completed": "green", "stopped_early": "green", "running": "cyan", "crashed": "bold red",
                 "failed": "red", "diverged": "red", "interrupted": "yellow", "pruned": "magenta",
                 "missing": "bold red"}


def print_table(runs: Sequence[Run], columns: Sequence[str], *, total: int) -> None:
    """A rich table (plain text when the output is not a terminal)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for key in columns:
        table.add_column(key, justify="right" if key not in ("id", "name", "status", "started") else "left",
                         no_wrap=key in ("id", "status", "started", "duration"), overflow="fold")
    for run in runs:
        cells = [escape(display(key, cell(run, key))) for key in columns]
        style = STATUS_STYLES.get(run.status)
        if style and "status" in columns:
            index = list(columns).index("status")
            cells[index] = f"[{style}]{cells[index]}[/]"
        table.add_row(*cells)
    console = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 400)
    console.print(table)
    console.print(f"{len(runs)} of {total} runs", style="dim", highlight=False)
