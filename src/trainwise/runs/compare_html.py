"""compare.html: one self-contained page (inline CSS and SVG, no scripts, nothing fetched) that
reads on a laptop and a phone: the runs, the parameters that differ, final and best figures with
their change against the first run, environment differences, overlaid curves per metric and, for
three runs or more, parallel coordinates. Every string that came from a run is HTML-escaped."""

from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Any, Optional, Sequence

from trainwise.report.style import PAGE_CSS
from trainwise.report.svg import Panel, Series, render_chart
from trainwise.runs.compare import Comparison, better, delta
from trainwise.runs.listing import display

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22")
COMPARE_CSS = """
body { max-width: 1280px; }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; }
td.changed { background: #fff8c5; }
.better { color: #1a7f37; } .worse { color: #cf222e; }
.swatch { display: inline-block; width: .8rem; height: .8rem; border-radius: 2px; margin-right: .35rem;
          vertical-align: middle; }
@media (max-width: 640px) { body { margin: 1rem auto; font-size: 14px; } th, td { padding: .25rem .45rem; } }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def render(comparison: Comparison) -> str:
    runs = comparison.runs
    names = ", ".join(run.name for run in runs[:4]) + (f" and {len(runs) - 4} more" if len(runs) > 4 else "")
    sections = [
        f"<header><h1>Comparing {len(runs)} runs</h1><p class=\"muted\">{_e(names)}</p></header>",
        _section("Runs", _runs_table(comparison)),
        _section("Parameters" + (" (all)" if comparison.all_params else " that differ"), _params_table(comparison)),
        _section("Figures (change against the first run)", _figures_table(comparison)),
        _section("Environment", _environment_table(comparison)),
        _section("Curves", _curves(comparison)),
    ]
    if len(runs) >= 3:
        sections.append(_section("Parallel coordinates", _parallel(comparison)))
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>Compare {_e(names)} — trainwise</title>\n<style>{PAGE_CSS}{COMPARE_CSS}</style>\n</head>\n"
            "<body>\n" + "\n".join(sections) + "\n</body>\n</html>\n")


def write(comparison: Comparison, path: Path) -> Path:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(render(comparison), encoding="utf-8")
    os.replace(partial, path)
    return path


def _section(title: str, body: str) -> str:
    return f"<section>\n<h2>{_e(title)}</h2>\n{body}\n</section>"


def _table(head: Sequence[str], rows: Sequence[str]) -> str:
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    return (f'<div class="scroll"><table><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody>'
            "</table></div>")


def _run_headers(comparison: Comparison) -> list[str]:
    return [""] + [run.name for run in comparison.runs]


def _runs_table(comparison: Comparison) -> str:
    rows = []
    for index, run in enumerate(comparison.runs):
        color = PALETTE[index % len(PALETTE)]
        git = "" if run.git_commit is None else run.git_commit[:10] + (" (dirty)" if run.git_dirty else "")
        cells = [run.id, run.status, display("started", run.started), display("duration", run.field("duration")[1]),
                 git, str(run.folder)]
        rows.append(f'<tr><th scope="row"><span class="swatch" style="background:{color}"></span>{_e(run.name)}'
                    "</th>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    return _table(["run", "id", "status", "started", "duration", "git", "folder"], rows)


def _value_rows(rows: Sequence[tuple[str, list[Any]]]) -> list[str]:
    out = []
    for key, values in rows:
        changed = any(v != values[0] for v in values[1:])
        cls = ' class="changed"' if changed else ""
        out.append(f'<tr><th scope="row">{_e(key)}</th>'
                   + "".join(f"<td{cls}>{_e(display(key, v))}</td>" for v in values) + "</tr>")
    return out


def _params_table(comparison: Comparison) -> str:
    if not comparison.params:
        return '<p class="muted">The runs have the same parameters (<code>--all</code> lists them).</p>'
    return _table(_run_headers(comparison), _value_rows(comparison.params))


def _figures_table(comparison: Comparison) -> str:
    if not comparison.figures:
        return '<p class="muted">No final figures (no summary.json yet).</p>'
    rows = []
    for key, values in comparison.figures:
        cells = []
        for index, value in enumerate(values):
            change = delta(values, index)
            text = _e(display(key, value))
            if change is not None and change != 0:
                verdict = better(key, change)
                cls = "" if verdict is None else (' class="better"' if verdict else ' class="worse"')
                text += f' <small{cls}>({"+" if change > 0 else ""}{_e(display(key, change))})</small>'
            cells.append(f'<td class="num">{text}</td>')
        rows.append(f'<tr><th scope="row">{_e(key)}</th>{"".join(cells)}</tr>')
    return _table(_run_headers(comparison), rows)


def _environment_table(comparison: Comparison) -> str:
    if not comparison.environment:
        return '<p class="muted">No environment recorded.</p>'
    same = all(all(v == vs[0] for v in vs) for _, vs in comparison.environment)
    note = '<p class="muted">The same environment for every run.</p>' if same else ""
    return note + _table(_run_headers(comparison), _value_rows(comparison.environment))


def _curves(comparison: Comparison) -> str:
    drawn = comparison.runs[:comparison.drawn]
    if not comparison.curves:
        return '<p class="muted">No per-epoch metrics logged.</p>'
    charts = []
    for number, (metric, series) in enumerate(comparison.curves.items()):
        lines = [Series(label=run.name, x=x, y=y, color=PALETTE[i % len(PALETTE)], points=len(x) < 30)
                 for i, (run, (x, y)) in enumerate(zip(drawn, series)) if x]
        values = [v for _, ys in series for v in ys if v > 0]
        log_scale = "loss" in metric and values and max(values) / min(values) >= 10
        panel = Panel(title=metric, series=lines, x_label="epoch", y_label=metric, integer_x=True,
                      y_scale="log" if log_scale else "linear")
        chart = render_chart([panel], title=f"{metric} by epoch", chart_id=f"c{number}")
        charts.append(f'<figure class="chart">{chart}</figure>')
    more = len(comparison.runs) - len(drawn)
    note = (f'<p class="muted">{more} more runs are in the tables but not drawn (<code>--draw N</code> '
            "draws more).</p>") if more > 0 else ""
    return note + '<div class="charts">' + "\n".join(charts) + "</div>"


def _parallel(comparison: Comparison, width: int = 760, height: int = 340) -> str:
    """One polyline per run across an axis per differing parameter and per headline figure."""
    runs = comparison.runs[:comparison.drawn]
    axes: list[tuple[str, list[Any]]] = [(k, v[:len(runs)]) for k, v in comparison.params]
    axes += [(k, v[:len(runs)]) for k, v in comparison.figures[:2]]
    axes = [(k, v) for k, v in axes if any(x is not None for x in v)][:12]
    if len(axes) < 2:
        return '<p class="muted">Fewer than two parameters or figures differ: nothing to draw.</p>'
    left, right, top, bottom = 50, 50, 40, 60
    step = (width - left - right) / (len(axes) - 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-labelledby="pc-title" font-family="system-ui, sans-serif">',
             '<title id="pc-title">Parallel coordinates of the runs</title>',
             f'<rect width="{width}" height="{height}" fill="#fff"/>']
    positions = []
    for index, (key, values) in enumerate(axes):
        x = left + index * step
        place, labels = _axis_positions(values)
        positions.append(place)
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - bottom}" stroke="#999"/>')
        parts.append(f'<text x="{x:.1f}" y="{height - bottom + 18}" font-size="11" text-anchor="middle">'
                     f"{_e(key[-24:])}</text>")
        for label, fraction in labels:
            y = height - bottom - fraction * (height - top - bottom)
            parts.append(f'<text x="{x + 4:.1f}" y="{y:.1f}" font-size="9" fill="#59636e">{_e(label[:14])}</text>')
    for run_index in range(len(runs)):
        points = []
        for axis_index, place in enumerate(positions):
            level = place[run_index]
            if level is not None:
                y = height - bottom - level * (height - top - bottom)
                points.append(f"{left + axis_index * step:.1f},{y:.1f}")
        parts.append(f'<polyline points="{" ".join(points)}" fill="none" stroke-width="2" '
                     f'stroke="{PALETTE[run_index % len(PALETTE)]}"/>')
    parts.append("</svg>")
    legend = " ".join(f'<span><span class="swatch" style="background:{PALETTE[i % len(PALETTE)]}"></span>'
                      f"{_e(run.name)}</span>" for i, run in enumerate(runs))
    return f'<figure class="chart">{"".join(parts)}<figcaption>{legend}</figcaption></figure>'


def _axis_positions(values: list[Any]) -> tuple[list[Optional[float]], list[tuple[str, float]]]:
    """Each value's height on its axis (0..1) and the axis labels: numbers spread linearly (log
    when they span over two decades and are positive), anything else as evenly spaced categories."""
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
               and math.isfinite(v)]
    if numbers and len(numbers) == sum(v is not None for v in values):
        lo, hi = min(numbers), max(numbers)
        use_log = lo > 0 and hi / lo > 100
        f = (lambda v: math.log10(v)) if use_log else (lambda v: v)
        span = (f(hi) - f(lo)) or 1.0
        place = [None if v is None else (f(v) - f(lo)) / span if hi != lo else 0.5 for v in values]
        return place, [(display("", lo), 0.0 if hi != lo else 0.5), (display("", hi), 1.0)] if hi != lo else \
            [(display("", lo), 0.5)]
    categories = list(dict.fromkeys(str(v) for v in values if v is not None))
    slot = {c: (i + 0.5) / len(categories) for i, c in enumerate(categories)}
    return [None if v is None else slot[str(v)] for v in values], [(c, slot[c]) for c in categories]
