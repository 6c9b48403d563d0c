"""LSUV (Mishkin & Matas, 2016): layer-sequential unit-variance rescaling on one batch, the
data-dependent step of ``trainwise.models.init``'s ``lsuv`` scheme."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import nn

from trainwise.errors import ConfigError

logger = logging.getLogger(__name__)


def check_lsuv_settings(
    sample_input: torch.Tensor | None, lsuv_tol: float, lsuv_max_iters: int
) -> torch.Tensor:
    if sample_input is None:
        raise ConfigError(
            "init scheme 'lsuv' needs sample_input, got None; pass one training batch, "
            "e.g. initialize(model, 'lsuv', sample_input=x[:256])"
        )
    if not isinstance(sample_input, torch.Tensor):
        raise ConfigError(f"sample_input must be a torch.Tensor, got {type(sample_input).__name__}")
    if not 0 < lsuv_tol < 1:
        raise ConfigError(f"lsuv_tol must be in (0, 1), got {lsuv_tol}")
    if (
        isinstance(lsuv_max_iters, bool)
        or not isinstance(lsuv_max_iters, int)
        or lsuv_max_iters < 1
    ):
        raise ConfigError(f"lsuv_max_iters must be an integer >= 1, got {lsuv_max_iters!r}")
    return sample_input


# Below this output variance a layer is dead (e.g. every ReLU off); rescaling would explode it.
_DEAD_VARIANCE = 1e-8


@torch.no_grad()
def lsuv_rescale(
    model: nn.Module, sample: torch.Tensor, tol: float, max_iters: int, names: dict[nn.Module, str]
) -> dict[str, dict[str, float]]:
    """Rescale each layer in ``names`` (weighted layer -> name) to unit output variance on ``sample``."""
    # Mishkin & Matas (2016): visit Linear/Conv layers in the order the forward pass calls them
    # and divide each weight by the std of its output on one batch until that variance is 1.
    # Eval mode: dropout off and batch norm left unchanged, so the measure is deterministic.
    was_training = model.training
    model.eval()
    try:
        results: dict[str, dict[str, float]] = {}
        for module in _output_variances(model, sample, list(names)):  # in call order
            rounds = 0
            variance = _output_variances(model, sample, [module])[module]
            while abs(variance - 1) > tol and rounds < max_iters and variance > _DEAD_VARIANCE:
                module.weight.mul_(variance**-0.5)
                rounds += 1
                variance = _output_variances(model, sample, [module])[module]
            if abs(variance - 1) > tol:
                logger.warning(
                    "lsuv: layer %s has output variance %.3g after %d rounds, wanted 1 +- %g",
                    *(names[module], variance, rounds, tol),
                )
            results[names[module]] = {"std": math.sqrt(variance), "iterations": rounds}
    finally:
        model.train(was_training)
    return results


def _output_variances(
    model: nn.Module, sample: torch.Tensor, modules: list[nn.Module]
) -> dict[nn.Module, float]:
    # One forward pass; each module's output variance at its first call, in call order.
    variances: dict[nn.Module, float] = {}

    def measure(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        if module not in variances:
            variances[module] = output.detach().float().var().item()

    handles = [module.register_forward_hook(measure) for module in modules]
    try:
        model(sample)
    except (RuntimeError, ValueError, TypeError) as error:
        raise ConfigError(
            f"lsuv could not run the model on sample_input of shape {tuple(sample.shape)}: "
            f"{error}; pass one batch shaped like the training inputs, on the model's device"
        ) from error
    finally:
        for handle in handles:
            handle.remove()
    return variances
