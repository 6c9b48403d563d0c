"""The normalization study: no norm, BatchNorm, LayerNorm and GroupNorm while the batch size goes
from 8 to 512, every other setting as in the config (the lr too: add ``optimizer.lr_scaling`` to
the config to scale it with the batch). Every run takes the same number of optimizer steps (equal
updates): with equal epochs a batch of 8 would take 64 times the updates of a batch of 512."""

from __future__ import annotations

from trainwise.config.schema import RunConfig
from trainwise.errors import ConfigError
from trainwise.studies.base import Budget, Study, Variant

BATCH_SIZES = (8, 32, 128, 512)
# Built-in models that take model.norm, and the norms each takes.
NORMS_BY_MODEL = {"mlp": ("none", "batch", "layer"), "cnn": ("none", "batch", "layer", "group"),
                  "resnet": ("none", "batch", "layer", "group")}


def supported() -> str:
    return "; ".join(f"{model} ({', '.join(norms)})" for model, norms in NORMS_BY_MODEL.items())


def check(cfg: RunConfig) -> None:
    if cfg.model.name not in NORMS_BY_MODEL:
        raise ConfigError(f"study normalization needs a model with norm layers, got model.name={cfg.model.name!r}; "
                          f"models that take model.norm: {supported()}")


def variants(cfg: RunConfig, budget: Budget) -> list[Variant]:
    return [Variant(f"{norm}-bs{batch}", {"model.norm": norm, "data.batch_size": batch}, f"{norm} @ {batch}")
            for norm in NORMS_BY_MODEL[cfg.model.name] for batch in BATCH_SIZES]


STUDY = Study(
    name="normalization",
    factor=("model.norm", "data.batch_size"),
    question="How does each normalization layer hold up as the batch size shrinks?",
    claim="BatchNorm degrades at batch 8 (noisy batch statistics) where LayerNorm and GroupNorm do not",
    variants=variants,
    budget=Budget(seeds=3, epochs=1, train_samples=8000),
    equal_updates=True,
    check=check,
    measure=("activations",),
    groups=("data.batch_size", "model.norm"),
    grid=("model.norm", "data.batch_size"),
)
