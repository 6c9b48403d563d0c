"""Tests for benchmarks/lr_suggestion.py: its figures, and one tiny run so the script cannot rot."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "lr_suggestion.py"


def load_script() -> ModuleType:
    if "lr_suggestion" in sys.modules:
        return sys.modules["lr_suggestion"]
    spec = importlib.util.spec_from_file_location("lr_suggestion", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["lr_suggestion"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def runs(*accuracies: float, lr: float | None = 1e-2) -> list[dict[str, Any]]:
    return [{"seed": seed, "lr": lr, "accuracy": accuracy} for seed, accuracy in enumerate(accuracies)]


@pytest.mark.parametrize(
    ("suggested", "gap", "within"),
    [((0.97, 0.97), 0.5, True), ((0.965, 0.965), 1.0, True), ((0.96, 0.965), 1.25, False),
     ((0.99, 1.0), -2.0, True)],
    ids=["close", "exactly-1pt", "too-far", "beats-the-sweep"],
)
def test_compare_averages_seeds_and_measures_the_gap_to_the_best_sweep_lr(
    suggested: tuple[float, float], gap: float, within: bool
) -> None:
    sweep = {1e-3: runs(0.90, 0.92), 1e-2: runs(0.98, 0.97), 1e-1: runs(0.0, 0.10)}
    script = load_script()
    figures = script.compare(runs(*suggested, lr=4e-3), script.sweep_means(sweep))
    assert figures["best_sweep_lr"] == 1e-2 and figures["best_sweep_accuracy"] == 97.5
    assert figures["gap_points"] == pytest.approx(gap)
    assert figures["within_1pt"] is within
    assert figures["suggested_lr"] == pytest.approx(4e-3)
    assert figures["sweep_accuracy"] == {"0.001": 91.0, "0.01": 97.5, "0.1": 5.0}


def test_compare_has_no_suggested_lr_when_a_seed_got_no_suggestion() -> None:
    suggested = runs(0.95) + [{"seed": 1, "lr": None, "accuracy": 0.0}]
    script = load_script()
    figures = script.compare(suggested, script.sweep_means({1e-2: runs(0.96, 0.96)}))
    assert figures["suggested_lr"] is None
    assert figures["suggested_accuracy"] == 47.5 and figures["within_1pt"] is False


def test_the_held_out_recipes_bring_another_model_family_to_each_data_set_the_rule_was_fitted_on() -> None:
    script = load_script()
    configs = {name: script.Runner(recipe, device="cpu", mnist_root=Path("unused"), scratch=Path("unused"))
               .config(0) for name, recipe in script.RECIPES.items() if recipe.csv_table is None}

    def families(held_out: bool) -> set[tuple[str, str]]:
        # the edge rule's hold-out; the round-4 recipe that shaped only the retry's averaging is named apart
        return {(configs[name].data.dataset, configs[name].model.name) for name, recipe in script.RECIPES.items()
                if name in configs and recipe.fitted not in (script.CALM, script.FAR_CLIFF)
                and name not in script.FAR_CLIFF_HELD_OUT + script.DIVERGENCE_HELD_OUT
                and (recipe.fitted == "") is held_out}

    fitted, held_out = families(False), families(True)
    assert {dataset for dataset, _ in fitted} == {"digits", "mnist", "mnist1d"}
    assert {dataset for dataset, _ in held_out} == {"digits", "mnist", "mnist1d"}
    assert not fitted & held_out  # another model on each data set, never one the rule was fitted on
    assert {recipe.fitted for recipe in script.RECIPES.values()} == {
        "edge rule", "retry and edge rule", "retry repeats and calm edge", "calm edge past a far cliff", ""}
    # the recipe that shaped the retry's averaging and the calm edge is an LSTM on MNIST-1D, the held-out LSTMs' family
    assert [name for name, recipe in script.RECIPES.items() if recipe.fitted == script.CALM] == ["mnist1d_lstm2"]
    # the far-cliff condition (round 6): shaped on the LSTM 128, reported on recurrent nets of MNIST-1D named before
    assert [name for name, recipe in script.RECIPES.items() if recipe.fitted == script.FAR_CLIFF] == ["mnist1d_lstm128"]
    assert all(script.RECIPES[name].fitted == "" and configs[name].data.dataset == "mnist1d"
               and configs[name].model.name in ("gru", "lstm")
               for name in script.FAR_CLIFF_HELD_OUT + script.DIVERGENCE_HELD_OUT)
    assert sum(recipe.fitted == "" for recipe in script.RECIPES.values()) >= 3


def test_toy_tables_are_written_as_a_csv_with_the_class_last(tmp_path: Path) -> None:
    path = tmp_path / "wine.csv"
    load_script().write_toy_csv("wine", path)
    lines = path.read_text().splitlines()
    assert len(lines) == 1 + 178
    assert lines[0].startswith("alcohol,") and lines[0].endswith(",class")
    assert {line.rsplit(",", 1)[1] for line in lines[1:]} == {"0", "1", "2"}


def test_a_training_subset_keeps_the_first_samples_and_the_other_splits(tmp_path: Path) -> None:
    script = load_script()
    recipe = script.Recipe("digits.yaml", (), 1, "digits, 100 training images", "", train_subset=100)
    runner = script.Runner(recipe, device="cpu", mnist_root=tmp_path, scratch=tmp_path)
    full = script.build.load_bundle(runner.config(0))
    bundle = runner.bundle(runner.config(0))
    assert len(bundle.train[0]) == 100 and torch.equal(bundle.train[0], full.train[0][:100])
    assert torch.equal(bundle.test[0], full.test[0])


def test_a_curve_is_kept_as_its_geometric_lrs_and_rounded_losses() -> None:
    lrs = [1e-7 * 1.2**i for i in range(5)]
    curve = load_script().compact_curve({"lrs": lrs, "losses": [2.302585, 2.1, 1.23456789, 0.5, 7.0]})
    assert curve["first_lr"] == 1e-7 and curve["lr_factor"] == pytest.approx(1.2)
    assert curve["losses"] == [2.303, 2.1, 1.235, 0.5, 7.0]
    assert load_script().compact_curve({}) == {"first_lr": None, "lr_factor": None, "losses": []}


@pytest.mark.slow  # a range test and four 1-epoch digits runs in a fresh interpreter: ~10 s on a shared CPU
def test_quick_run_writes_its_json_and_prints_its_table(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads((tmp_path / "lr_suggestion.json").read_text())
    assert result["quick"] is True and result["sweep_lrs"] == [1e-3, 1e-2, 1e-1]
    assert isinstance(result["meets_target"], bool)
    (digits,) = result["datasets"]
    assert digits["dataset"] == "digits" and digits["rule"] == "edge" and digits["seeds"] == 1
    assert digits["rule_fitted_on_it"] == "edge rule"
    curve = digits["suggested_runs"][0]["curve"]
    assert curve["first_lr"] == 1e-7 and curve["lr_factor"] > 1 and len(curve["losses"]) >= 10
    assert 1e-7 <= digits["suggested_lr"] <= 10.0
    assert set(digits["sweep_accuracy"]) == {"0.001", "0.01", "0.1"}
    assert digits["within_1pt"] is (digits["gap_points"] <= 1.0)
    assert "digits" in completed.stdout and "within 1pt" in completed.stdout
    assert result["headline"].startswith("1/1 recipes within 1 pt (0 held out)") is digits["within_1pt"]
    assert result["defaults"]["lr_finder"]["retry"] is True


def test_an_earlier_sweep_is_taken_from_the_first_file_that_has_the_recipe(tmp_path: Path) -> None:
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps({"datasets": [{"dataset": "digits", "sweep_accuracy": {"0.01": 90.0}}]}))
    second.write_text(json.dumps({"datasets": [{"dataset": "digits", "sweep_accuracy": {"0.01": 50.0}},
                                               {"dataset": "wine_mlp", "sweep_accuracy": {"0.003": 98.0}}]}))
    sweeps = load_script().load_sweeps([first, second])
    assert sweeps["digits"]["sweep_accuracy"] == {"0.01": 90.0}
    assert sweeps["wine_mlp"]["sweep_accuracy"] == {"0.003": 98.0}
    assert load_script().load_sweeps([]) == {}
