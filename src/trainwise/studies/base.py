"""What a study is: a factor, its variants (each a set of config overrides) and a default budget.

A variant differs from the config in exactly the studied factor; the runner adds what every run of
a study shares (seed, budget, early stopping off so each run trains for the whole budget, no per-run
report) and trains each variant once per seed.

Example:
    >>> from trainwise.studies import get_study
    >>> study = get_study("dropout")
    >>> [v.name for v in study.variants(load_config("examples/digits.yaml"), study.budget)]
    ['p0.0', 'p0.1', 'p0.3', 'p0.5', 'p0.7']
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from trainwise.config.schema import RunConfig
from trainwise.errors import ConfigError

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass(frozen=True)
class Variant:
    """One level of the studied factor.

    Attributes:
        name: folder-safe name (``he``, ``batch-bs8``); run folders are ``<name>-seed<k>``.
        overrides: config keys (dotted, ``model.init``) and the values this variant sets; a
            section name (``schedule``) replaces the whole section.
        label: how tables and plots name it (defaults to ``name``).
    """

    name: str
    overrides: dict[str, Any]
    label: str = ""

    def __post_init__(self) -> None:
        if not _SAFE_NAME.match(self.name):
            raise ValueError(f"variant name must be folder-safe, got {self.name!r}")
        if not self.label:
            object.__setattr__(self, "label", self.name)


@dataclass(frozen=True)
class Budget:
    """How long each run trains and how many seeds each variant gets. ``steps`` (optimizer
    updates) wins over ``epochs`` when set; ``train_samples`` trains on the first that many samples
    of one seeded shuffle of the train split (the same for every run), None for all."""

    seeds: int = 3
    epochs: int = 10
    steps: Optional[int] = None
    train_samples: Optional[int] = None


@dataclass(frozen=True)
class Study:
    """A study's definition.

    Attributes:
        name: what the user types (``trainwise study <name>``).
        factor: the config keys the variants change, for the report.
        question: one line: what the study asks.
        claim: what the guides claim, for the report to hold the results against.
        variants: ``variants(cfg, budget) -> [Variant, ...]`` for a config and budget.
        budget: the default budget (README lists them).
        check: raises a ConfigError when the study cannot apply to a config.
        measure: extra measurements: ``grad_norms`` (per layer, at step 0 and during training),
            ``activations`` (mean, std, share of zeros per activation layer at init and at the end).
        groups: override keys to compare within (``data.batch_size``: norms compared at each batch
            size); empty: every variant against every other.
        grid: two override keys for a heat map (rows, columns), or None.
        lr_per_variant: ``optimizer.lr: auto`` is settled by a range test per variant (optimizers,
            whose lrs differ by orders of magnitude) instead of once for the base config.
        equal_updates: variants that change the batch size train for the same number of optimizer
            steps (an epochs budget becomes that many epochs at the config's own batch size), so a
            large batch is not judged on a fraction of a small one's updates.
    """

    name: str
    factor: tuple[str, ...]
    question: str
    claim: str
    variants: Callable[[RunConfig, Budget], list[Variant]]
    budget: Budget = field(default_factory=Budget)
    check: Optional[Callable[[RunConfig], None]] = None
    measure: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    grid: Optional[tuple[str, str]] = None
    lr_per_variant: bool = False
    equal_updates: bool = False


def user_model(cfg: RunConfig) -> bool:
    return ":" in cfg.model.name


def require_builtin_model(study: str, cfg: RunConfig, option: str) -> None:
    """A study that sets ``model.<option>`` cannot apply to a user factory model."""
    if user_model(cfg):
        raise ConfigError(f"study {study} sets model.{option}, which a user model ({cfg.model.name!r}) does not "
                          "take; use a built-in model (mlp, cnn, resnet, gru, lstm)")
