"""``Trainer.predict``: outputs for inputs alone (or labelled data, whose targets are ignored), in
input order, in eval mode under the training precision. Nothing but the outputs is kept.

Example:
    >>> trainer.predict(DataLoader(inputs_only, batch_size=64)).shape     # (N, classes)
    >>> trainer.predict(hf_style_dicts)["logits"].shape                  # a dict model: a dict back
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Optional, Union

import torch
from torch import nn

from trainwise.data.loader import as_tensor_dict, as_tensors, main_output, make_batches
from trainwise.engine.batch_rule import call_model, decide_call_rule
from trainwise.errors import DataError

Outputs = Union[torch.Tensor, dict[str, torch.Tensor]]


def input_batches(data: Any, *, batch_size: int, device: torch.device) -> Iterator[Any]:
    """Batches of ``data`` in its own order: a tensor or an array of inputs is sliced; anything ``fit``
    takes (labelled or not: a Dataset of inputs, dicts without targets, a DataLoader) is read as is."""
    if isinstance(data, torch.Tensor) or (hasattr(data, "__array__") and hasattr(data, "shape")):
        x = data if isinstance(data, torch.Tensor) else torch.as_tensor(data)
        x = x.float() if x.is_floating_point() else x
        for start in range(0, len(x), batch_size):
            yield x[start:start + batch_size].to(device)
        return
    if as_tensors(data) is None and as_tensor_dict(data) is None and isinstance(data, (tuple, list)):
        raise DataError(f"predict takes a tensor, an array, a dict of tensors, a Dataset or a DataLoader, got a "
                        f"{type(data).__name__} of {len(data)} items")
    batches = make_batches(data, batch_size=batch_size, shuffle=False, seed=0, device=device)
    batches.set_epoch(0)
    yield from batches


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
            for batch in input_batches(data, batch_size=batch_size, device=device):
                if split is None:
                    split = decide_call_rule(batch, model, model_loss=False).split
                inputs = split(batch)[0]
                with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                    parts.append(_on_cpu(call_model(model, inputs)))
    finally:
        model.train(was_training)
    if not parts:
        raise DataError("predict got no samples; give at least one input")
    if isinstance(parts[0], dict):
        return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
    return torch.cat(parts)


def _on_cpu(outputs: Any) -> Any:
    if isinstance(outputs, dict) or hasattr(outputs, "keys") and not isinstance(outputs, torch.Tensor):
        kept = {key: value.float().cpu() if value.is_floating_point() else value.cpu()
                for key, value in outputs.items() if isinstance(value, torch.Tensor) and key != "loss"}
        if kept:
            return kept
    prediction = main_output(outputs)
    return prediction.float().cpu() if prediction.is_floating_point() else prediction.cpu()
