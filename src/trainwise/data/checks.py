"""Checks that arrays are usable for training, each failure one message that says what to fix."""

from __future__ import annotations

import numpy as np
import torch

from trainwise.data.bundle import TASKS
from trainwise.errors import ConfigError, DataError


def check_task(task: str | None, *, allow_none: bool = False) -> None:
    """Raise ConfigError unless ``task`` is a known task name (or None when allowed)."""
    if task is None and allow_none:
        return
    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {task!r}")


def check_arrays(
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    *,
    task: str,
    num_classes: int | None,
    where: str,
) -> None:
    """Check one split's inputs and targets before training on them.

    Args:
        x: Inputs, one sample per row of the first dimension.
        y: Targets: class indices for classification, numbers for regression.
        task: ``"classification"`` or ``"regression"``.
        num_classes: Number of classes; labels must lie in ``[0, num_classes)``. None skips
            the upper bound (and is what regression passes).
        where: What the arrays are, for the message, e.g. ``"train split of 'digits'"``.

    Raises:
        DataError: No samples, x and y of different lengths, NaN/Inf in x (or in y for
            regression), labels that are not integers, negative or not below ``num_classes``.
        ConfigError: ``task`` is not a known task.

    Example:
        >>> check_arrays(torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]), task="classification",
        ...              num_classes=3, where="my data")
    """
    check_task(task)
    x = torch.as_tensor(x)
    y = torch.as_tensor(y)
    if x.dim() == 0 or y.dim() == 0:
        raise DataError(
            f"{where}: x and y need one sample per row, got shapes {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )
    if len(x) == 0:
        raise DataError(
            f"{where}: no samples (x has shape {tuple(x.shape)}); give at least one row"
        )
    if len(x) != len(y):
        raise DataError(
            f"{where}: x has {len(x)} samples but y has {len(y)}; they must have one target "
            "per input row"
        )
    _check_finite(x, name="x", where=where)
    if task == "regression":
        _check_finite(y, name="y", where=where)
    else:
        check_labels(y, num_classes=num_classes, where=where)


def _check_finite(values: torch.Tensor, *, name: str, where: str) -> None:
    # A finite sum means every value is finite (NaN and Inf propagate), at the cost of one
    # cheap reduction; only a failing check pays for finding the row.
    if not values.is_floating_point() or bool(torch.isfinite(values.sum())):
        return
    finite_rows = torch.isfinite(values.reshape(len(values), -1)).all(dim=1)
    if bool(finite_rows.all()):  # the sum overflowed; the values themselves are fine
        return
    bad_count = int((~torch.isfinite(values)).sum())
    first_row = int((~finite_rows).nonzero()[0, 0])
    raise DataError(
        f"{where}: {name} has {bad_count} NaN/Inf values, first in row {first_row}; "
        "remove or impute those rows before training"
    )


def check_labels(y: torch.Tensor, *, num_classes: int | None, where: str) -> None:
    """Raise DataError unless ``y`` is a 1-D tensor of class indices in ``[0, num_classes)``."""
    if y.dim() != 1:
        raise DataError(
            f"{where}: classification labels must be one class index per sample, shape (N,), "
            f"got {tuple(y.shape)}"
        )
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise DataError(
            f"{where}: classification labels must be integer class indices, got dtype "
            f"{y.dtype}; convert them with y.long(), or use task='regression'"
        )
    negative = (y < 0).nonzero()
    if len(negative):
        row = int(negative[0, 0])
        raise DataError(
            f"{where}: label {int(y[row])} in row {row} is negative; labels must be class "
            "indices >= 0"
        )
    if num_classes is None:
        return
    too_large = (y >= num_classes).nonzero()
    if len(too_large):
        row = int(too_large[0, 0])
        raise DataError(
            f"{where}: label {int(y[row])} in row {row} is out of range for "
            f"num_classes={num_classes}; labels must be in [0, {num_classes - 1}]"
            + ("; a model with one output per sample and 0/1 labels is binary: pass task='binary' (BCE on logits)"
               if num_classes == 1 else "")
        )
