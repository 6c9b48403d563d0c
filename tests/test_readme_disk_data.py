"""The README's configs for data from disk, copied as a user would, run as they are (with a shorter
budget given on the command line)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import yaml

from test_data_image_folder import make_folder
from trainwise.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_config(dataset: str) -> dict:
    section = README.read_text().split("### Data from disk")[1].split("\n### ")[0]
    for block in re.findall(r"```yaml\n(.*?)```", section, flags=re.S):
        config = yaml.safe_load(block)
        if config["data"]["dataset"] == dataset:
            return config
    raise AssertionError(f"no {dataset} config in the README")


def test_the_readme_image_folder_config_runs(tmp_path, capsys):
    config = readme_config("imagefolder")
    make_folder(tmp_path / config["data"]["root"], per_class=6)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    code = main(["train", str(tmp_path / "c.yaml"), "--run-dir", str(tmp_path / "run"), "--quiet",
                 "train.epochs=1", "train.report=false", "model.channels=[4]", "model.hidden=[8]", "data.num_workers=0"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert json.loads((tmp_path / "run" / "data.json").read_text())["input_shape"] == [3, 64, 64]


def test_the_readme_text_config_runs_and_generates(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the token file goes there
    config = readme_config("text")
    (tmp_path / config["data"]["path"]).write_text("the quick brown fox jumps over the lazy dog. " * 200)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    code = main(["train", str(tmp_path / "c.yaml"), "--run-dir", str(tmp_path / "run"), "--quiet",
                 "train.max_steps=4", "train.report=false", "model.layers=1", "model.width=16", "model.heads=2"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["best_val_bits_per_char"] == pytest.approx(summary["best_val_loss"] / math.log(2))
    assert summary["test_bits_per_char"] == pytest.approx(summary["test_loss"] / math.log(2))
    assert summary["best_val_perplexity"] == pytest.approx(math.exp(summary["best_val_loss"]))
    assert json.loads((tmp_path / "run" / "tokenizer.json").read_text())["vocab_size"] == 28
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run"), "--split", "test"]) == 0
    assert json.loads((tmp_path / "run" / "evaluate_test.json").read_text())["loss"] == pytest.approx(
        summary["test_loss"], rel=1e-4)
    capsys.readouterr()
    assert main(["generate", str(tmp_path / "run"), "--prompt", "the ", "--tokens", "20", "--seed", "1"]) == 0
    first = capsys.readouterr().out
    assert main(["generate", str(tmp_path / "run"), "--prompt", "the ", "--tokens", "20", "--seed", "1"]) == 0
    assert capsys.readouterr().out == first and first.startswith("the ") and len(first.rstrip("\n")) == 24
    assert main(["generate", str(tmp_path / "run"), "--prompt", "the Zebra", "--tokens", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: character 'Z' (U+005A) at position 4 is not in the run's vocabulary of 28 characters; "
                   "leave it out")
