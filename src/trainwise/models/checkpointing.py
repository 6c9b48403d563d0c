"""Gradient checkpointing for the built-in models (``model.checkpointing: true``).

A checkpointed segment keeps only its input for backward and runs its forward again when the
gradient reaches it: activation memory falls from the sum over segments to roughly one segment,
for about one more forward pass of compute. ``torch.utils.checkpoint`` runs with
``use_reentrant=False`` (the reentrant form gives wrong gradients, silently, when a segment's
input does not require grad and under DDP; see the research notes). The recomputation replays
the RNG (same dropout masks) and leaves batch norm's running statistics as one forward pass
left them, so a checkpointed model trains exactly as the plain one does.

The segments are views over the model's own layers: the parameter names, ``state_dict`` and
checkpoints are the same with checkpointing on or off.

Example:
    >>> model = build_model("resnet", input_shape=(1, 28, 28), num_outputs=10, checkpointing=True)
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def segments_of(layers: Sequence[nn.Module], starts: tuple[type, ...]) -> tuple[nn.Sequential, ...]:
    """Split ``layers`` into runs that each begin at a layer of a ``starts`` type (a Linear, a conv);
    the layers before the first such layer join the first run."""
    groups: list[list[nn.Module]] = [[]]
    for layer in layers:
        if isinstance(layer, starts) and any(isinstance(m, starts) for m in groups[-1]):
            groups.append([])
        groups[-1].append(layer)
    return tuple(nn.Sequential(*group) for group in groups if group)


def run_checkpointed(segments: Sequence[nn.Module], x: torch.Tensor, training: bool) -> torch.Tensor:
    """``x`` through ``segments`` in order, each checkpointed when training with gradients on."""
    if not (training and torch.is_grad_enabled()):
        for segment in segments:
            x = segment(x)
        return x
    for segment in segments:
        x = checkpoint(_Once(segment), x, use_reentrant=False)
    return x


class _Once:
    """Calls ``segment``; every call after the first (the recomputation during backward) leaves
    batch norm's running statistics and batch counter untouched."""

    def __init__(self, segment: nn.Module) -> None:
        self.segment, self.calls = segment, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == 1:
            return self.segment(x)
        with _frozen_batch_norm(self.segment):
            return self.segment(x)


@contextmanager
def _frozen_batch_norm(module: nn.Module) -> Iterator[None]:
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
             and m.training and m.track_running_stats]
    saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def saved_activation_bytes(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Bytes of the storages autograd keeps between forward and backward (each storage once) for
    one cross-entropy step: the activation memory that gradient checkpointing trades for compute."""
    import torch.nn.functional as F

    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        F.cross_entropy(model(x), y).backward()
    return sum(storages.values())
