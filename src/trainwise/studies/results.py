"""Read a study's run folders back into per-variant figures: final and best val metric (mean ±
std over seeds), steps to reach a target, wall time, divergences, and the study's extra
measurements (gradient norms, activation statistics). Reads files only, never a live trainer."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from typing import Any, Optional

from trainwise.studies.base import Study
from trainwise.studies.job import MEASUREMENTS
from trainwise.studies.verdict import TEST, bounded_interval, judge, metric_bounds, sentence

TARGET_SHARE = 0.95  # default target: 95% of the best variant's mean final accuracy (loss: 1/0.95 of it)
FAILED = ("diverged", "failed")


def read_curve(run_dir: Path, metric: str) -> list[tuple[int, float]]:
    """``[(step, value)]`` of one validation metric (``accuracy``, ``loss``) from metrics.csv."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [(int(row["step"]), float(row["value"])) for row in csv.DictReader(handle)
                if row["split"] == "val" and row["metric"] == metric]


def read_lr(run_dir: Path) -> list[tuple[int, float]]:
    path = run_dir / "schedule.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [(int(row["step"]), float(row["lr"])) for row in csv.DictReader(handle)]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def mean_std(values: list[float]) -> dict[str, Optional[float]]:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def _metric(runs: list[dict[str, Any]]) -> tuple[str, str]:
    task = next((r["summary"].get("task") for r in runs if r["summary"]), "classification")
    return ("accuracy", "max") if task == "classification" else ("loss", "min")


def collect(study: Study, plan: dict[str, Any], out: Path, *, target: Optional[float] = None) -> dict[str, Any]:
    """Everything study.json holds, from the run folders of ``plan``."""
    runs = [{**job, "summary": _read_json(out / job["run_dir"] / "summary.json"),
             "measurements": _read_json(out / job["run_dir"] / MEASUREMENTS)} for job in plan["jobs"]]
    metric, mode = _metric(runs)
    for run in runs:
        run["curve"] = read_curve(out / run["run_dir"], metric)
    bounds = metric_bounds(metric)
    variants = [_variant(v, [r for r in runs if r["variant"] == v["name"]], mode, out, bounds)
                for v in plan["variants"]]
    _score_failures(variants, mode)
    target = _target(variants, mode) if target is None else target
    for variant in variants:
        _steps_to_target(variant, target, mode)
    comparisons = judge(variants, _groups(study, plan), mode=mode)
    labels = {v["name"]: v["label"] for v in variants}
    name = f"val_{metric}"
    return {"study": study.name, "question": study.question, "claim": study.claim, "factor": list(study.factor),
            "budget": plan["budget"], "data_seed": plan["data_seed"], "lrs": plan.get("lrs", {}),
            "request": plan["request"], "metric": name, "mode": mode, "target": target, "test": TEST,
            "grid": list(study.grid) if study.grid else None, "budget_rule": plan.get("budget_rule"),
            "variants": variants, "comparisons": comparisons, "failures": sum(len(v["failures"]) for v in variants),
            "cpu_seconds": round(sum(v["cpu_seconds"] for v in variants), 1),
            "verdict": [sentence(c, name, labels) for c in comparisons]}


def _failure(run: dict[str, Any]) -> dict[str, Any]:
    """A run that diverged or failed: its seed, status and the epoch (and step) it ended in."""
    summary = run["summary"]
    event = next((e for e in reversed(summary.get("events") or []) if e.get("kind") == summary.get("status")), {})
    return {"seed": run["seed_index"], "status": summary.get("status"),
            "epoch": event.get("epoch", summary.get("epochs_run")), "step": event.get("step", summary.get("steps"))}


def _test_figure(summary: dict[str, Any], mode: str) -> Optional[float]:
    value = summary.get("test_accuracy" if mode == "max" else "test_loss")
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def _variant(spec: dict[str, Any], runs: list[dict[str, Any]], mode: str, out: Path,
             bounds: Optional[tuple[float, float]]) -> dict[str, Any]:
    """One variant's figures; ``final.ci`` is the 95% t-interval of the mean cut at ``bounds`` (an
    accuracy's [0, 1]), with ``ci_clipped`` saying whether it was."""
    pick = max if mode == "max" else min
    failed = [r for r in runs if r["summary"].get("status") in FAILED]
    finished = [r for r in runs if r["curve"] and r["summary"] and r not in failed]
    finals = {r["seed_index"]: r["curve"][-1][1] for r in finished}
    statuses = [r["summary"].get("status", "not run") for r in runs]
    ci, clipped = bounded_interval(list(finals.values()), bounds)
    return {
        **spec, "finals": finals, "final": {**mean_std(list(finals.values())), "ci": ci, "ci_clipped": clipped},
        "best": mean_std([pick(v for _, v in r["curve"]) for r in finished]),
        "test": mean_std([_test_figure(r["summary"], mode) for r in finished]),
        "wall_seconds": mean_std([r["summary"].get("wall_seconds") for r in runs if r["summary"]]),
        "cpu_seconds": sum(r["measurements"].get("cpu_seconds", 0.0) for r in runs),
        "statuses": statuses, "diverged": statuses.count("diverged"),
        "failures": [_failure(r) for r in failed],
        "batch_size": spec["overrides"].get("data.batch_size"),
        "nonfinite_rollbacks": sum(r["summary"].get("nonfinite_rollbacks", 0) or 0 for r in runs),
        "curves": {r["seed_index"]: r["curve"] for r in runs},
        "lr_curve": read_lr(out / runs[0]["run_dir"]) if runs else [],
        "grad_norms_init": _mean_layers([r["measurements"].get("grad_norms_init") for r in runs]),
        "grad_norms": runs[0]["measurements"].get("grad_norms", []) if runs else [],
        "activations_init": _mean_activation([r["measurements"].get("activations_init") for r in runs]),
        "activations_end": _mean_activation([r["measurements"].get("activations_end") for r in runs]),
    }


def _score_failures(variants: list[dict[str, Any]], mode: str) -> None:
    """A diverged or failed run is a result, not a missing one: the comparisons score it as the
    worst outcome (accuracy 0; for a loss, the worst final loss of any run of the study)."""
    finals = [f for v in variants for f in v["finals"].values() if math.isfinite(f)]
    worst = 0.0 if mode == "max" else (max(finals) if finals else None)
    for v in variants:
        v["scored"] = {**v["finals"], **({f["seed"]: worst for f in v["failures"]} if worst is not None else {})}
        if v["final"]["mean"] is None and v["failures"] and worst is not None:
            v["final"] = {**mean_std(list(v["scored"].values())), "ci": None, "ci_clipped": False}


def _mean_layers(items: list[Optional[dict[str, float]]]) -> dict[str, float]:
    items = [i for i in items if i]
    return {layer: statistics.fmean(i[layer] for i in items if layer in i) for layer in (items[0] if items else {})}


def _mean_activation(items: list[Optional[dict[str, dict[str, float]]]]) -> dict[str, dict[str, float]]:
    items = [i for i in items if i]
    if not items:
        return {}
    return {layer: {k: statistics.fmean(i[layer][k] for i in items if layer in i) for k in stats}
            for layer, stats in items[0].items()}


def _target(variants: list[dict[str, Any]], mode: str) -> Optional[float]:
    means = [v["final"]["mean"] for v in variants if v["final"]["mean"] is not None]
    if not means:
        return None
    return TARGET_SHARE * max(means) if mode == "max" else min(means) / TARGET_SHARE


def _steps_to_target(variant: dict[str, Any], target: Optional[float], mode: str) -> None:
    """Steps until the val metric first reaches ``target`` (at epoch ends), per seed; mean over the
    seeds that reached it, and how many did."""
    reached = []
    for curve in variant["curves"].values():
        hit = next((step for step, value in curve if target is not None and
                    (value >= target if mode == "max" else value <= target)), None)
        if hit is not None:
            reached.append(hit)
    variant["steps_to_target"] = {"mean": statistics.fmean(reached) if reached else None,
                                  "reached": len(reached), "of": len(variant["curves"])}


def _groups(study: Study, plan: dict[str, Any]) -> dict[str, list[str]]:
    names = [v["name"] for v in plan["variants"]]
    if not study.groups:
        return {"all": names}
    groups: dict[str, list[str]] = {}
    for key in study.groups:
        for v in plan["variants"]:
            value = v["overrides"].get(key)
            groups.setdefault(f"{key}={value}", []).append(v["name"])
    return groups
