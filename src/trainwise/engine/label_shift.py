"""Causal language-model labels: the output at position t is scored against the target at t + 1.

Hugging Face's convention for a causal LM is ``labels == input_ids`` (padding set to -100): the
model's logits are aligned with its inputs and the *loss* shifts (``logits[..., :-1, :]`` against
``labels[..., 1:]``; transformers' ``ForCausalLMLoss`` pads the labels with ``ignore_index`` and
shifts them, which keeps the logits' length). trainwise does the same to the targets its metrics,
its own loss and its position counts use, never to what the model itself is given: the targets
``(N, T)`` become ``targets[:, 1:]`` followed by one ``ignore_index``, so shapes are kept and the
last position counts nowhere.

``shift_labels`` (a Trainer keyword, config ``train.shift_labels``):

- ``True``: always shift (integer targets ``(N, T)`` only; anything else is refused).
- ``False``: targets are used as given (data already shifted, ``x[t] -> y[t] = x[t + 1]``).
- ``"auto"`` (default): shift exactly when the targets repeat the inputs (every counted target
  equals the input token at its position: ``labels == input_ids``, and the tokens change somewhere,
  so that data shifted beforehand could not look the same), which only means next-token prediction. Decided once on the first batch and recorded in data.json (``loss_rule.shift_labels``).
  When the model computes its own loss, the loss it returned tells how it scores its logits: it must
  match the shifted cross-entropy (HF's causal LMs) or the aligned one; when it matches neither (an
  auxiliary term, label smoothing inside the model), or when a loss callable is given (it may shift
  itself), the run is refused with one line asking for ``shift_labels=True`` or ``False``.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import torch

from trainwise.errors import ConfigError, DataError
from trainwise.losses import class_axis_for, cross_entropy_sum

SHIFT_CHOICES = (True, False, "auto")
ShiftLabels = Union[bool, str]
_INPUT_KEY = "input_ids"  # the Hugging Face name of a causal LM's tokens


def check_shift_labels(value: Any) -> ShiftLabels:
    """``True``, ``False`` or ``"auto"``; anything else one clear error."""
    if value is True or value is False or value == "auto":
        return value
    raise ConfigError(f"shift_labels must be true, false or 'auto', got {value!r}; true scores the output at "
                      "position t against the target at t + 1 (a causal LM whose labels are its input_ids)")


def shift_targets(targets: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """``targets[:, 1:]`` followed by one ``ignore_index``: the same shape, one position fewer counted."""
    shifted = torch.full_like(targets, ignore_index)
    shifted[:, :-1] = targets[:, 1:]
    return shifted


def repeated_inputs(inputs: Any, targets: torch.Tensor, ignore_index: int, target_key: Optional[str]) -> bool:
    """Whether every counted target equals the input token at its position (``labels == input_ids``)."""
    if isinstance(inputs, dict):
        tokens = inputs.get(_INPUT_KEY)
        if tokens is None:  # the one other integer input of the targets' shape, if there is exactly one
            candidates = [v for k, v in inputs.items() if k != target_key and _like(v, targets)]
            tokens = candidates[0] if len(candidates) == 1 else None
    else:
        tokens = inputs
    if not isinstance(tokens, torch.Tensor) or not _like(tokens, targets):
        return False
    counted, tokens = targets != ignore_index, tokens.to(targets.device)
    # a row that never changes token repeats its inputs shifted or not: such a sample cannot tell
    tells = (counted[:, :-1] & (tokens[:, 1:] != tokens[:, :-1])).any()
    return bool(tells) and torch.equal(targets[counted], tokens[counted])


def _like(value: Any, targets: torch.Tensor) -> bool:
    return isinstance(value, torch.Tensor) and not value.is_floating_point() and value.shape == targets.shape


def decide_shift(setting: ShiftLabels, *, inputs: Any, targets: Any, outputs: Optional[torch.Tensor],
                 model_loss: Optional[torch.Tensor], source: str, ignore_index: int, class_axis: Optional[int],
                 target_key: Optional[str]) -> tuple[bool, Optional[str]]:
    """``(shift, note)`` for the run, from the first batch (see the module's docstring); the note
    says what auto decided, for the run's messages."""
    if setting is False:
        return False, None
    integer = isinstance(targets, torch.Tensor) and not targets.is_floating_point()
    if setting is True:
        if not integer or targets.dim() != 2:
            shape = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
            dtype = f" ({targets.dtype})" if isinstance(targets, torch.Tensor) else ""
            raise DataError(f"shift_labels=True needs integer targets of shape (N, T) (one token per position), got "
                            f"{shape}{dtype}; pass shift_labels=False for targets that are already aligned")
        return True, None
    if not integer or targets.dim() < 2 or not repeated_inputs(inputs, targets, ignore_index, target_key):
        return False, None
    if targets.dim() != 2:
        raise DataError(f"the targets repeat the inputs but have shape {tuple(targets.shape)}, not (N, T); pass "
                        "shift_labels=True to score position t against t + 1 along axis 1, or shift_labels=False")
    if source == "callable":
        raise DataError("the targets repeat the inputs (a causal LM's labels = input_ids) and loss is your callable, "
                        "which may shift them itself; pass shift_labels=True (trainwise gives your loss and the "
                        "metrics targets[:, 1:] padded with ignore_index) or shift_labels=False (targets as given)")
    if source == "model" and model_loss is not None and outputs is not None:
        return _shift_of_model_loss(outputs, targets, model_loss, ignore_index, class_axis)
    return True, ("the targets repeat the inputs (labels = input_ids): the output at position t is scored against "
                  "the target at t + 1, as a causal LM's; pass shift_labels=False to score them aligned")


def _shift_of_model_loss(outputs: torch.Tensor, targets: torch.Tensor, model_loss: torch.Tensor,
                         ignore_index: int, class_axis: Optional[int]) -> tuple[bool, Optional[str]]:
    """Whether the model's own loss scores its logits shifted or aligned; refused when neither fits."""
    axis, _ = class_axis_for(outputs.shape, targets.shape, class_axis)
    logits, targets = outputs.detach().float(), targets.to(outputs.device)

    def mean_ce(scored: torch.Tensor) -> float:
        total, count = cross_entropy_sum(logits, scored, class_axis=axis, ignore_index=ignore_index)
        return float(total / count) if float(count) > 0 else float("nan")

    loss = float(model_loss.detach().float())
    shifted, aligned = mean_ce(shift_targets(targets, ignore_index)), mean_ce(targets)
    tolerance = (1e-4 if outputs.dtype in (torch.float32, torch.float64) else 2e-2) * max(abs(loss), 1.0)
    fits_shifted, fits_aligned = abs(shifted - loss) <= tolerance, abs(aligned - loss) <= tolerance
    if fits_shifted:  # both fit only when the logits cannot tell (all equal): the causal LM's convention
        return True, ("the targets repeat the inputs (labels = input_ids) and the model's loss scores its logits "
                      "shifted: metrics score the output at position t against the target at t + 1")
    if fits_aligned:
        return False, ("the targets repeat the inputs (labels = input_ids) but the model's loss scores each "
                       "position against its own input token (no shift): it learns to copy its input; shift the "
                       "labels in the model (logits[:, :-1] against labels[:, 1:]) if it is a causal LM")
    raise DataError(f"the targets repeat the inputs (labels = input_ids) and the model's loss ({loss:.6g}) matches "
                    f"neither the shifted cross-entropy of its logits ({shifted:.6g}) nor the aligned one "
                    f"({aligned:.6g}); pass shift_labels=True (position t predicts t + 1) or shift_labels=False")
