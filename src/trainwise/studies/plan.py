"""A study's plan: every run (variant × seed) with its fully resolved config, written to
``plan.json`` before the first run starts so that ``--resume`` continues exactly the same study.

Every run shares the config, the budget, the data seed (so the same split) and the seeds
``seed, seed+1, ...``; early stopping is off (each run trains for the whole budget) and so is the
per-run report (the study writes its own). ``optimizer.lr: auto`` is settled once, by a range test
on the base config, and that lr is written into every run's config (per variant for studies where
the lr belongs to the factor).
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any, Optional

from trainwise.config import build
from trainwise.config.schema import RunConfig, config_from_dict, load_config
from trainwise.config.check import check_names
from trainwise.errors import ConfigError
from trainwise.engine.plan import fallback_lr
from trainwise.studies.base import Budget, Study, Variant

log = logging.getLogger(__name__)

PLAN = "plan.json"
# A steps budget needs an epoch count large enough never to end the run first.
EPOCHS_FOR_STEPS_BUDGET = 1_000_000


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of a config dict with dotted keys set; a bare section name replaces the section."""
    out = copy.deepcopy(raw)
    for key, value in overrides.items():
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = copy.deepcopy(value)
    return out


def shared_overrides(study: Study, budget: Budget, seed: int) -> dict[str, Any]:
    return {"seed": seed, "train.early_stopping.enabled": False, "train.report": False,
            "train.epochs": budget.epochs if budget.steps is None else EPOCHS_FOR_STEPS_BUDGET,
            "train.max_steps": budget.steps}


def make_plan(study: Study, config: str, overrides: list[str], budget: Budget, out: Path,
              request: dict[str, Any]) -> dict[str, Any]:
    """Check the config and every run's config (before any training), settle ``lr: auto``, and
    return the plan: ``{"request", "study", "budget", "data_seed", "variants", "lrs", "jobs"}``."""
    base = load_config(config, overrides)
    check_names(base)
    if study.check is not None:
        study.check(base)
    variants = study.variants(base, budget)
    raw = base.to_dict()
    configs = {v.name: apply_overrides(raw, {**v.overrides, **shared_overrides(study, budget, base.seed)})
               for v in variants}
    for name, variant_raw in configs.items():
        check_names(_validated(variant_raw, name))
    lrs = _settle_lrs(study, base, configs, budget, out)
    jobs = []
    for variant in variants:
        for k in range(budget.seeds):
            job_raw = apply_overrides(configs[variant.name], {"seed": base.seed + k,
                                                              "name": f"{study.name}-{variant.name}-seed{k}"})
            if variant.name in lrs:
                job_raw["optimizer"]["lr"] = lrs[variant.name]
            _validated(job_raw, variant.name)
            jobs.append({"variant": variant.name, "seed_index": k, "seed": base.seed + k,
                         "run_dir": f"{variant.name}-seed{k}", "config": job_raw})
    return {"request": request, "study": study.name, "budget": vars(budget), "data_seed": base.seed,
            "lrs": lrs,
            "variants": [{"name": v.name, "label": v.label, "overrides": v.overrides} for v in variants],
            "jobs": jobs}


def _validated(raw: dict[str, Any], variant: str) -> RunConfig:
    try:
        return config_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"variant {variant!r}: {exc}") from None


def _settle_lrs(study: Study, base: RunConfig, configs: dict[str, dict[str, Any]], budget: Budget,
                out: Path) -> dict[str, float]:
    """``{variant: lr}`` when the config says ``lr: auto``: one range test for all variants, or one
    per variant when the lr belongs to the factor; ``{}`` when the config names an lr."""
    from trainwise.studies.job import study_bundle

    todo = {name: raw for name, raw in configs.items() if raw["optimizer"]["lr"] == "auto"}
    if not todo:
        return {}
    if not study.lr_per_variant:
        first = next(iter(todo.values()))
        lr = _range_test(config_from_dict(first), study_bundle(base, base.seed, budget.train_samples),
                         out / "lr-find")
        return {name: lr for name in todo}
    return {name: _range_test(config_from_dict(raw), study_bundle(base, base.seed, budget.train_samples),
                              out / "lr-find" / name) for name, raw in todo.items()}


def _range_test(cfg: RunConfig, bundle: Any, folder: Path) -> float:
    model = build.make_model(cfg, bundle)
    trainer = build.make_trainer(cfg, bundle, model, folder, progress=False)
    result = trainer.find_lr(bundle.train)
    lr = result["suggestion"]
    if lr is None:
        lr = fallback_lr(cfg.optimizer.name)
        log.warning("warning: the lr range test gave no suggestion (%s); the study uses lr %g",
                    result.get("reason"), lr)
    else:
        log.info("lr range test (%s): lr %.3g for the study", cfg.optimizer.name, lr)
    return float(lr)


def read_plan(out: Path) -> Optional[dict[str, Any]]:
    path = out / PLAN
    return json.loads(path.read_text()) if path.is_file() else None


def plan_differences(saved: dict[str, Any], request: dict[str, Any]) -> list[str]:
    old = saved.get("request", {})
    return [f"{key}: {old.get(key)!r} then, {request.get(key)!r} now"
            for key in sorted(set(old) | set(request)) if old.get(key) != request.get(key)]
