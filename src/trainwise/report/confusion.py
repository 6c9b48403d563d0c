"""The confusion matrix as an HTML table heatmap: counts in the cells, each cell's background
the fraction of its true class (rows normalized), so a class with few samples reads as well as a
large one. Plain HTML and inline colours: no image, no script."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

from trainwise.errors import DataError

LOW, HIGH = (255, 255, 255), (8, 81, 156)  # white to matplotlib's "Blues" dark end
DARK_TEXT_ABOVE = 0.5  # cells darker than this get white text


def check_matrix(matrix: Any, class_names: Any) -> tuple[list[list[float]], list[str]]:
    """The matrix as rows of floats and one name per class, or DataError saying what is wrong.

    Example:
        >>> check_matrix([[5, 1], [0, 6]], None)
        ([[5.0, 1.0], [0.0, 6.0]], ['0', '1'])
    """
    try:
        rows = [[float(value) for value in row] for row in matrix]
    except (TypeError, ValueError) as err:
        raise DataError(f"confusion matrix must be a list of rows of numbers, got {matrix!r:.80}") from err
    if not rows or any(len(row) != len(rows) for row in rows):
        raise DataError(f"confusion matrix must be square and non-empty, got {len(rows)} rows of lengths "
                        f"{[len(row) for row in rows]}")
    if any(not math.isfinite(value) or value < 0 for row in rows for value in row):
        raise DataError("confusion matrix counts must be finite and >= 0")
    names = [str(i) for i in range(len(rows))] if class_names is None else [str(name) for name in class_names]
    if len(names) != len(rows):
        raise DataError(f"class_names must have one name per class ({len(rows)}), got {len(names)}")
    return rows, names


def cell_color(fraction: float) -> str:
    """The background of a cell holding ``fraction`` of its true class, ``#rrggbb``.

    Example:
        >>> cell_color(0.0), cell_color(1.0)
        ('#ffffff', '#08519c')
    """
    fraction = min(max(fraction, 0.0), 1.0)
    red, green, blue = (round(low + (high - low) * fraction) for low, high in zip(LOW, HIGH))
    return f"#{red:02x}{green:02x}{blue:02x}"


def confusion_table(matrix: Sequence[Sequence[float]], class_names: Sequence[str] | None) -> str:
    """The table, rows true classes, columns predicted ones; a note instead when the matrix in
    summary.json is malformed (the report never fails on it)."""
    try:
        rows, names = check_matrix(matrix, class_names)
    except DataError as err:
        return f'<p class="muted">The confusion matrix in summary.json is not shown: {_escape(str(err))}</p>'
    total = sum(sum(row) for row in rows)
    head = "".join(f'<th scope="col">{_escape(name)}</th>' for name in names)
    body = []
    for name, row in zip(names, rows):
        row_sum = sum(row)
        cells = []
        for predicted, count in zip(names, row):
            fraction = count / row_sum if row_sum > 0 else 0.0
            text_color = "#ffffff" if fraction > DARK_TEXT_ABOVE else "#1f2328"
            tip = f"true {name}, predicted {predicted}: {count:,.0f} of {row_sum:,.0f} ({100 * fraction:.1f}%)"
            cells.append(f'<td class="num" style="background:{cell_color(fraction)};color:{text_color}" '
                         f'title="{_escape(tip)}">{count:,.0f}</td>')
        body.append(f'<tr><th scope="row">{_escape(name)}</th>{"".join(cells)}</tr>')
    legend = ("Rows are the true class, columns the predicted one; the number is the count, the colour "
              "the fraction of the true class.")
    return (f'<p class="confusion-legend">{_escape(legend)}</p>\n<table class="confusion">\n'
            f"<caption>Confusion matrix ({total:,.0f} samples)</caption>\n"
            f'<thead><tr><th scope="col">true \\ predicted</th>{head}</tr></thead>\n'
            f'<tbody>{"".join(body)}</tbody>\n</table>')


def _escape(text: str) -> str:
    return html.escape(text, quote=True)
