"""DDP throughput — two processes of one thread each (``trainwise train CONFIG --nproc 2``) against
one process of two threads (``train.threads=2``), same config and global batch, on this machine.

Each contestant is a real ``trainwise train`` run of the digits MLP (examples/digits.yaml's model,
no dropout, fixed lr, no early stopping, no report); the figure is ``train_samples_per_second``
from its summary.json (optimizer steps only: no start-up, evaluation or checkpoints), the global
samples per second. A third contestant, one process of one thread, is the control: DDP against it
is the scaling over one core. Contestants alternate (the order reverses every round) so
neighbouring runs see the same load; the headline is the median over rounds of the per-round
ratio DDP / 1x2 threads (and DDP / 1x1). There is
no target: it is a report of what DDP costs or gains on a CPU whose cores the ranks share.

    .venv/bin/python benchmarks/ddp_throughput.py              # writes results/ddp_throughput.json
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

FULL = {"rounds": 2, "epochs": 8, "batch_sizes": [256, 64]}
QUICK = {"rounds": 1, "epochs": 1, "batch_sizes": [64]}
CONTESTANTS = ("ddp_2x1", "single_1x2", "single_1x1")  # the last: the control, one process of one thread


def config(batch_size: int, epochs: int) -> dict[str, Any]:
    return {"name": "ddp-bench", "seed": 0,
            "data": {"dataset": "digits", "batch_size": batch_size, "val_fraction": 0.1, "test_fraction": 0.2},
            "model": {"name": "mlp", "hidden": [256, 128], "dropout": 0.0},
            "optimizer": {"name": "adamw", "lr": 3.0e-3},
            "train": {"epochs": epochs, "report": False, "early_stopping": {"enabled": False},
                      "checkpoint": {"every_epoch": False}}}


def run(contestant: str, config_path: Path, run_dir: Path) -> float:
    """One training run; its global training samples per second."""
    env = dict(os.environ, PYTHONPATH=str(common.REPO_ROOT / "src"))
    command = [sys.executable, "-m", "trainwise", "train", str(config_path), "--quiet", "--run-dir", str(run_dir)]
    if contestant == "ddp_2x1":
        env["OMP_NUM_THREADS"] = "1"
        command += ["--nproc", "2"]
    else:
        threads = contestant[-1]
        env["OMP_NUM_THREADS"] = threads
        command.append(f"train.threads={threads}")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"{contestant} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return float(json.loads((run_dir / "summary.json").read_text())["train_samples_per_second"])


def measure(batch_size: int, epochs: int, rounds: int, work: Path) -> dict[str, Any]:
    config_path = work / f"batch-{batch_size}.yaml"
    config_path.write_text(json.dumps(config(batch_size, epochs)))  # JSON is YAML
    speeds: dict[str, list[float]] = {name: [] for name in CONTESTANTS}
    for index in range(rounds):
        order = CONTESTANTS if index % 2 == 0 else tuple(reversed(CONTESTANTS))
        for name in order:
            speeds[name].append(run(name, config_path, work / f"{name}-{batch_size}-{index}"))
    def ratios(other: str) -> dict[str, Any]:
        return common.ratio_summary([ddp / single for ddp, single in zip(speeds["ddp_2x1"], speeds[other])])

    return {"batch_size": batch_size, "samples_per_second": speeds,
            "median_samples_per_second": {name: round(statistics.median(v), 1) for name, v in speeds.items()},
            "ddp_over_single": ratios("single_1x2"), "ddp_over_one_thread": ratios("single_1x1")}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = common.base_parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    cases: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        for batch in plan["batch_sizes"]:  # the file is rewritten after each batch size: a cut-short run keeps its cases
            cases.append(measure(batch, plan["epochs"], plan["rounds"], Path(folder)))
            write(args, plan, cases, complete=len(cases) == len(plan["batch_sizes"]))
    return 0


def write(args: Any, plan: dict[str, Any], cases: list[dict[str, Any]], complete: bool) -> None:
    headline = ", ".join(f"batch {c['batch_size']}: DDP 2x1 {c['median_samples_per_second']['ddp_2x1']:,.0f} vs "
                         f"1x2 {c['median_samples_per_second']['single_1x2']:,.0f} samples/s "
                         f"(x{c['ddp_over_single']['median']}; 1x1 {c['median_samples_per_second']['single_1x1']:,.0f}, "
                         f"x{c['ddp_over_one_thread']['median']})" for c in cases)
    for case in cases[-1:]:
        print(f"batch {case['batch_size']:>4}  " + "  ".join(
            f"{name} {case['median_samples_per_second'][name]:>9,.0f}/s" for name in CONTESTANTS)
            + f"  DDP/1x2 {case['ddp_over_single']['median']}  DDP/1x1 {case['ddp_over_one_thread']['median']}")
    payload = {
        "figure": "global training samples/s, 2 DDP processes x 1 thread over 1 process x 2 threads, and over "
                  "1 process x 1 thread (digits MLP 256-128, same global batch; median over rounds, order reversed "
                  "every round)",
        "headline": headline, "target": "none (a report)", "meets_target": None, "quick": args.quick,
        "complete": complete,
        "cases": cases, "plan": plan,
        "note": "the machine is shared with other work (other helpers' tests and benchmarks may run at the same "
                "time): read the ratio, not the absolute samples/s",
        "machine": common.machine_info()}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "ddp_throughput.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"ddp_throughput: {headline}  (no target)  -> {path}")


if __name__ == "__main__":
    raise SystemExit(main())
