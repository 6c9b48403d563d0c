"""How a batch becomes the model's inputs, the targets and the sample weights: one rule, decided
once on the first batch from its structure and the model's ``forward`` signature, then applied to
every batch (training, evaluation, prediction).

- A tuple or list: ``(x, y)`` or ``(x, y, weight)`` (``(x,)`` or a bare tensor: inputs alone). A
  tensor ``x`` goes in as ``model(x)``, a dict ``x`` as ``model(**x)``.
- A dict (the Hugging Face way): the target is the first of ``TARGET_KEYS`` present, the weight
  the first of ``WEIGHT_KEYS``. When ``forward`` names some of the other keys (or takes
  ``**kwargs``), those go in as keyword arguments; otherwise the first of ``INPUT_KEYS`` goes in
  positionally (``{"x": ..., "y": ...}`` dicts). A key that is neither taken nor a target is
  reported once, never dropped in silence.
- The model's own loss: when it trains (no ``loss=`` given and ``forward`` takes the target key),
  the target goes in too, as HF models compute ``outputs.loss`` from ``labels``.

Example:
    >>> rule = decide_call_rule({"input_ids": ids, "attention_mask": m, "labels": y}, model, model_loss=True)
    >>> rule.input_keys, rule.target_key, rule.pass_targets
    (('input_ids', 'attention_mask'), 'labels', True)
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import nn

from trainwise.errors import DataError

TARGET_KEYS = ("labels", "label", "y", "target", "targets")
WEIGHT_KEYS = ("weight", "weights", "sample_weight")
INPUT_KEYS = ("x", "input", "inputs", "features", "image", "images")


@dataclass(frozen=True)
class CallRule:
    """What a batch holds and how the model is called with it (see the module's docstring).

    ``kind``: ``tuple``, ``dict_kwargs`` (keys as keyword arguments) or ``dict_input`` (one key
    positionally). ``unused_keys``: dict keys neither passed nor used as target or weight."""

    kind: str
    input_keys: tuple[str, ...] = ()
    target_key: Optional[str] = None
    weight_key: Optional[str] = None
    pass_targets: bool = False
    unused_keys: tuple[str, ...] = ()

    def split(self, batch: Any) -> tuple[Any, Optional[torch.Tensor], Optional[torch.Tensor]]:
        """``(inputs, targets or None, weights or None)``; dict inputs are a dict of the taken keys."""
        if self.kind == "tuple":
            if isinstance(batch, torch.Tensor):
                return batch, None, None
            items = list(batch)
            return items[0], items[1] if len(items) > 1 else None, items[2] if len(items) > 2 else None
        targets = batch.get(self.target_key) if self.target_key else None
        weights = batch.get(self.weight_key) if self.weight_key else None
        if self.kind == "dict_input":
            return batch[self.input_keys[0]], targets, weights
        inputs = {key: batch[key] for key in self.input_keys if key in batch}
        if self.pass_targets and targets is not None:
            inputs[self.target_key] = targets
        return inputs, targets, weights

    def describe(self) -> dict[str, Any]:
        """What run.json / data.json record of the rule."""
        return {"kind": self.kind, "input_keys": list(self.input_keys), "target_key": self.target_key,
                "weight_key": self.weight_key, "targets_to_model": self.pass_targets,
                "unused_keys": list(self.unused_keys)}


def forward_parameters(model: nn.Module) -> tuple[set[str], bool, int]:
    """``forward``'s named parameters, whether it takes ``**kwargs``, and how many positional ones."""
    target = getattr(model, "module", model) if type(model).__name__ == "DistributedDataParallel" else model
    try:
        signature = inspect.signature(target.forward)
    except (TypeError, ValueError):
        return set(), True, 1
    params = signature.parameters.values()
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    positional = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
    return names, any(p.kind == p.VAR_KEYWORD for p in params), positional


def decide_call_rule(batch: Any, model: Optional[nn.Module], *, model_loss: bool,
                     target_keys: tuple[str, ...] = TARGET_KEYS) -> CallRule:
    """The rule for batches shaped like ``batch`` (see the module's docstring). ``model_loss``: the
    model's own loss may train, so a target key that ``forward`` names goes in too."""
    if isinstance(batch, torch.Tensor) or (isinstance(batch, (tuple, list)) and 1 <= len(batch) <= 3):
        third = batch[2] if not isinstance(batch, torch.Tensor) and len(batch) == 3 else None
        if isinstance(third, torch.Tensor) and not (third.is_floating_point() or third.is_complex()):
            raise DataError(f"batches of 3 are read as (inputs, targets, sample_weights), and the third here is "
                            f"{str(third.dtype).replace('torch.', '')}, which sample weights are not: a model with "
                            "several inputs takes a dict batch ({'x': ..., 'lengths': ..., 'labels': ...}: forward "
                            "gets its arguments by name), or override Trainer.split_batch(batch); float weights "
                            "(weights.float()) are read as sample weights")
        return CallRule("tuple")
    if not isinstance(batch, dict):
        raise DataError(f"cannot tell inputs from targets in a batch of type {type(batch).__name__}; batches must be "
                        "(x, y), (x, y, weight) or a dict — or override Trainer.split_batch(batch) -> "
                        "(inputs, targets, weights) or Trainer.compute_loss(model, batch) -> loss")
    keys = [str(k) for k in batch]
    target = next((k for k in target_keys if k in batch), None)
    weight = next((k for k in WEIGHT_KEYS if k in batch), None)
    names, var_kw, positional = forward_parameters(model) if model is not None else (set(), False, 1)
    candidates = [k for k in keys if k not in (target, weight)]
    taken = [k for k in candidates if var_kw or k in names]
    if taken:
        pass_targets = model_loss and target is not None and (var_kw or target in names)
        unused = tuple(k for k in candidates if k not in taken)
        return CallRule("dict_kwargs", tuple(taken), target, weight, pass_targets, unused)
    single = next((k for k in INPUT_KEYS if k in batch), None)
    if single is not None and positional >= 1:
        unused = tuple(k for k in candidates if k != single)
        return CallRule("dict_input", (single,), target, weight, False, unused)
    raise DataError(f"a batch dict with keys {keys} gives the model nothing to take: forward() takes "
                    f"{sorted(names) or 'no named arguments'}; name the input keys after forward's arguments, "
                    f"use one of {', '.join(INPUT_KEYS)} for a single input, or override Trainer.split_batch(batch)")


def model_loss_of(outputs: Any) -> Optional[torch.Tensor]:
    """The loss a model returned itself: ``outputs["loss"]`` or ``outputs.loss`` (HF's ModelOutput)."""
    loss = outputs.get("loss") if isinstance(outputs, dict) else getattr(outputs, "loss", None)
    return loss if isinstance(loss, torch.Tensor) else None


BATCHNORM_ONE_VALUE = "Expected more than 1 value per channel when training"  # torch's BatchNorm, batch of 1


def call_model(model: Callable[..., Any], inputs: Any) -> Any:
    """``model(**inputs)`` for a dict of inputs, else ``model(inputs)``."""
    try:
        return model(**inputs) if isinstance(inputs, dict) else model(inputs)
    except ValueError as exc:
        if BATCHNORM_ONE_VALUE not in str(exc):
            raise
        # torch's own words name no setting of ours; the fix is the batch size (or the layer), said once
        raise DataError(f"a BatchNorm layer got a training batch with one value per channel (torch: {exc}): batch "
                        "statistics need at least 2 samples; train on batches of 2 or more (data.batch_size / "
                        "Trainer(batch_size=...); a DataLoader of your own: drop_last=True), or use a LayerNorm "
                        "or GroupNorm, which do not depend on the batch") from exc


def counted_targets(targets: Any, ignore_index: int, samples: int) -> Any:
    """Positions a model's own loss averages over: integer targets not equal to ``ignore_index``
    (HF's convention for ``labels``), else the batch's samples."""
    if isinstance(targets, torch.Tensor) and not targets.is_floating_point():
        return (targets != ignore_index).sum()
    return samples


def head(batch: Any, n: int) -> Any:
    """The first ``n`` samples of a batch (tensors in tuples, lists and dicts)."""
    if isinstance(batch, torch.Tensor):
        return batch[:n] if batch.dim() else batch
    if isinstance(batch, dict):
        return {key: head(value, n) for key, value in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(head(value, n) for value in batch)
    return batch


def sample_shape(sample: Any) -> Any:
    """The per-sample shape of a batch's inputs (a dict's: by key), for a message."""
    if isinstance(sample, torch.Tensor):
        return tuple(sample.shape[1:])
    if isinstance(sample, dict):
        return {k: tuple(v.shape[1:]) for k, v in sample.items() if isinstance(v, torch.Tensor)}
    return type(sample).__name__


def cannot_take(exc: Exception, shape: Any, encoding: Any = None, what: str = "inputs",
                dtype: Optional[torch.dtype] = None) -> DataError:
    """The one-line error for a model that failed on a sample of the inputs: integer inputs into float
    layers (``dtype``: the inputs'), a dtype mismatch (a float64 model, float32 data), anything else as a
    size mismatch (with a DataFrame's columns after one-hot encoding, ``encoding``, whose width the model
    must take)."""
    if dtype is not None and not dtype.is_floating_point and dtype != torch.bool and "type" in str(exc):
        return DataError(f"the model cannot take the {what}: they are {str(dtype).replace('torch.', '')} and its "
                         f"layers compute in floats (torch: {exc}); give float inputs: x.float() (images of 0-255: "
                         "x.float() / 255) in the Dataset or before fit; integer inputs suit only a model that "
                         "starts with nn.Embedding")
    if "dtype" in str(exc) or "Double" in str(exc):
        return DataError(f"the model cannot take the {what}: {exc}; the model's parameters and the inputs must "
                         "share a dtype: model.float() for float32 inputs (trainwise gives float arrays as float32)")
    columns = ""
    if encoding is not None:
        from trainwise.data.categorical import encoded_names

        names = encoded_names(encoding.columns, encoding.categorical)
        columns = f" (the table's {len(names)} features after one-hot encoding its text columns: {', '.join(names)})"
    fix = "check that the model's input size matches the data" if what == "inputs" else \
        "they need the features (and shape per sample) of the training inputs"
    return DataError(f"the model cannot take {what} of shape {shape}{columns}: {exc}; {fix}")
