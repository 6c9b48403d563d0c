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
as they reach the threshold.

The two processes race turn by turn, like the relay of the per-step figures: each runs for
``TURN_SECONDS`` while the other is stopped (SIGSTOP), then they swap (SIGCONT), so both see the
same machine however its load drifts over the minutes a run takes. Each run's time is its own
clock, which stops while it is stopped. The figure is the CLI's time over the hand-written run's.
Target: CLI <= 1.05x the hand-written run.

The recipe is examples/mnist.yaml's own, read from the file (``RECIPE_KEYS``), so the benchmark
measures the shipped example and the hand loop follows it; README.md lists the recipes tried.
Three races of one pair, the order alternating; the figure is the ratio of the medians.

    .venv/bin/python benchmarks/time_to_accuracy.py        # writes results/time_to_accuracy.json
"""

from __future__ import annotations

import csv
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import common  # noqa: E402

TARGET = 1.05
THRESHOLD = 0.99
# The recipe keys read from examples/mnist.yaml (the shipped example, as it is) and handed to hand_run.py.
RECIPE_KEYS = ("model.channels", "model.kernel_size", "model.hidden", "model.norm", "model.dropout",
               "data.batch_size", "optimizer.lr", "optimizer.weight_decay", "train.epochs", "train.grad_clip")
QUICK_RECIPE = {"model.channels": [4, 8], "model.hidden": [16], "data.batch_size": 64, "optimizer.lr": 3e-3,
                "train.epochs": 1}
# Three races of one pair each, raced turn by turn, the order alternating: median of 3 per side.
ORDERS = (("hand", "cli"), ("cli", "hand"), ("hand", "cli"))
QUICK_ORDERS = (("hand", "cli"),)
TURN_SECONDS = 2.0
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


def example_recipe(quick: bool) -> dict[str, Any]:
    """The recipe of examples/mnist.yaml (``RECIPE_KEYS``, defaults filled in), or the quick one over it."""
    from trainwise.config.schema import load_config

    cfg = load_config(common.REPO_ROOT / "examples" / "mnist.yaml", [f"{k}={_yaml(v)}" for k, v in
                                                                      (QUICK_RECIPE if quick else {}).items()])
    values = cfg.to_dict()
    recipe = {}
    for key in RECIPE_KEYS:
        section, name = key.split(".")
        recipe[key] = values[section][name]
    return recipe


def hand_command(npz: Path, recipe: dict[str, Any], threads: int) -> list[str]:
    clip = [] if recipe["train.grad_clip"] is None else ["--grad-clip", str(recipe["train.grad_clip"])]
    return [sys.executable, str(common.BENCH_DIR / "hand_run.py"), "--npz", str(npz),
            "--channels", *map(str, recipe["model.channels"]), "--hidden", *map(str, recipe["model.hidden"]),
            "--kernel-size", str(recipe["model.kernel_size"]), "--norm", recipe["model.norm"],
            "--dropout", str(recipe["model.dropout"]), "--weight-decay", str(recipe["optimizer.weight_decay"]),
            "--batch-size", str(recipe["data.batch_size"]), "--lr", str(recipe["optimizer.lr"]),
            "--eval-batch-size", str(max(recipe["data.batch_size"], 256)),  # the Trainer's default
            "--epochs", str(recipe["train.epochs"]), "--threads", str(threads), *clip]


def _yaml(value: Any) -> str:
    if value is None:
        return "null"
    return "[" + ",".join(map(str, value)) + "]" if isinstance(value, list) else str(value)


def last_val_accuracy(metrics_csv: Path) -> Optional[float]:
    with open(metrics_csv, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "val" and row["metric"] == "accuracy"]
    return float(rows[-1]["value"]) if rows else None


class Contestant:
    """One run of the race: its process, its own clock (the seconds it was let run) and its evaluations."""

    def __init__(self, kind: str, command: list[str], run_dir: Path, log_path: Path, threshold: float) -> None:
        self.kind, self.command, self.run_dir, self.log_path = kind, command, run_dir, log_path
        self.threshold = threshold
        self.process: Optional[subprocess.Popen] = None
        self.clock = 0.0  # seconds run before the current turn
        self.turn_started: Optional[float] = None
        self.evaluations: list[dict[str, Any]] = []
        self.reached: Optional[dict[str, Any]] = None
        self.done = threading.Event()

    def seconds(self) -> float:
        """Seconds this run has been let run so far: its own wall clock, stopped between its turns."""
        started = self.turn_started
        return self.clock + (time.perf_counter() - started if started is not None else 0.0)

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.turn_started = time.perf_counter()
        with open(self.log_path, "w") as stderr:
            self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env,
                                            cwd=common.REPO_ROOT)
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        """Read the run's stdout; time each evaluation; stop the run at the first one >= threshold."""
        for line in self.process.stdout:  # type: ignore[union-attr]
            seconds = self.seconds()
            accuracy = epoch = None
            if self.kind == "cli" and (match := EPOCH_LINE.match(line)):
                epoch, accuracy = int(match.group(1)), last_val_accuracy(self.run_dir / "metrics.csv")
            elif self.kind == "hand" and (match := HAND_LINE.match(line)):
                epoch, accuracy = int(match.group(1)), float(match.group(2))
            if accuracy is None:
                continue
            self.evaluations.append({"epoch": epoch, "seconds": round(seconds, 2), "accuracy": accuracy})
            if accuracy >= self.threshold:
                self.reached = self.evaluations[-1]
                self.process.kill()  # type: ignore[union-attr]
                break
        self.process.wait()  # type: ignore[union-attr]
        self.done.set()

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)
        self.clock, self.turn_started = self.seconds(), None

    def resume(self) -> None:
        self.turn_started = time.perf_counter()
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        if not self.done.is_set():
            try:
                os.kill(self.process.pid, signum)  # type: ignore[union-attr]
            except ProcessLookupError:  # it ended between the check and the signal
                pass

    def result(self) -> dict[str, Any]:
        code = self.process.returncode  # type: ignore[union-attr]
        if self.reached is None and code != 0:
            raise RuntimeError(f"{self.kind} run failed with exit code {code}:\n{self.log_path.read_text()[-2000:]}")
        return {"seconds": self.reached["seconds"] if self.reached else None,
                "epoch": self.reached["epoch"] if self.reached else None, "evaluations": self.evaluations}


def race(contestants: list[Contestant], turn_seconds: float) -> None:
    """Run the contestants' processes in turns of ``turn_seconds``, the others stopped (SIGSTOP), until
    each has reached its threshold or ended: every run sees the same machine, turn after turn."""
    while not all(c.done.is_set() for c in contestants):
        for contestant in contestants:
            if contestant.done.is_set():
                continue
            if contestant.process is None:
                contestant.start()
            else:
                contestant.resume()
            contestant.done.wait(turn_seconds)
            contestant.pause()


def main(argv: list[str] | None = None) -> int:
    args = common.base_parser(__doc__.splitlines()[0]).parse_args(argv)
    recipe, orders = example_recipe(args.quick), QUICK_ORDERS if args.quick else ORDERS
    threshold = 0.0 if args.quick else THRESHOLD
    runs: dict[str, list[dict[str, Any]]] = {"hand": [], "cli": []}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        npz = build_npz(args.mnist_root, folder / "mnist_test_as_val.npz", limit=2000 if args.quick else None)
        for race_index, order in enumerate(orders):
            contestants = []
            for index, kind in enumerate(order):
                run_dir = folder / f"run-{race_index}-{index}"
                command = (cli_command(npz, recipe, run_dir, args.threads) if kind == "cli"
                           else hand_command(npz, recipe, args.threads))
                contestants.append(Contestant(kind, command, run_dir, folder / f"{kind}-{race_index}.log", threshold))
            race(contestants, TURN_SECONDS)
            for contestant in contestants:
                runs[contestant.kind].append(contestant.result())
                print(f"  race {race_index + 1}: {contestant.kind} {runs[contestant.kind][-1]['seconds']} s", flush=True)
            write(args, recipe, threshold, orders, runs)  # after each race: a run stopped early keeps its races
    return 0


def write(args: Any, recipe: dict[str, Any], threshold: float, orders: Any, runs: dict[str, list]) -> None:
    medians = {kind: _median([r["seconds"] for r in results]) for kind, results in runs.items()}
    ratio = round(medians["cli"] / medians["hand"], 4) if None not in medians.values() else None
    payload = {
        "figure": f"seconds from command start to the first evaluation at >= {threshold:.1%} MNIST test accuracy",
        "headline": f"cli {medians['cli']} s / hand {medians['hand']} s = {ratio}x "
                    f"({len(runs['cli'])} of {len(orders)} races)",
        "target": f"cli <= {TARGET}x hand", "meets_target": ratio is not None and ratio <= TARGET,
        "ratio": ratio, "seconds": medians, "runs": runs, "races_done": len(runs["cli"]),
        "fastest_recipe": {"seconds": medians["cli"], "cli_overrides": cli_command(Path("MNIST.npz"), recipe,
                                                                                   Path("RUN"), args.threads)[3:]},
        "config": {"recipe": recipe, "threshold": threshold, "orders": [list(o) for o in orders], "threads": args.threads,
                   "turn_seconds": TURN_SECONDS},
        "machine": common.machine_info(), "quick": args.quick,
    }
    common.write_result(args.out, "time_to_accuracy", payload)


def _median(values: list[Optional[float]]) -> Optional[float]:
    return None if not values or None in values else round(statistics.median(values), 2)


if __name__ == "__main__":
    sys.exit(main())
