"""What the defaults cost (issue 22): the share of a default run that the lr range test takes
(``optimizer.lr=auto`` on ``examples/digits.yaml`` and ``examples/mnist.yaml``, as a user runs them),
and the share checkpointing takes with the save cadence chosen by the cost of a save.

Each run goes through the CLI's ``train`` command in this process. The range test's share is its
steps against the run's optimizer steps (a test step is a training step: forward, backward, update on
a training batch) and, in time, the run's ``setup`` phase (data checks, model probe and the range
test) from summary.json's timings. A second run of the same config then shows the cache: its
range test is read, not run. Targets: range test <= 10% of the run's wall time (its own seconds, a retry
included, from summary.json's lr_finder); checkpointing <= 10%. The share of the steps actually run is
recorded beside it (``meets_in_steps``): the budget is 10% of the *planned* steps, so a run that early
stopping ends sooner shows a larger step share.

    .venv/bin/python benchmarks/defaults_cost.py [digits|mnist ...]   # writes results/defaults_cost.json
    MNIST_ROOT=/path/to/mnist .venv/bin/python benchmarks/defaults_cost.py mnist
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"digits": ROOT / "examples" / "digits.yaml", "mnist": ROOT / "examples" / "mnist.yaml"}


def train(config: Path, run_dir: Path) -> dict:
    from trainwise.cli import main

    # examples/mnist.yaml finds the data relative to itself; a worktree elsewhere names it with MNIST_ROOT
    root = [f"data.root={os.environ['MNIST_ROOT']}"] if config.stem == "mnist" and os.environ.get("MNIST_ROOT") else []
    start = time.perf_counter()
    code = main(["train", str(config), "optimizer.lr=auto", *root, "--run-dir", str(run_dir), "--quiet"])
    if code != 0:
        raise SystemExit(f"{config.name}: train exited {code}")
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["measured_wall"] = time.perf_counter() - start
    return summary


def figures(summary: dict) -> dict:
    timings, finder = summary["timings"], summary.get("lr_finder") or {}
    steps = finder.get("num_steps")
    return {"steps": summary["steps"], "range_test_steps": steps, "reused": "reused_from_cache" in finder,
            "range_test_step_share": round(steps / summary["steps"], 4) if steps and not finder.get(
                "reused_from_cache") else 0.0,
            "range_test_seconds": finder.get("seconds"),
            "range_test_time_share": round(finder["seconds"] / timings["wall_seconds"], 4) if finder.get("seconds")
            and not finder.get("reused_from_cache") else 0.0,
            "setup_share": timings["fractions"]["setup"], "checkpoint_share": timings["fractions"]["checkpoint"],
            "wall_seconds": timings["wall_seconds"], "lr": summary.get("lr"),
            "test_accuracy": summary.get("test_accuracy"), "bottleneck": timings["bottleneck"]}


def main(names: list[str]) -> int:
    results = {}
    with tempfile.TemporaryDirectory(prefix="defaults-cost-") as tmp:
        for name in names:
            first = figures(train(CONFIGS[name], Path(tmp) / f"{name}-1"))
            again = figures(train(CONFIGS[name], Path(tmp) / f"{name}-2"))
            results[name] = {"first_run": first, "rerun": again,
                             "meets": first["range_test_time_share"] <= 0.10 and first["checkpoint_share"] <= 0.10,
                             "meets_in_steps": first["range_test_step_share"] <= 0.10}
            print(name, json.dumps(results[name], indent=1), flush=True)
    out = Path(__file__).parent / "results" / "defaults_cost.json"
    previous = json.loads(out.read_text()) if out.exists() else {}
    out.write_text(json.dumps({**previous, **results}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if all(r["meets"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or list(CONFIGS)))
