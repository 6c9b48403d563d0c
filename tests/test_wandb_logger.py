"""The W&B logger, offline: the run's records read back with wandb's own protobuf ``Record`` from
the ``.wandb`` transaction log; rank 0 alone writes in a real two-process DDP job; a failing W&B
never ends the training."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from trainwise import Trainer
from trainwise.errors import ConfigError

wandb = pytest.importorskip("wandb", reason="wandb not installed (pip install 'trainwise[wandb]')")

from trainwise.callbacks.wandb_logger import WandbLogger, wandb_mode  # noqa: E402

_BLOCK, _HEADER = 32768, 7  # the .wandb file: a LevelDB-style log of protobuf records


def wandb_records(run_folder: Path) -> dict[str, list[Any]]:
    """Every record of the one offline W&B run under ``run_folder/wandb``, by kind, once wandb's own
    writer (a service process) has written the run's last records: ``run`` and ``exit``."""
    deadline = time.monotonic() + 30
    while True:
        records = _read_records(run_folder)
        if {"run", "exit"} <= set(records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def _read_records(run_folder: Path) -> dict[str, list[Any]]:
    from wandb.proto import wandb_internal_pb2

    (log_file,) = (run_folder / "wandb").glob("offline-run-*/run-*.wandb")
    data = log_file.read_bytes()
    assert data[:4] == b":W&B"
    records: dict[str, list[Any]] = {}
    pos, pending = _HEADER, b""
    while pos < len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:
            pos += left
            continue
        checksum, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        chunk = data[pos + _HEADER:pos + _HEADER + length]
        assert zlib.crc32(bytes([kind]) + chunk) & 0xFFFFFFFF == checksum
        pos += _HEADER + length
        pending += chunk
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.setdefault(record.WhichOneof("record_type"), []).append(record)
            pending = b""
    return records


def history_rows(records: dict[str, list[Any]]) -> list[dict[str, Any]]:
    return [{item.nested_key[0] if item.nested_key else item.key: json.loads(item.value_json)
             for item in r.history.item} for r in records.get("history", [])]


def summary_of(records: dict[str, list[Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for r in records.get("summary", []):
        for item in r.summary.update:
            key = ".".join(item.nested_key) if item.nested_key else item.key
            summary[key] = json.loads(item.value_json)
    return summary


def fit(run_dir: Path, logger: Any, epochs: int = 3):
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    return Trainer(model, optimizer="sgd", lr=0.05, epochs=epochs, batch_size=16, progress=False, report=False,
                   log_every_n_steps=2, run_dir=run_dir, name="logged", loggers=[logger]).fit((x, y), (x, y))


def test_one_offline_run_with_config_history_and_summary(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc key: offline
    result = fit(tmp_path / "a", "wandb")
    records = wandb_records(tmp_path / "a")
    assert "run" in records, f"the offline run holds only {sorted(records)}"
    run = records["run"][0].run
    assert len(records["run"]) == 1
    record = json.loads((tmp_path / "a" / "run.json").read_text())
    assert run.run_id == record["id"] and run.display_name == "logged" and run.project == "trainwise"
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["optimizer"]["name"] == "sgd" and config["optimizer"]["lr"] == 0.05
    epochs = [row for row in history_rows(records) if "val_loss" in row]
    assert [row["_step"] for row in epochs] == [4, 8, 12]  # the optimizer step at each epoch's end
    assert [row["val_loss"] for row in epochs] == pytest.approx([h["val_loss"] for h in result.history], rel=1e-6)
    assert [row["_step"] for row in history_rows(records) if "val_loss" not in row] == [2, 6, 10]  # lr between
    summary = summary_of(records)
    assert summary["best_val_loss"] == pytest.approx(result.best_val_loss, rel=1e-6)
    assert summary["status"] == "completed" and summary["epochs_run"] == 3
    assert records["exit"][0].exit.exit_code == 0


def test_a_failing_wandb_is_contained_and_recorded(tmp_path: Path) -> None:
    logger = WandbLogger(mode="offline")

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("No space left on device")

    original = logger._start

    def start_then_break(trainer: Any) -> None:
        original(trainer)
        logger.run.log = broken

    logger._start = start_then_break
    result = fit(tmp_path / "b", logger)
    assert result.status == "completed" and result.summary["epochs_run"] == 3
    events = [e for e in result.summary.get("events", []) if e["kind"] == "logger_failed"]
    assert len(events) == 1 and "No space left on device" in events[0]["message"]
    assert result.warnings == [events[0]["message"]]  # summary.json says the logger stopped
    assert wandb_records(tmp_path / "b")["exit"][0].exit.exit_code == 1  # the W&B run was closed, failed


def test_mode_choice(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert wandb_mode(None)[0] == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens: offline, said why
    mode, why = wandb_mode(None)
    assert mode == "offline" and "127.0.0.1 unreachable" in why
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode(None) == ("disabled", "$WANDB_MODE")
    with pytest.raises(ConfigError, match="unknown wandb mode 'ofline'; did you mean 'offline'"):
        WandbLogger(mode="ofline")


@pytest.mark.slow
def test_rank_zero_alone_writes_in_a_two_process_job(tmp_path: Path) -> None:
    config = {"name": "ddp-wandb", "seed": 0, "data": {"dataset": "digits", "batch_size": 64},
              "model": {"name": "mlp", "hidden": [16]}, "optimizer": {"name": "adamw", "lr": 3.0e-3},
              "train": {"epochs": 2, "report": False, "loggers": ["wandb"], "wandb": {"mode": "offline"},
                        "early_stopping": {"enabled": False}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    # the in-process runs of the tests above leave WANDB_SERVICE (this process's W&B service) in the
    # environment; a job started from here must start its own, as it would from a shell
    env = {key: value for key, value in os.environ.items() if not key.startswith("WANDB_")}
    env.update(PYTHONPATH=str(Path(__file__).parents[1] / "src"), OMP_NUM_THREADS="1", HOME=str(tmp_path))
    run = subprocess.run([sys.executable, "-m", "trainwise", "train", "config.yaml", "--quiet", "--nproc", "2",
                          "--run-dir", "runs/ddp"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert len(list((tmp_path / "runs" / "ddp" / "wandb").glob("offline-run-*"))) == 1
    assert not list(tmp_path.glob("wandb")) and not list((tmp_path / "runs").glob("wandb"))
    records = wandb_records(tmp_path / "runs" / "ddp")
    assert len(records["run"]) == 1 and len([r for r in history_rows(records) if "val_loss" in r]) == 2
    summary = json.loads((tmp_path / "runs" / "ddp" / "summary.json").read_text())
    assert summary_of(records)["best_val_loss"] == pytest.approx(summary["best_val_loss"], rel=1e-6)
