"""What a Ray search leaves in its study folder, written from what the driver saw of each trial:
the same trials.csv, best.yaml, plots and report.html as the Optuna backend, and under PBT the
lineage. ``StudyLog`` is a Ray Tune callback in the driver that records every report."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Optional

from ray.tune import Callback

from trainwise.errors import ConfigError
from trainwise.tune.ray_trial import trial_number
from trainwise.tune.space import decoded, encode
from trainwise.tune.worker import Job

log = logging.getLogger("trainwise.tune")


def new_trial() -> dict[str, Any]:
    return {"reports": [], "perturbations": [], "restores": [], "segment": 0, "done": None, "error": None,
            "seconds": None, "params": {}}


class StudyLog(Callback):
    """Every trial's reports (epoch, value, checkpoint SHA-256), its restores and perturbations,
    its final value and status, and its error, as the driver receives them."""

    def __init__(self, metric: str, keys: tuple[str, ...]) -> None:
        self.metric, self.keys = metric, keys
        self.trials: dict[int, dict[str, Any]] = {}

    def _trial(self, trial: Any) -> dict[str, Any]:
        number = trial_number(trial.custom_dirname)
        t = self.trials.setdefault(number, new_trial())
        t["params"] = decoded({k: v for k, v in trial.config.items() if k in self.keys})
        return t

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.record(self._trial(trial), result)

    def record(self, t: dict[str, Any], result: dict[str, Any]) -> None:
        """One report of a trial (``result``: what ray.tune.report got, with Ray's own keys)."""
        result = {k: v for k, v in result.items() if not _missing(v)}
        for key in ("epoch", "trainwise_parent", "trainwise_parent_epoch", "trainwise_restored_epoch"):
            if key in result:  # whole numbers (a table with gaps holds them as floats)
                result[key] = int(result[key])
        t["seconds"] = result.get("time_total_s", t["seconds"])
        if "trainwise_parent" in result:
            t["segment"] += 1
            t["perturbations"].append({
                "segment": t["segment"], "parent": result["trainwise_parent"],
                "parent_epoch": result["trainwise_parent_epoch"], "parent_sha256": result["trainwise_parent_sha256"],
                "changes": result.get("trainwise_changes", ""), "params": dict(t["params"])})
        if "trainwise_restored_epoch" in result:
            t["restores"].append({"epoch": result["trainwise_restored_epoch"],
                                  "sha256": result["trainwise_restored_sha256"], "pid": result.get("trainwise_pid")})
        if result.get("trainwise_done"):
            t["done"] = {"status": result.get("trainwise_status"), "value": result.get("trainwise_value"),
                         "epochs": result.get("epoch")}
            return
        t["reports"].append({"epoch": result["epoch"], "value": result.get(self.metric), "segment": t["segment"],
                             "best": result.get("trainwise_value"), "sha256": result.get("trainwise_sha256"),
                             "pid": result.get("trainwise_pid")})

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._trial(trial)["error"] = _last_error_line(getattr(trial, "error_file", None))


def _missing(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)  # a column another report filled, in Ray's table


def replay(study_log: StudyLog, grid: Any) -> None:
    """Trials the callback did not see (an experiment continued with Tuner.restore, whose pickled
    callback is another object; a trial that failed before reporting): replayed from Ray's table
    of each trial's reports."""
    for result in grid:
        number = trial_number(Path(result.path).name)
        if number in study_log.trials:
            continue
        t = replayed(study_log, number, result.config, result.metrics_dataframe)
        if result.error is not None:
            t["error"] = str(result.error).strip().splitlines()[-1] if str(result.error).strip() else "failed"
        elif not t["reports"]:
            t["error"] = "the trial failed before its first epoch"


def replayed(study_log: StudyLog, number: int, config: Optional[dict[str, Any]], frame: Any) -> dict[str, Any]:
    """A trial recorded from Ray's table of its reports (``frame``: a DataFrame, or None)."""
    t = study_log.trials[number] = new_trial()
    t["params"] = decoded({k: v for k, v in (config or {}).items() if k in study_log.keys})
    for row in (frame.to_dict("records") if frame is not None else []):
        if "epoch" in row and not _missing(row["epoch"]):
            study_log.record(t, row)
    return t


def _last_error_line(path: Optional[str]) -> str:
    try:
        lines = [line.strip() for line in Path(path or "").read_text().splitlines() if line.strip()]
    except OSError:
        return "the trial failed (no error file)"
    return lines[-1] if lines else "the trial failed"


def trial_state(t: dict[str, Any], max_epochs: Optional[int]) -> tuple[str, Optional[float]]:
    """(state, value): complete with its value (the run returned, or Ray stopped it at its last
    epoch); pruned when Ray's scheduler stopped it before; failed."""
    done = t["done"]
    if done is not None:
        if done["value"] is None or done["status"] in ("diverged", "failed"):
            return "failed", None
        return "complete", float(done["value"])
    if t["error"] is not None or not t["reports"]:
        return "failed", None
    last = t["reports"][-1]
    if max_epochs is not None and last["epoch"] >= max_epochs and last.get("best") is not None:
        return "complete", float(last["best"])
    return "pruned", None


def study_rows(job: Job, study_log: StudyLog) -> list[dict[str, Any]]:
    """One row per trial, in the shape of trainwise.tune.results.trial_rows."""
    from trainwise.tune.trial import TrialRun

    rows = []
    for number, t in sorted(study_log.trials.items()):
        state, value = trial_state(t, job.max_epochs if job.config_of is not None else None)
        run_dir = job.place.folder.absolute() / f"trial-{number}"
        summary = _read_json(run_dir / "summary.json")
        epochs = summary.get("epochs_run") or (t["reports"][-1]["epoch"] if t["reports"] else None)
        config = None
        if job.config_of is not None:
            config = job.config_of(TrialRun(number=number, params=t["params"], run_dir=run_dir,
                                            callback=None)).to_dict()  # type: ignore[arg-type]
        rows.append({"number": number, "state": state, "value": value, "epochs": epochs,
                     "pruned_at_epoch": epochs if state == "pruned" else None, "retry_of": None,
                     "seconds": None if t["seconds"] is None else round(float(t["seconds"]), 2),
                     "params": t["params"], "run_dir": str(run_dir), "error": t["error"], "config": config,
                     "restores": len(t["restores"]), "perturbations": len(t["perturbations"])})
    return rows


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def write_results(job: Job, study_log: StudyLog, grid: Any, *, plots: bool) -> Any:
    from trainwise.tune.results import TuneResult, ranked, write_best_config, write_trials_csv

    s, folder = job.settings, job.place.folder
    replay(study_log, grid)
    rows = study_rows(job, study_log)
    _refuse_user_errors(rows)
    folder.mkdir(parents=True, exist_ok=True)
    write_trials_csv(rows, folder / "trials.csv")
    write_best_config(rows, s.maximize, job.place.name, folder / "best.yaml")
    if s.scheduler == "pbt":
        from trainwise.tune.pbt import write_lineage

        write_lineage(study_log.trials, folder, s.metric)
    if plots:
        from trainwise.tune.plots import write_plots
        from trainwise.tune.study_report import write_study_report

        images = write_plots(optuna_view(job, study_log, rows), folder)
        if (folder / "lineage.png").is_file():
            images["lineage"] = folder / "lineage.png"
        write_study_report(job.place.name, rows, images, folder / "report.html", maximize=s.maximize, metric=s.metric)
    best = ranked(rows, s.maximize)
    top = best[0] if best else None
    best_yaml = folder / "best.yaml"
    return TuneResult(study=job.place.name, folder=folder, best_trial=top["number"] if top else None,
                      best_value=top["value"] if top else None, best_params=top["params"] if top else {},
                      best_config=best_yaml if best_yaml.is_file() and job.config_of else None, rows=rows)


def _refuse_user_errors(rows: list[dict[str, Any]]) -> None:
    """Every trial failed on a trainwise error (a metric not logged, a bad value): the user's to
    fix, said in one line, as the Optuna backend does."""
    errors = [r["error"] for r in rows if r["error"]]
    if rows and len(errors) == len(rows) and all("trainwise.errors." in e for e in errors):
        raise ConfigError(f"every trial failed: {errors[0].split(': ', 1)[-1]}")


def optuna_view(job: Job, study_log: StudyLog, rows: list[dict[str, Any]]) -> Any:
    """The trials as an in-memory Optuna study, for the same plots as the Optuna backend draws."""
    import optuna
    from optuna.trial import TrialState, create_trial

    states = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "failed": TrialState.FAIL}
    study = optuna.create_study(direction="maximize" if job.settings.maximize else "minimize",
                                study_name=job.place.name)
    for row in rows:
        t = study_log.trials[row["number"]]
        params = {k: encode(v) for k, v in row["params"].items()}
        distributions = {k: _distribution(job.settings.space[k]) for k in params}
        values = {r["epoch"]: float(r["value"]) for r in t["reports"] if r["value"] is not None}
        study.add_trial(create_trial(params=params, distributions=distributions, value=row["value"],
                                     intermediate_values=values, state=states[row["state"]]))
    return study


def _distribution(p: Any) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if p.kind == "choice":
        return CategoricalDistribution([encode(c) for c in p.choices])
    if p.kind == "int":
        return IntDistribution(int(p.low), int(p.high), log=p.log, step=1 if p.log else int(p.step or 1))
    return FloatDistribution(p.low, p.high, log=p.log, step=p.step)
