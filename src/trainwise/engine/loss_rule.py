"""Where the loss comes from and what task the metrics follow, decided once from the first batch.

The loss is a name (``cross_entropy``, ``focal``, ``mse``, ``mae``, ``huber``), a user's callable
``(outputs, targets) -> tensor`` (given outputs and targets exactly as the model and the data gave
them: no reshape), or the model's own ``outputs.loss`` (no ``loss=`` given and the model returns
one). Every rule gives ``(loss_sum, count)`` for a batch: the engine divides the sum of a whole
optimizer step by the count of the whole step (all micro-batches, all ranks).

The task is never guessed from an output's rank alone: integer targets whose shape fits the outputs
without one class axis mean classification (the class axis recorded); float targets of the outputs'
shape (or as many values) mean regression; anything else needs ``task=``, and says so with both
shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import nn

from trainwise.errors import ConfigError, DataError
from trainwise.losses import (IGNORE_INDEX, CheckedLoss, class_axis_for, cross_entropy_mean, cross_entropy_sum,
                              per_sample_cross_entropy, soft_cross_entropy_sum)
from trainwise.metrics import REGRESSION_LOSSES, build_loss, build_weighted_loss, loss_label, task_of_loss

TASKS = ("classification", "regression", "binary")


@dataclass(frozen=True)
class LossRule:
    """How a batch's loss is computed (see the module's docstring).

    ``source``: ``named``, ``callable`` or ``model``. ``class_axis``: 1 or -1 for classification
    (None otherwise). ``positions``: the targets have axes beyond the sample axis (tokens, pixels),
    so figures count positions, not samples. ``soft_labels``: float class probabilities."""

    source: str
    label: str
    task: Optional[str]
    class_axis: Optional[int] = None
    positions: bool = False
    soft_labels: bool = False
    ignore_index: int = IGNORE_INDEX
    label_smoothing: float = 0.0
    class_weights: Optional[torch.Tensor] = None
    mean_fn: Optional[Callable[..., torch.Tensor]] = None
    weighted_fn: Optional[Callable[..., torch.Tensor]] = None
    reshape_targets: bool = False  # a named or torch loss of known shape contract: targets like the outputs
    warning: Optional[str] = None  # said once when the class axis was a choice (T == V)
    shift_labels: bool = False  # targets scored one position on (a causal LM's labels = input_ids)

    def terms(self, outputs: torch.Tensor, targets: torch.Tensor,
              weights: Optional[torch.Tensor]) -> tuple[torch.Tensor, Any]:
        """``(loss_sum, count)`` of one batch."""
        if self.label == "cross_entropy":
            return self._cross_entropy(outputs, targets, weights)
        targets = self._shaped_targets(outputs, targets)
        if weights is not None:
            weights = weights.reshape(-1).to(outputs.dtype if outputs.is_floating_point() else torch.float32)
            mean = self.weighted_fn(outputs, targets, weights)
            return mean * weights.sum(), weights.sum()
        n = outputs.shape[0] if outputs.dim() else 1
        return self.mean_fn(outputs, targets) * n, n

    def mean_terms(self, outputs: torch.Tensor, targets: torch.Tensor, weights: Optional[torch.Tensor], *,
                   all_counted: bool) -> Optional[tuple[torch.Tensor, Any]]:
        """``(mean, count)`` of a batch that is a whole optimizer step, where the mean comes without extra
        ops (no multiply by the count, no division back, no count of ignored positions); None where only
        ``terms`` gives it exactly. ``all_counted``: the batch's targets hold no ``ignore_index``."""
        if weights is not None:
            return None
        if self.label == "cross_entropy":
            if self.soft_labels or self.label_smoothing or self.class_weights is not None or not all_counted:
                return None
            return cross_entropy_mean(outputs, targets if targets.dtype in (torch.long, torch.uint8) else targets.long(),
                                      class_axis=self.class_axis or 1)
        return self.mean_fn(outputs, self._shaped_targets(outputs, targets)), outputs.shape[0] if outputs.dim() else 1

    def _shaped_targets(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.reshape_targets:  # torch's regression and BCE losses want float targets of the outputs' shape
            if outputs.shape != targets.shape and outputs.numel() == targets.numel():
                targets = targets.reshape(outputs.shape)
            if not targets.is_floating_point():
                targets = targets.to(outputs.dtype)
        return targets

    def _cross_entropy(self, outputs: torch.Tensor, targets: torch.Tensor,
                       weights: Optional[torch.Tensor]) -> tuple[torch.Tensor, Any]:
        axis = self.class_axis or 1
        if self.soft_labels:
            return soft_cross_entropy_sum(outputs, targets, class_axis=axis, label_smoothing=self.label_smoothing)
        if targets.dtype not in (torch.long, torch.uint8):  # float class indices, int32 labels: torch takes int64
            targets = targets.long()
        options = dict(class_axis=axis, ignore_index=self.ignore_index, label_smoothing=self.label_smoothing,
                       class_weights=self.class_weights)
        if weights is None:
            return cross_entropy_sum(outputs, targets, **options)
        weights = weights.reshape(-1).float()
        return (per_sample_cross_entropy(outputs, targets, **options) * weights).sum(), weights.sum()

    def describe(self) -> dict[str, Any]:
        """What data.json records of the rule."""
        return {"loss": self.label, "source": self.source, "task": self.task,
                "class_axis": self.class_axis, "positions": self.positions, "soft_labels": self.soft_labels,
                "ignore_index": self.ignore_index, "shift_labels": self.shift_labels, "warning": self.warning}


def _shapes(outputs: Any, targets: Any) -> str:
    return f"outputs of shape {tuple(outputs.shape)} and targets of shape {tuple(targets.shape)} ({targets.dtype})"


def decide_task(hint: Optional[str], outputs: torch.Tensor, targets: torch.Tensor,
                class_axis: Optional[int]) -> tuple[Optional[str], Optional[int], bool, Optional[str]]:
    """``(task, class_axis, soft_labels, warning)`` from the shapes, or from ``hint`` (``task=``);
    the warning says which axis was taken when both would fit."""
    integer = not targets.is_floating_point() or (hint == "classification" and outputs.shape != targets.shape
                                                   and bool(torch.equal(targets, targets.round())))
    if hint in ("regression", "binary"):
        return hint, None, False, None
    if hint == "classification" and targets.is_floating_point() and outputs.shape == targets.shape:
        return hint, class_axis or (1 if outputs.dim() == 2 else -1), True, None
    if integer and outputs.dim() == targets.dim() + 1:
        axis, warning = class_axis_for(outputs.shape, targets.shape, class_axis)
        return "classification", axis, False, warning
    if hint is None and targets.is_floating_point() and outputs.numel() == targets.numel():
        return "regression", None, False, None
    if hint == "classification":
        class_axis_for(outputs.shape, targets.shape, class_axis)  # raises, naming the shapes
    raise DataError(f"cannot tell the task from {_shapes(outputs, targets)}; pass task='classification' "
                    "(integer class targets with one more class axis in the outputs), task='regression' or "
                    "task='binary'")


def default_loss(task: Optional[str], outputs: torch.Tensor, targets: torch.Tensor,
                 values: Optional[torch.Tensor] = None) -> Any:
    """The loss when none is named: by ``task=`` (MSE for regression, BCE on logits for binary), else
    cross-entropy for float targets that are class probabilities (soft labels), MSE for other float
    targets with one value per output (refused when they are all 0 or 1: binary labels and regression
    targets look alike), else cross-entropy. ``values``: the targets whose values decide (all the
    training targets, or a whole batch), not the few samples the model was probed with."""
    if task == "regression":
        return "mse"
    if task == "binary":
        return nn.BCEWithLogitsLoss()
    if task is None and targets.is_floating_point() and outputs.numel() == targets.numel():
        values = targets if values is None or values.shape[1:] != targets.shape[1:] else values
        if _class_probabilities(outputs, targets, values):  # soft labels (one-hot, mixup): cross-entropy, as always
            return "cross_entropy"
        if bool(((values == 0) | (values == 1)).all()):
            raise DataError(f"cannot tell the task from {_shapes(outputs, targets)} whose values are all 0 or 1 "
                            f"({len(values)} targets read); pass task='binary' (one logit per label, BCE) or "
                            "task='regression' (MSE), or name a loss")
        return "mse"
    return "cross_entropy"


def _class_probabilities(outputs: torch.Tensor, targets: torch.Tensor, values: torch.Tensor) -> bool:
    """Targets of the outputs' shape that are a distribution over a class axis (1 or -1) of 2 or more,
    in every one of ``values``."""
    if outputs.shape != targets.shape or outputs.dim() < 2 or bool(((values < 0) | (values > 1)).any()):
        return False
    return any(outputs.shape[axis] >= 2 and bool(torch.allclose(values.sum(axis), torch.ones(()), atol=1e-3))
               for axis in (1, -1))


def decide_loss_rule(loss: Any, *, outputs: Optional[torch.Tensor], targets: Optional[torch.Tensor],
                     model_loss: Optional[torch.Tensor], task: Optional[str], class_axis: Optional[int],
                     ignore_index: int, label_smoothing: float, class_weights: Optional[torch.Tensor],
                     focal_gamma: float, batch_keys: Optional[list[str]] = None,
                     values: Optional[torch.Tensor] = None) -> LossRule:
    """The run's loss rule from the first batch's outputs and targets (``loss`` None: the model's own
    loss when it returns one, else cross-entropy; ``values``: more targets, whose values decide it)."""
    if task is not None and task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)} or None, got {task!r}")
    if loss is None and model_loss is not None:
        found = decide_task(task, outputs, targets, class_axis) if _tensor(outputs) and _tensor(targets) else None
        task_found, axis, _, warning = found if found is not None else (task, None, False, None)
        return LossRule("model", "model", task_found, axis, _positions(targets, task_found),
                        ignore_index=ignore_index, warning=warning)
    if targets is None:
        keys = f" (keys {batch_keys})" if batch_keys else ""
        raise DataError(f"the batches carry no target{keys} and the model returned no loss; give (inputs, targets) "
                        "batches or a 'labels' key, or return {'loss': ...} (or outputs.loss) from forward")
    if not _tensor(outputs):
        raise DataError(f"the model returned {type(outputs).__name__}, not a tensor of predictions")
    loss = default_loss(task, outputs, targets, values) if loss is None else loss
    known = task_of_loss(loss)
    if isinstance(loss, str):
        build_loss(loss, label_smoothing=label_smoothing, focal_gamma=focal_gamma)  # checks name and values
    chosen, axis, soft, warning = decide_task(task or known, outputs, targets, class_axis)
    if isinstance(loss, str) and loss in ("cross_entropy", "focal") and chosen != "classification":
        raise DataError(f"loss {loss!r} needs integer class targets: {_shapes(outputs, targets)}")
    positions = _positions(targets, chosen) and not soft
    if loss == "focal" and (positions or soft):
        raise DataError(f"loss 'focal' takes (N, C) outputs with (N,) targets, got {_shapes(outputs, targets)}; "
                        "use loss='cross_entropy' for per-position targets")
    weights = class_weights if isinstance(class_weights, torch.Tensor) else None
    _check_class_weights(weights, outputs, axis if chosen == "classification" else None)
    label = loss_label(loss)
    if loss == "cross_entropy":
        return LossRule("named", label, chosen, axis, positions, soft, ignore_index, label_smoothing, weights,
                        warning=warning)
    mean_fn = build_loss(loss, label_smoothing=label_smoothing, class_weights=weights, focal_gamma=focal_gamma)
    if not isinstance(loss, str):  # a user's callable: its first results are checked (one number, a gradient)
        mean_fn = CheckedLoss(mean_fn, label)
    weighted_fn = build_weighted_loss(loss, label_smoothing=label_smoothing, class_weights=weights,
                                      focal_gamma=focal_gamma)
    reshape = isinstance(loss, str) and loss in REGRESSION_LOSSES or known in ("regression", "binary")
    if reshape and outputs.numel() != targets.numel():  # torch would broadcast (N, 1) against (N, 3) in silence
        per = [f"shape {tuple(t.shape[1:])}" if t.dim() > 1 else "one value" for t in (outputs, targets)]
        raise DataError(f"the model gives outputs of {per[0]} per sample but the targets have {per[1]} per "
                        f"sample; loss {label!r} compares them value by value: make the model's last layer give "
                        "one output per target value")
    return LossRule("named" if isinstance(loss, str) else "callable", label, chosen, axis, positions, soft,
                    ignore_index, label_smoothing, weights, mean_fn, weighted_fn, reshape, warning)


def _check_class_weights(weights: Optional[torch.Tensor], outputs: torch.Tensor, axis: Optional[int]) -> None:
    """One weight per class of the outputs' class axis (``axis``; None: not classification)."""
    if weights is None:
        return
    if axis is None:
        raise DataError("class_weights apply to classification (integer class targets), and this run is not; "
                        "drop class_weights, or use sample weights: (inputs, targets, weights) batches")
    classes = outputs.shape[axis]
    if weights.numel() != classes:
        raise DataError(f"class_weights has {weights.numel()} weights but the model gives {classes} classes; "
                        f"give one weight per class ({classes}), or class_weights='balanced'")


def _tensor(value: Any) -> bool:
    return isinstance(value, torch.Tensor)


def _positions(targets: Optional[torch.Tensor], task: Optional[str]) -> bool:
    return task == "classification" and _tensor(targets) and targets.dim() > 1
