"""``Trainer.predict``: outputs for inputs alone (or labelled data, whose targets are ignored), in
input order, in eval mode under the training precision. Nothing but the outputs is kept.

Example:
    >>> trainer.predict(DataLoader(inputs_only, batch_size=64)).shape     # (N, classes)
    >>> trainer.predict(hf_style_dicts)["logits"].shape                  # a dict model: a dict back
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Union

import numpy as np
import torch
from torch import nn

from trainwise.distributed.ops import gather_in_input_order, world
from trainwise.data.arrays import describe_types, is_array_like, samples_dataset, to_tensor
from trainwise.data.loader import as_tensor_dict, as_tensors, main_output, make_batches
from trainwise.engine.batch_rule import call_model, cannot_take, decide_call_rule, sample_shape
from trainwise.errors import DataError, TrainwiseError

Outputs = Union[torch.Tensor, dict[str, torch.Tensor]]


def input_batches(data: Any, *, batch_size: int, device: torch.device) -> tuple[Iterable[Any], Any]:
    """Batches of ``data`` in its own order, and the batch plan that shares them out over DDP ranks
    (``None`` in one process): a tensor or an array of inputs is sliced; anything ``fit`` takes
    (labelled or not: a Dataset of inputs, dicts without targets, a DataLoader) is read as is. In a
    DDP job each rank gets its share of every batch (``ops.gather_in_input_order`` puts them back)."""
    rank, world_size = world()
    _refuse_shuffled(data)
    if is_array_like(data) or (hasattr(data, "__array__") and hasattr(data, "shape")):
        x = to_tensor(data if is_array_like(data) else np.asarray(data), "inputs")
        if world_size == 1:
            return (x[start:start + batch_size].to(device) for start in range(0, len(x), batch_size)), None
        data = (x, torch.zeros(len(x)))  # sharded like labelled data; the placeholder targets are ignored
    elif as_tensors(data) is None and as_tensor_dict(data) is None and isinstance(data, (tuple, list)):
        samples = samples_dataset(data)
        if samples is None:
            raise DataError(f"predict takes a tensor, an array, a dict of tensors, a list of samples, a Dataset or "
                            f"a DataLoader, got a {type(data).__name__} of {describe_types(data)}")
        data = samples
    batches = make_batches(data, batch_size=batch_size, shuffle=False, seed=0, device=device, rank=rank,
                           world_size=world_size)
    batches.set_epoch(0)
    return batches, getattr(batches, "plan", None)


def _refuse_shuffled(data: Any) -> None:
    """A DataLoader that draws its samples in a random order: its outputs cannot be put back in input
    order, and handed back as they came they would match no input."""
    from torch.utils.data import DataLoader, RandomSampler, SubsetRandomSampler, WeightedRandomSampler

    sampler = getattr(data, "sampler", None) if isinstance(data, DataLoader) else None
    if isinstance(sampler, (RandomSampler, SubsetRandomSampler, WeightedRandomSampler)) or \
            getattr(sampler, "shuffle", False):
        raise DataError(f"predict got a DataLoader whose {type(sampler).__name__} draws the samples in a random "
                        "order, so its outputs would match no input; pass a DataLoader with shuffle=False, or the "
                        "Dataset itself")


def predict_outputs(model: nn.Module, data: Any, *, batch_size: int, device: torch.device,
                    autocast_dtype: Optional[torch.dtype], split: Optional[Callable[[Any], tuple]]) -> Outputs:
    """The model's outputs for every sample of ``data`` on the CPU, concatenated in input order: one
    tensor, or a dict of tensors when the model returns a dict (its ``loss`` left out). ``split``: a
    user's ``split_batch`` override, else the batch rule is decided from the first batch."""
    was_training = model.training
    model.eval()
    parts: list[Any] = []
    try:
        with torch.inference_mode():
            batches, plan = input_batches(data, batch_size=batch_size, device=device)
            for batch in batches:
                if split is None:
                    split = decide_call_rule(batch, model, model_loss=False).split
                inputs = split(batch)[0]
                with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                    parts.append(_on_cpu(call_model(model, inputs) if parts else _first_call(model, inputs)))
    finally:
        model.train(was_training)
    parts = gather_in_input_order(parts, plan) if plan is not None else parts
    if not parts:
        raise DataError("predict got no samples; give at least one input")
    if isinstance(parts[0], dict):
        return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
    return torch.cat(parts)


def _first_call(model: nn.Module, inputs: Any) -> Any:
    """The first batch: a model that cannot take it (another number of features than in training) is one
    line, not torch's error."""
    try:
        return call_model(model, inputs)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        if isinstance(exc, (TrainwiseError, torch.OutOfMemoryError)):
            raise
        shape = sample_shape(inputs)
        dtype = inputs.dtype if isinstance(inputs, torch.Tensor) else None
        raise cannot_take(exc, shape, what="the inputs given to predict", dtype=dtype) from exc


def _on_cpu(outputs: Any) -> Any:
    if isinstance(outputs, dict) or hasattr(outputs, "keys") and not isinstance(outputs, torch.Tensor):
        kept = {key: value.float().cpu() if value.is_floating_point() else value.cpu()
                for key, value in outputs.items() if isinstance(value, torch.Tensor) and key != "loss"}
        if kept:
            return kept
    prediction = main_output(outputs)
    return prediction.float().cpu() if prediction.is_floating_point() else prediction.cpu()
