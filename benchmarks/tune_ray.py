"""The Ray backend of trainwise tune, measured on MNIST-1D (examples/mnist1d.yaml's CNN).

(a) Per-trial overhead: the same studies of 3-epoch trials (random sampler, no pruner, one trial at
    a time) on the Optuna backend (one worker) and on Ray (tune.resources: every CPU of the local Ray
    that trainwise starts and stops itself, as `trainwise tune --backend ray` does), each with N and
    2N trials, interleaved round after round so that neighbouring searches see the same load.
    The per-trial overhead is the marginal cost of a trial, (T_2N - T_N) / N per backend, and its
    Ray/Optuna ratio (target <= 1.2); the per-search fixed cost, T_N - N x marginal, is reported
    apart, with Ray's phases: starting Ray, building the Tuner, Tune starting the trial worker's
    process, the worker's imports and first trial's setup, the gaps between trials, Ray's wind-down,
    the study folder's files and Ray's shutdown (medians over the rounds). One search of each backend
    runs first, untimed: this process's own imports and data loading are paid once either way.
(b) PBT against random search at equal compute: a population of 4 trials of ``epochs`` epochs
    each (PBT perturbs lr, weight decay and dropout every ``interval`` epochs, synchronously)
    against 4 random-search trials of the same length, on the same space and seed: the same
    number of epochs trained. Compared: the best trial's val accuracy and its test accuracy.

    python benchmarks/tune_ray.py --part overhead   # (a): 4 and 8 trials per backend, 2 rounds
    python benchmarks/tune_ray.py --part pbt        # (b): 4 x 8 epochs
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

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
    path = folder / f"{tune.get('backend', 'optuna')}-{tune.get('scheduler', 'none')}-{epochs}-{tune.get('trials')}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def timed_study(path: Path, folder: Path, **kwargs: Any) -> tuple[float, Any]:
    import trainwise

    start = time.perf_counter()
    result = trainwise.tune(str(path), study_dir=folder, plots=False, **kwargs)
    return time.perf_counter() - start, result


# ------------------------------------------------------------------------- (a) per-trial overhead
@contextmanager
def ray_phase_clock() -> Iterator[dict[str, float]]:
    """Wall-clock marks of a Ray search's driver-side phases (epoch seconds), taken by wrapping the
    backend's steps: Ray's start and shutdown, the Tuner's creation, its fit, the results."""
    import ray

    from trainwise.tune import ray_backend, ray_results

    marks: dict[str, float] = {}
    originals = (ray_backend.connect, ray_backend.make_tuner, ray_results.write_results, ray.shutdown)

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            marks[f"{name}_start"] = time.time()
            try:
                return fn(*args, **kwargs)
            finally:
                marks[f"{name}_end"] = time.time()
        return wrapper

    def make_tuner(*args: Any, **kwargs: Any) -> Any:
        tuner = timed("tuner", originals[1])(*args, **kwargs)
        tuner.fit = timed("fit", tuner.fit)
        return tuner

    ray_backend.connect, ray_backend.make_tuner = timed("ray_start", originals[0]), make_tuner
    ray_results.write_results, ray.shutdown = timed("results", originals[2]), timed("shutdown", originals[3])
    try:
        yield marks
    finally:
        ray_backend.connect, ray_backend.make_tuner, ray_results.write_results, ray.shutdown = originals


def _process_start(pid_start: Optional[int]) -> Optional[float]:
    """A run.json ``pid_start`` (clock ticks since boot, Linux) as epoch seconds (to ~10 ms: the boot
    time from /proc/uptime, not /proc/stat's whole seconds)."""
    try:
        boot = time.time() - float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return None if pid_start is None else boot + pid_start / os.sysconf("SC_CLK_TCK")


def runs_of(result: Any) -> list[dict[str, Any]]:
    return [json.loads((Path(r["run_dir"]) / "run.json").read_text()) for r in result.rows]


def search_phases(start: float, end: float, runs: list[dict[str, Any]], marks: Optional[dict[str, float]]) -> dict:
    """Where a search's wall time went (seconds), from its runs' start and end times and, on Ray,
    the driver's marks."""
    runs = sorted(runs, key=lambda r: r["started"])
    trial_seconds = sum(r["ended"] - r["started"] for r in runs)
    gaps = sum(b["started"] - a["ended"] for a, b in zip(runs, runs[1:]))
    half = len(runs) // 2  # the last half's runs and the gaps before them (for the 2N searches)
    out = {"total": end - start, "trial_runs": trial_seconds, "between_trials": gaps,
           "last_n_trials": runs[-1]["ended"] - runs[half - 1]["ended"] if half else 0.0}
    if marks is None:  # Optuna: the study's setup before the first run, its files after the last
        out.update({"before_first_trial": runs[0]["started"] - start, "after_last_trial": end - runs[-1]["ended"]})
        return {k: round(v, 2) for k, v in out.items()}
    process = _process_start(runs[0].get("pid_start"))
    out.update({
        "ray_start": marks["ray_start_end"] - marks["ray_start_start"],
        "before_tuner": marks["tuner_start"] - marks["ray_start_end"],
        "tuner": marks["tuner_end"] - marks["tuner_start"],
        "worker_process_start": None if process is None else process - marks["fit_start"],
        "worker_imports_and_first_trial_setup": None if process is None else runs[0]["started"] - process,
        "fit_start_to_first_trial": runs[0]["started"] - marks["fit_start"],
        "wind_down": marks["fit_end"] - runs[-1]["ended"],
        "shutdown": marks["shutdown_end"] - marks["shutdown_start"],
        "results": marks["results_end"] - marks["results_start"],
    })
    return {k: None if v is None else round(v, 2) for k, v in out.items()}


def one_search(folder: Path, backend: str, trials: int, tag: str) -> dict[str, Any]:
    # Ray: a trial takes every CPU of the local Ray trainwise starts, so trials run one at a time as on Optuna
    tune = {"trials": trials} if backend == "optuna" else {"trials": trials, "backend": "ray",
                                                           "resources": {"cpu": os.cpu_count() or 1}}
    path = config(folder, 3, tune)
    if backend == "optuna":
        start = time.time()
        _, result = timed_study(path, folder / tag)
        marks = None
    else:
        with ray_phase_clock() as marks:
            start = time.time()
            _, result = timed_study(path, folder / tag)
    end = time.time()
    runs = runs_of(result)
    return {"phases": search_phases(start, end, runs, marks), "values": [r["value"] for r in result.rows],
            "worker_processes": len({r["pid"] for r in runs})}


def _median(values: list[Optional[float]]) -> Optional[float]:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


def overhead(folder: Path, trials: int, rounds: int) -> dict[str, Any]:
    """Both backends with N and 2N trials, ``rounds`` times, interleaved (see the module)."""
    sizes, backends = (trials, 2 * trials), ("optuna", "ray")
    searches: dict[str, dict[int, list[dict[str, Any]]]] = {b: {n: [] for n in sizes} for b in backends}
    for backend in backends:  # the driver's one-time imports and data loading, outside the figures
        one_search(folder, backend, 1, f"{backend}-warm-up")
    for r in range(rounds):
        for n in sizes:
            for backend in (backends if r % 2 == 0 else backends[::-1]):
                searches[backend][n].append(one_search(folder, backend, n, f"{backend}-{n}-{r}"))
                print(f"round {r}: {backend} {n} trials {searches[backend][n][-1]['phases']['total']:.1f}s", flush=True)
    study = {b: {str(n): [s["phases"]["total"] for s in searches[b][n]] for n in sizes} for b in backends}
    # per round: the marginal trial (T_2N - T_N) / N and the fixed cost T_N - N x marginal; medians over rounds
    marginal = {b: [(big - small) / trials for small, big in zip(study[b][str(trials)], study[b][str(2 * trials)])]
                for b in backends}
    fixed = {b: [small - trials * m for small, m in zip(study[b][str(trials)], marginal[b])] for b in backends}
    # a cross-check inside each 2N search: the wall time of its last N trials (their runs and the gaps before them)
    late = {b: [s["phases"]["last_n_trials"] / trials for s in searches[b][2 * trials]] for b in backends}
    median = {key: {b: statistics.median(values[b]) for b in backends} for key, values in
              (("marginal", marginal), ("fixed", fixed), ("late", late))}
    phases = {b: {key: _median([s["phases"][key] for s in searches[b][trials]]) for key in searches[b][trials][0]["phases"]}
              for b in backends}
    return {"trials": list(sizes), "epochs": 3, "rounds": rounds, "study_seconds": study,
            "marginal_trial_seconds": {b: round(median["marginal"][b], 2) for b in backends},
            "marginal_ratio": round(median["marginal"]["ray"] / median["marginal"]["optuna"], 3),
            "marginal_ratio_by_round": [round(r / o, 3) for r, o in zip(marginal["ray"], marginal["optuna"])],
            "last_n_trials_seconds_per_trial": {b: round(median["late"][b], 2) for b in backends},
            "last_n_trials_ratio": round(median["late"]["ray"] / median["late"]["optuna"], 3),
            "fixed_seconds_per_search": {**{b: round(median["fixed"][b], 2) for b in backends},
                                         "ray_extra": round(median["fixed"]["ray"] - median["fixed"]["optuna"], 2)},
            "whole_search_ratio": {str(n): round(statistics.median(study["ray"][str(n)]) /
                                                 statistics.median(study["optuna"][str(n)]), 3) for n in sizes},
            "phases_of_a_search_of_n_trials": phases,
            "ray_worker_processes": max(s["worker_processes"] for n in sizes for s in searches["ray"][n]),
            "values": {b: searches[b][2 * trials][0]["values"] for b in backends}}


def pbt_vs_random(folder: Path, epochs: int, interval: int) -> dict[str, Any]:
    import ray

    from trainwise.tune.ray_backend import start_local_ray

    out: dict[str, Any] = {"population": 4, "epochs": epochs, "interval": interval}
    start_local_ray(num_cpus=2)
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


def overhead_headline(o: dict[str, Any]) -> str:
    if "marginal_ratio" not in o:
        return "overhead not measured"
    m, f, p = o["marginal_trial_seconds"], o["fixed_seconds_per_search"], o["phases_of_a_search_of_n_trials"]["ray"]
    return (f"Ray/Optuna marginal cost of a 3-epoch trial {o['marginal_ratio']} (Ray {m['ray']} s, Optuna "
            f"{m['optuna']} s; the last N trials of 2N: {o['last_n_trials_ratio']}); fixed cost per search Ray {f['ray']} s vs Optuna {f['optuna']} s (Ray's start "
            f"{p['ray_start']} s, its trial worker's start {p['fit_start_to_first_trial']} s, shutdown {p['shutdown']} s)")


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--interval", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="(a): rounds of the four searches")
    parser.add_argument("--part", choices=("both", "overhead", "pbt"), default="both")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.epochs, args.interval, args.rounds = 1, 2, 1, 1
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    figure: dict[str, Any] = {}
    previous = args.out / "tune_ray.json"
    if args.part != "both" and previous.is_file():  # one part measured again: keep the other's figures
        figure = json.loads(previous.read_text()).get("figure", {})
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("both", "overhead"):
            figure["overhead"] = o = overhead(Path(tmp), args.trials, args.rounds)
            print(f"marginal trial: optuna {o['marginal_trial_seconds']['optuna']}s, ray {o['marginal_trial_seconds']['ray']}s,"
                  f" ratio {o['marginal_ratio']}; fixed per search: {o['fixed_seconds_per_search']}")
        if args.part in ("both", "pbt"):
            figure["pbt_vs_random"] = pbt_vs_random(Path(tmp), args.epochs, args.interval)
            for name in ("random", "pbt"):
                r = figure["pbt_vs_random"][name]
                print(f"{name}: best val {r['best_val_accuracy']:.4f}, its test {r['best_test_accuracy']}, "
                      f"{r['seconds']}s")
    o, pbt = figure.get("overhead", {}), figure.get("pbt_vs_random", {})
    ratio = o.get("marginal_ratio")
    headline = overhead_headline(o) + (
        f"; best val accuracy PBT {pbt['pbt']['best_val_accuracy']:.4f} vs random {pbt['random']['best_val_accuracy']:.4f}"
        if pbt else "")
    write_result(args.out, "tune_ray", {"headline": headline,
                                        "target": "Ray/Optuna <= 1.2 per trial (the marginal cost of a trial)",
                                        "meets_target": ratio is not None and ratio <= 1.2, "figure": figure,
                                        "machine": machine_info(), "quick": args.quick})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
