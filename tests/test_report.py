"""Tests for trainwise.report: metrics reading, the PNG plots on request, the self-contained HTML page
with its SVG charts and confusion table, and ``trainwise report``."""

from __future__ import annotations

import base64
import io
import json
import logging
import math
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainwise.errors import ConfigError, DataError, DataNotFoundError
from trainwise.report import (
    plot_confusion,
    plot_curves,
    plot_lr,
    read_metrics,
    write_report,
    write_run_plots,
)
from trainwise.report.confusion import cell_color, confusion_table
from trainwise.report.formatting import format_duration, format_value
from trainwise.report.series import epoch_series, final_metrics, step_series, y_scale

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HEADER = "step,epoch,split,metric,value\n"
CONFIG_YAML = """\
name: {name}
seed: 0
data: {{dataset: digits, root: null, path: null, target: null, batch_size: 64,
  val_fraction: 0.1, test_fraction: 0.2, normalize: true, augment: null}}
model: {{name: mlp, hidden: [128], norm: none, dropout: 0.0, activation: relu, init: auto}}
optimizer: {{name: adamw, lr: 0.003, weight_decay: 0.0, momentum: 0.9}}
schedule: {{name: onecycle, warmup: 0}}
train:
  epochs: 4
  max_steps: null
  grad_clip: 1.0
  early_stopping: {{monitor: val_loss, patience: 5, min_delta: 0.0, restore_best: true}}
"""
SUMMARY = {
    "status": "stopped_early", "epochs_run": 4, "steps": 1250, "best_epoch": 2,  # 1-based
    "best_val_loss": 0.0812345, "wall_seconds": 125.4, "train_samples_per_second": 15234.7,
    "best_val_accuracy": 0.97222, "test_accuracy": 0.96389, "test_macro_f1": 0.961234,
    "lr": 0.003, "stop_reason": "val_loss did not improve for 5 epochs",
    "train_seconds": 98.0, "task": "classification", "device": "cpu", "loss_spikes": 1,
    "test_top5_accuracy": 0.99722,
    "confusion_matrix": [[30, 2, 0], [1, 28, 3], [0, 0, 36]],
    "class_names": ["zero", "one", "two"],
    "events": [
        {"step": 40, "epoch": 1, "kind": "lr_finder", "message": "chose lr 0.003 (steepest)"},
        {"step": 700, "epoch": 3, "kind": "nonfinite_rollback",
         "message": "loss was nan at step 700; rolled back to step 600 and halved the lr"},
    ],
}


def metrics_csv(epochs: int = 4, steps_per_epoch: int = 5) -> str:
    """Per-step train lr/loss rows then per-epoch rows, a nan, an inf and an event row.

    Epochs are 1-based, as the trainer writes them; ``i`` counts from 0.
    """
    lines = []
    for i in range(epochs):
        epoch = i + 1
        for offset in range(steps_per_epoch):
            step = i * steps_per_epoch + offset
            lines.append(f"{step},{epoch},train,lr,{3e-3 * 10 ** (-offset / 2):.6g}")
            lines.append(f"{step},{epoch},train,momentum,{0.85 + 0.01 * offset}")
            loss = "nan" if (i, offset) == (2, 1) else f"{2.0 / (step + 1):.6g}"
            lines.append(f"{step},{epoch},train,loss,{loss}")
        end = (i + 1) * steps_per_epoch - 1
        lines.append(f"{end},{epoch},train,loss,{1.5 / (i + 1) ** 2:.6g}")
        lines.append(f"{end},{epoch},train,accuracy,{0.6 + 0.1 * i:.6g}")
        lines.append(f"{end},{epoch},val,loss,{'inf' if i == 3 else 1.2 / (i + 1)}")
        lines.append(f"{end},{epoch},val,accuracy,{0.55 + 0.1 * i:.6g}")
    lines.append(f"{end},{epochs},test,accuracy,0.96389")
    lines.append(f"{end},{epochs},event,early_stop,nan")
    return HEADER + "\n".join(lines) + "\n"


def build_run(folder: Path, *, name: str = "digits-mlp", summary: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(CONFIG_YAML.format(name=name), encoding="utf-8")
    (folder / "metrics.csv").write_text(metrics_csv(), encoding="utf-8")
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return folder


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return build_run(tmp_path / "digits-mlp-20240101", summary=SUMMARY)


@pytest.fixture(scope="module")
def plotted_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """A run folder with its plots drawn once for the module (plotting is the slow part)."""
    folder = build_run(tmp_path_factory.mktemp("plotted") / "digits-mlp", summary=SUMMARY)
    return folder, write_run_plots(folder, task="classification")


@pytest.fixture
def plotted_folder(plotted_run: tuple[Path, list[Path]], tmp_path: Path) -> Path:
    """A private copy of the plotted run, free to change."""
    return Path(shutil.copytree(plotted_run[0], tmp_path / "digits-mlp-20240101"))


def assert_png(path: Path, *, min_bytes: int = 5_000) -> np.ndarray:
    """The file is a decodable, non-blank PNG of a decent size; returns its pixels."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > min_bytes
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=float)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 200
    assert pixels.std() > 1.0
    return pixels


class TagBalanceChecker(HTMLParser):
    """Records tags that are closed out of order or never closed."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.open_tags: list[str] = []
        self.mismatches: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag not in self.VOID:
            self.open_tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open_tags or self.open_tags.pop() != tag:
            self.mismatches.append(tag)


def assert_well_formed(page: str) -> None:
    checker = TagBalanceChecker()
    checker.feed(page)
    checker.close()
    assert checker.mismatches == [] and checker.open_tags == []
    assert page.startswith("<!DOCTYPE html>")


def embedded_pngs(page: str) -> list[bytes]:
    return [base64.b64decode(data)
            for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def inline_svgs(page: str) -> list[str]:
    return re.findall(r"<svg .*?</svg>", page, re.S)


# --- read_metrics -------------------------------------------------------------------------


def test_read_metrics_types_and_non_finite(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text(HEADER + "0,0,train,lr,0.001\n9,0,val,loss,nan\n9,0,val,rmse,inf\n")
    rows = read_metrics(path)
    assert rows[0] == {"step": 0, "epoch": 0, "split": "train", "metric": "lr", "value": 0.001}
    assert math.isnan(rows[1]["value"]) and rows[2]["value"] == math.inf
    assert [type(rows[0][key]) for key in ("step", "epoch", "value")] == [int, int, float]


@pytest.mark.parametrize(("content", "match"), [
    ("", "is empty"),
    ("step,epoch,metric,value\n", "has header 'step,epoch,metric,value'"),
    (HEADER + "0,0,train,loss,0.5\nx,0,train,loss,0.4\n",
     "line 3 .*step must be an integer, got 'x'"),
    (HEADER + "0,0,train,loss\n1,0,train,loss,0.4\n", "line 2 .*expected 5 fields"),
    (HEADER + "0,0,train,loss,high\n", "value must be a number"),
])
def test_read_metrics_rejects_malformed_files(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=match):
        read_metrics(path)


def test_read_metrics_skips_only_a_cut_off_last_line(tmp_path: Path, caplog) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text(HEADER + "0,0,train,loss,0.5\n1,0,train,lo")
    with caplog.at_level(logging.WARNING, logger="trainwise.report"):
        assert [row["step"] for row in read_metrics(path)] == [0]
    assert "cut off mid-write" in caplog.text
    path.write_text(HEADER + "0,0,train,loss,0.5\n1,0,train,lo\n")  # complete line: an error
    with pytest.raises(DataError, match="line 3"):
        read_metrics(path)


def test_read_metrics_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="metrics file not found"):
        read_metrics(tmp_path / "nope.csv")


# --- series and formatting ----------------------------------------------------------------


def test_epoch_series_takes_last_row_of_each_epoch_and_skips_non_finite(run_dir: Path) -> None:
    rows = read_metrics(run_dir / "metrics.csv")
    assert epoch_series(rows, "train", "loss") == ([1, 2, 3, 4], [1.5, 0.375, 0.166667, 0.09375])
    assert epoch_series(rows, "val", "loss") == ([1, 2, 3], [1.2, 0.6, 1.2 / 3])  # epoch 4 is inf
    steps, lrs = step_series(rows, "train", "lr")
    assert steps == list(range(20)) and lrs[:2] == [0.003, pytest.approx(3e-3 / 10 ** 0.5)]


def test_final_metrics_uses_each_splits_last_epoch(run_dir: Path) -> None:
    table = final_metrics(read_metrics(run_dir / "metrics.csv"))
    assert list(table) == ["train", "val", "test"]
    assert table["train"] == {"loss": 0.09375, "accuracy": 0.9}
    assert table["val"]["loss"] == math.inf and table["val"]["accuracy"] == 0.85
    assert table["test"] == {"accuracy": 0.96389}


@pytest.mark.parametrize(("values", "scale"), [
    ([2.0, 0.5, 0.3], "linear"),
    ([2.3, 0.05], "log"),
    ([2.3, 0.05, float("nan")], "log"),
    ([1.0, -0.5, 0.01], "linear"),
    ([], "linear"),
])
def test_y_scale(values: list[float], scale: str) -> None:
    assert y_scale(values) == scale


@pytest.mark.parametrize(("key", "value", "text"), [
    ("test_accuracy", 0.97222, "97.22%"),
    ("steps", 1250, "1,250"),
    ("best_val_loss", 0.0812345, "0.08123"),
    ("wall_seconds", 125.4, "2 min 05 s"),
    ("wall_seconds", 4000.0, "1 h 07 min"),
    ("wall_seconds", 9.94, "9.9 s"),
    ("train_samples_per_second", 15234.7, "15,235/s"),
    ("best_val_loss", float("nan"), "nan"),
    ("best_epoch", None, "—"),
    ("extra", [1, 2], "[1, 2]"),
])
def test_format_value(key: str, value: object, text: str) -> None:
    assert format_value(key, value) == text


def test_format_duration_hours() -> None:
    assert format_duration(3 * 3600 + 5 * 60) == "3 h 05 min"


# --- plots --------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_plot_curves_writes_png(run_dir: Path, tmp_path: Path, task: str) -> None:
    path = plot_curves(read_metrics(run_dir / "metrics.csv"), tmp_path / "out" / "curves.png",
                       task=task)
    assert path == tmp_path / "out" / "curves.png"
    assert assert_png(path).shape[1] == 1500


@pytest.mark.parametrize("rows", [
    [],
    [{"step": 0, "epoch": 0, "split": "val", "metric": "loss", "value": float("nan")},
     {"step": 0, "epoch": 0, "split": "train", "metric": "lr", "value": float("inf")}],
], ids=["no-rows", "only-non-finite"])
def test_plot_curves_without_finite_values_still_draws(tmp_path: Path, rows: list) -> None:
    assert_png(plot_curves(rows, tmp_path / "curves.png"))


def test_plot_curves_rejects_unknown_task(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="task must be one of .* got 'ranking'"):
        plot_curves([], tmp_path / "curves.png", task="ranking")


def test_plot_lr_with_momentum(run_dir: Path, tmp_path: Path) -> None:
    assert_png(plot_lr(read_metrics(run_dir / "metrics.csv"), tmp_path / "lr.png"))


@pytest.mark.parametrize(("n_classes", "names"), [(3, ["a", "b", "c"]), (12, None), (50, None)])
def test_plot_confusion_sizes(tmp_path: Path, n_classes: int, names: list | None) -> None:
    matrix = np.diag(np.full(n_classes, 9)) + 1
    matrix[0] = 0  # a class never seen must not divide by zero
    assert_png(plot_confusion(matrix.tolist(), names, tmp_path / "confusion.png"))


@pytest.mark.parametrize(("matrix", "names", "match"), [
    ([[1, 2], [3]], None, "must be square and non-empty, got 2 rows of lengths \\[2, 1\\]"),
    ([], None, "must be square and non-empty"),
    ([1, 2], None, "must be a list of rows, got \\[1, 2\\]"),
    ([[1, -2], [3, 4]], None, "must be finite and >= 0"),
    ([[1, float("nan")], [3, 4]], None, "must be finite and >= 0"),
    ([[1, 2], [3, 4]], ["only-one"], "one name per class \\(2\\), got 1"),
])
def test_plot_confusion_rejects_bad_input(tmp_path: Path, matrix: list, names: list | None,
                                          match: str) -> None:
    with pytest.raises(DataError, match=match):
        plot_confusion(matrix, names, tmp_path / "confusion.png")


def test_write_run_plots_writes_what_the_files_allow(plotted_run: tuple[Path, list[Path]],
                                                     tmp_path: Path) -> None:
    folder, written = plotted_run
    assert written == [folder / "curves.png", folder / "lr.png", folder / "confusion.png"]
    assert [path.name for path in written] == ["curves.png", "lr.png", "confusion.png"]
    for path in written:
        assert_png(path)
    bare = tmp_path / "crashed"
    bare.mkdir()
    assert write_run_plots(bare, task="regression") == []


def test_write_run_plots_checks_arguments(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="run folder not found"):
        write_run_plots(tmp_path / "missing", task="classification")
    with pytest.raises(ConfigError, match="task must be one of"):
        write_run_plots(tmp_path, task="detection")


# --- report.html --------------------------------------------------------------------------


def test_report_shows_the_run(plotted_folder: Path) -> None:
    shutil.copy(plotted_folder / "lr.png", plotted_folder / "lr_find.png")
    (plotted_folder / "lr_find.json").write_text(json.dumps(
        {"lrs": [1e-5, 1e-1], "losses": [2.3, 9.0], "suggestion": 0.003, "rule": "steepest",
         "reason": "steepest descent of the smoothed loss"}))
    page = write_report(plotted_folder).read_text(encoding="utf-8")
    assert "suggested lr 3e-3 by the steepest rule" in page
    assert_well_formed(page)
    assert "<title>digits-mlp — trainwise report</title>" in page
    assert "<h1>digits-mlp " in page and ">stopped_early</span>" in page
    for text in ("97.22%", "96.39%", "1,250", "0.08123", "2 min 05 s", "15,235/s",
                 "val_loss did not improve for 5 epochs", "loss was nan at step 700",
                 "1 min 38 s", "Test top5 accuracy</th>",
                 '<th scope="row">Device</th><td>cpu</td>', '99.72%'):
        assert text in page
    assert "dataset: digits" in page and "grad_clip: 1.0" in page
    svgs = inline_svgs(page)  # curves, lr, and the range test's curve from lr_find.json
    assert [re.search(r'<title id="([^"]+)"', svg).group(1) for svg in svgs] == [
        "curves-title", "lr-title", "lr-find-title"]
    for svg in svgs:
        ET.fromstring(svg)
    assert embedded_pngs(page) == []  # the PNGs in the folder are linked, not embedded
    links = re.findall(r'<a href="([^"]+)">', page)
    assert links == ["curves.png", "lr.png", "confusion.png"]
    assert '<table class="confusion">' in page
    assert "Missing or unreadable" not in page


def test_report_final_metrics_table(run_dir: Path) -> None:
    page = write_report(run_dir).read_text(encoding="utf-8")
    table = page[page.index('<table class="metrics">'):]
    table = table[: table.index("</table>")]
    # each split's last epoch, 1-based as in metrics.csv and the plots
    assert ('<th class="num">train <span class="muted">(epoch 4)</span></th>'
            '<th class="num">val <span class="muted">(epoch 4)</span></th>'
            '<th class="num">test <span class="muted">(epoch 4)</span></th>') in table
    assert ('<th scope="row">loss</th><td class="num">0.09375</td><td class="num">inf</td>'
            '<td class="num">—</td>') in table
    assert '<td class="num">85.00%</td><td class="num">96.39%</td>' in table
    assert ">lr<" not in table  # per-step diagnostics stay out of the final table


def test_report_is_self_contained(plotted_folder: Path) -> None:
    shutil.copy(plotted_folder / "lr.png", plotted_folder / "notes.png")
    page = write_report(plotted_folder).read_text(encoding="utf-8")
    assert len(inline_svgs(page)) == 2 and embedded_pngs(page) == []
    # the only links are to the PNG versions beside the page, by file name
    assert re.findall(r'href="([^"]+)"', page) == ["curves.png", "lr.png", "confusion.png", "notes.png"]
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert not re.search(r"<(?:script|link|iframe|object|embed)\b", page, re.I)
    assert "@import" not in page and "url(" not in page


def test_report_escapes_run_text(tmp_path: Path) -> None:
    summary = dict(SUMMARY, events=[{"step": 1, "epoch": 0, "kind": "spike",
                                     "message": '<img src=x onerror="alert(2)">'}],
                   message="<b>boom</b> & co")
    folder = build_run(tmp_path / "evil", name='"<script>alert(1)</script>"', summary=summary)
    page = write_report(folder).read_text(encoding="utf-8")
    assert_well_formed(page)
    assert "<script" not in page and "<img src=x" not in page and "<b>boom" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in page
    assert "&lt;b&gt;boom&lt;/b&gt; &amp; co" in page


def test_report_of_a_crashed_run_says_what_is_missing(tmp_path: Path) -> None:
    folder = build_run(tmp_path / "crashed", summary=None)
    page = write_report(folder).read_text(encoding="utf-8")
    assert_well_formed(page)
    assert "summary.json not found" in page and ">unknown</span>" in page
    assert len(inline_svgs(page)) == 2  # the curves and lr come from metrics.csv alone
    assert 'class="marker"' not in page  # no summary.json, no best epoch to mark
    assert "trainwise report crashed --png" in page
    assert "<code>early_stop</code>" in page  # events fall back to metrics.csv event rows
    assert "0.09375" in page  # the final metrics table still comes from metrics.csv


@pytest.mark.parametrize(("files", "notes"), [
    ({}, ["config.yaml not found", "summary.json not found", "metrics.csv not found"]),
    ({"summary.json": "{not json", "config.yaml": "name: [unclosed",
      "metrics.csv": "wrong,header\n", "fake.png": "not a png"},
     ["summary.json could not be read", "config.yaml is not valid YAML",
      "metrics.csv could not be read", "fake.png is not a PNG image"]),
], ids=["empty-folder", "unreadable-files"])
def test_report_of_broken_folder_is_a_valid_page(tmp_path: Path, files: dict,
                                                 notes: list[str]) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_text(content)
    page = write_report(folder).read_text(encoding="utf-8")
    assert_well_formed(page)
    for note in notes:
        assert note in page
    assert "<h1>broken " in page  # the folder name stands in for the run name
    assert not (folder / ".report.html.partial").exists()


def test_write_report_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="run folder not found"):
        write_report(tmp_path / "missing")


# --- a real browser -----------------------------------------------------------------------


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def run_chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--hide-scrollbars",
               f"--user-data-dir={profile}", *extra, page.resolve().as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def near_color(pixels: np.ndarray, rgb: tuple[int, int, int]) -> int:
    return int((np.abs(pixels - np.array(rgb)).max(axis=2) < 12).sum())


@pytest.mark.slow
@pytest.mark.skipif(chromium_binary() is None,
                    reason="chromium not installed (apt-get install chromium)")
def test_report_renders_in_chromium(run_dir: Path, tmp_path: Path) -> None:
    evil_config = CONFIG_YAML.format(name="'<script>alert(1)</script>'")
    (run_dir / "config.yaml").write_text(evil_config)
    report = write_report(run_dir)
    screenshot = tmp_path / "screenshot.png"
    shot = run_chromium(report, tmp_path / "profile", f"--screenshot={screenshot}",
                        "--window-size=1200,2400")
    assert screenshot.is_file(), shot.stderr[-2000:]
    pixels = assert_png(screenshot)
    # The train (C0 blue) and val (C1 orange) lines and the lr line (C3 red) are nowhere in the
    # CSS: finding them in the screenshot shows the inline SVG was parsed and painted.
    assert near_color(pixels, (31, 119, 180)) > 50
    assert near_color(pixels, (255, 127, 14)) > 50
    assert near_color(pixels, (214, 39, 40)) > 50
    assert near_color(pixels, (8, 81, 156)) > 50  # the darkest confusion cells
    dom = run_chromium(report, tmp_path / "profile", "--dump-dom").stdout
    assert dom.count("<svg ") == 2 and 'src="data:image/png;base64,' not in dom
    assert "<script" not in dom and "&lt;script&gt;alert(1)&lt;/script&gt;" in dom


# --- SVG charts, the confusion table, the task -----------------------------------------------


def test_report_writes_its_svg_charts_beside_it(run_dir: Path) -> None:
    page = write_report(run_dir).read_text(encoding="utf-8")
    files = [(run_dir / name).read_text(encoding="utf-8") for name in ("curves.svg", "lr.svg")]
    assert inline_svgs(page) == [text.rstrip("\n") for text in files]  # the files are what the page shows
    for text in files:
        root = ET.fromstring(text)
        assert root.get("viewBox") and root.find("{http://www.w3.org/2000/svg}title").text
    assert not list(run_dir.glob("*.png"))  # PNGs only on request
    curves = ET.fromstring(files[0])
    texts = [element.text for element in curves.iter("{http://www.w3.org/2000/svg}text")]
    assert {"loss", "accuracy", "best (epoch 2)", "train", "val", "epoch"} <= set(texts)
    assert "2 non-finite loss values logged" in texts  # a nan train step, val inf at epoch 4
    lr = ET.fromstring(files[1])
    assert [g.get("aria-label") for g in lr.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "panel"] \
        == ["lr", "momentum"]


def test_report_of_a_regression_run_draws_rmse(tmp_path: Path) -> None:
    folder = tmp_path / "reg"
    folder.mkdir()
    (folder / "metrics.csv").write_text(HEADER + "".join(
        f"{e * 10 - 1},{e},{split},{metric},{value / e}\n" for e in (1, 2, 3)
        for split, metric, value in (("train", "loss", 2.0), ("val", "loss", 2.5), ("val", "rmse", 80.0))))
    (folder / "summary.json").write_text(json.dumps({"status": "completed", "task": "regression",
                                                      "best_epoch": 3}))
    write_report(folder)
    texts = [t.text for t in ET.parse(folder / "curves.svg").iter("{http://www.w3.org/2000/svg}text")]
    assert "rmse" in texts and "accuracy" not in texts and "Training curves (regression)" in texts
    assert not (folder / "lr.svg").exists()  # no lr logged and no schedule.csv: nothing to draw
    with pytest.raises(ConfigError, match="task must be one of"):
        write_report(folder, task="ranking")


def test_confusion_table_heatmap() -> None:
    table = confusion_table([[30, 2, 0], [1, 28, 3], [0, 0, 0]], ["zero", "o<ne", "two"])
    rows = re.findall(r"<tr><th scope=\"row\">(.*?)</th>(.*?)</tr>", table)
    assert [name for name, _ in rows] == ["zero", "o&lt;ne", "two"]
    cells = [re.findall(r'background:(#[0-9a-f]{6});color:(#[0-9a-f]{6})" title="[^"]*">([\d,]+)</td>', body)
             for _, body in rows]
    assert [count for _, _, count in cells[0]] == ["30", "2", "0"]
    assert cells[0][0][0] == cell_color(30 / 32) and cells[0][0][1] == "#ffffff"  # dark cell, white text
    assert cells[0][2][0] == "#ffffff" and cells[0][2][1] == "#1f2328"
    assert all(background == "#ffffff" for background, _, _ in cells[2])  # a class never seen: no division
    assert "Confusion matrix (64 samples)" in table and 'title="true zero, predicted o&lt;ne: 2 of 32 (6.2%)"' in table


@pytest.mark.parametrize(("matrix", "names"), [([[1, 2], [3]], None), ([[1, -1], [0, 1]], None),
                                               ([[1, 2], [3, 4]], ["one"]), ("nonsense", None)])
def test_confusion_table_of_a_bad_matrix_is_a_note(matrix: object, names: list | None) -> None:
    assert confusion_table(matrix, names).startswith('<p class="muted">The confusion matrix in summary.json '
                                                     "is not shown")
