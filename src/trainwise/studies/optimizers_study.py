"""The optimizers study: SGD with momentum, Adam, AdamW, RMSprop and Adagrad, each at the lr its
own LR range test picks when the config says ``optimizer.lr: auto`` (their good lrs differ by
orders of magnitude), else at the config's lr."""

from __future__ import annotations

from trainwise.config.schema import RunConfig
from trainwise.studies.base import Budget, Study, Variant

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad")


def variants(cfg: RunConfig, budget: Budget) -> list[Variant]:
    return [Variant(name, {"optimizer.name": name}) for name in OPTIMIZERS]


STUDY = Study(
    name="optimizers",
    factor=("optimizer.name",),
    question="Which optimizer does best on this model and data in a fixed budget?",
    claim="Adam-family optimizers train faster out of the box; tuned SGD with momentum can match them",
    variants=variants,
    budget=Budget(seeds=3, epochs=10),
    lr_per_variant=True,
)
