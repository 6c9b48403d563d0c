"""The batch-size study: a quarter of, the same as, and four times the config's batch size, each
with the lr scaled by no rule, linearly and by the square root (``optimizer.scale_lr``); the
config's lr is taken as tuned for its own batch size, where the three rules agree."""

from __future__ import annotations

from trainwise.config.schema import RunConfig
from trainwise.studies.base import Budget, Study, Variant

RULES = ("none", "linear", "sqrt")
FACTORS = (0.25, 1.0, 4.0)


def variants(cfg: RunConfig, budget: Budget) -> list[Variant]:
    base = cfg.data.batch_size
    out = []
    for factor in FACTORS:
        batch = max(1, round(base * factor))
        for rule in RULES if batch != base else ("none",):
            name = f"bs{batch}" if batch == base else f"bs{batch}-{rule}"
            out.append(Variant(name, {"data.batch_size": batch, "optimizer.lr_scaling": rule,
                                      "optimizer.base_batch_size": base}, f"batch {batch}, {rule} scaling"))
    return out


STUDY = Study(
    name="batch-size",
    factor=("data.batch_size", "optimizer.lr_scaling"),
    question="Does a larger batch need a larger lr, and by which rule?",
    claim="a larger batch takes a larger lr: linear scaling (Goyal et al. 2017) for SGD, square-root for Adam",
    variants=variants,
    budget=Budget(seeds=3, epochs=10),
    groups=("data.batch_size",),
)
