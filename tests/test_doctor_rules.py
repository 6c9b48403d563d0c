"""The post-run rules and the doctor's thresholds (issue 22): every threshold has a source and a
range, out-of-range values are one clear line, early stopping's restored epoch turns an overfit into
a PASS with a note, a 2-epoch run can be still improving, and clean set-ups (3 and 20 classes,
imbalanced, regression) PASS every check of the whole report."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from cli_helpers import cli_in_process
from torch import nn

from trainwise import Trainer, doctor
from trainwise.doctor.run_rules import RunFacts, median3, noise, slope, still_improving, underfit
from trainwise.doctor.thresholds import RANGES, SOURCES, Thresholds, thresholds_of
from trainwise.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("doctor_faults", ROOT / "benchmarks" / "doctor_faults.py")
faults = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("doctor_faults", faults)
_spec.loader.exec_module(faults)


def test_every_threshold_has_a_source_and_no_rule_hides_a_constant():
    names = {f.name for f in fields(Thresholds)}
    assert names == set(SOURCES), names ^ set(SOURCES)
    assert set(RANGES) <= names


@pytest.mark.parametrize("change, message", [
    ({"overfit_rise": 1.5}, r"doctor threshold overfit_rise must be between 0 and 1, got 1.5 \(Tuning Playbook"),
    ({"still_improving_window": 1}, "doctor threshold still_improving_window must be >= 2, got 1"),
    ({"plateau_window": 2.5}, "doctor threshold plateau_window must be a whole number >= 1, got 2.5"),
    ({"drift": "nan"}, "doctor threshold drift must be a number, got 'nan'"),
    ({"imbalance_ratio": 0.5}, "doctor threshold imbalance_ratio must be >= 1, got 0.5"),
])
def test_a_threshold_out_of_range_is_refused_with_its_range(change, message):
    with pytest.raises(ConfigError, match=message):
        thresholds_of(change)


def test_cli_threshold_out_of_range_is_one_line_and_exit_2(tmp_path):
    done = cli_in_process("doctor", str(ROOT / "examples" / "digits.yaml"), "--threshold", "leakage_score=3",
                          cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: doctor threshold leakage_score must be between 0 and 1, got '3'")


def test_the_rules_helpers_on_exact_series():
    assert median3([1.0, 5.0, 2.0, 3.0]) == [3.0, 2.0, 3.0, 2.5]
    assert slope([4.0, 3.0, 2.0]) == -1.0
    assert noise([1.0, 1.0, 1.0, 2.0, 3.0, 5.0]) == pytest.approx(0.7071, abs=1e-4)  # second half 2, 3, 5: diffs 1, 2
    two = RunFacts({"train_loss": [1.0, 0.6], "val_loss": [1.0, 0.7]})
    assert still_improving(two, Thresholds()).status == "WARN"  # 30% in one epoch
    chance = RunFacts({"train_loss": [1.0], "val_loss": [1.0], "val_accuracy": [0.12]}, num_classes=10)
    check = underfit(chance, Thresholds())
    assert check.status == "WARN" and check.value["accuracy"] == pytest.approx((0.12 - 0.1) / 0.9)


def test_early_stopping_that_restored_the_best_epoch_passes_overfit_with_a_note(tmp_path):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(640, 6, generator=g)
    y = (x[:, 0] > 0).long()
    flip = torch.rand(640, generator=g) < 0.25
    y[flip] = 1 - y[flip]
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 2))
    result = Trainer(model, lr=3e-3, epochs=40, batch_size=8, patience=12, run_dir=tmp_path / "run", progress=False,
                     report=False, schedule="constant").fit((x[:40], y[:40]), (x[40:], y[40:]))
    check = doctor.diagnose(result).get("run.overfit")
    assert result.status == "stopped_early"
    assert check.status == "PASS" and "Early stopping restored the weights of epoch" in check.message
    assert check.value["generalization_gap"] > 0 and check.value["val_loss_rise"] > 0.05


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(faults.CLEAN))
def test_a_clean_setup_passes_every_check_of_its_whole_report(name):
    assert faults.flagged_in_clean(name, 0) == []
