"""Loggers at the edges: rank 0 alone writes, a failure during training costs telemetry and not
the run, and two processes creating one MLflow experiment do not collide. Real processes: a
2-process job. (A real ``mlflow server`` stopped mid-run: test_mlflow_outage.py.)"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from trainwise import Trainer
from trainwise.callbacks import Callback, Logger
from trainwise.callbacks.dispatch import MAX_CONSECUTIVE_FAILURES, dispatch_table
from trainwise.errors import LoggerError

HAS_TB = importlib.util.find_spec("tensorboard") is not None
HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None


def fit(run_dir: Path, callbacks=(), loggers=(), epochs: int = 4):
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    trainer = Trainer(model, optimizer="sgd", lr=0.05, epochs=epochs, batch_size=16, progress=False, report=False,
                      run_dir=run_dir, name="logged", callbacks=callbacks, loggers=list(loggers))
    return trainer, trainer.fit((x, y), (x, y))


class Flaky(Logger):
    """A logger whose backend breaks after the start: every epoch's write raises."""

    def __init__(self) -> None:
        self.started, self.calls = False, 0

    def on_fit_start(self, trainer) -> None:
        self.started = True

    def on_epoch_end(self, trainer, logs) -> None:
        self.calls += 1
        raise ConnectionError("tracking server at 127.0.0.1:9 refused the connection")


def test_a_logger_failing_during_training_is_a_warning_and_an_event(tmp_path):
    flaky = Flaky()
    with pytest.warns(RuntimeWarning, match="Flaky failed in on_epoch_end .*ConnectionError.*training goes on"):
        trainer, result = fit(tmp_path / "run", callbacks=[flaky], epochs=MAX_CONSECUTIVE_FAILURES + 2)
    assert result.status == "completed" and len(result.history) == MAX_CONSECUTIVE_FAILURES + 2
    assert flaky.calls == MAX_CONSECUTIVE_FAILURES  # switched off after that many failures in a row
    kinds = [event["kind"] for event in trainer.state.events]
    assert kinds.count("logger_failed") == 1 and kinds.count("logger_disabled") == 1


def test_a_logger_failing_at_the_start_stops_the_run_before_step_0(tmp_path):
    class BadURI(Logger):
        def on_fit_start(self, trainer):
            raise ValueError("malformed tracking URI 'htp:/x'")

    with pytest.raises(LoggerError, match=r"^BadURI could not start \(ValueError: malformed tracking URI 'htp:/x'\); "
                       "fix the folder or URI it names") as raised:
        fit(tmp_path / "run", callbacks=[BadURI()])
    assert isinstance(raised.value.__cause__, ValueError)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["steps"] == 0


def test_rank_zero_only_callbacks_are_not_called_on_other_ranks(monkeypatch):
    import trainwise.distributed.ops as ops

    calls = []

    class Writes(Callback):
        rank_zero_only = True

        def on_epoch_end(self, trainer, logs):
            calls.append(logs)

    class Plain(Callback):
        def on_epoch_end(self, trainer, logs):
            calls.append("plain")

    plain = Plain()
    monkeypatch.setattr(ops, "world", lambda: (1, 2))
    table = dispatch_table([Writes(), plain])
    assert table["on_epoch_end"][1] is plain  # unmarked callbacks are called directly
    for callback in table["on_epoch_end"]:
        callback.on_epoch_end(None, {"loss": 1.0})
    assert calls == ["plain"]


@pytest.mark.skipif(not HAS_TB, reason="tensorboard not installed")
def test_two_processes_with_tensorboard_write_one_event_file(tmp_path):
    config = {"name": "tb", "seed": 0, "data": {"dataset": "digits", "batch_size": 64, "val_fraction": 0.1,
                                                "test_fraction": 0.1},
              "model": {"name": "mlp", "hidden": [16]}, "optimizer": {"name": "adamw", "lr": 3e-3},
              "train": {"epochs": 2, "report": False, "loggers": ["tensorboard"],
                        "early_stopping": {"enabled": False}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    env = dict(os.environ, OMP_NUM_THREADS="1", TMPDIR=str(tmp_path))
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run([sys.executable, "-m", "trainwise", "train", "config.yaml", "--quiet", "--run-dir", "run",
                           "--nproc", "2"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    files = list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert len(files) == 1, files
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert len(events.Scalars("val_loss")) == 2


@pytest.mark.skipif(not HAS_MLFLOW, reason="mlflow not installed")
def test_an_experiment_created_by_another_process_meanwhile_is_used(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from trainwise.callbacks.loggers import MLflowLogger

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    other = MlflowClient(uri).create_experiment("shared")  # the other process won the race
    lookups = []
    original = MlflowClient.get_experiment_by_name

    def looked_up_before_it_existed(self, name):
        lookups.append(name)
        return None if len(lookups) == 1 else original(self, name)

    monkeypatch.setattr(MlflowClient, "get_experiment_by_name", looked_up_before_it_existed)
    logger = MLflowLogger(tracking_uri=uri, experiment="shared")
    fit(tmp_path / "run", loggers=[logger], epochs=1)
    monkeypatch.undo()
    client = MlflowClient(uri)
    assert len(lookups) == 2 and len(client.search_runs([other])) == 1
