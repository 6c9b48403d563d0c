"""The run's two decisions about its batches — how a batch feeds the model (``CallRule``) and where
its loss comes from (``LossRule``) — made once, on the first batch, and the loss terms of every
batch by them. The ``Trainer`` owns one; its ``split_batch``/``compute_loss`` (which users may
override) and the loop, the evaluation and the prediction all go through it.

Example:
    >>> terms = BatchLoss(loss="cross_entropy", task=None, class_axis=None, ignore_index=-100,
    ...                   label_smoothing=0.0, focal_gamma=2.0, warn=print)
    >>> total, count, logits, targets = terms.terms(model, split, (ids, next_ids))
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import torch
from torch import nn

from trainwise.data.loader import batch_length, main_output
from trainwise.engine.batch_rule import CallRule, call_model, counted_targets, decide_call_rule, model_loss_of
from trainwise.engine.label_shift import ShiftLabels, decide_shift, shift_targets
from trainwise.engine.loss_rule import LossRule, decide_loss_rule
from trainwise.errors import DataError
from trainwise.metrics import Loss

Split = Callable[[Any], tuple[Any, Optional[torch.Tensor], Optional[torch.Tensor]]]


class BatchLoss:
    """The batch and loss rules of a run (None until the first batch), and the loss terms of a batch.

    ``class_weights``: a tensor on the device (or None); set before the loss rule is decided.
    ``shift_labels``: True, False or "auto" (``engine/label_shift.py``); ``note`` says what was decided."""

    def __init__(self, *, loss: Optional[Loss], task: Optional[str], class_axis: Optional[int], ignore_index: int,
                 label_smoothing: float, focal_gamma: float, warn: Callable[[str], None],
                 note: Callable[[str], None] = print, shift_labels: ShiftLabels = "auto") -> None:
        self.loss, self.task, self.class_axis, self.ignore_index = loss, task, class_axis, ignore_index
        self.label_smoothing, self.focal_gamma, self.warn, self.note = label_smoothing, focal_gamma, warn, note
        self.shift_labels = shift_labels
        self.class_weights: Optional[torch.Tensor] = None
        self.all_counted = False  # the training targets hold no ignore_index (set by fit, read by step_terms)
        self.call: Optional[CallRule] = None
        self.rule: Optional[LossRule] = None

    def call_rule_for(self, batch: Any, model: nn.Module) -> CallRule:
        if self.call is None:
            self.call = decide_call_rule(batch, model, model_loss=self.loss is None)
            if self.call.unused_keys:
                self.warn(f"batch keys {list(self.call.unused_keys)} are neither taken by "
                          f"{type(model).__name__}.forward() nor a target; the model does not see them")
        return self.call

    def rule_for(self, raw_outputs: Any, targets: Optional[torch.Tensor], inputs: Any = None,
                 values: Optional[torch.Tensor] = None) -> LossRule:
        """The loss rule, decided on the first outputs the model gave for ``inputs`` (see
        ``engine/loss_rule.py``; ``values``: more targets, whose values tell soft labels and 0/1 labels),
        with whether its targets are shifted (``engine/label_shift.py``)."""
        if self.rule is None:
            outputs = predictions_or_none(raw_outputs)
            if outputs is None and model_loss_of(raw_outputs) is None:
                main_output(raw_outputs)  # raises: what the model returned and what it should return
            keys = list(self.call.input_keys) if self.call is not None and self.call.kind != "tuple" else None
            self.rule = decide_loss_rule(
                self.loss, outputs=outputs, targets=targets, model_loss=model_loss_of(raw_outputs), task=self.task,
                class_axis=self.class_axis, ignore_index=self.ignore_index, label_smoothing=self.label_smoothing,
                class_weights=self.class_weights, focal_gamma=self.focal_gamma, batch_keys=keys, values=values)
            if self.rule.warning:
                self.warn(self.rule.warning)
            self._decide_shift(self.rule, raw_outputs, targets, inputs)
        return self.rule

    def _decide_shift(self, rule: LossRule, raw_outputs: Any, targets: Optional[torch.Tensor], inputs: Any) -> None:
        try:
            shift, message = decide_shift(
                self.shift_labels, inputs=inputs, targets=targets, outputs=predictions_or_none(raw_outputs),
                model_loss=model_loss_of(raw_outputs), source=rule.source, ignore_index=rule.ignore_index,
                class_axis=rule.class_axis, target_key=self.call.target_key if self.call is not None else None)
        except DataError:
            self.rule = None  # decided again (and refused again) on the next try
            raise
        self.rule = dataclasses.replace(rule, shift_labels=shift)
        if message and shift:
            self.note(message)
        elif message:
            self.warn(message)

    def mean_loss(self, outputs: torch.Tensor, targets: torch.Tensor,
                  weights: Optional[torch.Tensor]) -> torch.Tensor:
        """The mean loss of a batch's predictions, its targets shifted when the run shifts them."""
        rule = self.rule_for(outputs, targets)
        if rule.shift_labels:
            targets = shift_targets(targets, rule.ignore_index)
        total, count = rule.terms(outputs, targets, weights)
        return total / count

    def terms(self, model: nn.Module, split: Split,
              batch: Any) -> tuple[torch.Tensor, Any, Any, Optional[torch.Tensor]]:
        """``(loss_sum, count, predictions, targets)`` of one batch: the sum over counted positions
        (samples, or tokens not equal to ``ignore_index``) and their count."""
        rule, raw, targets, weights = self._forward(model, split, batch)
        if rule.source == "model":
            loss, count = self._model_loss(raw, targets, batch)
            return loss * count, count, predictions_or_none(raw), targets
        outputs = main_output(raw)
        total, count = rule.terms(outputs, targets, weights)
        return total, count, outputs, targets

    def step_terms(self, model: nn.Module, split: Split, batch: Any) -> tuple[torch.Tensor, Any, bool]:
        """``(loss, count, is_mean)`` of a training batch that is a whole optimizer step (no accumulation,
        one process): its mean where that comes without extra ops, else its sum (``is_mean`` False)."""
        rule, raw, targets, weights = self._forward(model, split, batch)
        if rule.source == "model":
            return (*self._model_loss(raw, targets, batch), True)
        outputs = main_output(raw)
        mean = rule.mean_terms(outputs, targets, weights, all_counted=self.all_counted and not rule.shift_labels)
        if mean is not None:
            return (*mean, True)
        return (*rule.terms(outputs, targets, weights), False)

    def _forward(self, model: nn.Module, split: Split, batch: Any) -> tuple[LossRule, Any, Any, Any]:
        """``(rule, raw outputs, targets, weights)``: the model called on the batch's inputs."""
        inputs, targets, weights = split(batch)
        raw = call_model(model, inputs)
        rule = self.rule_for(raw, targets, inputs)
        if rule.shift_labels and targets is not None:  # the model got the labels as given; metrics score t + 1
            targets = shift_targets(targets, rule.ignore_index)
        return rule, raw, targets, weights

    def _model_loss(self, raw: Any, targets: Optional[torch.Tensor], batch: Any) -> tuple[torch.Tensor, Any]:
        """The model's own mean loss and the count it averages over."""
        loss = model_loss_of(raw)
        if loss is None:
            raise DataError("the model returned no loss for this batch (outputs['loss'] / outputs.loss), "
                            "though it did for the first; return one for every batch, or pass loss=")
        return loss, counted_targets(targets, self.rule.ignore_index, batch_length(batch))


def predictions_or_none(outputs: Any) -> Optional[torch.Tensor]:
    """The prediction tensor of a model's outputs, or None (a model returning only ``{"loss": ...}``)."""
    try:
        return main_output(outputs)
    except DataError:
        return None
