"""One trial of a search on the Ray backend, as it runs in a Ray worker: a normal trainwise run in
``<study folder>/trial-<number>`` whose every epoch is reported to Ray with its checkpoint.

- ``RayReporter`` is the run's checkpoint saver: at each epoch's end it saves the checkpoint, then
  hands Ray the epoch's figures and that checkpoint (the step file, ``best.pt``, ``metrics.csv``
  and ``origin.json``: which trial, epoch and parameters, and the file's SHA-256). When Ray's
  scheduler stops the trial there (ASHA, HyperBand), the run ends as ``pruned``; when PBT parks it
  to run another trial, as ``interrupted``, to be continued.
- A trial Ray restarts (its worker died, or PBT resumed or perturbed it) gets the last checkpoint
  Ray holds: its own (resumed bitwise), or, under PBT, another trial's, which becomes this trial's
  with the new values written into it (trainwise.tune.pbt.give_new_values).
- ``TrainwiseTrial`` (made by ``make_trainable``) lets a stopped run write its summary before Ray
  ends the worker or reuses it for the next trial (``reuse_actors``: one worker process, torch and
  trainwise imported once, runs trial after trial; Ray's own ``reset_config`` waits 2 s for the
  stopped run, then gives up and fails the next trial). A trial Ray stopped ends with
  ``SystemExit(0)`` once its folder is complete, as Ray's own ``report`` does: a stopped function
  that returns gets reported once more by Ray and waits for an answer that never comes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from trainwise import checkpoint as ckpt
from trainwise.callbacks.checkpoint_saver import CheckpointSaver
from trainwise.checks import did_you_mean
from trainwise.errors import CheckpointError, ConfigError
from trainwise.runfolder import lock
from trainwise.tune.space import decoded
from trainwise.tune.trial import TrialRun, objective_value

STOP_GRACE_SECONDS = 120  # how long a stopped trial may take to write its summary
STAGING = ".ray-checkpoint"
_FIT_DONE = threading.Event()  # clear while this worker runs a trial (a reused worker runs one after another)
_FIT_DONE.set()


@dataclass
class TrialSpec:
    """What every trial of a search needs, sent to the Ray workers."""

    objective: Callable[[TrialRun], Any]
    folder: Path
    metric: str
    maximize: bool
    on_stop: str  # how a run stopped by Ray ends: pruned (a scheduler stop) or interrupted (a PBT pause)
    seed: int
    keys: tuple[str, ...]  # the space's parameter names


class RayReporter(CheckpointSaver):
    """Saves each epoch's checkpoint and reports the epoch to Ray with it (see the module)."""

    def __init__(self, number: int, metric: str, on_stop: str, params: dict[str, Any],
                 first_report: Optional[dict[str, Any]] = None) -> None:
        super().__init__(every_epoch=True)
        self.number, self.metric, self.on_stop, self.params = number, metric, on_stop, params
        self.first_report = dict(first_report or {})  # a perturbation or restore, told with the next report
        self.stopped_by_ray = False
        self.values: dict[str, float] = {}  # the metric per epoch, by epoch (as text: checkpoint data)

    def on_epoch_end(self, trainer: Any, logs: dict[str, float]) -> None:
        from ray import tune

        if self.metric not in logs:
            raise ConfigError(f"tune.metric {self.metric!r} is not logged by this run"
                              f"{did_you_mean(self.metric, logs)}; logged: {', '.join(sorted(logs))}")
        value, epoch = float(logs[self.metric]), trainer.state.epoch
        self.values[str(epoch)] = value
        self._last_saved_step = trainer.state.step
        path = trainer.save_checkpoint(best=trainer.state.best.improved)
        if path is None or not math.isfinite(value):
            return
        figures = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        staged, sha256 = stage(Path(trainer.run_dir), Path(path), self.number, epoch, self.params)
        report = {**figures, "epoch": epoch, "trainwise_trial": self.number, "trainwise_sha256": sha256,
                  "trainwise_pid": os.getpid(), **self.first_report}
        best = self.values.get(str(trainer.state.best.epoch))
        if best is not None:  # what the trial is judged by: the metric at the run's best epoch so far
            report["trainwise_value"] = best
        self.first_report = {}
        try:
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(str(staged)))
        except SystemExit:  # Ray stopped this trial after this epoch: its scheduler, or PBT's pause
            self.stopped_by_ray = True
            if epoch < trainer.state.max_epochs:  # at the last epoch the run simply ends
                why = "stopped by the search's scheduler" if self.on_stop == "pruned" else "paused by PBT"
                trainer.stop(f"{why} after epoch {epoch}: {self.metric} {value:.4g}", status=self.on_stop)
        finally:
            shutil.rmtree(staged, ignore_errors=True)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "values": dict(self.values)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.values = dict(state.get("values", {}))


def stage(run_dir: Path, path: Path, number: int, epoch: int, params: dict[str, Any]) -> tuple[Path, str]:
    """The folder handed to Ray: hard links of the checkpoint (and of best.pt when it is another
    file), a copy of metrics.csv, and origin.json. Ray copies it into its storage."""
    folder = run_dir / STAGING
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    entry = ckpt.read_manifest(path.parent)[path.name]
    _link_or_copy(path, folder / "checkpoint.pt")
    best = path.parent / "best.pt"
    if best.is_file() and not os.path.samefile(best, path):
        _link_or_copy(best, folder / "best.pt")
    if (run_dir / "metrics.csv").is_file():
        shutil.copyfile(run_dir / "metrics.csv", folder / "metrics.csv")
    origin = {"trial": number, "epoch": epoch, "step": entry["step"], "file": path.name, "sha256": entry["sha256"],
              "params": params}
    (folder / "origin.json").write_text(json.dumps(origin))
    return folder, entry["sha256"]


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # checkpoints are never modified in place: a link costs nothing
    except OSError:
        shutil.copyfile(source, target)


def adopt(folder: Path, run_dir: Path, number: int, params: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Make the checkpoint Ray handed back (``folder``) this trial's; returns the file to resume
    from and what to tell Ray with the next report (a restore, or a perturbation and its parent)."""
    origin = json.loads((folder / "origin.json").read_text())
    target = run_dir / "checkpoints"
    own = target / origin["file"]
    entry = ckpt.read_manifest(target).get(origin["file"]) if target.is_dir() else None
    told = {"trainwise_parent": origin["trial"], "trainwise_parent_epoch": origin["epoch"],
            "trainwise_parent_sha256": origin["sha256"]}
    if origin["trial"] == number and origin["params"] == params:
        told = {"trainwise_restored_epoch": origin["epoch"], "trainwise_restored_sha256": origin["sha256"]}
        if entry is not None and entry["sha256"] == origin["sha256"] and own.is_file():
            return own, told  # this node still has it: resume from the run's own file
    data = (folder / "checkpoint.pt").read_bytes()
    if hashlib.sha256(data).hexdigest() != origin["sha256"]:
        raise CheckpointError(f"the checkpoint Ray handed back for trial {number} ({folder}) does not match the "
                              f"SHA-256 it was saved with; it is damaged")
    state = ckpt.load_checkpoint(folder / "checkpoint.pt", verify=False)  # verified just above
    if origin["trial"] != number or origin["params"] != params:
        from trainwise.tune.pbt import give_new_values

        told["trainwise_changes"] = "; ".join(give_new_values(state, params))
    run_dir.mkdir(parents=True, exist_ok=True)
    if (folder / "metrics.csv").is_file():  # the history the checkpoint continues
        shutil.copyfile(folder / "metrics.csv", run_dir / "metrics.csv")
    path = _save_as_own(state, target)
    best = ckpt.load_checkpoint(folder / "best.pt", verify=False) if (folder / "best.pt").is_file() else None
    ckpt.link_checkpoint(_save_as_own(best, target) if best is not None else path, "best.pt")
    return path, told


def _save_as_own(state: dict[str, Any], folder: Path) -> Path:
    """A checkpoint's state written into this run's checkpoint folder (and manifest) at its step."""
    state = {k: v for k, v in state.items() if k != "format_version"}
    run_state = state["run_state"]
    path = folder / ckpt.step_checkpoint_name(run_state["step"])
    ckpt.save_checkpoint(state, path, step=run_state["step"], epoch=run_state["epoch"])
    return path


def run_trial(config: dict[str, Any], spec: TrialSpec) -> None:
    """The function Ray runs for one trial (see the module)."""
    from ray import tune

    _FIT_DONE.clear()
    stopped = False
    try:
        number = trial_number(Path(tune.get_context().get_trial_dir()).name)
        run_dir = spec.folder / f"trial-{number}"
        hold_run_folder(run_dir)
        try:
            stopped = _run_trial(config, spec, number, run_dir)
        finally:
            lock.release(run_dir)
    finally:
        _FIT_DONE.set()
    if stopped:  # as Ray's own report would: else Ray's wrapper reports once more and waits for good
        raise SystemExit(0)


def hold_run_folder(run_dir: Path) -> None:
    """Take the trial's run folder. A trial paused by PBT and continued in another reused worker may
    find its earlier attempt still holding it: that attempt ends (writes its summary and lets go)
    only when Ray reuses or ends its own worker, which it does once the population moves on."""
    end = time.monotonic() + STOP_GRACE_SECONDS
    while True:
        try:
            return lock.acquire(run_dir)
        except lock.RunFolderBusyError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def _run_trial(config: dict[str, Any], spec: TrialSpec, number: int, run_dir: Path) -> bool:
    """The trial's run, its folder complete on return; returns whether Ray stopped it."""
    from ray import tune

    params = decoded({k: v for k, v in config.items() if k in spec.keys})
    resume, told = _resume_from(tune.get_checkpoint(), run_dir, number, params)
    reporter = RayReporter(number, spec.metric, spec.on_stop, params, told)
    run = TrialRun(number=number, params=params, run_dir=run_dir, callback=reporter, resume=resume,  # type: ignore[arg-type]
                   seed=spec.seed)
    result = spec.objective(run)
    if reporter.stopped_by_ray:
        return True
    value = objective_value(result, spec.metric, spec.maximize)
    status = getattr(result, "status", "completed")
    final = {"trainwise_done": True, "trainwise_status": status, "trainwise_trial": number,
             "epoch": (getattr(result, "summary", None) or {}).get("epochs_run", 0),
             **reporter.first_report}  # a restore with no epoch left to train is told here
    if value is not None:
        final.update({spec.metric: value, "trainwise_value": value})
    try:
        tune.report(final)
    except SystemExit:
        return True
    return False


def _resume_from(checkpoint: Any, run_dir: Path, number: int,
                 params: dict[str, Any]) -> tuple[Optional[str], dict[str, Any]]:
    """What the trial's run resumes from (Ray's checkpoint made this trial's, or an earlier attempt's
    folder) and what to tell Ray with the next report."""
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            path, told = adopt(Path(folder), run_dir, number, params)
        return str(path), told
    if (run_dir / "metrics.csv").exists():  # an earlier attempt died before its first checkpoint
        return "auto", {}
    return None, {}


def wait_for_fit() -> None:
    _FIT_DONE.wait(STOP_GRACE_SECONDS)


def trial_number(dirname: str) -> int:
    """A trial's number, from the folder name Ray gives it (``trial-<n>``, see ``TrialNumbers``; Ray
    may add a suffix to its working folder)."""
    found = re.match(r"trial-(\d+)", dirname)
    if found is None:
        raise ValueError(f"not a trainwise trial folder: {dirname!r}")
    return int(found.group(1))


_next_number = [0]  # the driver's next trial number (Ray copies the folder-name function: state lives here)


def start_numbering(experiment: Path) -> None:
    """Number new trials after those of an experiment being restored (none for a new one)."""
    taken = [trial_number(p.name) for p in experiment.glob("trial-*") if re.match(r"trial-\d+", p.name)]
    _next_number[0] = max(taken, default=-1) + 1


def numbered_folder(trial: Any) -> str:
    """Ray's trial folder names, ``trial-0``, ``trial-1``, ... in the order the trials are created:
    the trials' numbers in the study."""
    number, _next_number[0] = _next_number[0], _next_number[0] + 1
    return f"trial-{number}"


def make_trainable(spec: TrialSpec) -> Any:
    """Ray's function trainable for ``run_trial``, whose ``cleanup`` (Ray stopping the trial) waits
    until the stopped run has written its summary, so a pruned trial's folder says ``pruned``."""
    from ray.tune.trainable.function_trainable import wrap_function

    def trainwise_trial(config: dict[str, Any]) -> None:
        run_trial(config, spec)

    class TrainwiseTrial(wrap_function(trainwise_trial)):  # type: ignore[misc]
        def reset_config(self, new_config: dict[str, Any]) -> bool:
            # Ray stops the previous trial's thread here and gives it TUNE_FUNCTION_THREAD_TIMEOUT_S
            # (2 s) to end, else the reuse fails: a stopped run writing its summary needs longer.
            os.environ["TUNE_FUNCTION_THREAD_TIMEOUT_S"] = str(STOP_GRACE_SECONDS)
            return bool(super().reset_config(new_config))

        def cleanup(self) -> None:
            from trainwise.tune.ray_trial import wait_for_fit  # by name: the Event stays in the worker's module

            try:
                super().cleanup()
            finally:
                wait_for_fit()

    TrainwiseTrial.__name__ = TrainwiseTrial.__qualname__ = "trainwise_trial"
    return TrainwiseTrial
