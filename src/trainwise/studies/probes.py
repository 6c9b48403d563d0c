"""Measurements a study takes inside a run: per-layer gradient norms (at step 0, before any update
or clipping, and every few steps during training) and activation statistics (mean, std and the
share of exact zeros after each activation layer, on a fixed batch, at init and after training)."""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
from torch import nn

from trainwise.callbacks.base import Callback
from trainwise.models.layers import ACTIVATIONS

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def weighted_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, _WEIGHTED)]


def layer_grad_norms(model: nn.Module) -> dict[str, float]:
    """The L2 norm of each weighted layer's weight gradient (layers without one are left out)."""
    return {name: float(m.weight.grad.norm()) for name, m in weighted_layers(model) if m.weight.grad is not None}


def grad_norms_at_init(model: nn.Module, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                       x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Per-layer gradient norms of one batch at the start, unclipped; the model is left as it was
    (weights, BatchNorm statistics and gradients)."""
    saved = copy.deepcopy(model.state_dict())
    model.train()
    model.zero_grad(set_to_none=True)
    loss(model(x), y).backward()
    norms = layer_grad_norms(model)
    model.zero_grad(set_to_none=True)
    model.load_state_dict(saved)
    return norms


def _is_activation(module: nn.Module) -> bool:
    return type(module).__name__.lower() in ACTIVATIONS or isinstance(
        module, (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.SELU, nn.Tanh, nn.Sigmoid))


@torch.no_grad()
def activation_stats(model: nn.Module, x: torch.Tensor) -> dict[str, dict[str, float]]:
    """Mean, std and share of zeros of each activation layer's output on ``x`` (eval mode)."""
    stats: dict[str, dict[str, float]] = {}
    hooks = []
    for name, module in model.named_modules():
        if _is_activation(module):
            def hook(_m: nn.Module, _inp: Any, out: torch.Tensor, name: str = name) -> None:
                out = out.float()
                stats[name] = {"mean": float(out.mean()), "std": float(out.std()),
                               "zeros": float((out == 0).float().mean())}
            hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        model.train(was_training)
        for handle in hooks:
            handle.remove()
    return stats


class GradNormRecorder(Callback):
    """Records per-layer gradient norms every ``every`` optimizer steps (after clipping, just before
    the update), as ``rows``: ``[{"step": s, "norms": {layer: norm}}]``; travels in checkpoints."""

    def __init__(self, every: int) -> None:
        self.every = max(1, int(every))
        self.rows: list[dict[str, Any]] = []

    def on_before_optimizer_step(self, trainer: Any, optimizer: torch.optim.Optimizer) -> None:
        if trainer.state.step % self.every == 0:
            self.rows.append({"step": trainer.state.step, "norms": layer_grad_norms(trainer.model)})

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = list(state.get("rows", []))
