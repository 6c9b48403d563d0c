"""One pass over a split in eval mode: loss and metrics as running sums on the device, read once.
No outputs are kept for a split: every figure is a sum over batches (a user's metrics too, for
per-position targets, as a mean over batches weighted by their counted positions)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from trainwise.distributed.ops import all_reduce_sums, gather
from trainwise.errors import DataError
from trainwise.data.loader import batch_length
from trainwise.metrics import (BinaryMeter, ClassificationMeter, MultiLabelMeter, RegressionMeter, TokenMeter,
                               compute_user_metrics)


@dataclass
class EvalStep:
    """How to get the loss terms, predictions and targets of a batch (the trainer's own methods)."""

    model: nn.Module
    terms: Callable[[nn.Module, Any], tuple[torch.Tensor, Any, Any, Optional[torch.Tensor]]]
    rule: Callable[[], Any]  # the run's LossRule, once decided
    compute_loss: Optional[Callable[[nn.Module, Any], torch.Tensor]]  # a user override, if any
    autocast_dtype: Optional[torch.dtype]
    device: torch.device

    def __call__(self, batch: Any) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor], torch.Tensor, Any]:
        """``(predictions, targets, loss_sum, count)``; predictions and targets are None when only a
        user's ``compute_loss`` understands the batch."""
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            if self.compute_loss is not None:
                n = batch_length(batch)
                return None, None, self.compute_loss(self.model, batch).float() * n, n
            total, count, outputs, targets = self.terms(self.model, batch)
            return None if outputs is None else outputs.float(), targets, total.float(), count


class LossMeter:
    """The mean loss alone, for batches only a user's ``compute_loss`` understands."""

    def __init__(self, device: torch.device) -> None:
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.loss_count = torch.zeros((), dtype=torch.float64, device=device)

    def update(self, outputs: Any, targets: Any, loss_sum: torch.Tensor, count: Any) -> None:
        self.loss_sum += loss_sum.detach().double()
        self.loss_count += count

    def compute(self) -> dict[str, float]:
        return {"loss": self.loss_sum.item() / max(self.loss_count.item(), 1e-12)}


class _UserMetrics:
    """A user's ``fn(outputs, targets)``: over the whole split for per-sample targets (as before), or
    as a running mean weighted by counted positions for per-position targets (logits never kept)."""

    def __init__(self, metrics: dict[str, Callable], running: bool) -> None:
        self.metrics, self.running = metrics, running
        self.outputs: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []
        self.sums: dict[str, float] = {}
        self.weight = 0.0

    def update(self, outputs: torch.Tensor, targets: torch.Tensor, count: Any) -> None:
        if not self.running:
            self.outputs.append(outputs)
            self.targets.append(targets)
            return
        weight = float(count)
        for name, value in compute_user_metrics(self.metrics, outputs, targets).items():
            self.sums[name] = self.sums.get(name, 0.0) + value * weight
        self.weight += weight

    def compute(self, device: torch.device, distributed: bool) -> dict[str, float]:
        if self.running:
            parts = gather((self.sums, self.weight)) if distributed else [(self.sums, self.weight)]
            total = sum(weight for _, weight in parts)
            return {name: sum(sums.get(name, 0.0) for sums, _ in parts) / max(total, 1e-12) for name in self.metrics}
        outputs, targets = self.outputs, self.targets
        if distributed:
            outputs = [t.to(device) for part in gather([t.cpu() for t in outputs]) for t in part]
            targets = [t.to(device) for part in gather([t.cpu() for t in targets]) for t in part]
        return compute_user_metrics(self.metrics, torch.cat(outputs), torch.cat(targets)) if outputs else {}


@torch.inference_mode()
def evaluate_batches(step: EvalStep, batches: Any, *, metrics: dict[str, Callable],
                     target_std: Optional[Sequence[float]] = None,
                     limit: Optional[int] = None) -> tuple[dict[str, float], Any]:
    """Loss and metrics over ``batches`` (the first ``limit`` of them when given); returns
    ``(figures, meter)``."""
    plan = getattr(batches, "plan", None)
    if plan is not None and plan.world_size > 1 and not plan.every_rank_has_data():  # all ranks refuse alike
        raise DataError(f"{plan.world_size} processes need at least {plan.world_size} samples to evaluate, got "
                        f"{plan.num_samples} (evaluation batch size {plan.batch_size}); evaluate in one process, "
                        "or on more samples")
    model = step.model
    was_training = model.training
    model.eval()
    batches.set_epoch(0)
    meter: Any = None
    user: Optional[_UserMetrics] = None
    try:
        for index, batch in enumerate(batches):
            if limit is not None and index >= limit:
                break
            outputs, targets, loss_sum, count = step(batch)
            if meter is None:
                meter = _meter_for(step.rule(), outputs, targets, step.device, target_std)
                user = _UserMetrics(metrics, running=bool(getattr(step.rule(), "positions", False)))
            if isinstance(meter, LossMeter):
                meter.update(None, None, loss_sum, count)
                continue
            if isinstance(meter, (RegressionMeter, BinaryMeter, MultiLabelMeter)) and outputs.shape != targets.shape:
                targets = targets.reshape(outputs.shape)
            if getattr(step.rule(), "soft_labels", False):
                targets = targets.argmax(dim=step.rule().class_axis)  # accuracy against the likeliest class
            meter.update(outputs, targets, loss_sum, count)
            if metrics:
                user.update(outputs, targets, count)
    finally:
        model.train(was_training)
    distributed = getattr(batches, "world_size", 1) > 1
    if distributed and any(gather(meter is None)):  # a stream's share can be empty: every rank refuses alike
        raise DataError(f"{batches.world_size} processes need at least one sample each to evaluate, and a share of "
                        "this split is empty; evaluate in one process, or on more samples")
    if meter is None:
        raise DataError("cannot evaluate on an empty data set")
    if distributed:  # DDP: each rank saw its share; the sums make the whole split
        all_reduce_sums(meter)
    figures = meter.compute()
    if metrics and not isinstance(meter, LossMeter):
        figures.update(user.compute(step.device, distributed))
    return figures, meter


def _meter_for(rule: Any, outputs: Optional[torch.Tensor], targets: Optional[torch.Tensor], device: torch.device,
               target_std: Optional[Sequence[float]]) -> Any:
    task = getattr(rule, "task", None)
    if outputs is None or targets is None or task is None:
        return LossMeter(device)
    if task == "classification" and rule.positions:
        return TokenMeter(rule.class_axis, device, rule.ignore_index,
                          perplexity=rule.label in ("cross_entropy", "model"))
    if task == "classification":
        return ClassificationMeter(outputs.shape[1], device, rule.ignore_index)
    if task == "binary":  # K logits per sample are K labels (multi-label), one logit a binary class
        labels = math.prod(outputs.shape[1:])
        return MultiLabelMeter(labels, device) if labels > 1 else BinaryMeter(device)
    return RegressionMeter(device, target_std)
