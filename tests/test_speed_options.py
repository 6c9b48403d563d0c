"""``train.compile`` and ``train.channels_last`` (trainwise.engine.speed), and ``trainwise profile``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from trainwise.config.schema import load_config
from trainwise.errors import ConfigError
from trainwise.models import build_model
from trainwise.engine.speed import cxx_compiler, speed_options
from trainwise.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


def test_channels_last_converts_the_conv_weights_and_trains(tmp_path):
    torch.manual_seed(0)
    model = build_model("cnn", input_shape=(1, 12, 12), num_outputs=3, channels=[4, 8], hidden=[8], norm="batch")
    x, y = torch.randn(64, 1, 12, 12), torch.randint(0, 3, (64,))
    trainer = Trainer(model, lr=1e-2, epochs=1, batch_size=16, channels_last=True, run_dir=tmp_path / "run",
                      progress=False, report=False)
    conv = [m for m in trainer.model.modules() if isinstance(m, nn.Conv2d)][1]  # 4 -> 8 channels (1 is both layouts)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    assert trainer.fit((x, y)).status == "completed"


def test_channels_last_without_2d_convolutions_is_refused():
    with pytest.raises(ConfigError, match="channels_last applies to models with 2-D convolutions"):
        speed_options(nn.Linear(3, 2), torch.device("cpu"), compile=False, channels_last=True)


def test_compile_without_a_cpp_compiler_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no g++, c++ or clang++
    monkeypatch.delenv("CXX", raising=False)
    assert cxx_compiler() is None
    with pytest.raises(ConfigError, match=r"train.compile=true needs a C\+\+ compiler .*\(apt-get install g\+\+\)"):
        Trainer(nn.Linear(3, 2), compile=True, device="cpu")


def test_the_options_are_config_keys_and_off_by_default():
    cfg = load_config(None)
    assert (cfg.train.compile, cfg.train.channels_last, cfg.model.checkpointing) == (False, False, False)
    cfg = load_config(None, ["train.compile=true", "train.channels_last=true", "model.checkpointing=true"])
    assert (cfg.train.compile, cfg.train.channels_last, cfg.model.checkpointing) == (True, True, True)


def _trainwise(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "trainwise", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_profile_prints_the_top_operators_and_writes_a_chrome_trace(tmp_path):
    proc = _trainwise("profile", str(ROOT / "examples" / "digits.yaml"), "--steps", "2", "--run-dir", "prof",
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Self CPU" in proc.stdout and "aten::" in proc.stdout
    assert "profiled 2 optimizer steps of digits-mlp" in proc.stdout
    trace = json.loads((tmp_path / "prof" / "trace.json").read_text())
    names = {event.get("name") for event in trace["traceEvents"]}
    assert "ProfilerStep#3" in names and "ProfilerStep#4" in names  # steps 1-3 are the warm-up
    assert not any(name and name.startswith("ProfilerStep#2") for name in names)


def test_profile_with_no_steps_is_one_clear_error(tmp_path):
    proc = _trainwise("profile", str(ROOT / "examples" / "digits.yaml"), "--steps", "0", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --steps must be >= 1, got 0"
