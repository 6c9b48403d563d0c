"""Rank-0-only setup under DDP: when it fails, every rank learns it at once and stops with one clear
line, instead of the other ranks waiting at a collective until the group's timeout.

Real 2-process jobs (gloo on CPU). The group timeout is small (``DIST_TIMEOUT``), so a rank left
waiting would end in a gloo timeout, which the assertions on each rank's outcome would show; no
assertion is on wall-clock time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DIST_TIMEOUT = 30  # seconds; well above this machine's setup time, far below torch's 30 minutes
SCRIPT = '''
import datetime, json, sys, warnings
from pathlib import Path

import torch
import torch.distributed as dist

from trainwise import Trainer
from trainwise.callbacks import Logger, LoggerUnavailable

dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=float(sys.argv[1])))
rank, out = dist.get_rank(), Path(sys.argv[2])


class Broken(Logger):
    def on_fit_start(self, trainer):
        raise ValueError("malformed tracking URI 'htp:/x'")


class Offline(Logger):
    """Its server is down: it says so, and is switched off."""

    def on_fit_start(self, trainer):
        raise LoggerUnavailable("tracking server http://127.0.0.1:9 did not answer")

    def on_epoch_end(self, trainer, logs):
        raise AssertionError("a logger switched off is not called again")


def fit(name, callbacks):
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    trainer = Trainer(model, optimizer="sgd", lr=0.05, epochs=2, batch_size=16, progress=False, report=False,
                      run_dir=out / name, name=name, callbacks=callbacks)
    try:
        result = trainer.fit((x, y), (x, y))
    except Exception as exc:
        return {"error": type(exc).__name__, "message": str(exc)}
    return {"status": result.status, "epochs": len(result.history), "warnings": result.warnings}


outcomes = {"broken_logger": fit("broken", [Broken()])}
# rank 0 cannot write the run folder's first file (config.yaml is a folder there)
(out / "unwritable" / "config.yaml").mkdir(parents=True, exist_ok=True)
outcomes["unwritable_folder"] = fit("unwritable", [])
outcomes["offline_logger"] = fit("offline", [Offline()])
(out / f"outcome-{rank}.json").write_text(json.dumps(outcomes))
'''


def env(tmp: Path) -> dict[str, str]:
    variables = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "src"), OMP_NUM_THREADS="1",
                     TMPDIR=str(tmp))
    variables.pop("WORLD_SIZE", None)
    return variables


@pytest.fixture(scope="module")
def jobs(tmp_path_factory) -> dict[str, object]:
    """Both jobs at once (they spend most of their time starting up)."""
    tmp = tmp_path_factory.mktemp("setup")
    (tmp / "script.py").write_text(SCRIPT)
    script = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                               "script.py", str(DIST_TIMEOUT), str(tmp / "api")], cwd=tmp, env=env(tmp),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    config = {"name": "tb", "seed": 0, "data": {"dataset": "digits", "batch_size": 64, "val_fraction": 0.1},
              "model": {"name": "mlp", "hidden": [16]}, "optimizer": {"name": "adamw", "lr": 3e-3},
              "train": {"epochs": 1, "report": False, "loggers": ["tensorboard"], "dist_timeout": DIST_TIMEOUT}}
    (tmp / "config.yaml").write_text(yaml.safe_dump(config))
    (tmp / "cli").mkdir()
    (tmp / "cli" / "tensorboard").write_text("a file where the logger's folder should be\n")
    cli = subprocess.Popen([sys.executable, "-m", "trainwise", "train", "config.yaml", "--quiet", "--run-dir", "cli",
                            "--nproc", "2"], cwd=tmp, env=env(tmp), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    done = {}
    for name, proc in (("api", script), ("cli", cli)):
        out, err = proc.communicate(timeout=600)  # a guard against a hang of the test itself, not a speed check
        done[name] = (proc.returncode, out, err)
    return {"tmp": tmp, **done}


def outcome(jobs, rank: int) -> dict:
    tmp = jobs["tmp"]
    path = tmp / "api" / f"outcome-{rank}.json"
    assert path.is_file(), jobs["api"]
    return json.loads(path.read_text())


def test_a_logger_failing_at_the_start_on_rank_0_stops_every_rank_with_its_error(jobs):
    zero, one = outcome(jobs, 0)["broken_logger"], outcome(jobs, 1)["broken_logger"]
    assert zero == {"error": "LoggerError", "message": "Broken could not start (ValueError: malformed tracking URI "
                    "'htp:/x'); fix the folder or URI it names, or run without this logger"}
    assert one == {"error": "StoppedWithPeerError", "message": "rank 1 stopped before training because rank 0 failed "
                   f"starting its callbacks: LoggerError: {zero['message']}"}


def test_rank_0_failing_to_write_the_run_folder_stops_every_rank(jobs):
    zero, one = outcome(jobs, 0)["unwritable_folder"], outcome(jobs, 1)["unwritable_folder"]
    assert zero["error"] == "IsADirectoryError" and "config.yaml" in zero["message"]
    assert one["error"] == "StoppedWithPeerError"
    assert one["message"].startswith("rank 1 stopped before training because rank 0 failed writing the run folder: "
                                     "IsADirectoryError:")


def test_after_a_failed_start_the_job_goes_on_and_an_unreachable_logger_is_switched_off(jobs):
    """The ranks stayed in step through both failures: the third fit trains on both, without the
    logger whose server is down, and says so in its warnings."""
    code, _, err = jobs["api"]
    assert code == 0, err[-3000:]
    for rank in (0, 1):
        offline = outcome(jobs, rank)["offline_logger"]
        assert offline["status"] == "completed" and offline["epochs"] == 2
    warnings = outcome(jobs, 0)["offline_logger"]["warnings"]
    assert warnings == [("Offline switched off in on_fit_start: tracking server http://127.0.0.1:9 did not answer; "
                         "training goes on without it")]
    summary = json.loads((jobs["tmp"] / "api" / "offline" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["warnings"] == warnings
    assert [e["kind"] for e in summary["events"]].count("logger_disabled") == 1


def test_the_cli_job_whose_logger_cannot_create_its_folder_ends_with_one_line_per_rank(jobs):
    code, _, err = jobs["cli"]
    assert code == 2, err[-3000:]
    assert "Traceback" not in err and "Timed out" not in err and "another process of the job stopped" not in err
    cause = ("TensorBoardLogger could not start (FileExistsError: [Errno 17] File exists: 'cli/tensorboard'); "
             "fix the folder or URI it names, or run without this logger")
    assert err.count("error: ") == 2, err
    assert err.count(f"error: {cause}") == 1  # rank 0
    assert err.count(f"error: rank 1 stopped before training because rank 0 failed starting its callbacks: "
                     f"LoggerError: {cause}") == 1
    summary = json.loads((jobs["tmp"] / "cli" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["steps"] == 0
    assert (jobs["tmp"] / "cli" / "tensorboard").read_text() == "a file where the logger's folder should be\n"
