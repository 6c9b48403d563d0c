"""Checkpointing's share of the default digits run, and where one save's time goes.

Two parts, each run side by side for the code under test (this checkout's ``src``) and, when
``--baseline-src`` names another ``src`` folder (e.g. ``git archive`` of an older commit), for it:

1. **Share**: ``trainwise train examples/digits.yaml`` with its defaults, from a fresh temporary
   folder, ``--runs`` times per contestant, the contestants alternating run by run so that both see
   the same load. The figure is the run's own time breakdown (``summary.json`` ``timings``):
   checkpoint seconds / wall seconds; median over runs.
2. **Anatomy**: in the last run of each contestant (it counts in the medians too; the wrappers
   cost microseconds per call), the os calls of every save are counted and timed
   (``os.fsync``, ``os.replace``, ``os.link``, ``os.unlink``, the bytes written): per save, the
   fsyncs, renames, links, unlinks, bytes and seconds, split by saves that moved ``best.pt``
   and saves that did not.

    .venv/bin/python benchmarks/checkpoint_share.py --baseline-src /tmp/base/src --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DIGITS = REPO_ROOT / "examples" / "digits.yaml"
TARGET = 0.10  # checkpointing's share of the run (issue 22)


def child(config: str, run_dir: str, out: str) -> None:
    """One instrumented run in this process: count and time the os calls each save makes."""
    import builtins

    from trainwise.cli import main as cli_main
    from trainwise.engine import resume

    counts: dict[str, Any] = {}
    saves: list[dict[str, Any]] = []

    def counted(name: str, function: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                counts[name] = counts.get(name, 0) + 1
                counts[name + "_s"] = counts.get(name + "_s", 0.0) + time.perf_counter() - start
        return wrapper

    for name in ("fsync", "replace", "link", "unlink"):
        setattr(os, name, counted(name, getattr(os, name)))
    real_open = builtins.open

    def counting_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_open(file, mode, *args, **kwargs)
        if "w" in mode and "b" in mode and ".trainwise-tmp" in str(file):
            write = handle.write

            def counted_write(data: Any) -> int:
                counts["bytes"] = counts.get("bytes", 0) + memoryview(data).nbytes
                return write(data)
            handle.write = counted_write
        return handle

    builtins.open = counting_open
    save = resume.Checkpointer.save

    def timed_save(self: Any, state: dict[str, Any], *, step: int, epoch: int, best: bool = False) -> Path:
        counts.clear()
        start = time.perf_counter()
        try:
            return save(self, state, step=step, epoch=epoch, best=best)
        finally:
            saves.append({"step": step, "best": best, "seconds": time.perf_counter() - start, **counts})

    resume.Checkpointer.save = timed_save
    try:
        cli_main(["train", config, "--run-dir", run_dir])
    except SystemExit:
        pass
    builtins.open = real_open
    Path(out).write_text(json.dumps(saves))


def run_digits(src: Path, work: Path, instrument: bool) -> dict[str, Any]:
    shutil.copy(DIGITS, work / "digits.yaml")
    env = {**os.environ, "PYTHONPATH": str(src)}
    if instrument:
        command = [sys.executable, __file__, "--child", "digits.yaml", "r", "saves.json"]
    else:
        command = [sys.executable, "-m", "trainwise", "train", "digits.yaml", "--run-dir", "r"]
    proc = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=1800, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"digits run failed ({src}):\n{proc.stderr[-3000:]}")
    summary = json.loads((work / "r" / "summary.json").read_text())
    timings = summary["timings"]
    result = {"wall_seconds": timings["wall_seconds"], "checkpoint_seconds": timings["seconds"]["checkpoint"],
              "checkpoint_share": timings["fractions"]["checkpoint"], "epochs": summary["epochs_run"],
              "best_epoch": summary["best_epoch"], "test_accuracy": summary.get("test_accuracy")}
    if instrument:
        result["saves"] = json.loads((work / "saves.json").read_text())
    return result


def anatomy(saves: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per save of each count and time, for saves that moved best.pt and those that did not."""
    table = {}
    for label, group in (("best", [s for s in saves if s["best"]]), ("last_only", [s for s in saves if not s["best"]])):
        if not group:
            continue
        keys = sorted({key for save in group for key in save if key not in ("step", "best")})
        table[label] = {"saves": len(group), **{key: round(statistics.median(s.get(key, 0) for s in group), 6)
                                                for key in keys}}
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=5, help="plain runs per contestant (default 5)")
    parser.add_argument("--baseline-src", type=Path, help="the src folder of the code to compare with")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "checkpoint_share.json")
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    contestants = {"current": REPO_ROOT / "src"}
    if args.baseline_src:
        contestants = {"baseline": args.baseline_src.resolve(), **contestants}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in contestants}
    for index in range(args.runs):  # the last round is the instrumented one
        for name, src in contestants.items():
            with tempfile.TemporaryDirectory() as work:
                runs[name].append(run_digits(src, Path(work), instrument=index == args.runs - 1))
                print(name, index, round(runs[name][-1]["checkpoint_share"], 4), flush=True)
    result: dict[str, Any] = {"benchmark": "checkpoint_share", "config": "examples/digits.yaml (defaults)",
                              "target": TARGET, "load_average_end": [round(x, 2) for x in os.getloadavg()],
                              "cpu_count": os.cpu_count()}
    for name, items in runs.items():
        plain = items
        result[name] = {
            "src": str(contestants[name]),
            "checkpoint_share_median": statistics.median(r["checkpoint_share"] for r in plain),
            "checkpoint_seconds_median": statistics.median(r["checkpoint_seconds"] for r in plain),
            "wall_seconds_median": statistics.median(r["wall_seconds"] for r in plain),
            "runs": [{k: v for k, v in run.items() if k != "saves"} for run in plain],
            "per_save": anatomy(items[-1]["saves"]), "saves": items[-1]["saves"],
        }
    if args.baseline_src:
        result["share_ratio_current_over_baseline"] = (
            result["current"]["checkpoint_share_median"] / result["baseline"]["checkpoint_share_median"])
    result["meets"] = result["current"]["checkpoint_share_median"] <= TARGET
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({name: result[name]["per_save"] for name in contestants}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
