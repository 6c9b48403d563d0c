"""The report's learning-rate story: the lr chart drawn from schedule.csv over every step (lr.svg in
the report, lr.png on request), and the LR range test's section in words with its curve."""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainwise.errors import DataError, DataNotFoundError
from trainwise.report import write_report, write_run_plots
from trainwise.report.lr_text import format_lr, lr_finder_text
from trainwise.report.run_files import read_schedule

SCHEDULE_RED = (214, 39, 40)  # matplotlib's C3: the lr line
SVG = "{http://www.w3.org/2000/svg}"


def svg_lr_points(path: Path) -> tuple[int, int]:
    """(points on the lr line of lr.svg, logged lr points drawn as dots)."""
    root = ET.parse(path).getroot()
    line = [p for p in root.iter(f"{SVG}path") if p.get("stroke") == "#d62728"]
    vertices = len(re.findall(r"[ML][-\d.]+,[-\d.]+", line[0].get("d"))) if line else 0
    logged = [g for g in root.iter(f"{SVG}g") if g.get("class") == "points" and g.get("fill") == "#1f77b4"]
    return vertices, sum(len(list(g)) for g in logged)


def red_pixels(path: Path) -> int:
    pixels = np.asarray(Image.open(io.BytesIO(path.read_bytes())).convert("RGB"), dtype=float)
    return int((np.abs(pixels - np.array(SCHEDULE_RED)).max(axis=2) < 30).sum())


def short_run(folder: Path, *, steps: int, schedule: bool, logged_lr: bool) -> Path:
    """A run of ``steps`` optimizer steps in 2 epochs: per-epoch rows, lr rows only if asked."""
    folder.mkdir(parents=True)
    lines = ["step,epoch,split,metric,value"]
    for epoch in (1, 2):
        end = epoch * steps // 2 - 1
        if logged_lr:
            lines.append(f"{end},{epoch},train,lr,{0.01 / epoch}")
        lines += [f"{end},{epoch},train,loss,{1.0 / epoch}", f"{end},{epoch},val,loss,{1.1 / epoch}"]
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    if schedule:
        rows = "".join(f"{step},{0.01 * (1 - step / steps):.6g}\n" for step in range(steps))
        (folder / "schedule.csv").write_text("step,lr\n" + rows)
    return folder


@pytest.mark.parametrize("steps", [2, 12])
def test_lr_chart_of_a_short_run_draws_the_whole_schedule(tmp_path: Path, steps: int) -> None:
    # Runs shorter than the lr logging interval have no lr rows: the plot was empty.
    folder = short_run(tmp_path / "run", steps=steps, schedule=True, logged_lr=False)
    page = write_report(folder).read_text(encoding="utf-8")
    assert svg_lr_points(folder / "lr.svg") == (steps, 0)  # one vertex per planned step
    assert (folder / "lr.svg").read_text(encoding="utf-8").rstrip("\n") in page


def test_lr_chart_falls_back_to_logged_rows_and_marks_them_on_the_schedule(tmp_path: Path) -> None:
    folder = short_run(tmp_path / "run", steps=4, schedule=False, logged_lr=True)
    write_report(folder)
    assert svg_lr_points(folder / "lr.svg") == (2, 0)  # the two logged rows are the line
    folder = short_run(tmp_path / "long", steps=3000, schedule=True, logged_lr=True)
    write_report(folder)
    vertices, logged = svg_lr_points(folder / "lr.svg")
    assert logged == 2 and 250 < vertices <= 3000  # repeated pixels are written once


def test_no_lr_no_lr_chart(tmp_path: Path) -> None:
    folder = short_run(tmp_path / "run", steps=4, schedule=False, logged_lr=False)
    page = write_report(folder).read_text(encoding="utf-8")
    assert not (folder / "lr.svg").exists() and 'id="lr-title"' not in page


@pytest.mark.slow
@pytest.mark.parametrize("steps", [2, 12])
def test_lr_png_of_a_short_run_draws_the_whole_schedule(tmp_path: Path, steps: int) -> None:
    folder = short_run(tmp_path / "run", steps=steps, schedule=True, logged_lr=False)
    written = write_run_plots(folder, task="classification")
    assert folder / "lr.png" in written
    assert red_pixels(folder / "lr.png") > 200
    assert red_pixels(folder / "curves.png") > 100  # the curves' lr panel too


@pytest.mark.slow
def test_lr_png_falls_back_to_logged_rows_without_schedule_csv(tmp_path: Path) -> None:
    folder = short_run(tmp_path / "run", steps=4, schedule=False, logged_lr=True)
    assert folder / "lr.png" in write_run_plots(folder, task="regression")
    assert red_pixels(folder / "lr.png") > 50


@pytest.mark.slow
def test_lr_png_with_schedule_and_logged_points(tmp_path: Path) -> None:
    folder = short_run(tmp_path / "run", steps=3000, schedule=True, logged_lr=True)
    write_run_plots(folder, task="classification")
    assert red_pixels(folder / "lr.png") > 200


def test_read_schedule(tmp_path: Path) -> None:
    path = tmp_path / "schedule.csv"
    path.write_text("step,lr\n2,0.5\n0,0.1\n1,0.3\n")
    assert read_schedule(path) == ([0, 1, 2], [0.1, 0.3, 0.5])
    path.write_text("step,value\n0,1\n")
    with pytest.raises(DataError, match="has header 'step,value', expected 'step,lr'"):
        read_schedule(path)
    path.write_text("step,lr\n0,high\n")
    with pytest.raises(DataError, match="line 2 .*expected an integer step and a number lr, got '0,high'"):
        read_schedule(path)
    with pytest.raises(DataNotFoundError, match="schedule file not found"):
        read_schedule(tmp_path / "nope.csv")


@pytest.mark.parametrize(("value", "text"), [
    (0.0032, "3.2e-3"), (0.005, "5e-3"), (0.0112, "1.1e-2"), (1.0, "1e0"), (None, "none"),
])
def test_format_lr(value: float | None, text: str) -> None:
    assert format_lr(value) == text


@pytest.mark.parametrize(("info", "text"), [
    ({"suggestion": 0.0032, "rule": "valley",
      "suggestions": {"valley": 0.0032, "steepest": 0.011, "minimum": 0.005}},
     "suggested lr 3.2e-3 by the valley rule; other rules: steepest 1.1e-2, minimum 5e-3"),
    ({"suggestion": None, "rule": "valley", "reason": "the loss never fell"},
     "the range test gave no suggestion: the loss never fell"),
    ({"reused_from_run": True}, "lr reused from the run's first start"),
])
def test_lr_finder_text(info: dict, text: str) -> None:
    assert lr_finder_text(info).startswith(text)


LR_FINDER = {"suggestion": 0.0032, "rule": "valley",
             "suggestions": {"valley": 0.0032, "steepest": 0.011, "minimum": 0.005}}


def finder_section(page: str) -> str:
    section = page[page.index("<h2>Learning-rate range test</h2>"):]
    return section[: section.index("</section>")]


def test_report_lr_finder_section_in_words_with_its_curve(tmp_path: Path) -> None:
    folder = short_run(tmp_path / "run", steps=12, schedule=True, logged_lr=False)
    lrs = [1e-6 * 1.5 ** i for i in range(30)]
    (folder / "lr_find.json").write_text(json.dumps({**LR_FINDER, "lrs": lrs, "reason": None,
                                                     "losses": [2.3 - 0.01 * i for i in range(30)]}))
    summary = {"status": "completed", "epochs_run": 2, "lr": 0.0032, "lr_finder": LR_FINDER}
    (folder / "summary.json").write_text(json.dumps(summary))
    page = write_report(folder).read_text(encoding="utf-8")
    section = finder_section(page)
    assert "suggested lr 3.2e-3 by the valley rule; other rules: steepest 1.1e-2, minimum 5e-3" in section
    curve = ET.fromstring(re.search(r"<svg .*?</svg>", section, re.S).group(0))
    texts = [text.text for text in curve.iter(f"{SVG}text")]
    assert "suggested lr 3.2e-3" in texts and "learning rate" in texts and "1e-5" in texts  # log lr axis
    assert sum(1 for line in curve.iter(f"{SVG}line") if line.get("class") == "marker") == 1
    assert not re.search(r"&quot;suggestion|\"suggestion\"|Lr finder", page)  # never raw JSON


def test_report_lr_finder_section_embeds_lr_find_png_without_a_curve(tmp_path: Path) -> None:
    folder = short_run(tmp_path / "run", steps=12, schedule=True, logged_lr=False)
    (folder / "lr_find.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))  # an old run's plot
    summary = {"status": "completed", "epochs_run": 2, "lr": 0.0032, "lr_finder": LR_FINDER}
    (folder / "summary.json").write_text(json.dumps(summary))
    page = write_report(folder).read_text(encoding="utf-8")
    assert 'src="data:image/png;base64,' in finder_section(page)
    assert page.count('src="data:image/png;base64,') == 1 and 'href="lr_find.png"' not in page


def test_report_without_a_range_test_has_no_such_section(tmp_path: Path) -> None:
    folder = short_run(tmp_path / "run", steps=12, schedule=True, logged_lr=False)
    (folder / "summary.json").write_text(json.dumps({"status": "completed", "lr": 0.01}))
    assert "Learning-rate range test" not in write_report(folder).read_text(encoding="utf-8")
