"""Figure 4 — time to accuracy: wall seconds from command start to the first evaluation at >= 99.0%
MNIST test accuracy, ``trainwise train`` (the CLI, a subprocess) vs the hand-written run
(``hand_run.py``, a subprocess) with the same recipe.

To evaluate test accuracy after every epoch through the unmodified CLI, the data go in as an
``.npz`` built from the IDX files: ``x, y`` = the 60,000 training images, ``x_val, y_val`` =
``x_test, y_test`` = the 10,000 test images. The CLI's per-epoch validation is then the test
accuracy; the exact value is read from the run's ``metrics.csv`` when the epoch line appears on
stdout. The hand-written run reads the same ``.npz``, trains on the same 60,000 images in the same
order from the same initial weights, and prints its test accuracy after each epoch. Both start
from a cold ``python`` (imports, data loading and everything else count), and are stopped as soon
as they reach the threshold. One hand run, then one CLI run (a pair is what fits the 15 minutes
of ``make bench``); the figure is the ratio of their times. Target: CLI <= 1.05x the hand-written run.

The recipe (``RECIPE``) is the fastest found for the CLI on 2 CPU cores; README.md lists the
others tried.

    .venv/bin/python benchmarks/time_to_accuracy.py        # writes results/time_to_accuracy.json
"""

from __future__ import annotations

import csv
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import common  # noqa: E402

TARGET = 1.05
THRESHOLD = 0.99
# The recipe, as CLI overrides of examples/mnist.yaml, and the same as hand_run.py arguments.
RECIPE = {"model.channels": [32, 64], "model.hidden": [128], "data.batch_size": 128, "optimizer.lr": 3e-3,
          "train.epochs": 3}
QUICK_RECIPE = {"model.channels": [4, 8], "model.hidden": [16], "data.batch_size": 64, "optimizer.lr": 3e-3,
                "train.epochs": 1}
ORDER = ("hand", "cli")  # one pair: each run trains ~3 epochs of the CNN, the long part of make bench
QUICK_ORDER = ("hand", "cli")
EPOCH_LINE = re.compile(r"^epoch (\d+)/\d+ ")
HAND_LINE = re.compile(r"^epoch (\d+) step \d+ eval_accuracy ([0-9.]+)")


def build_npz(root: Path, path: Path, limit: Optional[int] = None) -> Path:
    """The IDX files as one npz whose validation (and test) split is MNIST's test set."""
    from hand_run import read_idx

    x = read_idx(root / "train-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28)
    y = read_idx(root / "train-labels-idx1-ubyte.gz", 8).astype(np.int64)
    x_test = read_idx(root / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28)
    y_test = read_idx(root / "t10k-labels-idx1-ubyte.gz", 8).astype(np.int64)
    if limit is not None:
        x, y, x_test, y_test = x[:limit], y[:limit], x_test[:limit // 4], y_test[:limit // 4]
    np.savez(path, x=x, y=y, x_val=x_test, y_val=y_test, x_test=x_test, y_test=y_test)
    return path


def cli_command(npz: Path, recipe: dict[str, Any], run_dir: Path, threads: int) -> list[str]:
    overrides = [f"{key}={_yaml(value)}" for key, value in recipe.items()]
    config = common.REPO_ROOT / "examples" / "mnist.yaml"
    return [str(Path(sys.executable).with_name("trainwise")), "train", str(config), "data.dataset=npz",
            f"data.path={npz}", "data.root=null", f"train.threads={threads}", *overrides, "--run-dir", str(run_dir)]


def hand_command(npz: Path, recipe: dict[str, Any], threads: int) -> list[str]:
    return [sys.executable, str(common.BENCH_DIR / "hand_run.py"), "--npz", str(npz),
            "--channels", *map(str, recipe["model.channels"]), "--hidden", *map(str, recipe["model.hidden"]),
            "--batch-size", str(recipe["data.batch_size"]), "--lr", str(recipe["optimizer.lr"]),
            "--eval-batch-size", str(max(recipe["data.batch_size"], 256)),  # the Trainer's default
            "--epochs", str(recipe["train.epochs"]), "--threads", str(threads)]


def _yaml(value: Any) -> str:
    return "[" + ",".join(map(str, value)) + "]" if isinstance(value, list) else str(value)


def last_val_accuracy(metrics_csv: Path) -> Optional[float]:
    with open(metrics_csv, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "val" and row["metric"] == "accuracy"]
    return float(rows[-1]["value"]) if rows else None


def time_run(kind: str, command: list[str], run_dir: Optional[Path], threshold: float,
             log_path: Path) -> dict[str, Any]:
    """Start ``command``, watch its per-epoch evaluations, stop it at the first one >= threshold."""
    evaluations = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    with open(log_path, "w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env,
                                   cwd=common.REPO_ROOT)
        for line in process.stdout:  # type: ignore[union-attr]
            seconds = time.perf_counter() - start
            accuracy = epoch = None
            if kind == "cli" and (match := EPOCH_LINE.match(line)):
                epoch, accuracy = int(match.group(1)), last_val_accuracy(run_dir / "metrics.csv")
            elif kind == "hand" and (match := HAND_LINE.match(line)):
                epoch, accuracy = int(match.group(1)), float(match.group(2))
            if accuracy is None:
                continue
            evaluations.append({"epoch": epoch, "seconds": round(seconds, 2), "accuracy": accuracy})
            if accuracy >= threshold:
                process.kill()
                break
        process.wait()
    reached = next((e for e in evaluations if e["accuracy"] >= threshold), None)
    if reached is None and process.returncode not in (0, -9):
        raise RuntimeError(f"{kind} run failed with exit code {process.returncode}; see {log_path}")
    return {"seconds": reached["seconds"] if reached else None, "epoch": reached["epoch"] if reached else None,
            "evaluations": evaluations}


def main(argv: list[str] | None = None) -> int:
    args = common.base_parser(__doc__.splitlines()[0]).parse_args(argv)
    recipe, order = (QUICK_RECIPE, QUICK_ORDER) if args.quick else (RECIPE, ORDER)
    threshold = 0.0 if args.quick else THRESHOLD
    runs: dict[str, list[dict[str, Any]]] = {"hand": [], "cli": []}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        npz = build_npz(args.mnist_root, folder / "mnist_test_as_val.npz", limit=2000 if args.quick else None)
        for index, kind in enumerate(order):
            run_dir = folder / f"run-{index}"
            command = (cli_command(npz, recipe, run_dir, args.threads) if kind == "cli"
                       else hand_command(npz, recipe, args.threads))
            runs[kind].append(time_run(kind, command, run_dir, threshold, folder / f"{kind}-{index}.log"))
            print(f"  {kind}: {runs[kind][-1]['seconds']} s", flush=True)
    medians = {kind: _median([r["seconds"] for r in results]) for kind, results in runs.items()}
    ratio = round(medians["cli"] / medians["hand"], 4) if None not in medians.values() else None
    payload = {
        "figure": f"seconds from command start to the first evaluation at >= {threshold:.1%} MNIST test accuracy",
        "headline": f"cli {medians['cli']} s / hand {medians['hand']} s = {ratio}x",
        "target": f"cli <= {TARGET}x hand", "meets_target": ratio is not None and ratio <= TARGET,
        "ratio": ratio, "seconds": medians, "runs": runs,
        "fastest_recipe": {"seconds": medians["cli"], "cli_overrides": cli_command(Path("MNIST.npz"), recipe,
                                                                                   Path("RUN"), args.threads)[3:]},
        "config": {"recipe": recipe, "threshold": threshold, "order": list(order), "threads": args.threads},
        "machine": common.machine_info(), "quick": args.quick,
    }
    common.write_result(args.out, "time_to_accuracy", payload)
    return 0


def _median(values: list[Optional[float]]) -> Optional[float]:
    return None if not values or None in values else round(statistics.median(values), 2)


if __name__ == "__main__":
    sys.exit(main())
