"""Run every benchmark, each in its own process, and print the summary table.

Each script writes ``results/NAME.json``; this collects them into ``results/summary.md`` (the
table README.md shows) and prints it. ``benchmarks/lr_suggestion.py`` (figure 7, kept by the
learning-rate work) runs too when it exists. ``vs_lightning`` is skipped, and said so, when
lightning is not installed (``pip install -r benchmarks/requirements.txt``; ``make bench`` does).

    .venv/bin/python benchmarks/run_all.py                  # everything, about 20 minutes on 2 cores
    .venv/bin/python benchmarks/run_all.py --quick          # a few steps each, to check they run
    .venv/bin/python benchmarks/run_all.py --only step_overhead data_path
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
# In the order they run: the quick per-step figures first, the long subprocess runs last.
BENCHMARKS = ("step_overhead", "data_path", "fit_overhead", "vs_lightning", "checkpoint_cost", "checkpoint_growth",
              "dry_run", "runs_list", "memory", "time_to_accuracy", "lr_suggestion", "ddp_throughput", "tune_storage",
              "tune_overhead", "search_efficiency", "export_int8", "timing_overhead", "speed_options",
              "token_step", "val_every", "tune_ray", "image_folder", "gpt")
OPTIONAL = {"lr_suggestion": "benchmarks/lr_suggestion.py is not there"}


def available(name: str) -> str | None:
    """None when ``name`` can run here, else why not."""
    if not (BENCH_DIR / f"{name}.py").exists():
        return OPTIONAL.get(name, f"benchmarks/{name}.py is missing")
    if name == "tune_ray" and importlib.util.find_spec("ray") is None:
        return "ray is not installed (pip install 'trainwise[ray]')"
    if name == "vs_lightning" and importlib.util.find_spec("lightning") is None:
        return "lightning is not installed (pip install -r benchmarks/requirements.txt)"
    return None


def run(name: str, args: argparse.Namespace) -> tuple[int, float]:
    command = [sys.executable, str(BENCH_DIR / f"{name}.py"), "--out", str(args.out), "--threads", str(args.threads)]
    if args.quick:
        command.append("--quick")
    start = time.perf_counter()
    returncode = subprocess.call(command)
    return returncode, time.perf_counter() - start


def summary_table(out: Path, names: list[str]) -> str:
    """A markdown table of the result files of ``names`` found in ``out`` (the latest of each)."""
    rows = ["| benchmark | figure | target | meets target |", "| --- | --- | --- | --- |"]
    for name in names:
        path = out / f"{name}.json"
        if not path.exists():
            continue
        result = json.loads(path.read_text())
        met = result.get("meets_target")
        mark = "yes" if met else ("no" if met is not None else "n/a")
        rows.append(f"| {name} | {result.get('headline', '')} | {result.get('target', '')} | {mark} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny configuration of each (a smoke test)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for every figure (default 2)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results", help="folder for the result files")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these")
    args = parser.parse_args(argv)
    names = list(args.only or BENCHMARKS)
    failed, ran = [], []
    start, load_at_start = time.perf_counter(), os.getloadavg()[0]
    for name in names:
        reason = available(name)
        if reason is not None:
            print(f"== {name}: skipped, {reason}", flush=True)
            continue
        print(f"== {name}", flush=True)
        returncode, seconds = run(name, args)
        print(f"== {name}: {seconds:.0f} s" + ("" if returncode == 0 else f", FAILED (exit {returncode})"), flush=True)
        (failed if returncode else ran).append(name)
    table = summary_table(args.out, list(BENCHMARKS))  # the latest result of each, run now or before
    machine = next((json.loads((args.out / f"{n}.json").read_text())["machine"] for n in ran
                    if (args.out / f"{n}.json").exists()), None)
    header = f"{'Quick run' if args.quick else 'Run'} of {', '.join(ran) or 'nothing'} on " \
             f"{time.strftime('%Y-%m-%d %H:%M')}, {time.perf_counter() - start:.0f} s in all"
    if machine is not None:
        header += f"; {machine['cpus_usable']} CPUs, torch {machine['torch']}, {args.threads} threads"
    header += f"; load average {load_at_start:.1f} at the start"
    text = f"{header}\n\n{table}\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.md").write_text(text)
    print("\n" + text)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
