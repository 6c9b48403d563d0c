"""Arrays from users: torch tensors, numpy arrays, pandas (or polars) tables and series, and a list of
samples, turned into what the loader takes, or refused with one line that says how to fix them.

Example:
    >>> to_tensor(pandas_frame, "inputs")          # float32 (N, columns)
    >>> samples_dataset([(x0, 1), (x1, 0)])        # a map-style Dataset of the samples
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from trainwise.errors import DataError


def is_array_like(value: Any) -> bool:
    """A tensor, a numpy array, or a table/series that converts to one (``to_numpy``, as pandas and polars)."""
    return isinstance(value, (torch.Tensor, np.ndarray)) or (hasattr(value, "to_numpy") and hasattr(value, "shape"))


def to_tensor(value: Any, what: str) -> torch.Tensor:
    """A tensor of ``value``; floats become float32, a table's columns must all be numbers or booleans."""
    if isinstance(value, torch.Tensor):
        return value
    if not isinstance(value, np.ndarray) and hasattr(value, "to_numpy"):
        value = _table_to_numpy(value, what)
    if not isinstance(value, np.ndarray):
        raise DataError(f"{what} must be a torch.Tensor, numpy array or pandas table, got {type(value).__name__}")
    if value.dtype.kind not in "biuf":
        raise DataError(f"{what} hold {value.dtype} values ({_first(value)!r}, ...), not numbers; encode them first "
                        "(class names: integer codes, e.g. pandas.factorize; features: one-hot or codes)")
    if not value.flags.writeable:  # pandas' copy-on-write views: torch wants memory it may write
        value = value.copy()
    tensor = torch.from_numpy(np.ascontiguousarray(value))
    return tensor.float() if tensor.is_floating_point() else tensor


def _table_to_numpy(table: Any, what: str) -> np.ndarray:
    dtypes = getattr(table, "dtypes", None)
    if dtypes is not None and hasattr(dtypes, "items"):  # a pandas DataFrame: every column a number
        bad = [str(name) for name, dtype in dtypes.items() if getattr(dtype, "kind", "O") not in "biuf"]
        if bad:
            raise DataError(f"{what}: columns {bad[:5]}{' ...' if len(bad) > 5 else ''} are not numbers; encode "
                            "them first (one-hot: pandas.get_dummies; categories: .cat.codes) or drop them")
        return table.to_numpy(dtype=np.float32)
    array = table.to_numpy()
    if getattr(getattr(table, "dtype", None), "name", "") == "category":
        raise DataError(f"{what} is a categorical series; pass its integer codes (series.cat.codes)")
    return array.astype(np.int64) if array.dtype.kind == "b" else array


def _first(array: np.ndarray) -> Any:
    return array.reshape(-1)[0] if array.size else None


class SamplesDataset(Dataset):
    """A list of samples (``(input, target)`` tuples or dicts) as a map-style ``Dataset``."""

    def __init__(self, samples: list) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Any:
        return self.samples[index]


def samples_dataset(source: Any) -> Optional[SamplesDataset]:
    """A list of samples as a Dataset (each a tuple or dict, all of one kind), or None for anything else."""
    if not isinstance(source, list) or not source:
        return None
    kind = type(source[0])
    if not isinstance(source[0], (tuple, dict)) or any(type(sample) is not kind for sample in source):
        return None
    return SamplesDataset(source)


def describe_types(values: Any, limit: int = 3) -> str:
    """``"tuple, tuple, tuple, ... (200 in all)"``: what a container holds, short."""
    names = [type(v).__name__ for v in list(values)[:limit]]
    more = f", ... ({len(values)} in all)" if len(values) > limit else ""
    return ", ".join(names) + more
