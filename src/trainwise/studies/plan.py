"""A study's plan: every run (variant × seed) with its fully resolved config, written to
``plan.json`` before the first run starts so that ``--resume`` continues exactly the same study.

Every run shares the config, the budget, the data seed (so the same split) and the seeds
``seed, seed+1, ...``; early stopping is off (each run trains for the whole budget) and so is the
per-run report (the study writes its own). ``optimizer.lr: auto`` is settled once, by a range test
on the base config (never on a variant: the batch-size study's scaling rules scale from the base
batch's lr), and that lr is written into every run's config; the optimizers study keeps one range
test per optimizer.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from dataclasses import replace
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
    budget, rule = _equal_updates(study, base, budget)
    raw = base.to_dict()
    configs = {v.name: apply_overrides(raw, {**v.overrides, **shared_overrides(study, budget, base.seed)})
               for v in variants}
    for name, variant_raw in configs.items():
        check_names(_validated(variant_raw, name))
    resolved = {name: _validated(variant_raw, name).to_dict() for name, variant_raw in configs.items()}
    refuse_identical(variants, resolved, study, config)
    lrs = _settle_lrs(study, base, variants, budget, out)
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
            "lrs": lrs, "budget_rule": rule,
            "variants": [{"name": v.name, "label": v.label, "overrides": v.overrides} for v in variants],
            "jobs": jobs}


def _equal_updates(study: Study, base: RunConfig, budget: Budget) -> tuple[Budget, Optional[str]]:
    """For a study with ``equal_updates``, an epochs budget as the steps those epochs take at the
    config's batch size, and the rule in words (None for other studies)."""
    if not study.equal_updates:
        return budget, None
    if budget.steps is None:
        from trainwise.studies.job import study_bundle

        samples = len(study_bundle(base, base.seed, budget.train_samples).train[0])
        steps = budget.epochs * math.ceil(samples / base.data.batch_size)
        budget = replace(budget, steps=steps)
        how = (f"{budget.epochs} epoch(s) of {samples} samples at the config's batch {base.data.batch_size} = "
               f"{steps} steps")
    else:
        how = f"{budget.steps} steps"
    return budget, (f"equal updates: every run takes {how}, whatever its batch size, so a larger batch sees "
                    "proportionally more samples (batch sizes are compared at equal steps, as in Shallue et al. "
                    "2019 and the Tuning Playbook)")


def _validated(raw: dict[str, Any], variant: str) -> RunConfig:
    try:
        return config_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"variant {variant!r}: {exc}") from None


def _settle_lrs(study: Study, base: RunConfig, variants: list[Variant], budget: Budget,
                out: Path) -> dict[str, float]:
    """``{variant: lr}`` when the config says ``lr: auto``: one range test on the base config (what
    the scaling rules of a batch-size study scale from), or, when the lr belongs to the factor
    (optimizers), one per variant on the base config with only that variant's optimizer settings;
    ``{}`` when the config names an lr."""
    from trainwise.studies.job import study_bundle

    if base.optimizer.lr != "auto":
        return {}
    raw = apply_overrides(base.to_dict(), shared_overrides(study, budget, base.seed))
    bundle = study_bundle(base, base.seed, budget.train_samples)
    if not study.lr_per_variant:
        lr = _range_test(config_from_dict(raw), bundle, out / "lr-find")
        return {v.name: lr for v in variants}
    lrs = {}
    for v in variants:
        own = {k: value for k, value in v.overrides.items() if k.startswith("optimizer")}
        lrs[v.name] = _range_test(config_from_dict(apply_overrides(raw, own)), bundle, out / "lr-find" / v.name)
    return lrs


def refuse_identical(variants: list[Variant], configs: dict[str, dict[str, Any]], study: Study, config: str) -> None:
    """A study whose variants cannot differ on this config (a batch of 1 scaled by a quarter, a
    factor the config already fixes) would compare a run with itself: refused with the pair."""
    seen: dict[str, str] = {}
    for v in variants:
        key = json.dumps(configs[v.name], sort_keys=True, default=str)
        if key in seen:
            pair = f"variants {seen[key]!r} and {v.name!r}" if seen[key] != v.name else f"two variants named {v.name!r}"
            raise ConfigError(f"study {study.name}: {pair} give the same run on "
                              f"{config} ({', '.join(f'{k}={val}' for k, val in v.overrides.items())}); change the "
                              f"config so that {', '.join(study.factor)} can take different values")
        seen[key] = v.name


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
