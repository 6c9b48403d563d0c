"""TensorBoard and MLflow loggers, read back with each tool's own reader."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from trainwise import Trainer
from trainwise.callbacks.loggers import MLflowLogger, TensorBoardLogger, check_tracking_uri
from trainwise.cli import main
from trainwise.errors import ConfigError

HAS_TB = importlib.util.find_spec("tensorboard") is not None
HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None


def fit(run_dir: Path, loggers, epochs: int = 3):
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    return Trainer(model, optimizer="sgd", lr=0.05, epochs=epochs, batch_size=16, progress=False, report=False,
                   log_every_n_steps=2, run_dir=run_dir, name="logged", loggers=loggers).fit((x, y), (x, y))


@pytest.mark.skipif(not HAS_TB, reason="tensorboard not installed (pip install 'trainwise[tensorboard]')")
def test_tensorboard_event_files_hold_the_scalars_lr_and_hparams(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = fit(tmp_path / "runs" / "a", ["tensorboard"])
    events = EventAccumulator(str(tmp_path / "runs" / "a" / "tensorboard"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"train_loss", "val_loss", "val_accuracy", "lr", "epoch", "final/best_val_loss"} <= set(scalars)
    val_loss = events.Scalars("val_loss")
    assert [e.step for e in val_loss] == [4, 8, 12]  # the optimizer step at each epoch's end
    assert [e.value for e in val_loss] == pytest.approx([row["val_loss"] for row in result.history], rel=1e-6)
    assert [e.step for e in events.Scalars("lr")][:3] == [2, 4, 4]  # every 2 steps, and at the epoch's end
    assert events.Scalars("final/best_val_loss")[0].value == pytest.approx(result.best_val_loss, rel=1e-6)
    plugins = events.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(plugins)
    assert b"optimizer.lr" in plugins["_hparams_/session_start_info"]


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MLFLOW, reason="mlflow not installed (pip install 'trainwise[mlflow]')")
def test_mlflow_run_is_read_back_with_its_client(tmp_path: Path, monkeypatch) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = fit(tmp_path / "runs" / "a", ["mlflow"])  # default store: sqlite:///<runs root>/mlflow.db
    assert (tmp_path / "runs" / "mlflow.db").is_file()
    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("trainwise")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "logged"
    assert run.data.params["optimizer.name"] == "sgd" and float(run.data.params["optimizer.lr"]) == 0.05
    record = json.loads((tmp_path / "runs" / "a" / "run.json").read_text())
    assert run.data.tags["trainwise.run_id"] == record["id"]
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert [m.step for m in history] == [4, 8, 12]
    assert [m.value for m in history] == pytest.approx([row["val_loss"] for row in result.history], rel=1e-6)
    assert run.data.metrics["final_best_val_loss"] == pytest.approx(result.best_val_loss, rel=1e-6)
    uri = f"sqlite:///{tmp_path / 'other.db'}"
    fit(tmp_path / "runs" / "b", [MLflowLogger(tracking_uri=uri, experiment="mine")], epochs=1)
    assert MlflowClient(uri).get_experiment_by_name("mine") is not None


@pytest.mark.parametrize("uri", ["mlruns", "/tmp/mlruns", "file:///tmp/mlruns", "./mlruns"])
def test_the_mlflow_file_store_is_refused(uri: str) -> None:
    with pytest.raises(ConfigError, match="file store.*sqlite:///"):
        check_tracking_uri(uri)


def test_sql_and_server_uris_are_accepted() -> None:
    for uri in ("sqlite:///runs/mlflow.db", "postgresql+psycopg://u@h/db", "http://localhost:5000"):
        assert check_tracking_uri(uri) == uri


def test_unknown_logger_and_missing_package_are_one_clear_error(monkeypatch) -> None:
    with pytest.raises(ConfigError, match="unknown logger 'tensorbord'; did you mean 'tensorboard'"):
        Trainer(torch.nn.Linear(2, 2), loggers=["tensorbord"])
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'trainwise\[mlflow\]'"):
        MLflowLogger()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ConfigError, match=r"pip install 'trainwise\[tensorboard\]'"):
        TensorBoardLogger()


CONFIG = """
name: cli-logged
data: {dataset: synthetic, batch_size: 32}
model: {name: mlp, hidden: [8]}
optimizer: {lr: 0.01}
train: {epochs: 2, report: false, loggers: [tensorboard]}
"""


@pytest.mark.skipif(not HAS_TB, reason="tensorboard not installed")
def test_config_loggers_from_the_cli(tmp_path: Path, capsys) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    assert main(["train", str(config), "--quiet", "--run-dir", str(tmp_path / "runs" / "c")]) == 0
    assert list((tmp_path / "runs" / "c" / "tensorboard").glob("events.out.tfevents.*"))
    capsys.readouterr()
    assert main(["train", str(config), "--quiet", "train.loggers=[tensorbord]"]) == 2
    assert "tensorbord" in capsys.readouterr().err
