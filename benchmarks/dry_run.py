"""Figure 10 — dry-run start-up: ``trainwise train examples/digits.yaml --dry-run`` / ``python -c
"import torch"``, each a fresh process.

A dry run checks every name in the config and prints the plan without loading data or building
anything, so it should cost little more than importing torch (which every trainwise command
does). Both commands run as subprocesses of this script, with the same interpreter, environment
(``OMP_NUM_THREADS`` = ``--threads``) and working directory (the repository root), alternating
torch, dry run, dry run, torch, ... after one untimed pair that warms the file cache. Each process
is timed by wall clock and by its CPU time (user + system, from ``os.wait4``), which a busy
machine inflates less. Figure: median over pairs of the dry run's wall seconds / the bare
import's in the same pair. Target <= 1.5.

Where the dry run's time goes is recorded too: one extra run under ``python -X importtime``, with
the modules that take longest to import (cumulative, torch's own submodules left out) and whether
heavy modules a dry run does not need were imported (scikit-learn, matplotlib, torch._dynamo, ...).

    .venv/bin/python benchmarks/dry_run.py                 # writes results/dry_run.json
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TARGET = 1.5
FULL = (9, 1)  # timed pairs, untimed warm-up pairs
QUICK = (1, 0)
CONFIG = "examples/digits.yaml"
# Modules a dry run has no use for; the result says which of them it imported.
HEAVY = ("sklearn", "scipy", "matplotlib", "pandas", "torch._dynamo", "torch._inductor", "torchvision",
         "rich.progress", "pydantic", "numpy")


def commands() -> dict[str, list[str]]:
    script = Path(sys.executable).with_name("trainwise")
    cli = [str(script)] if script.exists() else [sys.executable, "-m", "trainwise"]
    return {"import_torch": [sys.executable, "-c", "import torch"],
            "dry_run": [*cli, "train", CONFIG, "--dry-run"]}


def timed_run(command: list[str], env: dict[str, str]) -> dict[str, float]:
    """Wall seconds and CPU seconds (user + system) of one child process; fails if it fails."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=common.REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    process.stderr.close()  # type: ignore[union-attr]
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed (exit {process.returncode}): {stderr[-2000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime}


def import_profile(env: dict[str, str]) -> dict[str, Any]:
    """The dry run's imports: the slowest top-level ones (cumulative, what they import included),
    torch's own import, and everything else."""
    command = [sys.executable, "-X", "importtime", "-m", "trainwise", "train", CONFIG, "--dry-run"]
    done = subprocess.run(command, cwd=common.REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, check=True)
    rows = []
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            rows.append((match.group(4), int(match.group(1)), int(match.group(2)), len(match.group(3)) // 2))
    imported = {name for name, *_ in rows}
    top_level = [(name, cumulative) for name, _, cumulative, depth in rows if depth == 0]
    total_us = sum(us for _, us in top_level)
    torch_us = next((cumulative for name, _, cumulative, _ in rows if name == "torch"), 0)  # wherever it is imported
    return {
        "top_level_ms": {name: round(us / 1e3, 1) for name, us in sorted(top_level, key=lambda r: -r[1])[:15]},
        "all_imports_ms": round(total_us / 1e3, 1), "torch_ms": round(torch_us / 1e3, 1),
        "outside_torch_ms": round((total_us - torch_us) / 1e3, 1),
        "heavy_modules_imported": sorted(m for m in HEAVY if m in imported),
        "modules_imported": len(imported),
    }


def main(argv: list[str] | None = None) -> int:
    args = common.base_parser(__doc__.splitlines()[0]).parse_args(argv)
    pairs, warmups = QUICK if args.quick else FULL
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    cmds = commands()
    times: dict[str, list[dict[str, float]]] = {name: [] for name in cmds}
    for index in range(warmups + pairs):
        order = ["import_torch", "dry_run"] if index % 2 == 0 else ["dry_run", "import_torch"]
        for name in order:
            measured = timed_run(cmds[name], env)
            if index >= warmups:
                times[name].append(measured)
    ratios = {kind: [d[kind] / t[kind] for d, t in zip(times["dry_run"], times["import_torch"])]
              for kind in ("wall", "cpu")}
    figure = common.ratio_summary(ratios["wall"])["median"]
    medians = {name: {kind: round(statistics.median(t[kind] for t in runs), 3) for kind in ("wall", "cpu")}
               for name, runs in times.items()}
    profile = import_profile(env)
    payload = {
        "figure": f"wall seconds of `trainwise train {CONFIG} --dry-run` / `python -c \"import torch\"`, each a "
                  "fresh process",
        "headline": f"{figure:.3f}x ({medians['dry_run']['wall']:.2f} s vs {medians['import_torch']['wall']:.2f} s; "
                    f"CPU time {common.ratio_summary(ratios['cpu'])['median']:.3f}x)",
        "target": f"<= {TARGET}", "meets_target": figure <= TARGET, "ratio": figure,
        "ratios": {kind: common.ratio_summary(values) for kind, values in ratios.items()},
        "median_seconds": medians,
        "seconds": {name: [{k: round(v, 3) for k, v in t.items()} for t in runs] for name, runs in times.items()},
        "import_profile": profile,
        "config": {"commands": {name: " ".join(cmd) for name, cmd in cmds.items()}, "pairs": pairs,
                   "warmup_pairs": warmups, "OMP_NUM_THREADS": args.threads},
        "machine": common.machine_info(), "quick": args.quick,
    }
    common.write_result(args.out, "dry_run", payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
