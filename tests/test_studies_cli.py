"""``trainwise study`` the way a person calls it: real subprocesses, a real SIGKILL mid-study, then
``--resume``; the one-line errors; the lr-surface pictures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import cli_in_process
from PIL import Image

from trainwise.studies.lr_surface import draw_lr_surface

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "examples" / "digits.yaml")


def trainwise(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "trainwise", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("args, message", [
    (["inti", DIGITS], "error: unknown study 'inti'; did you mean 'init'?"),
    (["lr-surfce"], "did you mean 'lr-surface'?"),
    (["normalization", DIGITS, "model.name=lstm"], "study normalization needs a model with norm layers, got "
     "model.name='lstm'; models that take model.norm: mlp (none, batch, layer); cnn"),
    (["dropout"], "study dropout needs a config: trainwise study dropout examples/digits.yaml"),
    (["init", DIGITS, "--seeds", "0"], "--seeds must be >= 1, got 0"),
    (["batch-size", DIGITS, "data.batch_size=1"], "study batch-size: two variants named 'bs1' give the same run on "),
    (["init", DIGITS, "model.init=bogus"], "unknown model.init 'bogus'"),
])
def test_bad_input_is_one_clear_line_and_exit_2(args, message, tmp_path: Path) -> None:
    proc = cli_in_process("study", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("summary.json"))


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads worker pids from /proc (Linux)")
def test_a_killed_study_resumes_without_rerunning_finished_runs(tmp_path: Path) -> None:
    args = ["study", "dropout", DIGITS, "model.hidden=[32]", "optimizer.lr=0.003", "--seeds", "1", "--epochs", "25",
            "--workers", "2", "--out", "s"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "trainwise", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = tmp_path / "s"
    finished: list[Path] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:  # two finished runs and a half-done one
        finished = [p.parent for p in out.glob("*/summary.json")]
        started = [p.parent.parent for p in out.glob("*/checkpoints/manifest.json")]
        if len(finished) >= 2 and any(p not in finished for p in started):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the study ended before it could be killed; give it a longer budget"
    workers = _children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)  # the study process only: its workers must notice and stop
    proc.wait()
    deadline = time.monotonic() + 20
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), "worker processes outlived the killed study"
    finished = [p.parent for p in out.glob("*/summary.json")
                if json.loads(p.read_text())["status"] == "completed"]
    assert 2 <= len(finished) < 5
    stamps = {p: (p / "summary.json").stat().st_mtime_ns for p in finished}
    half_done = [p.parent.parent for p in out.glob("*/checkpoints/manifest.json") if p.parent.parent not in finished]

    resumed = trainwise(*args, "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "of 5 finished" in resumed.stderr or "of 5 finished" in resumed.stdout
    assert {p: (p / "summary.json").stat().st_mtime_ns for p in finished} == stamps  # not trained again
    summaries = {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/summary.json")}
    assert len(summaries) == 5 and all(s["status"] == "completed" and s["epochs_run"] == 25
                                        for s in summaries.values())
    for run in half_done:  # continued from its checkpoint, not started over
        assert any(e["kind"] == "resumed" for e in summaries[run.name]["events"]), run.name
    study = json.loads((out / "study.json").read_text())
    assert [v["final"]["n"] for v in study["variants"]] == [1] * 5


def test_lr_surface_draws_a_png_and_an_animated_gif(tmp_path: Path) -> None:
    result = draw_lr_surface(tmp_path, frames=3)
    assert [r["diverged"] for r in result["runs"]] == [False, False, True, False]
    tiny, good, large, decaying = (r["final_loss"] for r in result["runs"])
    assert good < 1e-6 and decaying < 1e-6 and tiny > 0.1 and large > 1e5
    gif = Image.open(tmp_path / "lr_surface.gif")
    assert gif.format == "GIF" and gif.n_frames == 3
    assert Image.open(tmp_path / "lr_surface.png").format == "PNG"
    assert json.loads((tmp_path / "lr_surface.json").read_text())["momentum"] == 0.5
