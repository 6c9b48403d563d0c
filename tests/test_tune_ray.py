"""trainwise tune on the Ray backend, on one local Ray of 2 CPUs shared by the module: ASHA runs
a study to completion, a trial whose worker is SIGKILLed continues from its checkpoint as the
same trial, PBT's perturbed trials continue from their parents' checkpoints (read from the
lineage), and bad input is one clear line.

Every Ray worker process imports torch, Ray Tune and trainwise afresh, which is most of this file's
time on a loaded machine: the searches train on the built-in synthetic set (no scikit-learn to
import per worker, as the digits set needs) and the module's Ray starts no idle workers."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml
from tune_helpers import cli_env, tiny_config, tune_cli

import trainwise
from trainwise.cli import main
from trainwise.errors import ClusterError, ConfigError

ray = pytest.importorskip("ray", reason="ray not installed (pip install 'trainwise[ray]')")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    """One Ray session for the module (starting Ray takes seconds): the backend uses it as it is."""
    from trainwise.tune.ray_backend import start_local_ray

    os.environ.update({k: v for k, v in cli_env().items() if k in ("PYTHONPATH", "OMP_NUM_THREADS")})
    start_local_ray(num_cpus=2)  # as the backend starts one: no idle workers, which Tune never uses
    yield
    ray.shutdown()


def ray_config(tmp_path: Path, **kwargs) -> Path:
    """``tiny_config`` on the built-in synthetic set (2,000 samples, 10 classes)."""
    path = tiny_config(tmp_path, **kwargs)
    config = yaml.safe_load(path.read_text())
    config["data"]["dataset"] = "synthetic"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def summary(row: dict) -> dict:
    return json.loads((Path(row["run_dir"]) / "summary.json").read_text())


def test_asha_runs_six_trials_to_completion_and_status_reads_them(local_ray, tmp_path: Path, capsys) -> None:
    config = ray_config(tmp_path, epochs=4, tune={"backend": "ray", "trials": 6, "pruner": "asha",
                                                   "reduction_factor": 2, "seed": 3, "sampler": "tpe"})
    result = trainwise.tune(str(config), study_dir=tmp_path / "study")
    assert [r["number"] for r in result.rows] == list(range(6))
    states = [r["state"] for r in result.rows]
    assert set(states) <= {"complete", "pruned"} and "complete" in states
    for row in result.rows:
        s = summary(row)
        if row["state"] == "pruned":  # stopped by ASHA: the run folder says so, at the epoch of the stop
            assert s["status"] == "pruned" and s["pruned_at_epoch"] == s["epochs_run"] == row["epochs"] < 4
        else:
            assert s["status"] == "completed" and s["epochs_run"] == 4
            assert row["value"] == s["best_val_accuracy"]
    best = max((r for r in result.rows if r["state"] == "complete"), key=lambda r: r["value"])
    assert result.best_trial == best["number"] and result.best_value == best["value"]
    assert result.best_config.is_file() and (result.folder / "trials.csv").is_file()
    assert (result.folder / "report.html").read_text().count("data:image/png;base64,") >= 3
    pids = {json.loads((Path(r["run_dir"]) / "run.json").read_text())["pid"] for r in result.rows}
    assert len(pids) < 6  # Ray reused its workers: a stopped trial's worker ran a later trial

    capsys.readouterr()  # --status reads the same study back from Ray's experiment folder
    assert main(["tune", str(config), "--study-dir", str(tmp_path / "study"), "--status"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"study tiny on Ray, experiment {tmp_path / 'study' / 'ray' / 'tiny'}"
    counts = {state: states.count(state) for state in ("complete", "pruned") if state in states}
    assert out[1] == "6 trials of 6: " + ", ".join(f"{n} {state}" for state, n in counts.items())
    table = {int(line.split()[0]): (float(line.split()[1]), int(line.split()[2])) for line in out[3:-1]}
    assert table == {r["number"]: (round(r["value"], 4), 4) for r in result.rows if r["state"] == "complete"}
    assert main(["tune", str(config), "--study-dir", str(tmp_path / "elsewhere"), "--status"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and f"no Ray search of study 'tiny' at {tmp_path / 'elsewhere' / 'ray' / 'tiny'}; " \
        "start it with `trainwise tune CONFIG --backend ray`" in error[0]


def _status_while_running(config: Path, study: Path) -> list:
    """``ray_rows`` (what --status prints) read while the search runs, until Ray's first snapshot."""
    from trainwise.tune.api import config_job
    from trainwise.tune.ray_status import ray_rows

    job = config_job(str(config), {}, study=None, storage=None, study_dir=study)
    end = time.time() + 60
    while time.time() < end:
        try:
            return ray_rows(job)[1]
        except ConfigError:  # no snapshot yet
            time.sleep(0.2)
    return []


def _kill_first_worker(study: Path, experiment: Path, killed: dict) -> None:
    """Once Ray holds trial 0's first checkpoint, SIGKILL the worker process running it. A checkpoint
    folder on disk is not enough: the driver registers it when it processes the report, and writes
    the trial's result.json then (killed before that, the trial rightly restarts from scratch)."""
    end = time.time() + 240
    while time.time() < end:
        record, results = study / "trial-0" / "run.json", experiment / "trial-0" / "result.json"
        reported = results.is_file() and results.read_text().strip()
        if reported and list((experiment / "trial-0").glob("checkpoint_*")) and record.is_file():
            pid = json.loads(record.read_text())["pid"]
            os.kill(pid, signal.SIGKILL)
            killed["pid"] = pid
            killed["status"] = _status_while_running(study.parent / "tiny.yaml", study)
            return
        time.sleep(0.05)


def test_a_killed_worker_restarts_from_its_checkpoint_and_stays_one_trial(local_ray, tmp_path: Path) -> None:
    config = ray_config(tmp_path, epochs=4, tune={"backend": "ray", "trials": 2, "pruner": "none", "seed": 1})
    study = tmp_path / "study"
    killed: dict = {}
    killer = threading.Thread(target=_kill_first_worker, args=(study, study / "ray" / "tiny", killed), daemon=True)
    killer.start()
    result = trainwise.tune(str(config), study_dir=study)
    killer.join()
    assert killed, "trial 0's worker was never killed"
    assert [r["number"] for r in result.rows] == [0, 1]  # the restart is the same trial, not a third one
    first = result.rows[0]
    assert first["state"] == "complete" and first["restores"] == 1
    lineage = json.loads((study / "trial-0" / "summary.json").read_text())
    assert lineage["status"] == "completed" and lineage["epochs_run"] == 4
    resumed = [e for e in lineage["events"] if e["kind"] == "resumed"]
    assert len(resumed) == 1  # continued from its checkpoint, not started over
    pids = {json.loads((study / "trial-0" / "run.json").read_text())["pid"]}
    assert killed["pid"] not in pids
    during = {r["number"]: r for r in killed["status"]}  # --status while trial 0 was being restarted
    assert set(during) <= {0, 1} and during[0]["state"] in ("running", "queued") and during[0]["value"] is None


def test_pbt_perturbed_trials_continue_from_their_parents_checkpoints(local_ray, tmp_path: Path) -> None:
    space = {"optimizer.lr": {"log_uniform": [1.0e-3, 3.0e-1]}, "model.dropout": {"uniform": [0.0, 0.5]}}
    config = ray_config(tmp_path, epochs=4, tune={"backend": "ray", "scheduler": "pbt", "trials": 4,
                                                   "perturbation_interval": 1, "seed": 0, "space": space,
                                                   "resources": {"cpu": 1}})
    result = trainwise.tune(str(config), study_dir=tmp_path / "study")
    assert [r["number"] for r in result.rows] == [0, 1, 2, 3]
    assert all(r["state"] == "complete" and summary(r)["epochs_run"] == 4 for r in result.rows)
    lineage = json.loads((result.folder / "lineage.json").read_text())["trials"]
    perturbations = [(int(n), p) for n, t in lineage.items() for p in t["perturbations"]]
    assert perturbations, "PBT perturbed no trial"
    for child, p in perturbations:
        parent_reports = [r for r in lineage[str(p["parent"])]["reports"] if r["epoch"] == p["parent_epoch"]]
        assert p["parent"] != child and p["parent_sha256"] in {r["sha256"] for r in parent_reports}
        assert p["changes"] and 1e-3 <= p["params"]["optimizer.lr"] <= 3e-1
        assert 0.0 <= p["params"]["model.dropout"] <= 0.5
    for child, p in perturbations:  # the last perturbation of each trial: its run continues the parent's
        if p is not lineage[str(child)]["perturbations"][-1]:
            continue
        s = json.loads((result.folder / f"trial-{child}" / "summary.json").read_text())
        events = [e["message"] for e in s["events"] if e["kind"] == "resumed"]
        assert any(f"epoch {p['parent_epoch']}" in message for message in events)
    assert (result.folder / "lineage.png").read_bytes()[:4] == b"\x89PNG"
    assert "lineage" in (result.folder / "report.html").read_text()


def test_a_python_objective_with_its_own_model(local_ray, tmp_path: Path) -> None:
    import torch
    from torch import nn

    def objective(trial):
        torch.manual_seed(0)
        x, y = torch.randn(256, 8), torch.randint(0, 2, (256,))
        model = nn.Sequential(nn.Linear(8, trial.params["width"]), nn.ReLU(), nn.Linear(trial.params["width"], 2))
        trainer = trainwise.Trainer(model, lr=trial.params["lr"], epochs=2, run_dir=trial.run_dir, progress=False,
                                    report=False, callbacks=[trial.callback])
        return trainer.fit((x[:200], y[:200]), (x[200:], y[200:]), resume=trial.resume)

    result = trainwise.tune(objective, space={"lr": {"log_uniform": [1e-3, 1e-1]}, "width": {"choice": [4, 16]}},
                            n_trials=2, metric="val_accuracy", pruner="none", backend="ray",
                            study_dir=tmp_path / "study", seed=0)
    assert [r["state"] for r in result.rows] == ["complete", "complete"]
    for row in result.rows:
        s = summary(row)
        assert s["status"] == "completed" and s["epochs_run"] == 2 and row["value"] == s["best_val_accuracy"]
        assert row["params"]["width"] in (4, 16)
    assert result.best_config is None and result.best_value == max(r["value"] for r in result.rows)


def test_bad_input_is_one_clear_line(local_ray, tmp_path: Path) -> None:
    config = tiny_config(tmp_path, tune={"backend": "ray", "trials": 1})
    with pytest.raises(ClusterError, match=r"tune.resources asks 4 CPU and 0 GPU per trial, but no node of the "
                                           r"local Ray has that much \(the largest: 2 CPUs, 0 GPUs\)"):
        trainwise.tune(str(config), study_dir=tmp_path / "s1", resources={"cpu": 4})
    with pytest.raises(ConfigError, match=r"tune.scheduler pbt cannot change model.hidden mid-run \(the model's "
                                          r"shape"):
        trainwise.tune(str(config), study_dir=tmp_path / "s2", scheduler="pbt")
    with pytest.raises(ConfigError, match="tune.scheduler needs the Ray backend"):
        trainwise.tune(str(config), study_dir=tmp_path / "s3", scheduler="pbt", backend="optuna")


def test_cli_unreachable_address_is_one_line(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, tune={"trials": 1})
    run = tune_cli(str(config), "--backend", "ray", "--address", "127.0.0.1:9", cwd=tmp_path, timeout=120)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the Ray cluster at '127.0.0.1:9': Connection refused" in lines[0]
    assert "ray start --head" in lines[0]
    run = tune_cli(str(config), "--backend", "rey", cwd=tmp_path, timeout=120)
    assert run.returncode == 2 and "unknown tune.backend 'rey'; did you mean 'ray'" in run.stderr
