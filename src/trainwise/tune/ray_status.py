"""``trainwise tune CONFIG --status`` for a search on the Ray backend: its progress read from Ray's
experiment folder (the trials' states in Ray's experiment snapshot, every trial's reports in its
``result.json``), while the search runs or after; printed as the Optuna backend prints its own."""

from __future__ import annotations

from typing import Any

from trainwise.errors import ConfigError
from trainwise.tune.worker import Job

WAITING = {"RUNNING": "running", "PENDING": "queued", "PAUSED": "queued"}  # Ray's states of an unfinished trial


def ray_rows(job: Job) -> tuple[str, list[dict[str, Any]]]:
    """(where the experiment is, one row per trial as trainwise.tune.results.trial_rows makes them)."""
    from ray.tune import ExperimentAnalysis, Tuner

    from trainwise.tune.ray_backend import experiment_path
    from trainwise.tune.ray_results import StudyLog, replayed, study_rows
    from trainwise.tune.ray_trial import trial_number

    _, experiment = experiment_path(job)
    if not Tuner.can_restore(experiment):
        raise ConfigError(f"no Ray search of study {job.place.name!r} at {experiment}; start it with "
                          f"`trainwise tune CONFIG --backend ray` (same --study-dir/--study/--storage)")
    analysis = ExperimentAnalysis(experiment)
    study_log = StudyLog(job.settings.metric, tuple(job.settings.space))
    states: dict[int, str] = {}
    for trial in analysis.trials:
        number = trial_number(trial.custom_dirname)
        t = replayed(study_log, number, trial.config, analysis.trial_dataframes.get(trial.trial_id))
        states[number] = trial.status
        if trial.status == "ERROR":
            t["error"] = "the trial failed (Ray's error.txt in its folder of the experiment)"
    rows = study_rows(job, study_log)
    for row in rows:
        t = study_log.trials[row["number"]]
        if t["done"] is None and t["error"] is None and states[row["number"]] in WAITING:
            row.update(state=WAITING[states[row["number"]]], value=None, pruned_at_epoch=None)
    return experiment, rows


def print_ray_status(job: Job) -> int:
    """Progress and the best trials; runs nothing (the snapshot Ray saves every few seconds)."""
    from trainwise.tune.results import counts_line, format_table

    s = job.settings
    experiment, rows = ray_rows(job)
    print(f"study {job.place.name} on Ray, experiment {experiment}")
    print(counts_line(rows, s.trials))
    for r in rows:
        if r["state"] == "running":
            print(f"  trial {r['number']} running, {r['epochs'] or 0} epochs reported")
    print(format_table(rows, s.maximize, metric=s.metric))
    return 0
