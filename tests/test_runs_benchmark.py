"""benchmarks/runs_list.py in its quick configuration, so it cannot rot (its figure and target
are checked by `make bench`, never here)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
def test_runs_list_benchmark_quick(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH_DIR))
    spec = importlib.util.spec_from_file_location("runs_list_bench", BENCH_DIR / "runs_list.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick", "--threads", "1", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "runs_list.json").read_text())
    assert result["runs"] == 100 and result["quick"] is True and isinstance(result["meets_target"], bool)
    assert set(result["median_seconds"]) == {"runs list", "runs list --where --sort", "runs list --format json",
                                             "python -c pass", "in-process query"}


def test_synthetic_runs_are_listed_with_honest_statuses(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH_DIR))
    spec = importlib.util.spec_from_file_location("runs_list_bench", BENCH_DIR / "runs_list.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from trainwise.runs.store import load_runs, reindex

    module.write_runs(tmp_path / "runs", 60)
    assert reindex(tmp_path / "runs") == 60
    runs = load_runs(tmp_path / "runs")
    assert len(runs) == 60 and "running" not in {run.status for run in runs}  # their pids are gone: crashed
    recorded_running = [run for run in runs if run.recorded_status == "running"]
    assert all(run.status == "crashed" for run in recorded_running)
