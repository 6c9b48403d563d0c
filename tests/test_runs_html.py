"""compare.html and report.html: content, escaping, and a real headless Chromium (screenshot not
blank, title present, no console errors, the escaped run name shown as text)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from trainwise import Trainer
from trainwise.cli import main

EVIL = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def fit(run_dir: Path, *, name: str, optimizer: str, epochs: int, seed: int, hidden: int = 8):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 3))
    x, y = torch.randn(96, 4), torch.randint(0, 3, (96,))
    return Trainer(model, optimizer=optimizer, lr=0.05, epochs=epochs, batch_size=16, progress=False,
                   log_every_n_steps=2, name=name, run_dir=run_dir).fit((x, y), (x, y))


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("html") / "runs"
    fit(root / "evil", name=EVIL, optimizer="sgd", epochs=3, seed=0)
    fit(root / "b", name="b", optimizer="adamw", epochs=4, seed=1, hidden=16)
    fit(root / "c", name="c", optimizer="adam", epochs=5, seed=2)
    return root


def compare(root: Path, capsys, *extra: str) -> tuple[str, str]:
    out_file = root.parent / f"compare{len(extra)}.html"
    code = main(["runs", "compare", "--root", str(root), "evil", "b", "c", "--out", str(out_file), *extra])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out, out_file.read_text(encoding="utf-8")


def test_compare_shows_differences_deltas_and_escapes(root: Path, capsys) -> None:
    out, page = compare(root, capsys)
    assert "parameters that differ" in out and "optimizer.name" in out and "train.epochs" in out
    assert "<script" not in page and ESCAPED in page
    params = page.split("<h2>Parameters that differ</h2>")[1].split("</section>")[0]
    assert "optimizer.name" in params and "train.epochs" in params and "seed" not in params
    assert "data.batch_size" not in params  # the same in every run: only with --all
    figures = page.split("<h2>Figures (change against the first run)</h2>")[1].split("</section>")[0]
    summaries = [json.loads((root / name / "summary.json").read_text()) for name in ("evil", "b", "c")]
    assert "(+1)" in figures and "(+2)" in figures  # epochs_run 3 → 4 → 5
    assert summaries[1]["epochs_run"] - summaries[0]["epochs_run"] == 1
    assert page.count('<figure class="chart"><svg') >= 3  # overlaid curves per metric, parallel coordinates
    assert "Parallel coordinates" in page and page.count("<polyline") == 3
    _, everything = compare(root, capsys, "--all")
    assert "<h2>Parameters (all)</h2>" in everything and "data.batch_size" in everything


def test_compare_needs_two_distinct_runs(root: Path, capsys) -> None:
    assert main(["runs", "compare", "--root", str(root), "b"]) == 2
    assert "at least two runs" in capsys.readouterr().err
    assert main(["runs", "compare", "--root", str(root), "b", "b"]) == 2
    assert "the same run twice" in capsys.readouterr().err


def test_compare_draws_at_most_draw_runs(root: Path, capsys) -> None:
    _, page = compare(root, capsys, "--draw", "2")
    assert "1 more runs are in the tables but not drawn" in page and page.count("<polyline") == 2


def test_report_has_model_gradients_and_provenance(root: Path) -> None:
    page = (root / "evil" / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page and f"<title>{ESCAPED} — trainwise report</title>" in page
    model = page.split("<h2>Model</h2>")[1].split("</section>")[0]
    assert "<strong>67</strong> parameters" in model and model.count("<tr>") == 4
    gradients = page.split("<h2>Gradients and clipping</h2>")[1].split("</section>")[0]
    assert "Median" in gradients and "Gradient norm by step" in gradients and "steps clipped" in gradients
    provenance = page.split("<h2>Provenance</h2>")[1].split("</section>")[0]
    run_id = json.loads((root / "evil" / "run.json").read_text())["id"]
    assert run_id in provenance and torch.__version__ in provenance


def chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", "--enable-logging=stderr", "--v=0", f"--user-data-dir={profile}", *extra,
               page.resolve().as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/setup-system.sh installs it)")
@pytest.mark.parametrize("which, size", [("compare", "1280,2000"), ("compare", "390,2400"), ("report", "1200,2400")])
def test_pages_render_in_chromium(root: Path, capsys, tmp_path: Path, which: str, size: str) -> None:
    from PIL import Image

    if which == "compare":
        compare(root, capsys)
        page = root.parent / "compare0.html"
    else:
        page = root / "evil" / "report.html"
    shot = tmp_path / "shot.png"
    done = chromium(page, tmp_path / "profile", f"--screenshot={shot}", f"--window-size={size}")
    assert shot.is_file(), done.stderr[-2000:]
    # The page has no scripts, so Chromium's console could only report resources that failed to
    # load or markup errors: --enable-logging=stderr prints each console message as CONSOLE(...).
    assert not re.search(r"CONSOLE\(|Uncaught|Failed to load resource", done.stderr), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    width = int(size.split(",")[0])
    assert pixels.shape[1] == width
    not_white = (pixels.min(axis=2) < 200).mean()
    assert 0.01 < not_white < 0.6  # text, tables and charts were painted: neither blank nor a solid block
    blue = (np.abs(pixels - np.array([31, 119, 180])).max(axis=2) < 12).sum()
    assert blue > 30  # the first run's colour in an inline SVG chart
    dom = chromium(page, tmp_path / "profile", "--dump-dom").stdout
    assert "<title>" in dom and "<script" not in dom and ESCAPED in dom
    if which == "compare" and width < 500:  # a phone: the page is as wide as the screen, tables scroll inside
        assert 'name="viewport"' in dom and 'class="scroll"' in dom
