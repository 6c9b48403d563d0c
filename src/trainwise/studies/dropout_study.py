"""The dropout study: no dropout, then 0.1 to 0.7, on the config's model."""

from __future__ import annotations

from trainwise.config.schema import RunConfig
from trainwise.studies.base import Budget, Study, Variant, require_builtin_model

RATES = (0.0, 0.1, 0.3, 0.5, 0.7)


def check(cfg: RunConfig) -> None:
    require_builtin_model("dropout", cfg, "dropout")


def variants(cfg: RunConfig, budget: Budget) -> list[Variant]:
    return [Variant(f"p{rate}", {"model.dropout": rate}, f"dropout {rate}") for rate in RATES]


STUDY = Study(
    name="dropout",
    factor=("model.dropout",),
    question="How much dropout does this model want?",
    claim="moderate dropout (0.1-0.5) regularizes; 0.7 underfits a small model",
    variants=variants,
    budget=Budget(seeds=3, epochs=10),
    check=check,
)
