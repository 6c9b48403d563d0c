"""``trainwise tune CONFIG``: a hyperparameter search over the config's ``tune:`` section.

``--workers K`` starts K worker processes on this machine (each ``trainwise tune ... --worker-only``)
and writes the results when they are done; workers started on other machines with the same
``--storage`` and ``--study`` join the same study. ``--status`` prints progress and runs nothing (either backend).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from typing import Any

from trainwise.errors import ConfigError

PASSED_ON = ("trials", "timeout", "storage", "study", "study_dir", "sampler", "pruner", "seed")


def tune(args: argparse.Namespace) -> int:
    from trainwise.tune.api import collect, config_job
    from trainwise.tune.worker import run_worker

    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    given = dict(trials=args.trials, timeout=args.timeout, sampler=args.sampler, pruner=args.pruner, seed=args.seed,
                 backend=args.backend)
    job = config_job(args.config, given, study=args.study, storage=args.storage, study_dir=args.study_dir,
                     overrides=args.overrides)
    if job.settings.backend == "ray":
        return _tune_on_ray(job, args)
    if args.address is not None:
        raise ConfigError("--address joins a Ray cluster, which needs the Ray backend: add --backend ray")
    if args.status:
        return status(job)
    if args.worker_only or args.workers == 1:
        run_worker(job)
        if args.worker_only:
            return 0
    else:
        code = _run_local_workers(args)
        if code != 0:
            return code
    result = collect(job)
    _print_result(job, result)
    return 0


def _tune_on_ray(job: Any, args: argparse.Namespace) -> int:
    from trainwise.tune.ray_backend import run_ray

    if args.workers != 1 or args.worker_only:
        raise ConfigError(f"--workers is the Optuna backend's; on Ray, trials run side by side as tune.resources "
                          f"allows (got --workers {args.workers})")
    if args.status:
        from trainwise.tune.ray_status import print_ray_status

        return print_ray_status(job)
    result = run_ray(job, address=args.address)
    _print_result(job, result)
    return 0


def _run_local_workers(args: argparse.Namespace) -> int:
    """K child processes of this command; Ctrl-C or SIGTERM is passed on to them (each saves its
    trial's checkpoint and queues the trial to continue)."""
    command = [sys.executable, "-m", "trainwise", "tune", args.config, *args.overrides, "--worker-only"]
    for name in PASSED_ON:
        value = getattr(args, name)
        if value is not None:
            command += [f"--{name.replace('_', '-')}", str(value)]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.workers)))
    children = [subprocess.Popen(command, env=env) for _ in range(args.workers)]
    try:
        codes = [child.wait() for child in children]
    except KeyboardInterrupt:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        codes = [child.wait() for child in children]
        raise
    failed = [c for c in codes if c != 0]
    return failed[0] if failed else 0


def _print_result(job: Any, result: Any) -> None:
    from trainwise.tune.results import format_table

    s = job.settings
    print(format_table(result.rows, s.maximize, metric=s.metric))
    if result.best_trial is not None:
        print(f"best: trial {result.best_trial}, {s.metric} {result.best_value:.6g}")
    if result.best_config is not None:
        print(f"best config: {result.best_config}  (trainwise train {result.best_config})")
    print(f"study folder: {result.folder}  (trials.csv, report.html, plots)")


def status(job: Any) -> int:
    """Progress and the best trials, read from the storage; runs nothing."""
    from trainwise.tune.results import counts_line, format_table, trial_rows
    from trainwise.tune.storage import connect, load_existing

    s = job.settings
    storage = connect(job.place, heartbeat_interval=s.heartbeat_interval, grace_period=s.grace,
                      max_retries=s.max_retries)
    study = load_existing(job.place, storage)
    rows = trial_rows(study)
    budget = study.user_attrs.get("trainwise_trials")
    print(f"study {job.place.name} in {job.place.shown_url}")
    print(counts_line(rows, budget))
    for r in rows:
        if r["state"] == "running":
            print(f"  trial {r['number']} running, {r['epochs'] or 0} epochs reported")
    print(format_table(rows, s.maximize, metric=s.metric))
    return 0
