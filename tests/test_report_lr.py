"""The report's learning-rate story: the lr plot drawn from schedule.csv over every step, and
the LR range test's section in words."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainwise.errors import DataError, DataNotFoundError
from trainwise.report import write_report, write_run_plots
from trainwise.report.lr_text import format_lr, lr_finder_text
from trainwise.report.run_files import read_schedule

SCHEDULE_RED = (214, 39, 40)  # matplotlib's C3: the lr line


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
def test_lr_plot_of_a_short_run_draws_the_whole_schedule(tmp_path: Path, steps: int) -> None:
    # Runs shorter than the lr logging interval have no lr rows: the plot was empty.
    folder = short_run(tmp_path / "run", steps=steps, schedule=True, logged_lr=False)
    written = write_run_plots(folder, task="classification")
    assert folder / "lr.png" in written
    assert red_pixels(folder / "lr.png") > 200
    assert red_pixels(folder / "curves.png") > 100  # the curves' lr panel too


def test_lr_plot_falls_back_to_logged_rows_without_schedule_csv(tmp_path: Path) -> None:
    folder = short_run(tmp_path / "run", steps=4, schedule=False, logged_lr=True)
    assert folder / "lr.png" in write_run_plots(folder, task="regression")
    assert red_pixels(folder / "lr.png") > 50


def test_lr_plot_with_schedule_and_logged_points(tmp_path: Path) -> None:
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


def test_report_lr_finder_section_in_words_with_its_plot(tmp_path: Path) -> None:
    folder = short_run(tmp_path / "run", steps=12, schedule=True, logged_lr=False)
    write_run_plots(folder, task="classification")
    shutil.copy(folder / "lr.png", folder / "lr_find.png")
    lr_finder = {"suggestion": 0.0032, "rule": "valley",
                 "suggestions": {"valley": 0.0032, "steepest": 0.011, "minimum": 0.005}}
    summary = {"status": "completed", "epochs_run": 2, "lr": 0.0032, "lr_finder": lr_finder}
    (folder / "summary.json").write_text(json.dumps(summary))
    page = write_report(folder).read_text(encoding="utf-8")
    section = page[page.index("<h2>Learning-rate range test</h2>"):]
    section = section[: section.index("</section>")]
    assert "suggested lr 3.2e-3 by the valley rule; other rules: steepest 1.1e-2, minimum 5e-3" in section
    assert 'src="data:image/png;base64,' in section  # lr_find.png sits in this section
    assert page.count('src="data:image/png;base64,') == 3  # curves, lr, lr_find: each once
    assert not re.search(r"&quot;suggestion|\"suggestion\"|Lr finder", page)  # never raw JSON


def test_report_without_a_range_test_has_no_such_section(tmp_path: Path) -> None:
    folder = short_run(tmp_path / "run", steps=12, schedule=True, logged_lr=False)
    (folder / "summary.json").write_text(json.dumps({"status": "completed", "lr": 0.01}))
    assert "Learning-rate range test" not in write_report(folder).read_text(encoding="utf-8")
