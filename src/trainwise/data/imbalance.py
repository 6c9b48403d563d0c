"""Class-imbalance remedies: per-class loss weights."""

from __future__ import annotations

import torch

from trainwise.data.checks import check_labels
from trainwise.errors import ConfigError, DataError


def balanced_class_weights(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-class loss weights that make every class count as much as the others.

    The formula of scikit-learn's ``class_weight="balanced"``:
    ``weight[c] = n_samples / (num_classes * count[c])``. A class with half the average
    number of samples gets weight 2. Pass the result as ``weight=`` to ``nn.CrossEntropyLoss``.

    Args:
        y: Train labels, int64 of shape ``(N,)``.
        num_classes: Number of classes; every class must occur in ``y``.

    Returns:
        float32 tensor of shape ``(num_classes,)`` on ``y``'s device.

    Raises:
        ConfigError: ``num_classes`` is below 1.
        DataError: The labels are invalid, or a class has no sample (its weight would be
            infinite).

    Example:
        >>> balanced_class_weights(torch.tensor([0, 0, 0, 1]), 2)
        tensor([0.6667, 2.0000])
    """
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    check_labels(y, num_classes=num_classes, where="class weights")
    if len(y) == 0:
        raise DataError("class weights: y has no samples; give the train labels")
    counts = torch.bincount(y, minlength=num_classes)
    missing = (counts == 0).nonzero()
    if len(missing):
        raise DataError(
            f"class weights: class {int(missing[0, 0])} has no samples in y; balanced weights "
            f"need every one of the {num_classes} classes present in the train split"
        )
    return (len(y) / (num_classes * counts.to(torch.float64))).to(torch.float32)
