"""Cross-entropy over outputs of any shape, as a sum over counted positions and their count.

Targets are integer class indices of shape ``(N, *S)`` and the outputs have one more axis of C
classes: the last one (``(N, T, V)``, the Hugging Face / Keras / nanoGPT habit) or axis 1
(``(N, C, H, W)``, PyTorch's). Positions whose target is ``ignore_index`` count nowhere. Float
targets of the outputs' own shape are soft labels (class probabilities along the class axis).

Every function returns ``(loss_sum, count)``: the engine divides the sum of a whole optimizer
step (all accumulation micro-batches, all ranks) by the count of the whole step, so a step's loss
is never a mean of micro-batch means.

Example:
    >>> logits, y = torch.randn(2, 5, 7), torch.tensor([[1, 2, 3, -100, -100], [0, 1, 2, 3, 4]])
    >>> axis = class_axis_for(logits.shape, y.shape)          # -1: the last axis holds the classes
    >>> total, count = cross_entropy_sum(logits, y, class_axis=axis)
    >>> torch.allclose(total / count, F.cross_entropy(logits.view(-1, 7), y.view(-1)))
    True
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from trainwise.errors import ConfigError, DataError

IGNORE_INDEX = -100  # PyTorch's default; nanoGPT-style data uses -1


def _fits(outputs: Sequence[int], targets: Sequence[int], axis: int) -> bool:
    outputs, targets = tuple(outputs), tuple(targets)
    if len(outputs) != len(targets) + 1 or len(outputs) < 2:
        return False
    rest = outputs[:-1] if axis == -1 else outputs[:1] + outputs[2:]
    return rest == targets


def class_axis_for(outputs_shape: Sequence[int], targets_shape: Sequence[int],
                   override: Optional[int] = None) -> tuple[int, Optional[str]]:
    """The class axis (1 or -1) of integer targets ``(N, *S)`` against outputs with one more axis,
    and a warning when both would fit (``(N, T, V)`` with T == V: the last axis is taken). Raises
    one clear error when no axis fits, or when ``override`` does not."""
    outputs, targets = tuple(outputs_shape), tuple(targets_shape)
    if override is not None:
        if override not in (1, -1):
            raise ConfigError(f"class_axis must be 1 (PyTorch's (N, C, ...)) or -1 (the last axis, (N, T, V)), "
                              f"got {override!r}")
        if not _fits(outputs, targets, override):
            raise DataError(f"class_axis={override} does not fit outputs of shape {outputs} and targets of shape "
                            f"{targets}: without the class axis the outputs must have the targets' shape")
        return override, None
    last, first = _fits(outputs, targets, -1), _fits(outputs, targets, 1)
    if len(outputs) == 2 and last:  # (N, C): both axes are the same one
        return 1, None
    if last and first:
        return -1, (f"outputs {outputs} and targets {targets} fit a class axis both last and at 1; the last axis "
                    f"(size {outputs[-1]}) holds the classes. Pass class_axis=1 if it is the other one")
    if last:
        return -1, None
    if first:
        return 1, None
    if len(targets) == len(outputs) and targets[-1] == 1 and targets[:-1] == outputs[:-1]:  # Keras' (N, 1) labels
        raise DataError(f"integer targets of shape {targets} hold one class index per sample in a trailing axis of "
                        f"size 1, against outputs of shape {outputs}: give one index per sample without that axis, "
                        "(N,) for a batch of N (y.reshape(-1), or y.squeeze(-1))")
    raise DataError(f"integer targets of shape {targets} do not fit outputs of shape {outputs}: cross-entropy needs "
                    "outputs with one more axis of classes, last ((N, T, C) for targets (N, T)) or at 1 "
                    "((N, C, H, W) for targets (N, H, W)); fix the model's output or the targets, or pass a loss "
                    "callable and task=")


def _flat(outputs: torch.Tensor, targets: torch.Tensor, class_axis: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(positions, C)`` logits and ``(positions,)`` targets; no copy for the last axis."""
    if outputs.dim() == 2 and targets.dim() == 1:  # (N, C) and (N,): already flat (the common case; no op)
        return outputs, targets
    if class_axis != -1 and outputs.dim() > 2:
        outputs = outputs.movedim(class_axis, -1)
    return outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1)


def _per_position(outputs: torch.Tensor, targets: torch.Tensor, *, class_axis: int, ignore_index: int,
                  label_smoothing: float, class_weights: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each position's loss and its weight in the count (0 for ignored positions), flat."""
    logits, flat_targets = _flat(outputs, targets, class_axis)
    counted = flat_targets != ignore_index
    safe = flat_targets.masked_fill(~counted, 0)
    log_p = F.log_softmax(logits.float(), dim=-1)
    nll = -log_p.gather(1, safe.unsqueeze(1)).squeeze(1)
    weight = counted.to(log_p.dtype)
    if class_weights is not None:
        weight = weight * class_weights[safe]
    if label_smoothing:
        smooth = -(log_p * class_weights).sum(-1) if class_weights is not None else -log_p.sum(-1)
        nll_part = nll * class_weights[safe] if class_weights is not None else nll
        loss = (1 - label_smoothing) * nll_part + label_smoothing * smooth / logits.shape[-1]
    else:
        loss = nll * weight
    return loss.masked_fill(~counted, 0), weight


def cross_entropy_sum(outputs: torch.Tensor, targets: torch.Tensor, *, class_axis: int = 1,
                      ignore_index: int = IGNORE_INDEX, label_smoothing: float = 0.0,
                      class_weights: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss_sum, count)`` of hard-label cross-entropy; positions with ``ignore_index`` count in
    neither. With ``class_weights`` the count is the targets' weight sum (PyTorch's weighted mean).
    ``label_smoothing`` mixes in the mean of -log p over classes, also masked, computed here (not
    by torch, whose handling of ignored positions changed between versions)."""
    if label_smoothing == 0.0 and class_weights is None:  # the hot path: one fused kernel
        logits, flat_targets = _flat(outputs, targets, class_axis)
        total = F.cross_entropy(logits, flat_targets, ignore_index=ignore_index, reduction="sum")
        return total, (flat_targets != ignore_index).sum()
    loss, weight = _per_position(outputs, targets, class_axis=class_axis, ignore_index=ignore_index,
                                 label_smoothing=label_smoothing, class_weights=class_weights)
    return loss.sum(), weight.sum()


def cross_entropy_mean(outputs: torch.Tensor, targets: torch.Tensor, *, class_axis: int = 1) -> tuple[torch.Tensor, int]:
    """``(mean, count)`` of hard-label cross-entropy over targets that hold no ignored position (the
    caller knows it): the mean in one kernel and the count from the shape, with no op to count them."""
    logits, flat_targets = _flat(outputs, targets, class_axis)
    return F.cross_entropy(logits, flat_targets), flat_targets.numel()


def per_sample_cross_entropy(outputs: torch.Tensor, targets: torch.Tensor, *, class_axis: int = 1,
                             ignore_index: int = IGNORE_INDEX, label_smoothing: float = 0.0,
                             class_weights: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Each sample's loss over its counted positions, shape ``(N,)`` (for sample weights; 0 where
    nothing counts)."""
    loss, weight = _per_position(outputs, targets, class_axis=class_axis, ignore_index=ignore_index,
                                 label_smoothing=label_smoothing, class_weights=class_weights)
    n = outputs.shape[0]
    return loss.view(n, -1).sum(1) / weight.view(n, -1).sum(1).clamp_min(torch.finfo(loss.dtype).tiny)


def soft_cross_entropy_sum(outputs: torch.Tensor, targets: torch.Tensor, *, class_axis: int = 1,
                           label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss_sum, count)`` of cross-entropy against class probabilities of the outputs' shape."""
    log_p = F.log_softmax(outputs.float(), dim=class_axis)
    q = targets.float()
    if label_smoothing:
        q = (1 - label_smoothing) * q + label_smoothing / outputs.shape[class_axis]
    per_position = -(q * log_p).sum(dim=class_axis)
    return per_position.sum(), torch.tensor(per_position.numel(), device=outputs.device)


class CheckedLoss:
    """A user's loss callable, its first results checked: one number for the batch, carrying a gradient
    back to the model. Torch's own errors for these ("a Tensor with 64 elements cannot be converted to
    Scalar", "element 0 of tensors does not require grad") name neither the loss nor the fix. Checked
    until a call in training (gradients on) passes; then one attribute read per call."""

    def __init__(self, fn: Callable[..., Any], label: str) -> None:
        self.fn, self.label, self.checked = fn, label, False

    def __call__(self, outputs: Any, targets: Any) -> Any:
        value = self.fn(outputs, targets)
        if not self.checked:
            self._check(value, outputs)
        return value

    def _check(self, value: Any, outputs: Any) -> None:
        if not isinstance(value, torch.Tensor):
            raise DataError(f"the loss {self.label} returned {type(value).__name__}, not a tensor; return the batch's "
                            "loss as a 0-d tensor (e.g. F.cross_entropy(outputs, targets))")
        if value.numel() != 1:
            raise DataError(f"the loss {self.label} returned a tensor of shape {tuple(value.shape)}, not one number "
                            "for the batch (reduction='none'?); return its mean: reduction='mean' for a torch loss, "
                            "or .mean() at the end of a function")
        if isinstance(outputs, torch.Tensor) and outputs.requires_grad and torch.is_grad_enabled():
            if not value.requires_grad:
                raise DataError(f"the loss {self.label} carries no gradient back to the model: its value does not "
                                "follow from the outputs through operations autograd can differentiate (argmax, "
                                "round, a comparison, .item(), numpy, torch.no_grad); return a differentiable "
                                "function of the outputs")
            self.checked = True
