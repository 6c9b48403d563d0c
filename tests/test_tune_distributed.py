"""trainwise tune across processes: real worker processes on a real PostgreSQL server and on the
local SQLite default, killed with real SIGKILL. Checks that ``--trials`` is the study's exact total
however many workers join, that a dead worker's trial is failed, retried and resumed from its
checkpoint, and that nothing is left RUNNING."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError
from tune_helpers import (load_study, postgres_server, postgres_url, start_tune, tiny_config, tune_cli,  # noqa: F401
                          wait_for)

pytestmark = pytest.mark.slow


def _states(study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def test_three_workers_on_postgres_run_exactly_the_budget(tmp_path: Path, postgres_url: str, capsys,
                                                          monkeypatch) -> None:
    config = tiny_config(tmp_path, epochs=2, tune={"trials": 12})
    workers = [start_tune(str(config), "--storage", postgres_url, "--study", "shared", "--worker-only",
                          cwd=tmp_path) for _ in range(3)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], outputs
    study = load_study("shared", postgres_url)
    trials = study.get_trials(deepcopy=False)
    assert _states(study) == {"COMPLETE": 12}
    assert sorted(t.number for t in trials) == list(range(12))
    assert len({t.user_attrs["worker"] for t in trials}) >= 2  # the workers shared the study
    assert all("database is locked" not in out for out in outputs)
    folders = sorted(p.name for p in (tmp_path / "runs" / "tune" / "shared").glob("trial-*"))
    assert len(folders) == 12
    from trainwise.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["tune", str(config), "--storage", postgres_url, "--study", "shared", "--status"]) == 0
    assert "12 trials of 12: 12 complete" in capsys.readouterr().out


def _running_trial_with_checkpoint(url: str, study: str, pid: int):
    try:
        trials = load_study(study, url).get_trials(deepcopy=False)
    except (KeyError, DBAPIError):  # no study yet, or the workers are creating its tables right now
        return None
    for t in trials:
        if t.state.name == "RUNNING" and t.user_attrs.get("worker", "").endswith(f":{pid}"):
            if (Path(t.user_attrs["run_dir"]) / "checkpoints" / "manifest.json").exists():
                return t
    return None


def test_killed_worker_trial_is_failed_retried_and_resumed(tmp_path: Path, postgres_url: str) -> None:
    config = tiny_config(tmp_path, epochs=30, tune={"trials": 2}, batch_size=16)
    victim = start_tune(str(config), "--storage", postgres_url, "--study", "kill", "--worker-only", cwd=tmp_path)
    killed = wait_for(lambda: _running_trial_with_checkpoint(postgres_url, "kill", victim.pid), victim)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    survivor = tune_cli(str(config), "--storage", postgres_url, "--study", "kill", cwd=tmp_path)
    assert survivor.returncode == 0, survivor.stderr
    study = load_study("kill", postgres_url)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    assert trials[killed.number].state.name == "FAIL"
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE"
    assert retries[0].params == killed.params
    assert _states(study) == {"FAIL": 1, "COMPLETE": 2}  # the requested 2, and nothing RUNNING
    summary = json.loads((Path(killed.user_attrs["run_dir"]) / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_run"] == 30
    resumed = [e for e in summary["events"] if e["kind"] == "resumed"]
    assert len(resumed) == 1 and "resumed from" in resumed[0]["message"]


def test_every_worker_killed_then_restarted_resumes_the_study(tmp_path: Path) -> None:
    """The local default (SQLite in the study folder), two worker processes, all killed at once."""
    config = tiny_config(tmp_path, epochs=30, tune={"trials": 4}, batch_size=16)
    db = tmp_path / "runs" / "tune" / "tiny" / "study.db"
    url = f"sqlite:///{db}"
    first = start_tune(str(config), "--workers", "2", cwd=tmp_path, session=True)

    def two_running():
        if not db.exists():
            return False
        try:
            trials = load_study("tiny", url).get_trials(deepcopy=False)
        except (KeyError, DBAPIError):  # no study yet, or the workers are creating its tables right now
            return False
        running = [t for t in trials if t.state.name == "RUNNING"]
        return len(running) == 2 and all(
            (Path(t.user_attrs.get("run_dir", "/nonexistent")) / "checkpoints" / "manifest.json").exists()
            for t in running)

    wait_for(two_running, first)
    os.killpg(first.pid, signal.SIGKILL)  # the parent and both workers
    first.wait()
    again = tune_cli(str(config), "--workers", "2", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "database is locked" not in again.stdout + again.stderr
    study = load_study("tiny", url)
    states = _states(study)
    assert states.get("COMPLETE") == 4 and "RUNNING" not in states and "WAITING" not in states
    failed = [t for t in study.get_trials(deepcopy=False) if t.state.name == "FAIL"]
    assert len(failed) == 2
    retried = {t.system_attrs.get("failed_trial") for t in study.get_trials(deepcopy=False)}
    assert {t.number for t in failed} <= retried
    assert (tmp_path / "runs" / "tune" / "tiny" / "best.yaml").is_file()
