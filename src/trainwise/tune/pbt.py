"""Population-based training on the Ray backend (``tune.scheduler: pbt``): which config keys may
change in a running trial, how a perturbed value stays inside its range, how a checkpoint taken
from another trial is given the new values, and the lineage (``lineage.json``, ``lineage.png``).

A key may change mid-run when the checkpoint still fits the model and the loop after the change:
the lr (the schedule is a function of the step, recomputed from the new lr), weight decay and
momentum (written into the optimizer's parameter groups), dropout (a module setting, not a
weight), gradient clipping and label smoothing. The model's width or depth, the batch size, the
data and the schedule's shape cannot: a checkpoint of one width does not load into another.

Example:
    >>> check_mutable(parse_space({"model.hidden": {"choice": [[8], [32]]}}), config)  # doctest: +SKIP
    ConfigError: tune.scheduler pbt cannot change model.hidden mid-run ...
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional

from trainwise.errors import ConfigError
from trainwise.tune.space import Param

log = logging.getLogger(__name__)

MUTABLE = ("optimizer.lr", "optimizer.weight_decay", "optimizer.momentum", "model.dropout", "train.grad_clip",
           "train.label_smoothing")
# Config key -> the optimizer parameter-group entry it sets.
_GROUP_KEYS = {"optimizer.weight_decay": "weight_decay", "optimizer.momentum": "momentum"}


def check_mutable(space: dict[str, Param], config: dict[str, Any]) -> None:
    """Every parameter PBT perturbs must be changeable in a running trial; and lr may not be auto."""
    for name in space:
        if name not in MUTABLE:
            what = " (the model's shape: a checkpoint of one shape does not load into another)" \
                if name.startswith("model.") else ""
            raise ConfigError(f"tune.scheduler pbt cannot change {name} mid-run{what}; PBT can perturb "
                              f"{', '.join(MUTABLE)}. Search {name} with a pruner (asha) instead, or fix it in "
                              "the config")
    if "optimizer.lr" not in space and config.get("optimizer", {}).get("lr") == "auto":
        raise ConfigError("tune.scheduler pbt needs a fixed optimizer.lr (or optimizer.lr in tune.space), got "
                          "'auto': every restart would run its own range test")


def mutations(space: dict[str, Param]) -> dict[str, Any]:
    """Ray's ``hyperparam_mutations``: a resampling distribution per parameter."""
    from ray import tune

    out: dict[str, Any] = {}
    for name, p in space.items():
        if p.kind == "choice":
            out[name] = list(p.choices)
        elif p.kind == "int":
            out[name] = tune.lograndint(int(p.low), int(p.high) + 1) if p.log else tune.randint(int(p.low),
                                                                                                  int(p.high) + 1)
        else:
            out[name] = tune.loguniform(p.low, p.high) if p.log else tune.uniform(p.low, p.high)
    return out


class KeepInRange:
    """PBT multiplies a value by 0.8 or 1.2, which can leave its range (a dropout of 1.1): each
    perturbed value is clipped back into it (and rounded to a whole number for an int)."""

    def __init__(self, space: dict[str, Param]) -> None:
        self.space = space

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        for name, p in self.space.items():
            if p.kind in ("choice",) or name not in config:
                continue
            value = min(max(config[name], p.low), p.high)
            config[name] = int(round(value)) if p.kind == "int" else float(value)
        return config


def give_new_values(state: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """A checkpoint taken from another trial, made this trial's: its config gets the new values
    (the resume check compares it with this trial's), and its optimizer groups the new weight decay
    and momentum (groups that do not decay, biases and norms, keep their 0; Adam's betas come from
    optimizer.betas, not momentum, and stay). Returns the changes."""
    config = state.get("config") or {}
    changes = []
    for key, value in params.items():
        section, name = key.split(".", 1)
        old = config.get(section, {}).get(name)
        if old == value:
            continue
        changes.append(f"{key}: {old!r} -> {value!r}")
        if config:
            config.setdefault(section, {})[name] = value
        group_key = _GROUP_KEYS.get(key)
        if group_key is not None:
            for group in state["optimizer"]["param_groups"]:
                if group_key in group and group[group_key] == old:
                    group[group_key] = value
    return changes


def write_lineage(trials: dict[int, dict[str, Any]], folder: Path, metric: str) -> Optional[Path]:
    """``lineage.json``: per trial, its reports (epoch, value, the checkpoint's SHA-256) and its
    perturbations (at which epoch it took which trial's checkpoint, with which new values); and
    ``lineage.png``: the metric per epoch, a dashed line from each parent to its perturbed child."""
    data = {str(number): {"reports": t["reports"], "perturbations": t["perturbations"], "restores": t["restores"]}
            for number, t in sorted(trials.items())}
    path = folder / "lineage.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"metric": metric, "trials": data}, indent=1))
    tmp.replace(path)
    _plot_lineage(trials, folder / "lineage.png", metric)
    return path


def _plot_lineage(trials: dict[int, dict[str, Any]], path: Path, metric: str) -> None:
    from matplotlib import rcParams
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5))  # not pyplot: no global state or backend of the user's is touched
    axes = figure.subplots()
    colors = rcParams["axes.prop_cycle"].by_key()["color"]
    values = {n: {r["epoch"]: r["value"] for r in t["reports"]} for n, t in trials.items()}
    for i, (number, t) in enumerate(sorted(trials.items())):
        color = colors[i % len(colors)]
        segments: dict[int, list[dict[str, Any]]] = {}
        for report in t["reports"]:  # a segment: what the trial trained between two perturbations
            segments.setdefault(report["segment"], []).append(report)
        for index, reports in sorted(segments.items()):
            axes.plot([r["epoch"] for r in reports], [r["value"] for r in reports], "-o", color=color,
                      markersize=3, label=f"trial {number}" if index == 0 else None)
        for p in t["perturbations"]:
            parent_value = values.get(p["parent"], {}).get(p["parent_epoch"])
            child = segments.get(p["segment"], [None])[0]
            if parent_value is not None and child is not None:
                axes.plot([p["parent_epoch"], child["epoch"]], [parent_value, child["value"]], "--", color=color,
                          linewidth=1)
                axes.annotate(f"{p['parent']}→{number}", (p["parent_epoch"], parent_value), fontsize=7)
    axes.set_xlabel("epoch")
    axes.set_ylabel(metric)
    axes.set_title("PBT lineage: dashed lines join a perturbed trial to the checkpoint it took")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
