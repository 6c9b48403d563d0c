"""The report's "Where the time went" section, from summary.json's ``timings`` (written by every fit:
seconds per phase of the whole run and of each epoch, peak memory, the bottleneck in words).

No section when the summary has no ``timings`` (a run from before they were measured, or one that
crashed before its summary).
"""

from __future__ import annotations

import html
from typing import Any, Optional

from trainwise.engine.timing import PHASE_LABELS, PHASES

_BAR_COLORS = {"setup": "#8c959f", "data": "#bc4c00", "forward_backward": "#0969da", "optimizer": "#54aeff",
               "evaluation": "#8250df", "checkpoint": "#bf8700", "other": "#d0d7de"}
_MAX_EPOCH_ROWS = 20  # longer runs show their first and last epochs


def timing_section(summary: Optional[dict[str, Any]]) -> str:
    """The section's HTML, or "" when there is nothing to show."""
    timings = (summary or {}).get("timings")
    if not isinstance(timings, dict) or not isinstance(timings.get("seconds"), dict):
        return ""
    seconds, fractions = timings["seconds"], timings.get("fractions") or {}
    verdict = "".join(f"<li>{html.escape(str(line))}</li>" for line in timings.get("bottleneck") or [])
    parts = [f'<ul class="bottleneck">{verdict}</ul>' if verdict else "", _bar(fractions),
             _phase_table(seconds, fractions)]
    if timings.get("peak_memory_mb") is not None:
        parts.append(f'<p>Peak memory: {float(timings["peak_memory_mb"]):,.1f} MB '
                     f'<span class="muted">({html.escape(str(timings.get("memory", "")))})</span></p>')
    parts.append(_epoch_table(timings.get("epochs") or []))
    body = "\n".join(part for part in parts if part)
    return f'<section id="timings">\n<h2>Where the time went</h2>\n{body}\n</section>'


def _bar(fractions: dict[str, float]) -> str:
    cells = "".join(
        f'<span title="{html.escape(PHASE_LABELS[p])} {fractions[p]:.1%}" style="display:inline-block;'
        f'height:100%;width:{fractions[p] * 100:.2f}%;background:{_BAR_COLORS[p]}"></span>'
        for p in PHASES if fractions.get(p, 0) > 0)
    return (f'<div role="img" aria-label="share of the run per phase" style="display:flex;height:1.2rem;'
            f'max-width:640px;border:1px solid #d0d7de;margin:.5rem 0">{cells}</div>')


def _phase_table(seconds: dict[str, float], fractions: dict[str, float]) -> str:
    rows = "".join(
        f'<tr><th scope="row"><span style="color:{_BAR_COLORS[p]}">&#9632;</span> {html.escape(PHASE_LABELS[p])}'
        f'</th><td class="num">{float(seconds.get(p, 0.0)):.3f} s</td>'
        f'<td class="num">{float(fractions.get(p, 0.0)):.1%}</td></tr>'
        for p in PHASES)
    total = sum(float(v) for v in seconds.values())
    return (f'<table class="timings"><thead><tr><th>phase</th><th class="num">seconds</th>'
            f'<th class="num">share of the run</th></tr></thead><tbody>{rows}</tbody>'
            f'<tfoot><tr><th scope="row">run (wall time)</th><td class="num">{total:.3f} s</td>'
            f'<td class="num">100%</td></tr></tfoot></table>')


def _epoch_table(epochs: list[dict[str, Any]]) -> str:
    if not epochs:
        return ""
    shown = epochs if len(epochs) <= _MAX_EPOCH_ROWS else epochs[:_MAX_EPOCH_ROWS // 2] + epochs[-_MAX_EPOCH_ROWS // 2:]
    phases = [p for p in PHASES if p != "setup"]
    head = "".join(f'<th class="num">{html.escape(p.replace("_", "/"))}</th>' for p in phases)
    rows = []
    for epoch in shown:
        wall = float(epoch.get("wall_seconds") or 0.0)
        cells = "".join(f'<td class="num">{float(epoch["seconds"].get(p, 0.0)) / wall:.0%}</td>' if wall else
                        '<td class="num">—</td>' for p in phases)
        rows.append(f'<tr><td class="num">{int(epoch["epoch"])}</td><td class="num">{wall:.2f} s</td>{cells}'
                    f'<td class="num">{float(epoch.get("peak_memory_mb") or 0):,.0f}</td></tr>')
    note = "" if len(shown) == len(epochs) else f'<p class="muted">{len(epochs)} epochs; the first and last ' \
        f'{_MAX_EPOCH_ROWS // 2} shown (all are in summary.json).</p>'
    return (f'<table class="timings-epochs"><caption>Per epoch (share of the epoch\'s wall time)</caption>'
            f'<thead><tr><th class="num">epoch</th><th class="num">wall</th>{head}<th class="num">peak MB</th>'
            f'</tr></thead><tbody>{"".join(rows)}</tbody></table>{note}')
