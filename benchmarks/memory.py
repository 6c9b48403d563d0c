"""Figure 6 — memory: peak resident memory (``ru_maxrss`` of the child process) of
``trainwise train examples/mnist.yaml`` vs the hand-written run (``hand_run.py``) of the same recipe.

Both load MNIST from the IDX files (54,000 train / 6,000 val / 10,000 test), train the CNN of
``examples/mnist.yaml`` for ``train.max_steps`` steps (peak memory is reached in the first steps:
the data, the model, the optimizer state and one batch's activations are all there by then),
evaluate on val and test, and save their state. The CLI also does everything it does for a
user: run folder, metrics, checksummed checkpoints, early-stopping weights, the HTML report with
its plots. Runs alternate hand, CLI, CLI, hand; the figure is the ratio of the median peaks.
Target <= 1.15x.

    .venv/bin/python benchmarks/memory.py                   # writes results/memory.json
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TARGET = 1.15
STEPS, QUICK_STEPS = 30, 5
# examples/mnist.yaml's recipe as hand_run.py arguments (keep the two in step)
EXAMPLE_ARGS = ("--channels", "16", "32", "--hidden", "--kernel-size", "5", "--dropout", "0", "--batch-size", "256",
                "--lr", "0.02", "--weight-decay", "0.01")
ORDER = ("hand", "cli", "cli", "hand")
QUICK_ORDER = ("hand", "cli")


def peak_rss_mb(command: list[str], log_path: Path) -> float:
    """Run ``command`` to the end; its peak resident memory in MB (Linux reports ru_maxrss in KiB)."""
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, cwd=common.REPO_ROOT)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = log_path.read_text()[-2000:]
        raise RuntimeError(f"{' '.join(command[:3])} failed with exit code {process.returncode}:\n{tail}")
    return usage.ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    args = common.base_parser(__doc__.splitlines()[0]).parse_args(argv)
    steps, order = (QUICK_STEPS, QUICK_ORDER) if args.quick else (STEPS, ORDER)
    peaks: dict[str, list[float]] = {"hand": [], "cli": []}
    with tempfile.TemporaryDirectory() as scratch:
        for index, kind in enumerate(order):
            if kind == "cli":
                command = [str(Path(sys.executable).with_name("trainwise")), "train",
                           str(common.REPO_ROOT / "examples" / "mnist.yaml"), f"data.root={args.mnist_root}",
                           f"train.threads={args.threads}", f"train.max_steps={steps}",
                           "--run-dir", str(Path(scratch) / f"run-{index}")]
            else:
                command = [sys.executable, str(common.BENCH_DIR / "hand_run.py"), "--idx", str(args.mnist_root),
                           "--max-steps", str(steps), "--threads", str(args.threads), *EXAMPLE_ARGS]
            peaks[kind].append(round(peak_rss_mb(command, Path(scratch) / f"{kind}-{index}.log"), 1))
    medians = {kind: statistics.median(values) for kind, values in peaks.items()}
    ratio = round(medians["cli"] / medians["hand"], 4)
    payload: dict[str, Any] = {
        "figure": "peak RSS of `trainwise train examples/mnist.yaml` / peak RSS of the hand-written run",
        "headline": f"cli {medians['cli']:.0f} MB / hand {medians['hand']:.0f} MB = {ratio}x",
        "target": f"<= {TARGET}x", "meets_target": ratio <= TARGET, "ratio": ratio, "peak_rss_mb": peaks,
        "config": {"config": "examples/mnist.yaml", "max_steps": steps, "order": list(order), "threads": args.threads},
        "machine": common.machine_info(), "quick": args.quick,
    }
    common.write_result(args.out, "memory", payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
