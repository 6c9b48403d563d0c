"""The run index with real processes: parallel writers and a reader in a loop never see
"database is locked"; a SIGKILLed run shows as crashed; rm refuses a live run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")
TRAIN = textwrap.dedent("""
    import sys, torch
    from trainwise import Trainer
    from trainwise.callbacks import CheckpointSaver
    root, name, epochs, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    for i in range(count):
        torch.manual_seed(i)
        x, y = torch.randn(128, 4), torch.randint(0, 3, (128,))
        Trainer(torch.nn.Linear(4, 3), optimizer="sgd", lr=0.1, epochs=epochs, batch_size=8, progress=False,
                report=False, checkpoint=CheckpointSaver(every_epoch=False), early_stopping=False, name=f"{name}-{i}",
                run_dir=f"{root}/{name}/{i}").fit((x, y), (x, y))
""")
LIST_LOOP = textwrap.dedent("""
    import contextlib, io, os, sys
    from trainwise.cli import main
    root, stop = sys.argv[1], sys.argv[2]
    calls = failures = 0
    while not os.path.exists(stop):
        if not os.path.exists(os.path.join(root, "runs.sqlite")):
            continue
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["runs", "list", "--root", root, "--format", "json"])
        calls += 1
        if code != 0:
            failures += 1
            sys.stderr.write(err.getvalue())
    print(calls, failures)
""")


def spawn(script: str, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, **kwargs)


def runs_json(root: Path) -> list[dict]:
    done = subprocess.run([sys.executable, "-m", "trainwise", "runs", "list", "--root", str(root), "--format", "json"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": SRC}, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.slow
def test_two_writers_and_a_reader_never_see_database_is_locked(tmp_path: Path) -> None:
    root, stop = tmp_path / "runs", tmp_path / "stop"
    reader = spawn(LIST_LOOP, str(root), str(stop))
    writers = [spawn(TRAIN, str(root), name, "2", "12") for name in ("left", "right")]
    outputs = [writer.communicate(timeout=400) for writer in writers]
    stop.write_text("")
    reader_out, reader_err = reader.communicate(timeout=120)
    for (out, err), writer in zip(outputs, writers):
        assert writer.returncode == 0, err[-3000:]
        assert "locked" not in err and "could not update the run index" not in err
    assert reader.returncode == 0 and "locked" not in reader_err, reader_err[-3000:]
    calls, failures = map(int, reader_out.split())
    assert calls > 0 and failures == 0
    runs = runs_json(root)
    assert len(runs) == 24 and {run["status"] for run in runs} == {"completed"}
    assert len({run["id"] for run in runs}) == 24


def wait_for(path: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120  # a guard against a hang, not a speed assertion
    while not path.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert process.poll() is None, process.communicate()[1][-3000:]


@pytest.mark.slow
def test_a_killed_run_shows_as_crashed_and_rm_refuses_a_live_one(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    trainer = spawn(TRAIN, str(root), "long", "100000", "1")
    stopped = spawn(TRAIN, str(root), "stopped", "100000", "1")
    record = root / "long" / "0" / "run.json"
    wait_for(record, trainer)
    wait_for(root / "stopped" / "0" / "run.json", stopped)
    stopped.send_signal(signal.SIGTERM)  # saves a checkpoint, ends as interrupted
    assert stopped.wait(timeout=120) == 0
    run, interrupted = sorted(runs_json(root), key=lambda r: r["name"])
    assert interrupted["status"] == interrupted["recorded_status"] == "interrupted"
    assert run["status"] == "running" and run["pid"] == trainer.pid
    env = {**os.environ, "PYTHONPATH": SRC}
    refused = subprocess.run([sys.executable, "-m", "trainwise", "runs", "rm", "--root", str(root), "--force",
                              run["id"]], capture_output=True, text=True, env=env, timeout=120)
    assert refused.returncode == 2 and "is running" in refused.stderr and f"pid {trainer.pid}" in refused.stderr
    assert record.exists()
    trainer.send_signal(signal.SIGKILL)
    trainer.communicate(timeout=60)
    (run,) = [r for r in runs_json(root) if r["id"] == run["id"]]
    assert run["status"] == "crashed" and run["recorded_status"] == "running"
    assert json.loads(record.read_text())["status"] == "running"  # the file says what it last knew
    removed = subprocess.run([sys.executable, "-m", "trainwise", "runs", "rm", "--root", str(root), run["id"]],
                             capture_output=True, text=True, env=env, timeout=120)
    assert removed.returncode == 0 and not record.exists()
