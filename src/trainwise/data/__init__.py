"""Data: built-in and file data sets, seeded splits, train-only normalization, augmentation.

Example:
    >>> from trainwise.data import load_data
    >>> bundle = load_data("digits", val_fraction=0.1, test_fraction=0.2, seed=0)
    >>> x, y = bundle.train
    >>> x.shape[1:], y.dtype
    (torch.Size([1, 8, 8]), torch.int64)
"""

from __future__ import annotations

from trainwise.data.augment import ImageAugment, build_augment
from trainwise.data.bundle import DataBundle
from trainwise.data.checks import check_arrays
from trainwise.data.imbalance import balanced_class_weights
from trainwise.data.load import DATASETS, load_data
from trainwise.data.normalization import (
    apply_normalization,
    denormalize_target,
    fit_target_normalization,
    normalize_target,
)

__all__ = [
    "DATASETS",
    "DataBundle",
    "ImageAugment",
    "apply_normalization",
    "balanced_class_weights",
    "build_augment",
    "check_arrays",
    "denormalize_target",
    "fit_target_normalization",
    "load_data",
    "normalize_target",
]
