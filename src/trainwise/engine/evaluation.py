"""One pass over a split in eval mode: loss and metrics, summed on the device and read once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from trainwise.distributed.ops import all_reduce_sums, gather
from trainwise.errors import DataError
from trainwise.data.loader import main_output
from trainwise.metrics import BinaryMeter, ClassificationMeter, RegressionMeter, compute_user_metrics


@dataclass
class EvalStep:
    """How to get outputs, targets and the loss of a batch (the trainer's own methods)."""

    model: nn.Module
    split_batch: Callable[[Any], tuple[Any, torch.Tensor, Optional[torch.Tensor]]]
    loss_of: Callable[[torch.Tensor, torch.Tensor, Optional[torch.Tensor]], torch.Tensor]
    compute_loss: Optional[Callable[[nn.Module, Any], torch.Tensor]]  # a user override, if any
    autocast_dtype: Optional[torch.dtype]
    device: torch.device

    def __call__(self, batch: Any) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor], torch.Tensor]:
        """``(outputs, targets, loss)``; outputs and targets are None when only a user's
        ``compute_loss`` understands the batch."""
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            if self.compute_loss is not None:
                return None, None, self.compute_loss(self.model, batch).float()
            inputs, targets, weights = self.split_batch(batch)
            outputs = main_output(self.model(inputs)).float()
            return outputs, targets, self.loss_of(outputs, targets, weights)


class LossMeter:
    """The mean loss alone, for batches only a user's ``compute_loss`` understands."""

    def __init__(self, device: torch.device) -> None:
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.count = 0

    def update(self, loss: torch.Tensor, n: int) -> None:
        self.loss_sum += loss.detach().double() * n
        self.count += n

    def compute(self) -> dict[str, float]:
        return {"loss": self.loss_sum.item() / max(self.count, 1)}


@torch.inference_mode()
def evaluate_batches(step: EvalStep, batches: Any, *, task: Optional[str], metrics: dict[str, Callable],
                     target_std: Optional[Sequence[float]] = None) -> tuple[dict[str, float], Any]:
    """Loss and metrics over ``batches``; returns ``(figures, meter)``."""
    from trainwise.data.loader import batch_length

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
    kept_outputs: list[torch.Tensor] = []
    kept_targets: list[torch.Tensor] = []
    try:
        for batch in batches:
            outputs, targets, loss = step(batch)
            if outputs is None:
                meter = meter or LossMeter(step.device)
                meter.update(loss, batch_length(batch))
                continue
            if meter is None:
                meter = _meter_for(task, outputs, targets, step.device, target_std)
            if isinstance(meter, (RegressionMeter, BinaryMeter)) and outputs.shape != targets.shape:
                targets = targets.reshape(outputs.shape)
            meter.update(outputs, targets, loss)
            if metrics:
                kept_outputs.append(outputs)
                kept_targets.append(targets)
    finally:
        model.train(was_training)
    if meter is None:
        raise DataError("cannot evaluate on an empty data set")
    if getattr(batches, "world_size", 1) > 1:  # DDP: each rank saw its share; the sums make the whole split
        all_reduce_sums(meter)
        if metrics:
            kept_outputs = [t.to(step.device) for part in gather([t.cpu() for t in kept_outputs]) for t in part]
            kept_targets = [t.to(step.device) for part in gather([t.cpu() for t in kept_targets]) for t in part]
    figures = meter.compute()
    if kept_outputs:
        figures.update(compute_user_metrics(metrics, torch.cat(kept_outputs), torch.cat(kept_targets)))
    return figures, meter


def _meter_for(task: Optional[str], outputs: torch.Tensor, targets: torch.Tensor, device: torch.device,
               target_std: Optional[Sequence[float]]) -> Any:
    if task is None:  # a loss that does not say: integer labels and one output per class mean classification
        classify = not targets.is_floating_point() and outputs.dim() == 2 and outputs.shape[1] > 1
        task = "classification" if classify else "regression"
    if task == "classification":
        return ClassificationMeter(outputs.shape[1], device)
    if task == "binary":
        return BinaryMeter(device)
    return RegressionMeter(device, target_std)
