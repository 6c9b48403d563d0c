"""The warmup study: the config's schedule with and without linear warmup (the first 10% of the
steps), at the config's lr and at ten times it. The guides call warmup essential for transformers
and say it matters most at a high lr, where Adam's first steps, taken with poor second-moment
estimates, can throw a model somewhere it never recovers from."""

from __future__ import annotations

from trainwise.config.schema import RunConfig
from trainwise.errors import ConfigError
from trainwise.studies.base import Budget, Study, Variant

WARMUP_FRACTION = 0.1
HIGH_LR_FACTOR = 10.0


def check(cfg: RunConfig) -> None:
    if cfg.optimizer.lr == "auto":
        raise ConfigError("study warmup compares the config's lr with ten times it, so it needs a number, got "
                          "optimizer.lr=auto; run trainwise lr-find CONFIG and pass optimizer.lr=<its suggestion>")


def variants(cfg: RunConfig, budget: Budget) -> list[Variant]:
    lr = float(cfg.optimizer.lr)
    out = []
    for tag, value in (("lr", lr), ("high-lr", lr * HIGH_LR_FACTOR)):
        for warm, warmup in (("no-warmup", 0), ("warmup", WARMUP_FRACTION)):
            out.append(Variant(f"{warm}-{tag}", {"schedule.warmup": warmup, "optimizer.lr": value},
                               f"{warm.replace('-', ' ')} @ lr {value:.3g}"))
    return out


STUDY = Study(
    name="warmup",
    factor=("schedule.warmup", "optimizer.lr"),
    question="Does a linear warmup help, at the config's lr and at ten times it?",
    claim="warmup is essential for transformers, most of all at a high lr",
    variants=variants,
    budget=Budget(seeds=3, epochs=3),
    check=check,
    groups=("optimizer.lr",),
)
