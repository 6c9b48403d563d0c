"""``trainwise report RUN_DIR [--png]``, and the report a fit writes: inline SVG, no matplotlib."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_report import SUMMARY, assert_png, build_run, inline_svgs

from trainwise.cli import main as cli_main


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return build_run(tmp_path / "digits-mlp-20240101", summary=SUMMARY)


def test_cli_report_rerenders_from_the_folder(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli_main(["report", str(run_dir)]) == 0
    assert "report: " in capsys.readouterr().out
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert len(inline_svgs(page)) == 2 and "href=" not in page
    assert not list(run_dir.glob("*.png"))


@pytest.mark.slow
def test_cli_report_png_writes_and_links_the_plots(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli_main(["report", str(run_dir), "--png"]) == 0
    assert "png: " in capsys.readouterr().out
    for name in ("curves.png", "lr.png", "confusion.png"):
        assert_png(run_dir / name)
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert re.findall(r'href="([^"]+)"', page) == ["curves.png", "lr.png", "confusion.png"]


@pytest.mark.parametrize("kind", ["missing", "not-a-run"])
def test_cli_report_of_a_folder_that_is_not_a_run(tmp_path: Path, kind: str,
                                                  capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "folder"
    if kind == "not-a-run":
        folder.mkdir()
        (folder / "notes.txt").write_text("hello")
    assert cli_main(["report", str(folder)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(folder) in lines[0]
    assert not (folder / "report.html").exists()


FIT_SCRIPT = """
import sys, torch
from torch import nn
from trainwise import Trainer
torch.manual_seed(0)
x = torch.randn(96, 6)
y = (x[:, 0] > 0).long()
model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
Trainer(model, lr=1e-2, epochs=2, batch_size=32, run_dir=sys.argv[1], progress=False,
        report=True).fit((x[:64], y[:64]), (x[64:], y[64:]))
print("MATPLOTLIB", "matplotlib" in sys.modules)
"""


@pytest.mark.slow
def test_fit_report_imports_no_matplotlib(tmp_path: Path) -> None:
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(FIT_SCRIPT), str(run)], capture_output=True,
                          text=True, timeout=300, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "MATPLOTLIB False" in done.stdout
    page = (run / "report.html").read_text(encoding="utf-8")
    assert len(inline_svgs(page)) == 2
    assert (run / "curves.svg").is_file() and (run / "lr.svg").is_file()
    assert not list(run.glob("*.png"))
