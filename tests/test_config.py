"""Config loading, overrides and the one-message errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from trainwise.config.schema import RunConfig, load_config
from trainwise.errors import ConfigError


def write(tmp_path, text: str):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_defaults_fill_every_contract_key():
    cfg = RunConfig()
    d = cfg.to_dict()
    for section, keys in {
        "data": ["dataset", "root", "path", "target", "batch_size", "val_fraction", "test_fraction", "normalize", "augment"],
        "model": ["name", "hidden", "norm", "dropout", "activation", "init"],
        "optimizer": ["name", "lr", "weight_decay", "momentum"],
        "schedule": ["name", "warmup"],
        "train": ["epochs", "max_steps", "grad_clip", "accumulate", "precision", "device", "early_stopping", "checkpoint"],
    }.items():
        assert set(keys) <= set(d[section]), section
    assert d["train"]["early_stopping"] == {"enabled": True, "monitor": "val_loss", "mode": "auto", "patience": 5,
                                            "min_delta": 0.0, "restore_best": True}
    assert d["train"]["checkpoint"]["keep_last"] == 3


def test_yaml_and_overrides(tmp_path):
    path = write(tmp_path, "name: x\noptimizer: {name: sgd, lr: 0.1}\nschedule: {name: step, step_size: 3}\n")
    cfg = load_config(path, ["optimizer.lr=0.05", "train.epochs=7", "model.hidden=[32, 16]", "schedule.gamma=0.5"])
    assert cfg.optimizer.name == "sgd"
    assert cfg.optimizer.lr == 0.05
    assert cfg.train.epochs == 7
    assert cfg.model.hidden == [32, 16]
    assert cfg.schedule.params() == {"step_size": 3, "gamma": 0.5}


def test_lr_auto_is_accepted():
    assert load_config(None, ["optimizer.lr=auto"]).optimizer.lr == "auto"


@pytest.mark.parametrize("override, message", [
    (["optimzer.lr=0.1"], r"unknown key 'optimzer' in config; did you mean 'optimizer'\?"),
    (["train.epocs=3"], r"unknown key 'train.epocs' in config; did you mean 'train.epochs'\?"),
    (["train.early_stopping.patiense=3"], r"did you mean 'train.early_stopping.patience'\?"),
    (["optimizer.lr=-1"], r"optimizer.lr: must be > 0 or 'auto', got -1"),
    (["data.batch_size=0"], r"data.batch_size: must be > 0 or 'auto', got 0"),
    (["data.val_fraction=1.5"], r"data.val_fraction: Input should be less than 1, got 1.5"),
    (["train.precision=fp8"], r"train.precision: Input should be 'fp32', 'bf16' or 'fp16', got 'fp8'"),
    (["train.epochs=many"], r"train.epochs: Input should be a valid integer.*got 'many'"),
    (["optimizer.lr=abc"], r"^invalid config: optimizer.lr: must be a number or 'auto', got 'abc'$"),  # one line, not one per branch
    (["data.batch_size=abc"], r"^invalid config: data.batch_size: must be an integer or 'auto', got 'abc'$"),
    (["data.val_fraction=0.5", "data.test_fraction=0.5"], r"val_fraction \+ data.test_fraction must be < 1"),
    (["train.device=tpu"], r"train.device: must be auto, cpu, cuda, cuda:N or mps, got 'tpu'"),
    (["model.hidden=[0]"], r"every hidden size must be > 0"),
    (["nonsense"], r"override must look like section.key=value, got 'nonsense'"),
    (["train.epochs=3", "train.epochs.x=1"], r"'epochs' is a value, not a section"),
])
def test_bad_values_get_one_clear_message(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, override)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(write(tmp_path, "data: [unclosed\n"))
    with pytest.raises(ConfigError, match="must hold a mapping of sections, got list"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_config_errors_are_value_errors():
    with pytest.raises(ValueError):
        load_config(None, ["optimizer.lr=-1"])


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["schedule.name=cosine", "schedule.min_lr=1e-5"])
    text = yaml.safe_dump(cfg.to_dict())
    again = load_config(write(tmp_path, text))
    assert again == cfg


# --- paths: relative to the config file's folder, overrides relative to the working directory


def test_config_file_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    (tmp_path / "elsewhere").mkdir()
    path = tmp_path / "conf" / "run.yaml"
    path.write_text("data: {dataset: csv, path: data/d.csv, root: ../shared}\n")
    monkeypatch.chdir(tmp_path / "elsewhere")
    cfg = load_config("../conf/run.yaml")
    assert cfg.data.path == str(tmp_path / "conf" / "data" / "d.csv")
    assert cfg.data.root == str(tmp_path / "shared")


def test_override_paths_resolve_against_the_working_directory(tmp_path, monkeypatch):
    path = write(tmp_path, "data: {dataset: csv, path: inside.csv}\n")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    cfg = load_config(path, ["data.path=mine.csv", "data.root=/abs/olute", "train.epochs=2"])
    assert cfg.data.path == str(tmp_path / "cwd" / "mine.csv")
    assert cfg.data.root == "/abs/olute"  # absolute paths stay
    assert load_config(path, ["train.epochs=2"]).data.path == str(tmp_path / "inside.csv")


def test_resolved_paths_round_trip_unchanged(tmp_path, monkeypatch):
    cfg = load_config(write(tmp_path, "data: {dataset: npz, path: ~/x.npz}\n"))
    assert cfg.data.path == str(Path.home() / "x.npz")
    saved = write(tmp_path, yaml.safe_dump(cfg.to_dict()))
    monkeypatch.chdir("/")
    assert load_config(saved) == cfg


@pytest.mark.parametrize("override, hint", [
    ("train.precision=bf61", "did you mean 'bf16'?"),
    ("train.loss=hubber", "did you mean 'huber'?"),
    ("train.grad_clip_mode=norn", "did you mean 'norm'?"),
])
def test_choices_of_the_config_get_a_did_you_mean(override, hint):
    with pytest.raises(ConfigError, match=hint):
        load_config(None, [override])
