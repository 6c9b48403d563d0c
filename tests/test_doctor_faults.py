"""The doctor's fault suite (benchmarks/doctor_faults.py): every broken set-up is caught by the
check meant for it (WARN or FAIL), and its clean twin leaves that check PASS. Stochastic faults
(training runs, random init) are checked over 3 seeds."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "doctor_faults.py"
_spec = importlib.util.spec_from_file_location("doctor_faults", _PATH)
faults = importlib.util.module_from_spec(_spec)
sys.modules["doctor_faults"] = faults
_spec.loader.exec_module(faults)

CASES = [pytest.param(f, id=f"{f.origin.split()[0]}-{f.check}-{f.run.__name__}",
                      marks=[pytest.mark.slow] if f.stochastic else []) for f in faults.FAULTS]


def test_the_suite_has_at_least_20_faults_with_twins():
    assert len(faults.FAULTS) >= 20
    assert len({(f.run.__name__, f.check) for f in faults.FAULTS}) == len(faults.FAULTS)  # one scenario may feed two checks


@pytest.mark.parametrize("fault", CASES)
def test_fault_is_caught_and_its_twin_is_not(fault):
    seeds = faults.SEEDS if fault.stochastic else faults.SEEDS[:1]
    for seed in seeds:
        assert faults.status_of(fault, True, seed) in ("WARN", "FAIL"), (fault.name, seed)
        assert faults.status_of(fault, False, seed) == "PASS", (fault.name, "twin", seed)
