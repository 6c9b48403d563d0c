"""The report's SVG line charts (trainwise.report.svg): ticks, log axes, gaps, the marker, valid XML."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import pytest

from trainwise.report.svg import Panel, Series, format_tick, log_ticks, nice_step, nice_ticks, render_chart

NS = {"svg": "http://www.w3.org/2000/svg"}


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # raises on anything that is not well-formed XML
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


def chart(*panels: Panel, title: str = "t") -> ET.Element:
    return parse(render_chart(list(panels), title=title))


def frame(panel: ET.Element) -> tuple[float, float, float, float]:
    rect = panel.find("svg:rect[@class='frame']", NS)
    x, y, w, h = (float(rect.get(key)) for key in ("x", "y", "width", "height"))
    return x, y, w, h


def tick_labels(panel: ET.Element, axis: str) -> dict[str, float]:
    """Tick label text -> its pixel position: x labels sit below the frame, y labels left of it."""
    x0, y0, w, h = frame(panel)
    labels = {}
    for text in panel.findall("svg:text", NS):
        x, y = float(text.get("x")), float(text.get("y"))
        if axis == "x" and text.get("text-anchor") == "middle" and y0 + h < y < y0 + h + 20:
            labels[text.text] = x
        if axis == "y" and text.get("text-anchor") == "end" and x < x0:
            labels[text.text] = y - 3.5
    return labels


def path_commands(panel: ET.Element, color: str) -> list[str]:
    path = panel.find(f"svg:path[@stroke='{color}']", NS)
    return re.findall(r"[ML][-\d.]+,[-\d.]+", path.get("d"))


@pytest.mark.parametrize(("lo", "hi", "integer", "ticks"), [
    (0, 1, False, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    (0.05, 2.3, False, [0.5, 1.0, 1.5, 2.0]),
    (0.951, 0.987, False, [0.96, 0.97, 0.98]),
    (-3, 7, False, [-2.0, 0.0, 2.0, 4.0, 6.0]),
    (0, 843, True, [0.0, 200.0, 400.0, 600.0, 800.0]),
    (0.9, 3.1, True, [1.0, 2.0, 3.0]),  # whole epochs, never 1.5
    (0, 0.0004, False, [0.0, 0.0001, 0.0002, 0.0003, 0.0004]),
    (1e5, 3e5, False, [100000.0, 150000.0, 200000.0, 250000.0, 300000.0]),
])
def test_nice_ticks_exact_values(lo: float, hi: float, integer: bool, ticks: list[float]) -> None:
    assert nice_ticks(lo, hi, integer=integer) == ticks  # exact: 0.6, never 0.6000000000000001


@pytest.mark.parametrize(("span", "step"), [(1.0, 0.2), (2.25, 0.5), (10, 2.0), (0.036, 0.01), (7e-5, 2e-5)])
def test_nice_step_is_one_two_five(span: float, step: float) -> None:
    assert nice_step(span) == step


@pytest.mark.parametrize(("lo", "hi", "ticks"), [
    (1e-5, 0.5, [1e-5, 1e-4, 1e-3, 1e-2, 1e-1]),
    (0.05, 2.3, [0.05, 0.1, 0.2, 0.5, 1.0, 2.0]),  # under three decades: 2x and 5x too
    (1e-9, 1e3, [1e-9, 1e-7, 1e-5, 1e-3, 1e-1, 1e1, 1e3]),  # thinned to every second decade
])
def test_log_ticks(lo: float, hi: float, ticks: list[float]) -> None:
    assert log_ticks(lo, hi) == pytest.approx(ticks, rel=1e-12)


@pytest.mark.parametrize(("value", "step", "text"), [
    (0.6, 0.2, "0.6"), (0.96, 0.01, "0.96"), (800.0, 200.0, "800"), (-0.5, 0.5, "-0.5"), (0.0, 0.5, "0"),
    (0.00025, 5e-5, "2.5e-4"), (2e6, 5e5, "2e6"), (1e-3, None, "1e-3"), (1.0, None, "1e0"), (0.05, None, "5e-2"),
])
def test_format_tick(value: float, step: float | None, text: str) -> None:
    assert format_tick(value, step) == text


def test_linear_axis_ticks_in_the_svg() -> None:
    root = chart(Panel("acc", [Series("val", [1, 2, 3, 4], [0.951, 0.97, 0.98, 0.987])], integer_x=True))
    panel = root.find("svg:g[@class='panel']", NS)
    assert list(tick_labels(panel, "y")) == ["0.95", "0.96", "0.97", "0.98"]  # inside the padded range
    assert list(tick_labels(panel, "x")) == ["1", "2", "3", "4"]


def test_log_axis_decades_evenly_spaced() -> None:
    values = [3e-1, 1e-2, 1e-3, 1.2e-4]
    root = chart(Panel("lr", [Series("lr", [0, 1, 2, 3], values)], y_scale="log"))
    labels = tick_labels(root.find("svg:g[@class='panel']", NS), "y")
    assert list(labels) == ["1e-4", "1e-3", "1e-2", "1e-1"]  # 1e-4 lies in the padding below 1.2e-4
    gaps = [labels[a] - labels[b] for a, b in zip(list(labels), list(labels)[1:])]
    assert max(gaps) - min(gaps) < 0.25 and gaps[0] > 0  # a decade is the same height everywhere


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_leave_a_gap(bad: float) -> None:
    root = chart(Panel("loss", [Series("train", [1, 2, 3, 4, 5], [1.0, 0.8, bad, 0.5, 0.4], color="#123456")]))
    commands = path_commands(root.find("svg:g[@class='panel']", NS), "#123456")
    assert [command[0] for command in commands] == ["M", "L", "M", "L"]  # two pieces, four points


def test_non_positive_values_are_gaps_on_a_log_axis() -> None:
    root = chart(Panel("lr", [Series("lr", [0, 1, 2, 3], [1e-3, 0.0, 1e-4, 1e-5], color="#123456")],
                       y_scale="log"))
    assert [c[0] for c in path_commands(root.find("svg:g[@class='panel']", NS), "#123456")] == ["M", "M", "L"]


def test_marker_sits_on_its_x_value() -> None:
    panel = Panel("loss", [Series("val", [1, 2, 3], [0.9, 0.7, 0.8])], integer_x=True, marker_x=2,
                  marker_label="best (epoch 2)")
    group = chart(panel).find("svg:g[@class='panel']", NS)
    marker = group.find("svg:line[@class='marker']", NS)
    x0, y0, width, height = frame(group)
    assert float(marker.get("x1")) == float(marker.get("x2")) == pytest.approx(x0 + width / 2, abs=0.05)
    assert (float(marker.get("y1")), float(marker.get("y2"))) == (y0, y0 + height)  # top to bottom
    assert marker.get("stroke-dasharray")
    assert float(marker.get("x1")) == pytest.approx(tick_labels(group, "x")["2"], abs=0.05)
    assert any(text.text == "best (epoch 2)" for text in group.findall("svg:text", NS))


def test_marker_outside_the_data_widens_the_axis() -> None:
    panel = Panel("loss", [Series("val", [1, 2, 3], [0.9, 0.7, 0.8])], integer_x=True, marker_x=5)
    group = chart(panel).find("svg:g[@class='panel']", NS)
    x0, _, width, _ = frame(group)
    assert x0 < float(group.find("svg:line[@class='marker']", NS).get("x1")) < x0 + width


def test_no_marker_without_a_value() -> None:
    assert chart(Panel("loss", [Series("val", [1, 2], [0.9, 0.7])])).find(".//svg:line[@class='marker']", NS) is None


def test_points_legend_and_labels() -> None:
    panel = Panel("lr", [Series("schedule", [0, 1, 2], [1e-3, 2e-3, 1e-3], color="#d62728", points=True),
                         Series("logged", [0, 2], [1e-3, 1e-3], color="#1f77b4", line=False)],
                  x_label="optimizer step", y_label="learning rate")
    group = chart(panel).find("svg:g[@class='panel']", NS)
    assert len(group.findall("svg:g[@class='points']/svg:circle", NS)) == 3
    assert group.find("svg:path[@stroke='#1f77b4']", NS) is None  # points only: no line
    texts = [text.text for text in group.findall("svg:text", NS)]
    assert {"schedule", "logged", "optimizer step", "learning rate"} <= set(texts)


def test_empty_panel_says_so() -> None:
    group = chart(Panel("loss", [Series("train", [1, 2], [math.nan, math.inf])])).find("svg:g[@class='panel']", NS)
    assert "no finite loss logged" in [text.text for text in group.findall("svg:text", NS)]
    assert group.find("svg:path", NS) is None


def test_single_point_gets_a_dot() -> None:
    group = chart(Panel("loss", [Series("val", [1], [0.5], points=True)])).find("svg:g[@class='panel']", NS)
    assert len(group.findall("svg:g[@class='points']/svg:circle", NS)) == 1


def test_document_is_accessible_scalable_and_deterministic() -> None:
    panels = [Panel("loss <&> \"q\"", [Series("a & b", [1, 2], [1.0, 2.0])], notes=["3 non-finite loss values"]),
              Panel("lr", [Series("lr", [0, 1], [1e-3, 1e-4])], y_scale="log")]
    svg = render_chart(panels, title="Curves <run & co>", chart_id="c1")
    assert svg == render_chart(panels, title="Curves <run & co>", chart_id="c1")
    root = parse(svg)
    assert root.get("viewBox") == "0 0 720 310" and root.get("role") == "img"
    assert root.find("svg:title", NS).text == "Curves <run & co>"
    assert root.get("aria-labelledby") == "c1-title c1-desc" and root.find("svg:title", NS).get("id") == "c1-title"
    assert len(root.findall("svg:g[@class='panel']", NS)) == 2
    assert root.findall("svg:g[@class='panel']", NS)[0].get("aria-label") == 'loss <&> "q"'
    assert "3 non-finite loss values" in [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
