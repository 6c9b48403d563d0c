"""The Ray backend of trainwise tune, measured on MNIST-1D (examples/mnist1d.yaml's CNN).

(a) Per-trial overhead: the same study of 3-epoch trials (random sampler, no pruner, one trial at
    a time) on the Optuna backend (one worker) and on a local Ray (tune.resources cpu 2 of 2, so
    trials run one after another), side by side in this process. Per-trial time = the study's wall
    time / trials; Ray's session start is measured apart (paid once per search, or never when
    joining a running cluster). Target: Ray / Optuna <= 1.2.
(b) PBT against random search at equal compute: a population of 4 trials of ``epochs`` epochs
    each (PBT perturbs lr, weight decay and dropout every ``interval`` epochs, synchronously)
    against 4 random-search trials of the same length, on the same space and seed: the same
    number of epochs trained. Compared: the best trial's val accuracy and its test accuracy.

    python benchmarks/tune_ray.py                 # (a) 4 trials per backend, (b) 4 x 8 epochs
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from common import REPO_ROOT, base_parser, machine_info, write_result

EXAMPLE = REPO_ROOT / "examples" / "mnist1d.yaml"
SPACE = {"optimizer.lr": {"log_uniform": [3.0e-4, 3.0e-2]}, "optimizer.weight_decay": {"log_uniform": [1.0e-5, 1.0e-1]},
         "model.dropout": {"uniform": [0.0, 0.3]}}


def config(folder: Path, epochs: int, tune: dict[str, Any]) -> Path:
    cfg = yaml.safe_load(EXAMPLE.read_text())
    cfg["optimizer"]["lr"] = 3.0e-3
    cfg["train"].update({"epochs": epochs, "report": False, "threads": 1, "early_stopping": {"enabled": False}})
    cfg["tune"] = {"metric": "val_accuracy", "sampler": "random", "pruner": "none", "seed": 0, "space": SPACE, **tune}
    path = folder / f"{tune.get('backend', 'optuna')}-{tune.get('scheduler', 'none')}-{epochs}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def timed_study(path: Path, folder: Path, **kwargs: Any) -> tuple[float, Any]:
    import trainwise

    start = time.perf_counter()
    result = trainwise.tune(str(path), study_dir=folder, plots=False, **kwargs)
    return time.perf_counter() - start, result


def overhead(folder: Path, trials: int) -> dict[str, Any]:
    import ray

    optuna_cfg = config(folder, 3, {"trials": trials})
    ray_cfg = config(folder, 3, {"trials": trials, "backend": "ray", "resources": {"cpu": 2}})
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray_start = time.perf_counter() - start
    try:
        ray_seconds, ray_result = timed_study(ray_cfg, folder / "ray")
    finally:
        ray.shutdown()
    optuna_seconds, optuna_result = timed_study(optuna_cfg, folder / "optuna")
    fit = {name: [r["seconds"] for r in result.rows] for name, result in (("optuna", optuna_result),
                                                                          ("ray", ray_result))}
    return {"trials": trials, "epochs": 3, "ray_session_start_seconds": round(ray_start, 2),
            "study_seconds": {"optuna": round(optuna_seconds, 2), "ray": round(ray_seconds, 2)},
            "per_trial_seconds": {"optuna": round(optuna_seconds / trials, 2), "ray": round(ray_seconds / trials, 2)},
            "trial_seconds_as_reported": fit,
            "ratio": round(ray_seconds / optuna_seconds, 3),
            "ray_worker_processes": len({json.loads((Path(r["run_dir"]) / "run.json").read_text())["pid"]
                                         for r in ray_result.rows}),  # reused workers: one for all trials
            "values": {"optuna": [r["value"] for r in optuna_result.rows],
                       "ray": [r["value"] for r in ray_result.rows]}}


def pbt_vs_random(folder: Path, epochs: int, interval: int) -> dict[str, Any]:
    import ray

    out: dict[str, Any] = {"population": 4, "epochs": epochs, "interval": interval}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        for name, tune in (("random", {"trials": 4, "backend": "ray", "resources": {"cpu": 0.5}}),
                           ("pbt", {"trials": 4, "backend": "ray", "scheduler": "pbt", "resources": {"cpu": 0.5},
                                    "perturbation_interval": interval})):
            seconds, result = timed_study(config(folder, epochs, tune), folder / name)
            best = next(r for r in result.rows if r["number"] == result.best_trial)
            summary = json.loads((Path(best["run_dir"]) / "summary.json").read_text())
            epochs_trained = sum(r["epochs"] or 0 for r in result.rows)
            out[name] = {"seconds": round(seconds, 1), "best_val_accuracy": result.best_value,
                         "best_test_accuracy": summary.get("test_accuracy"), "best_params": result.best_params,
                         "values": [r["value"] for r in result.rows], "epochs_run_by_final_runs": epochs_trained}
            if name == "pbt":
                lineage = json.loads((result.folder / "lineage.json").read_text())["trials"]
                out[name]["perturbations"] = sum(len(t["perturbations"]) for t in lineage.values())
    finally:
        ray.shutdown()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--interval", type=int, default=2)
    parser.add_argument("--part", choices=("both", "overhead", "pbt"), default="both")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.epochs, args.interval = 2, 2, 1
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    figure: dict[str, Any] = {}
    previous = args.out / "tune_ray.json"
    if args.part != "both" and previous.is_file():  # one part measured again: keep the other's figures
        figure = json.loads(previous.read_text()).get("figure", {})
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("both", "overhead"):
            figure["overhead"] = overhead(Path(tmp), args.trials)
            print(f"per trial: optuna {figure['overhead']['per_trial_seconds']['optuna']}s, ray "
                  f"{figure['overhead']['per_trial_seconds']['ray']}s, ratio {figure['overhead']['ratio']}")
        if args.part in ("both", "pbt"):
            figure["pbt_vs_random"] = pbt_vs_random(Path(tmp), args.epochs, args.interval)
            for name in ("random", "pbt"):
                r = figure["pbt_vs_random"][name]
                print(f"{name}: best val {r['best_val_accuracy']:.4f}, its test {r['best_test_accuracy']}, "
                      f"{r['seconds']}s")
    ratio = figure.get("overhead", {}).get("ratio")
    pbt = figure.get("pbt_vs_random", {})
    headline = (f"Ray/Optuna per 3-epoch trial {ratio}" if ratio is not None else "overhead not measured") + (
        f"; best val accuracy PBT {pbt['pbt']['best_val_accuracy']:.4f} vs random {pbt['random']['best_val_accuracy']:.4f}"
        if pbt else "")
    write_result(args.out, "tune_ray", {"headline": headline, "target": "Ray/Optuna <= 1.2 per trial",
                                        "meets_target": ratio is not None and ratio <= 1.2, "figure": figure,
                                        "machine": machine_info(), "quick": args.quick})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
