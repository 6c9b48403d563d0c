"""A small SVG line-chart writer: the report's curves without matplotlib.

One chart is one ``<svg>`` string holding one or more panels side by side. A panel draws one or
more series of ``(x, y)`` points as lines, points, or both, on linear or log axes with "nice"
ticks (1-2-5 steps on a linear axis, decades labelled ``1e-3`` on a log axis), axis labels, a
legend, an optional vertical dashed marker (the best epoch) and notes. Points whose x or y is
nan, inf, or not positive on a log axis are left out and break the line there. The output has a
``viewBox`` (it scales to its container), a ``<title>`` and ``<desc>`` for screen readers, and is
deterministic: the same input gives the same bytes. Nothing outside the standard library is used.

Example:
    >>> panel = Panel("loss", [Series("train", [1, 2, 3], [0.9, 0.5, 0.4])], x_label="epoch")
    >>> render_chart([panel], title="Training curves").startswith("<svg ")
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

__all__ = ["Panel", "Series", "format_tick", "log_ticks", "nice_step", "nice_ticks", "render_chart"]

PANEL_WIDTH, PANEL_HEIGHT = 360, 280
TITLE_HEIGHT = 30
# The plot area inside a panel: room for the panel title and legend above, tick labels and the
# axis label below and to the left.
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 62, 14, 54, 42
PAD = 0.04  # of the data range, on each side of a linear axis (so no point sits on the frame)
MAX_TICKS = 6
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
_CHAR_WIDTH = 0.6  # of the font size: an estimate of a character's width, for legend layout


@dataclass
class Series:
    """One series of a panel: ``x`` and ``y`` of equal length, drawn as a line, points or both."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    color: str = "#1f77b4"
    line: bool = True
    points: bool = False
    width: float = 1.8


@dataclass
class Panel:
    """One set of axes. ``y_scale``/``x_scale`` are ``"linear"`` or ``"log"``; ``marker_x`` draws a
    vertical dashed line there, named ``marker_label`` in the legend; ``notes`` are written in
    the plot area (one under the other); ``integer_x`` keeps x ticks on whole numbers."""

    title: str
    series: list[Series]
    x_label: str = ""
    y_label: str = ""
    y_scale: str = "linear"
    x_scale: str = "linear"
    integer_x: bool = False
    marker_x: float | None = None
    marker_label: str = ""
    notes: list[str] = field(default_factory=list)


def nice_step(span: float, max_ticks: int = MAX_TICKS, *, integer: bool = False) -> float:
    """The smallest step of 1, 2 or 5 times a power of ten that cuts ``span`` into at most
    ``max_ticks - 1`` intervals (at least 1 when ``integer``).

    Example:
        >>> nice_step(1.0), nice_step(2.25), nice_step(843, integer=True), nice_step(3, integer=True)
        (0.2, 0.5, 200.0, 1.0)
    """
    if not span > 0 or not math.isfinite(span):
        return 1.0
    exponent = math.floor(math.log10(span / max(max_ticks - 1, 1)))
    while True:
        for mantissa in (1, 2, 5):
            step = float(f"{mantissa}e{exponent}")
            if (not integer or step >= 1) and span / step <= max_ticks - 1 + 1e-9:
                return step
        exponent += 1


def nice_ticks(lo: float, hi: float, max_ticks: int = MAX_TICKS, *, integer: bool = False) -> list[float]:
    """The multiples of :func:`nice_step` inside ``[lo, hi]``, as exact decimals.

    Example:
        >>> nice_ticks(0, 1)
        [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
        >>> nice_ticks(0.05, 2.3)
        [0.5, 1.0, 1.5, 2.0]
    """
    step = nice_step(hi - lo, max_ticks, integer=integer)
    mantissa, exponent = f"{step:e}".split("e")
    if not (math.isfinite(lo) and math.isfinite(hi) and hi - lo <= step * max_ticks * 2):
        return []  # a range too wide for floats (hi - lo overflowed): no ticks rather than millions
    first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    # i * mantissa, then the power of ten through the decimal text: 0.6, not 0.6000000000000001
    return [float(f"{i * round(float(mantissa))}e{int(exponent)}") for i in range(first, last + 1)]


def log_ticks(lo: float, hi: float, max_ticks: int = MAX_TICKS + 1) -> list[float]:
    """Ticks of a log axis over ``[lo, hi]`` (both > 0): the powers of ten inside, every second or
    third one when there are too many; 2x and 5x each decade as well when fewer than three fit.

    Example:
        >>> log_ticks(1e-5, 0.5)
        [1e-05, 0.0001, 0.001, 0.01, 0.1]
        >>> log_ticks(0.05, 2.3)
        [0.05, 0.1, 0.2, 0.5, 1.0, 2.0]
    """
    first, last = math.ceil(math.log10(lo) - 1e-9), math.floor(math.log10(hi) + 1e-9)
    decades = list(range(first, last + 1))
    if len(decades) < 3:
        candidates = [float(f"{m}e{k}") for k in range(first - 1, last + 1) for m in (1, 2, 5)]
        return [value for value in candidates if lo * (1 - 1e-9) <= value <= hi * (1 + 1e-9)]
    stride = math.ceil(len(decades) / max_ticks)
    return [float(f"1e{k}") for k in decades if (k - decades[0]) % stride == 0]


def format_tick(value: float, step: float | None = None) -> str:
    """A tick label: plain decimals to the step's precision, exponent form (``2.5e-4``) for very
    small or large numbers, and on log axes (``step=None``) always.

    Example:
        >>> format_tick(0.6, 0.2), format_tick(800.0, 200.0), format_tick(0.00025, 0.00005)
        ('0.6', '800', '2.5e-4')
        >>> format_tick(0.001), format_tick(1.0)
        ('1e-3', '1e0')
    """
    if value == 0:
        return "0"
    if step is not None:
        decimals = max(0, -math.floor(math.log10(step) + 1e-9))
        if decimals <= 4 and abs(value) < 1e6:
            return f"{value:.{decimals}f}"
    mantissa, exponent = f"{value:.3e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


class _Axis:
    """One axis: its data range (padded), its ticks and the map from data to pixels."""

    def __init__(self, values: list[float], scale: str, start: float, end: float, *,
                 integer: bool = False, pad: bool = True) -> None:
        self.log = scale == "log"
        self.start, self.end = start, end
        if self.log:
            lo, hi = (min(values), max(values)) if values else (0.1, 1.0)
            if hi / lo < 1.0 + 1e-9:
                lo, hi = lo / 2, hi * 2
            span = math.log10(hi) - math.log10(lo)
            self.lo, self.hi = math.log10(lo) - PAD * span, math.log10(hi) + PAD * span
            self.ticks = log_ticks(10 ** self.lo, 10 ** self.hi)
            self.step: float | None = None
        else:
            lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
            if hi - lo <= 1e-12 * max(abs(lo), abs(hi), 1e-300):
                half = 1.0 if integer or lo == 0 else abs(lo) * 0.1
                lo, hi = lo - half, hi + half
            margin = PAD * (hi - lo) if pad else 0.0
            self.lo, self.hi = lo - margin, hi + margin
            self.step = nice_step(self.hi - self.lo, integer=integer)
            self.ticks = nice_ticks(self.lo, self.hi, integer=integer)

    def to_pixel(self, value: float) -> float:
        position = math.log10(value) if self.log else value
        return self.start + (position - self.lo) / (self.hi - self.lo) * (self.end - self.start)

    def label(self, value: float) -> str:
        return format_tick(value, self.step)

    def usable(self, value: float) -> bool:
        return math.isfinite(value) and (value > 0 or not self.log)


def _num(value: float) -> str:
    """A pixel coordinate in one decimal, without a trailing ``.0`` or a ``-0``."""
    text = f"{value:.1f}"
    text = text[:-2] if text.endswith(".0") else text
    return "0" if text == "-0" else text


def _text(x: float, y: float, content: str, *, size: int = 11, anchor: str = "middle",
          extra: str = "") -> str:
    return (f'<text x="{_num(x)}" y="{_num(y)}" font-size="{size}" text-anchor="{anchor}"{extra}>'
            f"{escape(content)}</text>")


def _usable_points(series: Series, x_axis_log: bool, y_axis_log: bool) -> list[tuple[float, float] | None]:
    """The series' points in order; None where a point cannot be drawn (a gap in the line)."""
    points: list[tuple[float, float] | None] = []
    for x, y in zip(series.x, series.y):
        x, y = float(x), float(y)
        ok = math.isfinite(x) and math.isfinite(y) and (x > 0 or not x_axis_log) and (y > 0 or not y_axis_log)
        points.append((x, y) if ok else None)
    return points


def _path(pixels: list[tuple[float, float] | None]) -> str:
    """``M x,y L x,y ...``, a new ``M`` after each gap; repeated pixels are written once."""
    parts: list[str] = []
    pen_down, last = False, None
    for point in pixels:
        if point is None:
            pen_down = False
            continue
        coord = f"{_num(point[0])},{_num(point[1])}"
        if pen_down and coord == last:
            continue
        parts.append(("L" if pen_down else "M") + coord)
        pen_down, last = True, coord
    return " ".join(parts)


def _legend(panel: Panel, drawn: list[Series], left: float, right: float, y: float) -> list[str]:
    """Legend entries in a row (wrapping) between ``left`` and ``right`` above the plot area."""
    entries = [(s.label, s.color, s.line, s.points, "") for s in drawn if s.label]
    if panel.marker_x is not None and panel.marker_label:
        entries.append((panel.marker_label, "#777777", True, False, ' stroke-dasharray="4 3"'))
    parts, x = [], left
    for label, color, line, points, dash in entries:
        width = 22 + len(label) * 10 * _CHAR_WIDTH + 12
        if x + width > right and x > left:
            x, y = left, y + 14
        if line:
            parts.append(f'<line x1="{_num(x)}" y1="{_num(y - 4)}" x2="{_num(x + 16)}" y2="{_num(y - 4)}" '
                         f'stroke="{color}" stroke-width="2"{dash}/>')
        if points:
            parts.append(f'<circle cx="{_num(x + 8)}" cy="{_num(y - 4)}" r="3" fill="{color}"/>')
        parts.append(_text(x + 21, y, label, size=10, anchor="start"))
        x += width
    return parts


def _panel(panel: Panel, left: float, top: float, width: float, height: float) -> str:
    x0, x1 = left + MARGIN_LEFT, left + width - MARGIN_RIGHT
    y0, y1 = top + MARGIN_TOP, top + height - MARGIN_BOTTOM  # y0 top of the plot area, y1 bottom
    x_log, y_log = panel.x_scale == "log", panel.y_scale == "log"
    prepared = [(s, _usable_points(s, x_log, y_log)) for s in panel.series]
    xs = [p[0] for _, points in prepared for p in points if p is not None]
    ys = [p[1] for _, points in prepared for p in points if p is not None]
    marker = panel.marker_x
    if marker is not None and math.isfinite(marker) and (marker > 0 or not x_log):
        xs.append(float(marker))
    else:
        marker = None
    x_axis = _Axis(xs, panel.x_scale, x0, x1, integer=panel.integer_x)
    y_axis = _Axis(ys, panel.y_scale, y1, y0)
    out = [f'<g class="panel" aria-label="{escape(panel.title, {chr(34): "&quot;"})}">',
           _text(left + width / 2, top + 18, panel.title, size=13, extra=' font-weight="600"'),
           f'<rect class="frame" x="{_num(x0)}" y="{_num(y0)}" width="{_num(x1 - x0)}" '
           f'height="{_num(y1 - y0)}" fill="none" stroke="#9aa4ae"/>']
    for tick in y_axis.ticks:
        y = y_axis.to_pixel(tick)
        out.append(f'<line x1="{_num(x0)}" y1="{_num(y)}" x2="{_num(x1)}" y2="{_num(y)}" stroke="#e6eaef"/>')
        out.append(_text(x0 - 5, y + 3.5, y_axis.label(tick), size=10, anchor="end"))
    for tick in x_axis.ticks:
        x = x_axis.to_pixel(tick)
        out.append(f'<line x1="{_num(x)}" y1="{_num(y1)}" x2="{_num(x)}" y2="{_num(y1 + 4)}" stroke="#9aa4ae"/>')
        out.append(_text(x, y1 + 15, x_axis.label(tick), size=10))
    if panel.x_label:
        out.append(_text((x0 + x1) / 2, top + height - 8, panel.x_label))
    if panel.y_label:
        cy = (y0 + y1) / 2
        out.append(_text(left + 13, cy, panel.y_label, extra=f' transform="rotate(-90 {_num(left + 13)} {_num(cy)})"'))
    drawn = []
    for series, points in prepared:
        pixels = [None if p is None else (x_axis.to_pixel(p[0]), y_axis.to_pixel(p[1])) for p in points]
        if not any(p is not None for p in pixels):
            continue
        drawn.append(series)
        if series.line:
            out.append(f'<path class="series" d="{_path(pixels)}" fill="none" stroke="{series.color}" '
                       f'stroke-width="{series.width}" stroke-linejoin="round" stroke-linecap="round"/>')
        if series.points:
            out.append(f'<g class="points" fill="{series.color}">' + "".join(
                f'<circle cx="{_num(p[0])}" cy="{_num(p[1])}" r="2.6"/>' for p in pixels if p is not None)
                + "</g>")
    if marker is not None:
        marker_px = _num(x_axis.to_pixel(marker))
        out.append(f'<line class="marker" x1="{marker_px}" y1="{_num(y0)}" x2="{marker_px}" y2="{_num(y1)}" '
                   'stroke="#777777" stroke-width="1.4" stroke-dasharray="4 3"/>')
    out += _legend(panel, drawn, x0, x1, top + 36)
    if not drawn:
        out.append(_text((x0 + x1) / 2, (y0 + y1) / 2, f"no finite {panel.title} logged", extra=' fill="#59636e"'))
    for index, note in enumerate(panel.notes):
        out.append(_text(x0 + 6, y1 - 8 - 14 * (len(panel.notes) - 1 - index), note, size=10, anchor="start",
                         extra=' fill="#59636e"'))
    out.append("</g>")
    return "\n".join(out)


def render_chart(panels: Sequence[Panel], *, title: str, description: str = "", chart_id: str = "chart",
                 panel_width: int = PANEL_WIDTH, panel_height: int = PANEL_HEIGHT) -> str:
    """One ``<svg>`` with ``panels`` side by side under ``title``.

    Args:
        panels: the panels, left to right.
        title: shown on top and as the SVG's ``<title>``.
        description: the ``<desc>`` read by screen readers (default: the panels' titles).
        chart_id: prefix of the element ids, unique within a page that inlines several charts.
        panel_width, panel_height: one panel's size in SVG units.

    Returns:
        The SVG document as a string (no XML declaration, so it can be inlined in HTML).
    """
    width, height = panel_width * max(len(panels), 1), TITLE_HEIGHT + panel_height
    description = description or "Panels: " + ", ".join(panel.title for panel in panels) + "."
    body = [_panel(panel, index * panel_width, TITLE_HEIGHT, panel_width, panel_height)
            for index, panel in enumerate(panels)]
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" role="img" aria-labelledby="{chart_id}-title {chart_id}-desc" '
            f'font-family="{FONT}" fill="#1f2328">\n'
            f'<title id="{chart_id}-title">{escape(title)}</title>\n'
            f'<desc id="{chart_id}-desc">{escape(description)}</desc>\n'
            f'<rect width="{width}" height="{height}" fill="#ffffff"/>\n'
            + _text(width / 2, 20, title, size=15, extra=' font-weight="600"') + "\n"
            + "\n".join(body) + "\n</svg>\n")
