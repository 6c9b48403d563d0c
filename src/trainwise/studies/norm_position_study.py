"""The norm-position study: a GPT's LayerNorm before each residual branch (pre-norm, GPT-2 and the
guides' "modern standard") against after it (post-norm, the original Transformer), with and
without warmup, at the config's lr. Post-norm is said to need warmup to train at all at
transformer learning rates; pre-norm to train without it."""

from __future__ import annotations

from trainwise.config.schema import RunConfig
from trainwise.errors import ConfigError
from trainwise.studies.base import Budget, Study, Variant

WARMUP_FRACTION = 0.1


def check(cfg: RunConfig) -> None:
    if cfg.model.name != "gpt":
        raise ConfigError(f"study norm-position compares where a transformer's LayerNorm sits, so it needs "
                          f"model.name=gpt, got {cfg.model.name!r}")


def variants(cfg: RunConfig, budget: Budget) -> list[Variant]:
    return [Variant(f"{position}-norm-{warm}", {"model.norm_position": position, "schedule.warmup": warmup},
                    f"{position}-norm, {warm.replace('-', ' ')}")
            for warm, warmup in (("no-warmup", 0), ("warmup", WARMUP_FRACTION)) for position in ("pre", "post")]


STUDY = Study(
    name="norm-position",
    factor=("model.norm_position", "schedule.warmup"),
    question="Does a pre-norm transformer train better than a post-norm one, with and without warmup?",
    claim="pre-norm is the modern standard: it trains stably without warmup, post-norm needs it",
    variants=variants,
    budget=Budget(seeds=3, epochs=3),
    check=check,
    groups=("schedule.warmup",),
)
