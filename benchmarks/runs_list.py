"""Figure 11 — ``trainwise runs list`` with 2,000 runs indexed: seconds to answer, a fresh process.

The script writes 2,000 synthetic run folders (run.json, summary.json, config.yaml, like the
ones ``Trainer.fit`` writes: ~35 config keys, ~20 summary figures, a mix of statuses including
running runs whose process is gone), indexes them with ``trainwise runs reindex``, then times,
alternating, in fresh processes with the same interpreter and environment:

- ``trainwise runs list`` (the table, newest first; it shows the newest 50 by default),
- ``trainwise runs list --where "optimizer.name = 'sgd' and test_accuracy > 0.9" --sort -test_accuracy``,
- ``trainwise runs list --format json`` (all 2,000 runs),
- ``python -c pass`` (the interpreter's own start, for reference),

and, in this process, the query alone (load the index, reconcile statuses, filter, sort). Figure:
the slowest command's median wall seconds. Target < 1 s. The machine is shared: the medians of
interleaved rounds, and the interpreter's start beside them, say how busy it was.

    .venv/bin/python benchmarks/runs_list.py             # writes results/runs_list.json
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TARGET = 1.0
FULL = (2000, 7)  # runs, timed rounds
QUICK = (100, 1)
WHERE = "optimizer.name = 'sgd' and test_accuracy > 0.9"


def write_runs(root: Path, count: int, seed: int = 0) -> None:
    """``count`` run folders shaped like Trainer.fit's, spread over 30 days."""
    import json

    import yaml

    rng = random.Random(seed)
    start = time.time() - 30 * 86400
    statuses = ["completed"] * 80 + ["stopped_early"] * 10 + ["diverged", "failed", "interrupted", "pruned"] * 2 \
        + ["running"] * 2
    for index in range(count):
        folder = root / ("tune/study-a" if index % 3 == 0 else "") / f"run-{index:05d}"
        folder.mkdir(parents=True)
        started = start + index * 1200 + rng.random()
        status = rng.choice(statuses)
        config = {"name": f"mlp-{index % 17}", "seed": index % 5,
                  "data": {"dataset": rng.choice(["digits", "mnist", "mnist1d"]), "batch_size": rng.choice([32, 64, 128]),
                           "val_fraction": 0.1, "test_fraction": 0.2, "normalize": True, "augment": None},
                  "model": {"name": rng.choice(["mlp", "cnn"]), "hidden": [128, 64], "norm": "none",
                            "dropout": rng.choice([0.0, 0.1, 0.3]), "activation": "relu", "init": "auto"},
                  "optimizer": {"name": rng.choice(["sgd", "adamw", "adam"]), "lr": 10 ** rng.uniform(-4, -1),
                                "weight_decay": 0.01, "momentum": 0.9},
                  "schedule": {"name": rng.choice(["onecycle", "cosine"]), "warmup": 0},
                  "train": {"epochs": rng.choice([10, 20]), "max_steps": None, "grad_clip": 1.0, "accumulate": 1,
                            "precision": "fp32", "device": "cpu",
                            "early_stopping": {"monitor": "val_loss", "patience": 5, "min_delta": 0.0}}}
        accuracy = rng.uniform(0.6, 0.99)
        summary = {"status": status, "epochs_run": 10, "steps": 1000, "best_epoch": 8, "best_val_loss": 1 - accuracy,
                   "best_val_accuracy": accuracy, "test_accuracy": accuracy - 0.01, "test_macro_f1": accuracy - 0.02,
                   "wall_seconds": rng.uniform(10, 500), "train_samples_per_second": rng.uniform(1e4, 1e5),
                   "lr": config["optimizer"]["lr"], "events": [{"kind": "lr_find", "message": "x" * 80}] * 3}
        record = {"id": f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime(started))}-{index:06x}",
                  "name": config["name"], "status": "running" if status == "running" else status,
                  "pid": 2 ** 22 + index, "pid_start": None, "host": "bench-host" if index % 2 else os.uname().nodename,
                  "started": started, "ended": None if status == "running" else started + 300,
                  "heartbeat": started + 300, "git": {"commit": f"{index:040x}", "dirty": index % 7 == 0},
                  "environment": {"python": "3.11.7", "torch": "2.13.0", "device": "cpu"}}
        (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        if status != "running":
            (folder / "summary.json").write_text(json.dumps(summary))
        (folder / "run.json").write_text(json.dumps(record))


CPU_SECONDS: dict[str, list[float]] = {}


def timed(command: list[str], env: dict[str, str], name: str = "") -> float:
    """Wall seconds of one fresh process; its CPU seconds (user + system, which a busy machine
    inflates less) go to ``CPU_SECONDS[name]``."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {stderr[-2000:]}")
    if name:
        CPU_SECONDS.setdefault(name, []).append(usage.ru_utime + usage.ru_stime)
    return elapsed


def in_process_query(root: Path) -> float:
    from trainwise.runs.listing import query_keys, select
    from trainwise.runs.store import load_runs

    start = time.perf_counter()
    runs = load_runs(root, query_keys(WHERE, "-test_accuracy"))
    chosen = select(runs, where=WHERE, sort="-test_accuracy", limit=None)
    elapsed = time.perf_counter() - start
    assert chosen, "the filter matched no run"
    return elapsed


def measure(count: int, rounds: int, work: Path) -> dict[str, Any]:
    root = work / "runs"
    started = time.perf_counter()
    write_runs(root, count)
    written = time.perf_counter() - started
    env = {**os.environ, "PYTHONPATH": str(common.REPO_ROOT / "src"), "COLUMNS": "160"}
    cli = [sys.executable, "-m", "trainwise", "runs"]
    reindex = timed([*cli, "reindex", "--root", str(root)], env)
    commands = {
        "runs list": [*cli, "list", "--root", str(root)],
        "runs list --where --sort": [*cli, "list", "--root", str(root), "--where", WHERE, "--sort", "-test_accuracy"],
        "runs list --format json": [*cli, "list", "--root", str(root), "--format", "json"],
        "python -c pass": [sys.executable, "-c", "pass"],
    }
    for command in commands.values():  # warm the file cache, untimed
        timed(command, env)
    times: dict[str, list[float]] = {name: [] for name in [*commands, "in-process query"]}
    for _ in range(rounds):
        for name, command in commands.items():
            times[name].append(timed(command, env, name))
        times["in-process query"].append(in_process_query(root))
    medians = {name: round(statistics.median(values), 4) for name, values in times.items()}
    cpu = {name: round(statistics.median(values), 4) for name, values in CPU_SECONDS.items()}
    return {"runs": count, "write_seconds": round(written, 2), "reindex_seconds": round(reindex, 3),
            "median_seconds": medians, "median_cpu_seconds": cpu, "all_seconds": {k: [round(v, 4) for v in vs] for k, vs in times.items()}}


def main(argv: Optional[list[str]] = None) -> int:
    args = common.base_parser(__doc__.splitlines()[0]).parse_args(argv)
    count, rounds = QUICK if args.quick else FULL
    work = Path(tempfile.mkdtemp(prefix="runs-list-"))
    try:
        figures = measure(count, rounds, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    medians = figures["median_seconds"]
    slowest = max(v for k, v in medians.items() if k.startswith("runs list"))
    headline = (f"{slowest:.2f} s slowest `runs list` with {count} runs (table {medians['runs list']:.2f} s, "
                f"--where/--sort {medians['runs list --where --sort']:.2f} s, json {medians['runs list --format json']:.2f} s; "
                f"in-process query {medians['in-process query']:.3f} s; python -c pass {medians['python -c pass']:.2f} s; "
                f"CPU seconds: slowest {max(v for k, v in figures['median_cpu_seconds'].items() if k.startswith('runs')):.2f})")
    payload = {"figure": f"median wall seconds of `trainwise runs list` (fresh process) with {count} runs indexed",
               "headline": headline, "target": f"< {TARGET} s", "meets_target": slowest < TARGET, "quick": args.quick,
               **figures, "machine": common.machine_info(),
               "note": "measured on a machine shared with other jobs; medians of interleaved rounds"}
    common.write_result(args.out, "runs_list", payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
