"""SIGTERM and SIGINT outside the training loop: during the LR range test before it (the run is
recorded as interrupted, nothing trained, and --resume auto starts it over) and during the test
pass after it (the run keeps its status, without test figures, and says why). Real processes that
send themselves a real signal at a known point."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

COMMON = """
import os, signal, sys, json
import torch
from torch import nn
from trainwise import Trainer
torch.manual_seed(0)
x = torch.randn(512, 6); y = (x[:, 0] > 0).long()
"""


def run(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(COMMON) + textwrap.dedent(script))
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=240,
                          env={"PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}, cwd=tmp_path)


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_a_signal_during_the_range_test_records_an_interrupted_run_that_resume_starts_over(tmp_path, signal_name):
    done = run(f"""
        import trainwise.lr.finder as finder
        calls = {{"n": 0}}
        original = finder.LRFinder.run
        def run_and_signal(self, batches):
            loss = self.batch_loss
            def counted(batch):
                calls["n"] += 1
                if calls["n"] == 5:
                    os.kill(os.getpid(), signal.{signal_name})
                return loss(batch)
            self.batch_loss = counted
            return original(self, batches)
        finder.LRFinder.run = run_and_signal
        model = nn.Linear(6, 2)
        before = [p.detach().clone() for p in model.parameters()]
        result = Trainer(model, lr="auto", epochs=2, run_dir="run", progress=False, report=False).fit((x, y))
        untouched = all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
        print(json.dumps({{"status": result.status, "untouched": untouched, "steps": result.summary["steps"]}}))
        """, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    said = json.loads(done.stdout.strip().splitlines()[-1])
    assert said == {"status": "interrupted", "untouched": True, "steps": 0}
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stop_reason"].startswith(f"received {signal_name} during the LR range test, before the first "
                                             "training step: nothing was trained")
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "interrupted"
    assert not (tmp_path / "run" / "checkpoints").exists()
    again = run("""
        result = Trainer(nn.Linear(6, 2), lr="auto", epochs=2, run_dir="run", progress=False, report=False).fit(
            (x, y), resume="auto")
        print(json.dumps({"status": result.status, "steps": result.summary["steps"]}))
        """, tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout.strip().splitlines()[-1]) == {"status": "completed", "steps": 16}


def test_a_signal_during_the_test_pass_ends_it_and_the_run_keeps_its_status(tmp_path):
    done = run("""
        calls = {"n": 0}
        def signalling(outputs, targets):  # called once per evaluated split: sanity pass, epoch 1, test
            calls["n"] += 1
            if calls["n"] == 3:
                os.kill(os.getpid(), signal.SIGTERM)
            return 0.0
        result = Trainer(nn.Linear(6, 2), lr=0.01, epochs=1, run_dir="run", progress=False, report=False,
                         metrics={"probe": signalling}).fit((x, y), (x, y), test=(x, y))
        print(json.dumps({"status": result.status, "test": result.test_metrics, "calls": calls["n"]}))
        """, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    said = json.loads(done.stdout.strip().splitlines()[-1])
    assert said == {"status": "completed", "test": {}, "calls": 3}
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert not any(key.startswith("test_") for key in summary)
    assert [event["kind"] for event in summary["events"]] == ["test_interrupted"]
    assert "received SIGTERM during the test pass, after the last training step" in summary["events"][0]["message"]


def test_a_signal_during_an_endless_validation_ends_the_run_interrupted_without_saving_that_epoch(tmp_path):
    done = run("""
        from torch.utils.data import IterableDataset
        calls = {"passes": 0}
        class Endless(IterableDataset):  # the second validation never ends: a user's mistake, or a huge split
            def __iter__(self):
                calls["passes"] += 1
                i = 0
                while True:
                    if calls["passes"] == 3 and i == 40:  # sanity pass, epoch 1, then epoch 2's validation
                        os.kill(os.getpid(), signal.SIGTERM)
                    if calls["passes"] < 3 and i == 64:
                        return
                    yield x[i % 512], y[i % 512]
                    i += 1
        result = Trainer(nn.Linear(6, 2), lr=0.01, epochs=3, batch_size=64, eval_batch_size=8, run_dir="run",
                         progress=False, report=False).fit((x, y), Endless(), test=(x, y))
        print(json.dumps({"status": result.status, "epochs": result.summary["epochs_run"],
                          "test": result.test_metrics}))
        """, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"status": "interrupted", "epochs": 1, "test": {}}
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stop_reason"] == ("received SIGTERM during a validation (epoch 2); --resume auto continues from "
                                      "step-00000008.pt")
    from trainwise.checkpoint import read_manifest

    steps = sorted(name for name in read_manifest(tmp_path / "run" / "checkpoints") if name.startswith("step-"))
    assert steps == ["step-00000008.pt"]  # epoch 1's end; the interrupted epoch 2 saved nothing
