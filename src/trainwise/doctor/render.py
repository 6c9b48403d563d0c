"""The doctor's report as a terminal table (rich)."""

from __future__ import annotations

import json
from typing import Any

from trainwise.doctor.report import DoctorReport

_STYLES = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red", "SKIP": "dim"}


def print_report(report: DoctorReport, *, title: str = "trainwise doctor", console: Any = None) -> None:
    """One row per check: status, id, value, message and fix; the verdict under it."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    if console is None:
        console = Console(soft_wrap=False)
        if not console.is_terminal:  # a log file or a pipe: wide enough to read
            console = Console(soft_wrap=False, width=140)
    table = Table(title=title, show_lines=False, expand=True)
    table.add_column("status", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("value", overflow="fold", max_width=18)
    table.add_column("finding (and fix)", overflow="fold", ratio=1)
    for c in report.checks:
        text = escape(c.message) + (f"\n[bold]fix:[/bold] {escape(c.fix)}" if c.fix else "")
        table.add_row(f"[{_STYLES.get(c.status, 'default')}]{c.status}[/]", c.id, escape(_short(c.value)), text)
    console.print(table)
    counts = {s: sum(c.status == s for c in report.checks) for s in _STYLES}
    skipped = f", {counts['SKIP']} skipped" if counts["SKIP"] else ""
    console.print(f"verdict: [{_STYLES[report.verdict]}]{report.verdict}[/]  "
                  f"({counts['PASS']} pass, {counts['WARN']} warn, {counts['FAIL']} fail{skipped})")


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_short(v)}" for k, v in list(value.items())[:3])
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."
