"""A worker: joins the study, then claims and runs trials until the study's budget is spent.

The budget is the study's, not the worker's: under the study lock a worker fails the trials whose
worker died (no heartbeat for the grace period; Optuna queues each again with its parameters),
then takes a queued retry if there is one, else starts a new trial only while the trials that
count stay below ``trials``. Trials that count: finished, pruned, running, queued, and failed by
an error of their own; a trial failed because its worker died does not, its retry does. So
``trials`` is exact however many workers join, and a worker whose study is full waits while other
trials still run (one may die and need a retry) before it leaves.

While a trial runs, a thread records its heartbeat every ``heartbeat_interval`` seconds.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from trainwise.errors import TrainwiseError
from trainwise.tune.settings import TuneSettings, make_pruner, make_sampler
from trainwise.tune.space import fingerprint, suggest
from trainwise.tune.storage import Place, StudyLock, connect, open_study
from trainwise.tune.trial import TrialReporter, TrialRun, objective_value

log = logging.getLogger("trainwise.tune")

ERROR_ATTR = "error"  # user attr of a trial that failed by an error of its own (it counts)


@dataclass
class Job:
    """What a worker needs: where the study is, its settings, the objective and the longest run
    (``max_epochs``, HyperBand's maximum resource)."""

    place: Place
    settings: TuneSettings
    objective: Callable[[TrialRun], Any]
    max_epochs: int
    seed: int = 0
    config_of: Optional[Callable[[TrialRun], Any]] = None  # a config trial's RunConfig (stored for best.yaml)
    ray_storage: Optional[str] = None  # the Ray backend's storage path (default: the study folder)


@dataclass
class WorkerReport:
    ran: list[int] = field(default_factory=list)


def join_study(job: Job) -> tuple[Any, StudyLock, int]:
    """Open the storage and the study under the lock; returns (study, lock, this worker's index)."""
    s, lock = job.settings, StudyLock(job.place)
    with lock.held():
        storage = connect(job.place, heartbeat_interval=s.heartbeat_interval, grace_period=s.grace,
                          max_retries=s.max_retries)
        identity = {"space": fingerprint(s.space), "metric": s.metric, "direction": s.optuna_direction}
        study = open_study(job.place, storage, direction=s.optuna_direction, sampler=None,
                           pruner=make_pruner(s, job.max_epochs), identity=identity)
        index = int(study.user_attrs.get("trainwise_workers", 0))
        study.set_user_attr("trainwise_workers", index + 1)
        if s.trials is not None:
            study.set_user_attr("trainwise_trials", s.trials)
    # Each worker draws its own sequence: the study's seed plus the order in which it joined.
    study.sampler = make_sampler(s, job.seed + index)
    return study, lock, index


def run_worker(job: Job) -> WorkerReport:
    study, lock, index = join_study(job)
    report = WorkerReport()
    deadline = time.time() + job.settings.timeout if job.settings.timeout else None
    log.info("worker %d joined study %s (%s)", index, job.place.name, job.place.shown_url)
    while True:
        with lock.held():
            decision, trial = claim(study, job.settings, deadline)
        if decision == "done":
            return report
        if decision == "wait":
            time.sleep(min(2.0, job.settings.heartbeat_interval))
            continue
        run_claimed(job, study, trial, lock)
        report.ran.append(trial.number)


def claim(study: Any, settings: TuneSettings, deadline: Optional[float]) -> tuple[str, Any]:
    """Under the study lock: ("run", trial), ("wait", None) or ("done", None)."""
    import warnings

    import optuna
    from optuna.trial import TrialState

    with warnings.catch_warnings():
        # Optuna says its heartbeat is meant for Study.optimize; this loop beats and reaps itself.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        optuna.storages.fail_stale_trials(study)  # dead workers' trials: failed, and queued again
        trials = study.get_trials(deepcopy=False)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        running = any(t.state == TrialState.RUNNING for t in trials)
        if deadline is not None and time.time() >= deadline:
            return "done", None
        counted = sum(1 for t in trials if t.state != TrialState.FAIL or ERROR_ATTR in t.user_attrs)
        if not (waiting or settings.trials is None or counted < settings.trials):
            return ("wait", None) if running else ("done", None)
        trial = study.ask()
        study._storage.record_heartbeat(trial._trial_id)  # a worker killed from here on is noticed
    return "run", trial


class Heartbeat:
    """Records a trial's heartbeat every ``interval`` seconds on a daemon thread."""

    def __init__(self, storage: Any, trial_id: int, interval: int) -> None:
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"heartbeat-{trial_id}")

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried; the grace period covers several
                log.warning("heartbeat of trial %s failed: %s", self.trial_id, exc)


def run_claimed(job: Job, study: Any, trial: Any, lock: StudyLock) -> None:
    """Run one claimed trial and tell the study how it ended."""
    import optuna
    from optuna.trial import TrialState

    s = job.settings
    root = study._storage.get_trial_system_attrs(trial._trial_id).get("failed_trial", trial.number)  # a retry works in its original's folder
    run_dir = job.place.folder / f"trial-{root}"
    params = suggest(trial, s.space)
    reporter = TrialReporter(trial, s.metric, s.pruner)
    run = TrialRun(number=trial.number, params=params, run_dir=run_dir, callback=reporter,
                   resume="auto" if root != trial.number else None, seed=job.seed)
    trial.set_user_attr("run_dir", str(run_dir.absolute()))
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    if job.config_of is not None:
        trial.set_user_attr("config", job.config_of(run).to_dict())
    log.info("trial %d%s: %s", trial.number, f" (retry of trial {root})" if run.resume else "",
             ", ".join(f"{k}={v}" for k, v in params.items()))
    with Heartbeat(study._storage, trial._trial_id, s.heartbeat_interval):
        try:
            result = job.objective(run)
        except TrainwiseError as exc:  # a user error: every trial would fail the same way
            _tell(study, trial, state=TrialState.FAIL, error=str(exc))
            raise
        except (Exception, optuna.TrialPruned) as exc:  # noqa: BLE001 - the trial fails, the search goes on
            if isinstance(exc, optuna.TrialPruned):
                _tell(study, trial, state=TrialState.PRUNED)
                return
            log.warning("trial %d failed: %s: %s", trial.number, type(exc).__name__, exc)
            _tell(study, trial, state=TrialState.FAIL, error=f"{type(exc).__name__}: {exc}")
            return
    _finish(job, study, trial, result, lock)


def _finish(job: Job, study: Any, trial: Any, result: Any, lock: StudyLock) -> None:
    from optuna.trial import TrialState

    s = job.settings
    status = getattr(result, "status", "completed")
    summary = getattr(result, "summary", {}) or {}
    attrs = {"status": status, "epochs": summary.get("epochs_run"), "pruned_at_epoch": summary.get("pruned_at_epoch")}
    for key, value in attrs.items():
        if value is not None:
            trial.set_user_attr(key, value)
    if status == "pruned":
        _tell(study, trial, state=TrialState.PRUNED)
    elif status == "interrupted":  # SIGTERM/Ctrl-C: saved a checkpoint; queue it to continue later
        with lock.held():
            _tell(study, trial, state=TrialState.FAIL)
            frozen = study._storage.get_trial(trial._trial_id)
            study._storage.get_heartbeat_stale_trial_callback()(study, frozen)
        raise KeyboardInterrupt
    else:
        value = objective_value(result, s.metric, s.maximize)
        if value is None or status in ("diverged", "failed"):
            _tell(study, trial, state=TrialState.FAIL, error=f"run {status}; no finite {s.metric}")
        else:
            _tell(study, trial, value=value)
            log.info("trial %d: %s %.6g (%s, %s epochs)", trial.number, s.metric, value, status, attrs["epochs"])


def _tell(study: Any, trial: Any, *, state: Any = None, value: Optional[float] = None,
          error: Optional[str] = None) -> None:
    """Tell the study; a trial another worker already failed (taken for dead) is left as it is."""
    import optuna

    try:
        if error is not None:
            trial.set_user_attr(ERROR_ATTR, error[:500])
        study.tell(trial, value, state=state) if value is not None else study.tell(trial, state=state)
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as exc:
        log.warning("trial %d was already finished elsewhere (%s); its result is dropped", trial.number, exc)
