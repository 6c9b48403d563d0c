"""The doctor's view of the user's data: whatever ``fit`` accepts (tuples, dicts, Datasets,
DataLoaders) read into tensors once, through the Trainer's own ``split_batch``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from trainwise.errors import DataError
from trainwise.data.loader import as_tensor_dict, as_tensors

# samples read from a Dataset or DataLoader (in-memory data is used whole)
STREAM_LIMIT = 4096


@dataclass
class Sample:
    """Inputs and targets of (up to all of) one split, plus the split in a form ``fit`` takes.

    ``x`` is None when the inputs are not one tensor (a dict of inputs, token lists ...): the
    checks that need an input tensor are then left out."""

    x: Optional[torch.Tensor]
    y: torch.Tensor
    weights: Optional[torch.Tensor]
    batch: Any  # the split as one in-memory batch: a tuple or a dict of tensors
    complete: bool  # False when only the first STREAM_LIMIT samples of a stream were read

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: torch.Tensor) -> Any:
        """The rows ``index`` of the split, in the same form (tuple or dict) as ``batch``."""
        if isinstance(self.batch, dict):
            return {k: v[index] for k, v in self.batch.items()}
        return tuple(v[index] for v in self.batch)


def read_split(source: Any, split_batch: Callable[[Any], tuple], limit: int = STREAM_LIMIT) -> Optional[Sample]:
    """``source`` as a ``Sample``, or None when there is no such split."""
    if source is None:
        return None
    tensors = as_tensors(source)
    if tensors is not None:
        batch, complete = tuple(tensors), True
    elif as_tensor_dict(source) is not None:
        batch, complete = as_tensor_dict(source), True
    elif isinstance(source, DataLoader):
        batch, complete = _from_loader(source, limit)
    elif isinstance(source, Dataset):
        n = len(source)  # type: ignore[arg-type]
        count = min(n, limit)
        batch = default_collate([source[i] for i in range(count)])
        complete = count == n
    else:
        raise DataError(f"data must be an (inputs, targets) tuple, a dict of tensors, a Dataset or a DataLoader, "
                        f"got {type(source).__name__}")
    if isinstance(batch, list):
        batch = tuple(batch)
    x, y, w = split_batch(batch)
    if not isinstance(y, torch.Tensor):
        raise DataError(f"the targets of a batch must be a tensor, got {type(y).__name__}")
    return Sample(x if isinstance(x, torch.Tensor) else None, y, w if isinstance(w, torch.Tensor) else None,
                  batch, complete)


def _from_loader(loader: DataLoader, limit: int) -> tuple[Any, bool]:
    batches, count = [], 0
    iterator = iter(loader)
    for batch in iterator:
        batches.append(batch)
        count += _length(batch)
        if count >= limit:
            break
    else:
        return _concat(batches), True
    return _concat(batches), False


def _length(batch: Any) -> int:
    first = batch
    while not isinstance(first, torch.Tensor):
        first = next(iter(first.values())) if isinstance(first, dict) else first[0]
    return len(first)


def _concat(batches: list[Any]) -> Any:
    if not batches:
        raise DataError("the DataLoader gave no batches; give at least one sample")
    first = batches[0]
    if isinstance(first, dict):
        return {k: _cat([b[k] for b in batches]) for k in first}
    if isinstance(first, (tuple, list)):
        return tuple(_cat([b[i] for b in batches]) for i in range(len(first)))
    raise DataError(f"batches of type {type(first).__name__} cannot be read; batches must be tuples or dicts")


def _cat(parts: list[Any]) -> Any:
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts)
    return [item for part in parts for item in part]
