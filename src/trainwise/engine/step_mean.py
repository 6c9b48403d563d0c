"""The loss of an optimizer step: the sum over its counted positions (samples, or tokens not equal
to ``ignore_index``) divided by their count over the whole step — every accumulation micro-batch,
every rank — never a mean of micro-batch means.

Each micro-batch backpropagates its loss *sum*; at the step, the gradients are divided once by the
step's count (``normalize_gradients``). Without accumulation the step's count is known before the
backward pass, and the loss itself is divided (``whole_step_loss``): one scalar operation instead of
a pass over every gradient. In one process, where the mean comes without extra ops (a named loss's
own mean; cross-entropy over in-memory targets that hold no ``ignore_index``), the micro-batch gives
its mean directly (``BatchLoss.step_terms``): no count op, no multiply, no division back. Under DDP, whose gradients are the ranks' average, the count
is the global one (agreed per micro-batch by ``distributed.ops.StepSync``) and the division is by
count / world size.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

import torch

from trainwise.distributed.ops import StepSync
from trainwise.engine.signals import StopSignals


def read_loss(loss: torch.Tensor, count: Any, step_sync: Optional[StepSync],
              signals: StopSignals, is_mean: bool = False) -> tuple[float, float]:
    """The micro-batch's mean loss and count, read on the host; under DDP the whole global
    micro-batch's, alike on all ranks (and a signal any rank received is noted in ``signals``).
    ``loss``: the micro-batch's summed loss, or its mean (``is_mean``)."""
    count = float(count)
    mean = loss.item() if is_mean else loss.item() / count if count else 0.0
    if step_sync is None:
        return mean, count
    value, total, signum = step_sync(torch.tensor(mean), count, signals.pending)
    if signum and signals.received is None:
        signals.received = signum
    return value, float(total)


def whole_step_loss(loss_sum: torch.Tensor, count: Any, world_size: int) -> torch.Tensor:
    """The loss to backpropagate when one micro-batch is the whole step (no accumulation): the
    division ``normalize_gradients`` would make on every gradient, made once on the scalar."""
    if isinstance(count, torch.Tensor):
        return loss_sum * (world_size / count.to(loss_sum.dtype).clamp_min(1e-12))
    return loss_sum if count == world_size else loss_sum * (world_size / max(count, 1e-12))


def normalize_gradients(parameters: Iterable[torch.nn.Parameter], count: Any, world_size: int) -> None:
    """Gradients of summed losses → gradients of the step's mean: one multiply per step.
    ``count``: the step's counted positions, a number or (accelerators, no host sync) a tensor."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    if isinstance(count, torch.Tensor):
        scale = world_size / count.to(grads[0].dtype).clamp_min(1e-12)
        torch._foreach_mul_(grads, scale.to(grads[0].device))
    elif count != world_size:
        torch._foreach_mul_(grads, world_size / max(count, 1e-12))
