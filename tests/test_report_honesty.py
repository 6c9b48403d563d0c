"""The report tells the truth a person needs first: warnings at the top and no green badge over
them, and the best epoch marked where summary.json says it is (epochs 1-based throughout)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from trainwise.report import write_report, write_run_plots
from trainwise.report.style import STATUS_COLORS

SVG = "{http://www.w3.org/2000/svg}"

GREEN = STATUS_COLORS["completed"]
WORSE = "test RMSE 172 is worse than predicting the mean (77) <check the targets>"


def run_folder(folder: Path, summary: dict) -> Path:
    """Three 1-based epochs; the val loss is lowest at epoch 3, val accuracy highest at 2."""
    folder.mkdir(parents=True)
    lines = ["step,epoch,split,metric,value"]
    for epoch, (loss, accuracy) in enumerate([(0.9, 0.80), (0.7, 0.90), (0.6, 0.85)], start=1):
        lines += [f"{epoch * 10 - 1},{epoch},train,loss,{loss + 0.1}",
                  f"{epoch * 10 - 1},{epoch},val,loss,{loss}",
                  f"{epoch * 10 - 1},{epoch},val,accuracy,{accuracy}"]
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def badge(page: str) -> tuple[str, str]:
    color, text = re.search(r'<span class="badge" style="background:(#[0-9a-f]+)">([^<]*)</span>', page).groups()
    return color, text


def test_warnings_are_at_the_top_and_the_badge_is_not_green(tmp_path: Path) -> None:
    summary = {"status": "completed", "epochs_run": 3, "best_epoch": 3, "task": "regression",
               "warnings": [WORSE, "accuracy at or below the majority class"]}
    page = write_report(run_folder(tmp_path / "run", summary)).read_text(encoding="utf-8")
    color, text = badge(page)
    assert color != GREEN and text == "completed, 2 warnings"
    box = page.index('<div class="warnings"')
    assert box < page.index("<h2>Summary</h2>")
    assert "&lt;check the targets&gt;" in page[box:] and "<check the targets>" not in page
    assert page.index("accuracy at or below the majority class") < page.index("<h2>Summary</h2>")
    assert '<th scope="row">Warnings</th>' not in page  # shown once, at the top, not as JSON


@pytest.mark.parametrize(("status", "warnings", "green"), [
    ("completed", [], True), ("completed", None, True), ("stopped_early", [WORSE], False),
])
def test_badge_is_green_only_for_a_clean_completed_run(tmp_path: Path, status: str, warnings: list | None,
                                                       green: bool) -> None:
    summary = {"status": status, "epochs_run": 3, "best_epoch": 2, "warnings": warnings}
    page = write_report(run_folder(tmp_path / "run", summary)).read_text(encoding="utf-8")
    color, text = badge(page)
    assert (color == GREEN) == green
    assert text.startswith(status)
    assert ('class="warnings"' in page) == bool(warnings)


def marker_and_ticks(svg_path: Path) -> tuple[list[float], dict[str, float]]:
    """The loss panel's marker lines (their x) and its x tick labels (label -> x)."""
    loss_panel = next(g for g in ET.parse(svg_path).getroot().iter(f"{SVG}g") if g.get("aria-label") == "loss")
    markers = [float(line.get("x1")) for line in loss_panel.iter(f"{SVG}line") if line.get("class") == "marker"]
    bottom = max(float(text.get("y")) for text in loss_panel.iter(f"{SVG}text"))  # the x axis label
    ticks = {text.text: float(text.get("x")) for text in loss_panel.iter(f"{SVG}text")
             if text.get("text-anchor") == "middle" and bottom - 25 < float(text.get("y")) < bottom}
    return markers, ticks


def test_best_epoch_marker_reads_summary_json(tmp_path: Path) -> None:
    # best_epoch 2 (val accuracy was monitored); recomputing from the val loss would mark 3.
    folder = run_folder(tmp_path / "run", {"status": "completed", "epochs_run": 3, "best_epoch": 2})
    page = write_report(folder).read_text(encoding="utf-8")
    markers, ticks = marker_and_ticks(folder / "curves.svg")
    assert list(ticks) == ["1", "2", "3"] and markers == [ticks["2"]]  # on epoch 2, 1-based
    assert "best (epoch 2)" in page


def test_no_best_epoch_no_marker(tmp_path: Path) -> None:
    folder = run_folder(tmp_path / "run", {"status": "completed", "epochs_run": 3, "best_epoch": None})
    write_report(folder)
    assert marker_and_ticks(folder / "curves.svg")[0] == []


@pytest.mark.slow
def test_best_epoch_marker_of_the_png_reads_summary_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.axes import Axes

    marked: list[float] = []
    original = Axes.axvline

    def spy(self: Axes, x: float = 0, *args: object, **kwargs: object):
        marked.append(x)
        return original(self, x, *args, **kwargs)

    monkeypatch.setattr(Axes, "axvline", spy)
    folder = run_folder(tmp_path / "run", {"status": "completed", "epochs_run": 3, "best_epoch": 2})
    write_run_plots(folder, task="classification")
    assert marked == [2]


@pytest.mark.slow
def test_no_best_epoch_no_marker_on_the_png(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.axes import Axes

    marked: list[float] = []
    monkeypatch.setattr(Axes, "axvline", lambda self, x=0, *a, **k: marked.append(x))
    folder = run_folder(tmp_path / "run", {"status": "completed", "epochs_run": 3, "best_epoch": None})
    write_run_plots(folder, task="classification")
    assert marked == []


def test_tables_show_1_based_epochs_as_written(tmp_path: Path) -> None:
    summary = {"status": "completed", "epochs_run": 3, "best_epoch": 2}
    page = write_report(run_folder(tmp_path / "run", summary)).read_text(encoding="utf-8")
    assert '<th scope="row">Best epoch</th><td class="num">2</td>' in page
    assert '<th class="num">val <span class="muted">(epoch 3)</span></th>' in page
