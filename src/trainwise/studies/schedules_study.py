"""The schedules study: constant, step, exponential, cosine, 1cycle and SGDR, each with and
without warmup, at the config's lr and budget.

Durations follow the budget: step decays by 10x at 1/3 and 2/3 of training, exponential ends at
1/100 of the lr, SGDR restarts three times; warmup is the first 10% of the steps.
"""

from __future__ import annotations

from typing import Any

from trainwise.config.schema import RunConfig
from trainwise.studies.base import Budget, Study, Variant

WARMUP_FRACTION = 0.1
NAMES = ("constant", "step", "exponential", "cosine", "onecycle", "sgdr")


def schedule_section(name: str, budget: Budget) -> dict[str, Any]:
    """The whole ``schedule`` section of one variant (without warmup), sized to the budget."""
    unit, length = ("step", budget.steps) if budget.steps is not None else ("epoch", budget.epochs)
    third = max(1, length // 3)
    if name == "step":
        return {"name": "step", "step_size": third, "gamma": 0.1, "unit": unit}
    if name == "exponential":
        return {"name": "exponential", "gamma": round(0.01 ** (1 / max(1, length)), 6), "unit": unit}
    if name == "sgdr":
        return {"name": "sgdr", "cycle_steps": third, "cycle_mult": 1, "unit": unit}
    return {"name": name}


def variants(cfg: RunConfig, budget: Budget) -> list[Variant]:
    out = []
    for name in NAMES:
        section = schedule_section(name, budget)
        out.append(Variant(name, {"schedule": {**section, "warmup": 0}}))
        out.append(Variant(f"{name}+warmup", {"schedule": {**section, "warmup": WARMUP_FRACTION}}))
    return out


STUDY = Study(
    name="schedules",
    factor=("schedule",),
    question="Which lr schedule reaches the best val metric in a fixed budget, and does warmup help?",
    claim="a decaying schedule (cosine, 1cycle) ends better than a constant lr; warmup helps at high lr",
    variants=variants,
    budget=Budget(seeds=3, epochs=10),
)
