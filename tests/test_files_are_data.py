"""Files are data: nothing a file names is imported or called (DESIGN.md, "Files are data").

Crafted safetensors files and run folders name ``os:system``, ``subprocess:run``, ``builtins:eval``
and a user module that records its own import; loading them imports nothing, runs nothing, and
says in one line how the user names the model themselves. TorchScript and .pt2 files are
programs: they load only when their format is named.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from test_cli import trainwise
from test_cli_inference import assert_one_error
from trainwise.errors import ConfigError, TrainwiseError
from trainwise.export import load_artifact, load_model

PROBE = """
import pathlib
pathlib.Path(__file__).with_name("IMPORTED").write_text("the probe module was imported")


def build(**kwargs):
    import torch
    return torch.nn.Linear(4, 2)
"""
NAMES = ("os:system", "subprocess:run", "builtins:eval", "tw_probe_21:build")
ARGS = {"os:system": {"command": "touch PWNED"}, "subprocess:run": {"args": ["touch", "PWNED"]},
        "builtins:eval": {"source": "open('PWNED', 'w')"}, "tw_probe_21:build": {}}


def crafted_safetensors(folder: Path, name: str) -> Path:
    """A file as an attacker would write it: trainwise metadata naming ``name`` with its kwargs."""
    meta = {"config": {"model": {"name": name, "args": ARGS[name]}},
            "data": {"task": "classification", "input_shape": [4], "num_outputs": 2, "class_names": ["a", "b"]}}
    path = folder / f"{name.replace(':', '_')}.safetensors"
    save_file({"model.weight": torch.zeros(2, 4), "model.bias": torch.zeros(2), "mean": torch.zeros(1),
               "std": torch.ones(1)}, str(path),
              metadata={"trainwise.json": json.dumps(meta), "format": "pt"})
    return path


@pytest.fixture
def probe_folder(tmp_path, monkeypatch):
    """A folder on sys.path (and the working directory) holding an importable module that marks its import."""
    (tmp_path / "tw_probe_21.py").write_text(PROBE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("tw_probe_21", None)


def refuse_everything(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError(f"called with {args!r}")

    monkeypatch.setattr(importlib, "import_module", refuse)
    monkeypatch.setattr(os, "system", refuse)
    monkeypatch.setattr(subprocess, "run", refuse)


@pytest.mark.parametrize("name", NAMES)
def test_load_model_imports_and_calls_nothing_a_file_names(probe_folder, monkeypatch, name):
    path = crafted_safetensors(probe_folder, name)
    refuse_everything(monkeypatch)
    with pytest.raises(ConfigError) as caught:
        load_model(path)
    message = str(caught.value)
    assert "\n" not in message and repr(name) in message
    assert "never imports code a file names" in message and "model=YourNet(...)" in message
    monkeypatch.undo()
    assert "tw_probe_21" not in sys.modules
    assert not (probe_folder / "IMPORTED").exists() and not (probe_folder / "PWNED").exists()


def test_predict_with_a_crafted_file_imports_nothing_and_names_the_fix(probe_folder):
    inputs = probe_folder / "x.npz"
    import numpy as np

    np.savez(inputs, x=np.zeros((3, 4), dtype=np.float32))
    for name in ("os:system", "tw_probe_21:build"):  # all four in-process above; the CLI's path for two
        path = crafted_safetensors(probe_folder, name)
        proc = trainwise("predict", str(path), str(inputs), "--out", "p.npz", cwd=probe_folder)
        assert_one_error(proc, "never imports code a file names", "--model package.module:factory")
    assert not (probe_folder / "IMPORTED").exists() and not (probe_folder / "PWNED").exists()
    # The user types the factory: then (and only then) it is imported, and the weights load into it.
    proc = trainwise("predict", str(crafted_safetensors(probe_folder, "tw_probe_21:build")), str(inputs),
                     "--out", "p.npz", "--model", "tw_probe_21:build", cwd=probe_folder)
    assert proc.returncode == 0, proc.stderr
    assert (probe_folder / "IMPORTED").exists()
    with np.load(probe_folder / "p.npz") as got:
        assert got["outputs"].tolist() == [[0.0, 0.0]] * 3


def test_metadata_with_control_characters_is_shown_escaped_on_one_line(tmp_path):
    path = crafted_safetensors(tmp_path, "os:system")
    meta = {"config": {"model": {"name": "evil\n\x00\x1b[2Jmod:fn" + "x" * 500}},
            "data": {"input_shape": [4], "num_outputs": 2}}
    save_file({"model.weight": torch.zeros(2, 4)}, str(path), metadata={"trainwise.json": json.dumps(meta)})
    with pytest.raises(ConfigError) as caught:
        load_model(path)
    message = str(caught.value)
    assert "\n" not in message and "\x00" not in message and "\x1b" not in message and len(message) < 600


@pytest.mark.parametrize("metadata", ["{not json", "[1, 2]", json.dumps({"data": {"input_shape": "four"}})])
def test_damaged_metadata_is_one_clear_error(tmp_path, metadata):
    path = tmp_path / "m.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"trainwise.json": metadata})
    with pytest.raises(TrainwiseError, match="damaged or was not written by trainwise export"):
        load_model(path)


def test_a_run_folders_config_imports_nothing(probe_folder, monkeypatch):
    """A run folder (copied from anyone) whose config.yaml names a module: evaluate, predict and
    export refuse it with the --model fix; nothing is imported."""
    import numpy as np
    import yaml

    from trainwise.export import export
    from trainwise.runfolder.saved import load_saved_run, rebuild_model

    x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    np.savez(probe_folder / "d.npz", x=x, y=y)
    run = probe_folder / "run"
    from trainwise import Trainer
    from trainwise.models import build_model

    Trainer(build_model("mlp", input_shape=(4,), num_outputs=2, hidden=[8]), loss="cross_entropy", lr=0.01,
            epochs=1, run_dir=run, progress=False, report=False).fit((x, y), (x, y))
    config = yaml.safe_load((run / "config.yaml").read_text())
    for name in NAMES:
        config["model"]["name"] = name
        config["model"]["args"] = ARGS[name]
        (run / "config.yaml").write_text(yaml.safe_dump(config))
        refuse_everything(monkeypatch)
        with pytest.raises(ConfigError, match=f"'{name}'; trainwise never imports code a file names.*--model"):
            rebuild_model(load_saved_run(str(run), "best.pt"))
        with pytest.raises(ConfigError, match="never imports code a file names"):
            export(run, format="safetensors", out=probe_folder / "m.safetensors")
        monkeypatch.undo()
    assert_one_error(trainwise("evaluate", str(run), "--data", "d.npz", cwd=probe_folder),
                     "'tw_probe_21:build'; trainwise never imports code a file names", "--model tw_probe_21:build")
    assert "tw_probe_21" not in sys.modules
    assert not (probe_folder / "IMPORTED").exists() and not (probe_folder / "PWNED").exists()


def test_torchscript_and_pt2_are_code_and_load_only_when_named(tmp_path):
    from trainwise import export

    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    x = torch.randn(16, 4)
    for format, suffix in (("torchscript", ".pt"), ("pt2", ".pt2")):
        path = tmp_path / f"m{suffix}"
        export(model, format=format, example=x[:8], out=path)
        with pytest.raises(ConfigError, match=f"runs code it contains.*format={format!r}"):
            load_artifact(path)
        with pytest.raises(ConfigError, match="program, not weights"):
            load_model(path)
        with pytest.raises(ConfigError, match="is a .* file by its suffix"):
            load_artifact(path, format="onnx")
        runner, _ = load_artifact(path, format=format)
        with torch.no_grad():
            torch.testing.assert_close(runner(x), model(x))


def test_a_file_that_is_not_the_format_its_name_says_is_one_line(tmp_path):
    for name in ("m.onnx", "m.pt", "m.pt2", "m.safetensors"):
        path = tmp_path / name
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
        format = {"m.pt": "torchscript", "m.pt2": "pt2"}.get(name)
        with pytest.raises(TrainwiseError) as caught:
            load_artifact(path, format=format)
        assert "\n" not in str(caught.value) and name in str(caught.value)
