"""What a search adds to each trial, against a 3-epoch MNIST-1D trial (examples/mnist1d.yaml's CNN).

(a) Between trials: from the last optimizer step of one trial to the first step of the next, in one
    worker — the trial's last validation, checkpoint and summary, telling the study, the study
    lock, failing stale trials, asking for the next trial, building its config, model and Trainer.
    Target: <= 10% of a trial's training time (first to last step), median over trials.
(b) Process start to first step, once per worker process: imports, opening the study storage,
    loading the data set, building the first trial — measured as the process's wall time minus
    the trial's fit; shown beside ``trainwise train``'s, measured the same way, and amortized over
    the trials a worker runs.

    python benchmarks/tune_overhead.py            # 5 trials in one worker, 2 processes each of tune/train
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from common import REPO_ROOT, base_parser, machine_info, pin_threads, quiet_logs, write_result

EXAMPLE = REPO_ROOT / "examples" / "mnist1d.yaml"


def trial_config(epochs: int) -> dict[str, Any]:
    config = yaml.safe_load(EXAMPLE.read_text())
    config.pop("tune", None)
    config["optimizer"]["lr"] = 3.0e-3
    config["train"].update({"epochs": epochs, "report": False, "threads": 1, "early_stopping": {"enabled": False}})
    config["tune"] = {"metric": "val_accuracy", "sampler": "random", "pruner": "none",
                      "space": {"optimizer.weight_decay": {"log_uniform": [1.0e-5, 1.0e-2]}}}
    return config


def between_trials(trials: int, epochs: int, folder: Path) -> dict[str, Any]:
    from trainwise.tune.api import config_job
    from trainwise.tune.trial import TrialReporter
    from trainwise.tune.worker import run_worker

    marks: list[dict[str, float]] = []

    class Timed(TrialReporter):
        def __init__(self, inner: TrialReporter) -> None:
            super().__init__(inner.trial, inner.metric, inner.pruner)
            self.mark: dict[str, float] = {}
            marks.append(self.mark)

        def on_batch_start(self, trainer: Any, batch: Any) -> None:
            self.mark.setdefault("first_step", time.perf_counter())

        def on_step_end(self, trainer: Any) -> None:
            self.mark["last_step"] = time.perf_counter()

    job = config_job(trial_config(epochs), {"trials": trials, "seed": 0}, study="overhead", storage=None,
                     study_dir=folder / "study")
    inner = job.objective

    def timed(trial: Any) -> Any:
        trial.callback = Timed(trial.callback)
        return inner(trial)

    job.objective = timed
    run_worker(job)
    gaps = [b["first_step"] - a["last_step"] for a, b in zip(marks, marks[1:])]
    training = [m["last_step"] - m["first_step"] for m in marks]
    return {"gap_seconds": [round(g, 3) for g in gaps], "trial_seconds": [round(t, 3) for t in training],
            "ratio": statistics.median(gaps) / statistics.median(training)}


def process_start(command: str, epochs: int, folder: Path, index: int) -> float:
    """Wall time of one process minus its trial's fit (imports, storage, data, model, results)."""
    config = trial_config(epochs)
    config["tune"]["trials"] = 1
    path = folder / f"{command}-{index}.yaml"
    path.write_text(yaml.safe_dump(config))
    run_dir = folder / f"{command}-{index}"
    args = ([sys.executable, "-m", "trainwise", "tune", str(path), "--study-dir", str(run_dir), "--study", f"s{index}"]
            if command == "tune" else
            [sys.executable, "-m", "trainwise", "train", str(path), "--run-dir", str(run_dir), "--quiet"])
    began = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, cwd=folder)
    wall = time.perf_counter() - began
    summary = run_dir / "trial-0" / "summary.json" if command == "tune" else run_dir / "summary.json"
    return wall - json.loads(summary.read_text())["wall_seconds"]


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--processes", type=int, default=2, help="processes each of tune and train for (b)")
    args = parser.parse_args(argv)
    pin_threads(1)
    quiet_logs()
    trials, epochs, processes = (2, 1, 1) if args.quick else (args.trials, 3, args.processes)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        inside = between_trials(trials, epochs, folder)
        starts: dict[str, list[float]] = {"tune": [], "train": []}
        for i in range(processes):  # interleaved, so a busy spell hits both
            for command in ("tune", "train"):
                starts[command].append(process_start(command, epochs, folder, i))
    trial = statistics.median(inside["trial_seconds"])
    tune_start, train_start = statistics.median(starts["tune"]), statistics.median(starts["train"])
    headline = (f"between trials {statistics.median(inside['gap_seconds']):.2f} s = {100 * inside['ratio']:.1f}% of a "
                f"{epochs}-epoch trial ({trial:.2f} s of training); process start {tune_start:.1f} s once per "
                f"worker (trainwise train {train_start:.1f} s) = {100 * tune_start / (trials * trial):.0f}% over "
                f"{trials} trials")
    write_result(args.out, "tune_overhead", {
        "figure": {"between_trials": inside, "process_start_seconds": starts,
                   "process_start_vs_trial": round(tune_start / trial, 3),
                   "tune_start_minus_train_start_seconds": round(tune_start - train_start, 2)},
        "headline": headline, "target": "between-trial overhead <= 10% of a 3-epoch MNIST-1D trial",
        "meets_target": bool(inside["ratio"] <= 0.10),
        "config": {"trials": trials, "epochs": epochs, "model": "examples/mnist1d.yaml CNN", "processes": processes},
        "quick": args.quick, "machine": machine_info()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
