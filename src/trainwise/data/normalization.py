"""Input standardization: statistics fitted on the train split, applied to every split.

Images ``(N, C, H, W)`` and sequences ``(N, C, L)`` get one mean/std per channel; tables
``(N, F)`` one per feature. The statistics are plain lists so they travel in configs,
checkpoints and JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from trainwise.errors import DataError


def _stat_shape(x: torch.Tensor) -> tuple[list[int], list[int]]:
    """Dimensions reduced over, and the broadcast shape of the statistics, for ``x``."""
    if x.dim() < 2:
        raise DataError(
            f"normalization needs a batch of samples, shape (N, features) or (N, C, ...), got "
            f"{tuple(x.shape)}"
        )
    if x.dim() == 2:
        return [0], [1, x.shape[1]]
    return [0, *range(2, x.dim())], [1, x.shape[1]] + [1] * (x.dim() - 2)


def fit_normalization(x: torch.Tensor) -> dict[str, list[float]]:
    """Per-channel (or per-feature) mean and population standard deviation of ``x``.

    A channel with zero spread gets std 1, so it is only centered instead of divided by zero.

    Example:
        >>> fit_normalization(torch.tensor([[0.0, 5.0], [2.0, 5.0]]))
        {'mean': [1.0, 5.0], 'std': [1.0, 1.0]}
    """
    dims, _ = _stat_shape(x)
    std, mean = torch.std_mean(x, dim=dims, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return {"mean": mean.tolist(), "std": std.tolist()}


def apply_normalization(
    x: torch.Tensor, normalization: Mapping[str, Sequence[float]]
) -> torch.Tensor:
    """Standardize a batch with statistics fitted earlier: ``(x - mean) / std``.

    Use it at predict time on new inputs with the bundle's ``normalization``; ``x`` needs
    the batch dimension first, like the training data.

    Args:
        x: Float batch, ``(N, F)`` for tables or ``(N, C, ...)`` for images and sequences.
        normalization: ``{"mean": [...], "std": [...]}`` with one value per feature/channel.

    Returns:
        A new tensor of ``x``'s dtype and device.

    Raises:
        DataError: ``x`` has no batch dimension, or its feature/channel count differs from the
            statistics', or the dict lacks ``mean``/``std``.

    Example:
        >>> apply_normalization(torch.tensor([[3.0]]), {"mean": [1.0], "std": [2.0]})
        tensor([[1.]])
    """
    mean, std = _stat_tensors(x, normalization)
    return (x - mean) / std


def normalize_(x: torch.Tensor, normalization: Mapping[str, Sequence[float]]) -> torch.Tensor:
    """``apply_normalization`` in place, for a tensor the caller owns; returns ``x``."""
    mean, std = _stat_tensors(x, normalization)
    return x.sub_(mean).div_(std)


def _stat_tensors(
    x: torch.Tensor, normalization: Mapping[str, Sequence[float]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of ``normalization`` shaped to broadcast against ``x``."""
    if "mean" not in normalization or "std" not in normalization:
        raise DataError(
            f"normalization must have keys 'mean' and 'std', got {sorted(normalization)}"
        )
    _, shape = _stat_shape(x)
    mean = torch.as_tensor(normalization["mean"], dtype=x.dtype, device=x.device)
    std = torch.as_tensor(normalization["std"], dtype=x.dtype, device=x.device)
    if mean.numel() != shape[1] or std.numel() != shape[1]:
        raise DataError(
            f"normalization has {mean.numel()} means and {std.numel()} stds, but x of shape "
            f"{tuple(x.shape)} has {shape[1]} features/channels in dimension 1; use the "
            "statistics of the data set the model was trained on"
        )
    return mean.view(shape), std.view(shape)


# --- regression targets ---------------------------------------------------------------------------


def _target_columns(y: torch.Tensor) -> torch.Tensor:
    """``y`` as ``(N, k)``: one column per regression target."""
    if y.dim() not in (1, 2):
        raise DataError(
            f"regression targets must be (N,) or (N, k), got shape {tuple(y.shape)}"
        )
    return y.unsqueeze(1) if y.dim() == 1 else y


def fit_target_normalization(y: torch.Tensor) -> dict[str, list[float]]:
    """Mean and population std of each regression target column of ``y`` (``(N,)`` or ``(N, k)``).

    Always one value per column, so ``(N,)`` targets give one-element lists. A target with zero
    spread gets std 1.

    Example:
        >>> fit_target_normalization(torch.tensor([1.0, 3.0]))
        {'mean': [2.0], 'std': [1.0]}
    """
    columns = _target_columns(y)
    std, mean = torch.std_mean(columns.double(), dim=0, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return {"mean": mean.tolist(), "std": std.tolist()}


def _target_stats(
    y: torch.Tensor, target_normalization: Mapping[str, Sequence[float]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std shaped to broadcast against ``y`` (``(N,)`` or ``(N, k)``)."""
    if "mean" not in target_normalization or "std" not in target_normalization:
        raise DataError(
            "target_normalization must have keys 'mean' and 'std', got "
            f"{sorted(target_normalization)}"
        )
    width = _target_columns(y).shape[1]
    mean = torch.as_tensor(target_normalization["mean"], dtype=y.dtype, device=y.device)
    std = torch.as_tensor(target_normalization["std"], dtype=y.dtype, device=y.device)
    if mean.numel() != width or std.numel() != width:
        raise DataError(
            f"target_normalization has {mean.numel()} means and {std.numel()} stds, but targets "
            f"of shape {tuple(y.shape)} have {width} column(s); use the statistics of the data "
            "set the model was trained on"
        )
    if y.dim() == 1:
        return mean.reshape(()), std.reshape(())
    return mean.view(1, width), std.view(1, width)


def normalize_target(
    y: torch.Tensor, target_normalization: Mapping[str, Sequence[float]]
) -> torch.Tensor:
    """Regression targets in standardized units: ``(y - mean) / std``, a new tensor.

    Example:
        >>> normalize_target(torch.tensor([4.0]), {"mean": [2.0], "std": [2.0]})
        tensor([1.])
    """
    mean, std = _target_stats(y, target_normalization)
    return (y - mean) / std


def denormalize_target(
    y: torch.Tensor, target_normalization: Mapping[str, Sequence[float]]
) -> torch.Tensor:
    """Targets or predictions back in the original units: ``y * std + mean``, a new tensor.

    ``y`` is ``(N,)`` for one target, ``(N, k)`` for ``k``; a model's ``(N, 1)`` output for one
    target works too.

    Example:
        >>> denormalize_target(torch.tensor([1.0]), {"mean": [2.0], "std": [2.0]})
        tensor([4.])
    """
    mean, std = _target_stats(y, target_normalization)
    return y * std + mean
