"""The init study: the same network started by each weight initialization scheme.

The guides' exercise: train one network from uniform[-1, 1], normal(0, 1), Xavier, He, LeCun,
orthogonal and LSUV starts and compare training speed, final accuracy and gradient magnitudes.
Depth is what separates the schemes: make the config's MLP deep with ``model.hidden=[...]``.
"""

from __future__ import annotations

from trainwise.config.schema import RunConfig
from trainwise.studies.base import Budget, Study, Variant

SCHEMES = (("uniform", "uniform[-1,1]"), ("normal", "normal(0,1)"), ("xavier", "xavier"), ("he", "he"),
           ("lecun", "lecun"), ("orthogonal", "orthogonal"), ("lsuv", "lsuv"))


def variants(cfg: RunConfig, budget: Budget) -> list[Variant]:
    return [Variant(name, {"model.init": name}, label) for name, label in SCHEMES]


STUDY = Study(
    name="init",
    factor=("model.init",),
    question="Which weight initialization trains this model fastest and best?",
    claim="a naive start (uniform[-1,1], normal(0,1)) trains markedly worse than He on a deep ReLU network; "
          "He/LSUV keep per-layer gradient norms level at step 0",
    variants=variants,
    budget=Budget(seeds=3, epochs=10),
    measure=("grad_norms", "activations"),
)
