"""Run a study: plan it (or read the plan back on ``--resume``), train the runs that are not
finished in parallel worker processes, then measure, judge and write the study folder.

A run is finished when its ``summary.json`` says so (completed, stopped_early or diverged: a
divergence is a result). A run that was interrupted, failed or killed continues from its newest
checkpoint that verifies; one killed before its first checkpoint starts again.
"""

from __future__ import annotations

import concurrent.futures as futures
import json
import logging
import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from trainwise.errors import ConfigError
from trainwise.runfolder.files import write_json
from trainwise.studies.base import Budget, Study
from trainwise.studies.job import init_worker, run_job
from trainwise.studies.plan import PLAN, make_plan, plan_differences, read_plan

log = logging.getLogger("trainwise")

FINISHED = ("completed", "stopped_early", "diverged")
GRAD_NORM_SAMPLES = 20  # gradient-norm recordings per run during training


@dataclass
class StudyRequest:
    """What the user asked for: the study, the config and overrides, the budget and where."""

    study: Study
    config: str
    overrides: list[str]
    budget: Budget
    out: Path
    workers: int = 1
    resume: bool = False
    target: Optional[float] = None

    def record(self) -> dict[str, Any]:
        """The settings that must match for ``--resume`` to continue the same study."""
        return {"study": self.study.name, "config": str(Path(self.config).absolute()),
                "overrides": list(self.overrides), **vars(self.budget)}


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def run_finished(run_dir: Path) -> bool:
    try:
        return json.loads((run_dir / "summary.json").read_text()).get("status") in FINISHED
    except (OSError, ValueError):
        return False


def has_checkpoint(run_dir: Path) -> bool:
    return (run_dir / "checkpoints" / "manifest.json").is_file()


def prepare(req: StudyRequest) -> dict[str, Any]:
    """The study's plan: a new one (refusing a folder that holds another study), or with
    ``resume`` the saved one, refused when the request changed."""
    record = req.record()
    saved = read_plan(req.out)
    if saved is not None and not req.resume:
        raise ConfigError(f"study folder {req.out} already holds a study; continue it with --resume, "
                          "or pass --out with a new folder")
    if saved is not None:
        changed = plan_differences(saved, record)
        if changed:
            raise ConfigError(f"--resume asks for a different study than the one in {req.out} "
                              f"({'; '.join(changed)}); repeat the first command's arguments, or pass --out")
        return saved
    if req.resume:
        log.info("nothing to resume in %s: starting the study", req.out)
    req.out.mkdir(parents=True, exist_ok=True)
    plan = make_plan(req.study, req.config, req.overrides, req.budget, req.out, record)
    write_json(req.out / PLAN, plan)
    return plan


def pending_jobs(plan: dict[str, Any], out: Path) -> tuple[list[dict[str, Any]], int]:
    """The jobs still to train (each marked whether it resumes) and how many are finished."""
    budget = Budget(**plan["budget"])
    total_steps = budget.steps or budget.epochs * 50  # a guess for the gradient-norm cadence
    todo, done = [], 0
    for job in plan["jobs"]:
        run_dir = out / job["run_dir"]
        if run_finished(run_dir):
            done += 1
            continue
        resume = has_checkpoint(run_dir)
        if run_dir.exists() and not resume:  # killed before its first checkpoint: nothing to keep
            shutil.rmtree(run_dir)
        todo.append({"config": job["config"], "run_dir": str(run_dir), "data_seed": plan["data_seed"],
                     "train_samples": budget.train_samples, "resume": resume, "name": job["run_dir"],
                     "measure": list(_study_of(plan).measure),
                     "grad_every": max(1, total_steps // GRAD_NORM_SAMPLES)})
    return todo, done


def _study_of(plan: dict[str, Any]) -> Study:
    from trainwise.studies.catalog import STUDIES

    return STUDIES[plan["study"]]


def execute(todo: list[dict[str, Any]], workers: int, *, done: int, total: int) -> None:
    """Train ``todo`` in ``workers`` processes (threads split among them), logging each finish."""
    if not todo:
        return
    cores = available_cores()
    workers = max(1, min(workers, cores, len(todo)))
    if workers == 1:  # no process to start: train here, with this process's torch threads (OMP_NUM_THREADS)
        import torch

        threads = min(torch.get_num_threads(), cores)
    else:
        threads = max(1, cores // workers)
    log.info("%d runs to train (%d of %d finished) in %d worker%s, %d thread%s each", len(todo), done, total,
             workers, "s" if workers > 1 else "", threads, "s" if threads > 1 else "")
    if workers == 1:
        for job in todo:
            done += 1
            _report(run_job(job), job, done, total)
        return
    context = multiprocessing.get_context("spawn")
    with futures.ProcessPoolExecutor(workers, mp_context=context, initializer=init_worker,
                                     initargs=(threads, os.getpid())) as pool:
        pending = {pool.submit(run_job, job): job for job in todo}
        try:
            for future in futures.as_completed(pending):
                done += 1
                _report(future.result(), pending[future], done, total)
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def _report(result: dict[str, Any], job: dict[str, Any], done: int, total: int) -> None:
    log.info("[%d/%d] %s %s (%.1fs)", done, total, job["name"], result["status"], result["seconds"])
    if result["status"] == "interrupted":  # SIGTERM or Ctrl-C: the run saved a checkpoint; stop the study
        log.info("study interrupted; continue it with --resume")
        raise KeyboardInterrupt


def run_study(req: StudyRequest) -> dict[str, Any]:
    """Plan (or resume), train, then write study.json, study.md, the plots and report.html.
    Returns the study's results (what study.json holds)."""
    from trainwise.studies.output import write_outputs
    from trainwise.studies.results import collect

    start = time.perf_counter()
    plan = prepare(req)
    todo, done = pending_jobs(plan, req.out)
    execute(todo, req.workers, done=done, total=len(plan["jobs"]))
    results = collect(_study_of(plan), plan, req.out, target=req.target)
    results["wall_seconds_this_call"] = round(time.perf_counter() - start, 1)
    write_outputs(results, req.out)
    return results
