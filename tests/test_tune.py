"""trainwise tune in one process: the space and its checks, settings, conditional parameters,
pruning by epoch, best.yaml reproduced by ``trainwise train``, the Python objective, the study
folder's files and the CLI's messages for bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from torch import nn
from tune_helpers import cli_env, tiny_config

import trainwise
from trainwise.cli import main
from trainwise.errors import ConfigError
from trainwise.tune.settings import parse_settings
from trainwise.tune.space import check_against_config, parse_space, suggest


# ------------------------------------------------------------------------------------------ space
def test_space_parses_every_kind_in_dependency_order() -> None:
    space = parse_space({
        "optimizer.momentum": {"uniform": [0.8, 0.99], "when": {"optimizer.name": "sgd"}},
        "optimizer.name": {"choice": ["adamw", "sgd"]},
        "optimizer.lr": {"log_uniform": [1e-4, 1e-1]},
        "data.batch_size": {"int": [32, 256], "step": 32},
        "model.hidden": {"choice": [[64], [64, 64]]},
    })
    assert list(space)[:2] == ["optimizer.name", "optimizer.momentum"]
    assert space["optimizer.lr"].log and space["optimizer.lr"].low == 1e-4
    assert space["data.batch_size"].grid_values() == [32, 64, 96, 128, 160, 192, 224, 256]
    assert space["optimizer.momentum"].when == {"optimizer.name": ("sgd",)}


@pytest.mark.parametrize("raw, message", [
    ({}, "tune.space must map config keys to distributions"),
    ({"optimizer.lr": {"log_uniform": [0.0, 0.1]}}, r"a log range must lie above zero, got \[0, 0.1\]"),
    ({"optimizer.lr": {"log_uniform": [-1.0, 0.1]}}, "a log range must lie above zero"),
    ({"model.dropout": {"uniform": [0.5, 0.5]}}, r"the range is empty, got \[0.5, 0.5\]; low must be < high"),
    ({"data.batch_size": {"int": [256, 32]}}, "the range is empty"),
    ({"model.dropout": {"unifrom": [0.0, 0.5]}}, "unknown option 'unifrom'; did you mean 'uniform'"),
    ({"model.dropout": {"choice": []}}, "choice needs a non-empty list"),
    ({"optimizer.momentum": {"uniform": [0.8, 0.9], "when": {"optimizer.nam": "sgd"}},
      "optimizer.name": {"choice": ["sgd", "adamw"]}}, "'when' names 'optimizer.nam'.*did you mean 'optimizer.name'"),
    ({"data.batch_size": {"int": [8.5, 64]}}, "int needs whole-number bounds"),
])
def test_space_errors_are_one_clear_message(raw, message) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_space(raw)


@pytest.mark.parametrize("key, message", [
    ("optimizer.lrr", "unknown config key 'optimizer.lrr'; did you mean 'optimizer.lr'"),
    ("optimzer.lr", "unknown config key 'optimzer.lr'; did you mean 'optimizer'"),
    ("train", "'train' is a section"),
])
def test_space_keys_are_checked_against_the_config(key, message) -> None:
    config = trainwise.load_config(None).to_dict()
    with pytest.raises(ConfigError, match=message):
        check_against_config(parse_space({key: {"uniform": [0.1, 0.2]}}), config)


def test_conditional_parameter_is_sampled_only_under_its_condition() -> None:
    space = parse_space({"optimizer.name": {"choice": ["adamw", "sgd"]},
                         "optimizer.momentum": {"uniform": [0.5, 0.9], "when": {"optimizer.name": "sgd"}}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        params = suggest(study.ask(), space)
        seen.add(params["optimizer.name"])
        assert ("optimizer.momentum" in params) == (params["optimizer.name"] == "sgd")
    assert seen == {"adamw", "sgd"}


@pytest.mark.parametrize("raw, message", [
    ({"trials": 3}, "the tune section has no space"),
    ({"space": {"model.dropout": {"uniform": [0, 0.5]}}, "sampler": "tpee"}, "unknown tune.sampler 'tpee'; did you mean 'tpe'"),
    ({"space": {"model.dropout": {"uniform": [0, 0.5]}}, "trails": 3}, "unknown key 'tune.trails'.*'tune.trials'"),
    ({"space": {"model.dropout": {"uniform": [0, 0.5]}}, "trials": None}, "the search has no budget"),
    ({"space": {"model.dropout": {"uniform": [0, 0.5]}}, "sampler": "grid"}, "the grid sampler needs discrete values"),
    ({"space": {"model.dropout": {"uniform": [0, 0.5]}}, "heartbeat_interval": 5, "grace_period": 5},
     "grace_period must be longer than tune.heartbeat_interval"),
])
def test_settings_errors(raw, message) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_settings(raw)


def test_direction_follows_the_metric() -> None:
    space = {"model.dropout": {"uniform": [0, 0.5]}}
    assert parse_settings({"space": space, "metric": "val_accuracy"}).optuna_direction == "maximize"
    assert parse_settings({"space": space}).optuna_direction == "minimize"


# ------------------------------------------------------------------------------------------ a search
@pytest.fixture(scope="module")
def pruned_search(tmp_path_factory):
    """One search, single worker: random sampler, ASHA every epoch, 6 epochs at most."""
    folder = tmp_path_factory.mktemp("search")
    config = tiny_config(folder, epochs=6, tune={"trials": 8, "pruner": "asha", "reduction_factor": 2,
                                                 "seed": 3})
    result = trainwise.tune(str(config), study_dir=folder / "study")
    return config, result


def test_pruned_trials_stop_early_and_say_so(pruned_search) -> None:
    _, result = pruned_search
    states = [r["state"] for r in result.rows]
    assert len(states) == 8 and "pruned" in states and "complete" in states
    for row in result.rows:
        summary = json.loads((Path(row["run_dir"]) / "summary.json").read_text())
        if row["state"] == "pruned":
            assert summary["status"] == "pruned"
            assert summary["pruned_at_epoch"] == summary["epochs_run"] == row["epochs"] < 6
        else:
            assert summary["status"] == "completed" and summary["epochs_run"] == 6
            assert "pruned_at_epoch" not in summary


def test_study_folder_files(pruned_search) -> None:
    _, result = pruned_search
    with open(result.folder / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["number"]) for r in rows] == list(range(8))
    assert {"optimizer.lr", "model.hidden", "state", "value", "epochs", "pruned_at_epoch"} <= set(rows[0])
    for name in ("history", "importance", "parallel", "intermediate"):
        assert (result.folder / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    page = (result.folder / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and "<script" not in page
    assert f"Study {result.study}" in page


def test_best_yaml_trains_to_the_reported_value(pruned_search, tmp_path: Path) -> None:
    _, result = pruned_search
    best = yaml.safe_load(result.best_config.read_text())
    assert best["name"] == "tiny-best" and "tune" not in best
    run = subprocess.run([sys.executable, "-m", "trainwise", "train", str(result.best_config), "--run-dir",
                          str(tmp_path / "best"), "--quiet"], env=cli_env(), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    summary = json.loads((tmp_path / "best" / "summary.json").read_text())
    assert summary["best_val_accuracy"] == result.best_value


def test_status_prints_progress_and_best(pruned_search, capsys) -> None:
    config, result = pruned_search
    assert main(["tune", str(config), "--study-dir", str(result.folder), "--status"]) == 0
    out = capsys.readouterr().out
    assert "8 trials of 8:" in out and f"{result.best_value:.4f}" in out


def test_grid_visits_every_point_once(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, epochs=1, tune={"sampler": "grid", "trials": 50, "space": {
        "optimizer.lr": {"choice": [0.01, 0.1]}, "model.hidden": {"choice": [[8], [16]]}}})
    result = trainwise.tune(str(config), study_dir=tmp_path / "grid", plots=False)
    assert [r["state"] for r in result.rows] == ["complete"] * 4
    points = sorted((r["params"]["optimizer.lr"], r["params"]["model.hidden"][0]) for r in result.rows)
    assert points == [(0.01, 8), (0.01, 16), (0.1, 8), (0.1, 16)]


@pytest.mark.parametrize("sampler, pruner", [("gp", "median"), ("tpe", "hyperband")])
def test_other_samplers_and_pruners_run(sampler: str, pruner: str, tmp_path: Path) -> None:
    config = tiny_config(tmp_path, epochs=2, tune={"sampler": sampler, "pruner": pruner, "trials": 3})
    result = trainwise.tune(str(config), study_dir=tmp_path / "s", plots=False)
    assert len(result.rows) == 3 and all(r["state"] in ("complete", "pruned") for r in result.rows)


def test_a_seeded_search_draws_the_same_trials(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, epochs=1, tune={"trials": 2, "seed": 7})
    first = trainwise.tune(str(config), study_dir=tmp_path / "a", plots=False)
    second = trainwise.tune(str(config), study_dir=tmp_path / "b", plots=False)
    assert [r["params"] for r in first.rows] == [r["params"] for r in second.rows]
    assert [r["value"] for r in first.rows] == [r["value"] for r in second.rows]


# ------------------------------------------------------------------------------------------ Python objective
def test_python_objective_with_callback_and_escaped_report(tmp_path: Path) -> None:
    torch.manual_seed(0)
    x, y = torch.randn(256, 10), torch.randint(0, 2, (256,))

    def objective(trial):
        model = nn.Sequential(nn.Linear(10, trial.params["hidden"]), nn.ReLU(), nn.Linear(trial.params["hidden"], 2))
        trainer = trainwise.Trainer(model, lr=trial.params["lr"], epochs=2, run_dir=trial.run_dir,
                                    callbacks=[trial.callback], progress=False, report=False)
        assert trial.resume is None
        return trainer.fit((x[:200], y[:200]), (x[200:], y[200:]), resume=trial.resume)

    result = trainwise.tune(objective, space={"lr": {"log_uniform": [1e-3, 1e-1]}, "hidden": {"choice": [4, 8]},
                                              "tag": {"choice": ["<b>x</b>", "y"]}},
                            n_trials=3, metric="val_loss", pruner="none", study_dir=tmp_path / "fn", seed=0)
    assert result.study == "objective" and result.best_config is None
    assert [r["state"] for r in result.rows] == ["complete"] * 3
    assert result.best_value == min(r["value"] for r in result.rows)
    page = (result.folder / "report.html").read_text()
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page


# ------------------------------------------------------------------------------------------ CLI bad input
def _one_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_cli_tune_section_without_space(tmp_path: Path, capsys) -> None:
    config = tiny_config(tmp_path)
    raw = yaml.safe_load(config.read_text())
    del raw["tune"]["space"]
    config.write_text(yaml.safe_dump(raw))
    assert main(["tune", str(config), "--study-dir", str(tmp_path / "s")]) == 2
    assert "the tune section has no space: add tune.space" in _one_error(capsys)


def test_cli_unreachable_storage(tmp_path: Path, capsys) -> None:
    config = tiny_config(tmp_path)
    url = "postgresql://someone:secret@127.0.0.1:9/nowhere"
    assert main(["tune", str(config), "--storage", url, "--study-dir", str(tmp_path / "s")]) == 2
    line = _one_error(capsys)
    assert "cannot reach the study storage postgresql+psycopg://someone:***@127.0.0.1:9/nowhere" in line
    assert "secret" not in line


def test_cli_existing_study_with_another_space(tmp_path: Path, capsys) -> None:
    config = tiny_config(tmp_path, epochs=1, tune={"trials": 1})
    assert main(["tune", str(config), "--study-dir", str(tmp_path / "s")]) == 0
    capsys.readouterr()
    raw = yaml.safe_load(config.read_text())
    raw["tune"]["space"]["optimizer.lr"] = {"log_uniform": [1.0e-4, 1.0e-2]}
    config.write_text(yaml.safe_dump(raw))
    assert main(["tune", str(config), "--study-dir", str(tmp_path / "s")]) == 2
    line = _one_error(capsys)
    assert "study 'tiny' already exists" in line and "with another space: optimizer.lr=log_uniform[0.001, 0.3]" \
        in line and "use the same tune.space, or a new --study name" in line
    assert (tmp_path / "s" / "trial-0" / "summary.json").is_file()  # nothing written is lost


def test_cli_value_outside_the_config_is_refused_before_any_trial(tmp_path: Path, capsys) -> None:
    config = tiny_config(tmp_path, tune={"space": {"model.dropout": {"uniform": [0.0, 1.5]}}})
    assert main(["tune", str(config), "--study-dir", str(tmp_path / "s")]) == 2
    assert "tune.space.model.dropout: the value 1.5 does not fit the config" in _one_error(capsys)
    assert not (tmp_path / "s").exists()


def test_study_plots_leave_the_callers_matplotlib_settings_alone(tmp_path: Path) -> None:
    # Optuna's matplotlib plots call plt.style.use("ggplot"); a user's (and the run report's) colours must survive
    import matplotlib
    import optuna

    from trainwise.tune.plots import write_plots

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    study.optimize(lambda trial: (trial.suggest_float("x", -1, 1) - 0.2) ** 2, n_trials=4)
    cycle, backend = matplotlib.rcParams["axes.prop_cycle"], matplotlib.get_backend()
    written = write_plots(study, tmp_path)
    assert set(written) >= {"history", "parallel"} and all(path.stat().st_size > 0 for path in written.values())
    assert matplotlib.rcParams["axes.prop_cycle"] == cycle
    assert matplotlib.get_backend() == backend
