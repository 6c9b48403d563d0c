"""Seeded train/validation/test splits, stratified by class for classification."""

from __future__ import annotations

import numpy as np
import torch

from trainwise.data.bundle import RawData, Split
from trainwise.errors import ConfigError, DataError


def check_fraction(name: str, value: float) -> None:
    """Raise ConfigError unless ``0 <= value < 1``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"{name} must be in [0, 1), got {value!r}")


def split_indices(
    n: int, *, fraction: float, rng: np.random.Generator, labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(n)`` into kept and held-out indices, both sorted.

    The held-out part has ``round(fraction * n)`` indices (at least one when ``fraction > 0``).
    With ``labels`` every class gives its share, rounded by largest remainder, so class
    proportions match the whole up to one sample per class.

    Raises:
        DataError: The held-out part would leave nothing to keep.
    """
    held_count = round(fraction * n)
    if fraction > 0:
        held_count = max(1, held_count)
    if held_count >= n:
        raise DataError(
            f"a fraction of {fraction} of {n} samples leaves no samples to train on; "
            "lower val_fraction/test_fraction or give more data"
        )
    if labels is None:
        held = rng.permutation(n)[:held_count]
    else:
        held = _stratified_held(labels, held_count, fraction, rng)
    is_held = np.zeros(n, dtype=bool)
    is_held[held] = True
    return np.flatnonzero(~is_held), np.flatnonzero(is_held)


def _stratified_held(
    labels: np.ndarray, held_count: int, fraction: float, rng: np.random.Generator
) -> np.ndarray:
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    quotas = fraction * counts
    per_class = np.floor(quotas).astype(np.int64)
    # Largest remainder first; ties broken at random so no class is always favoured.
    order = np.lexsort((rng.random(len(classes)), -(quotas - per_class)))
    per_class[order[: held_count - per_class.sum()]] += 1
    held = [
        rng.permutation(np.flatnonzero(inverse == class_index))[:take]
        for class_index, take in enumerate(per_class)
    ]
    return np.concatenate(held)


def _hold_out(
    pool: Split, *, fraction: float, rng: np.random.Generator, stratify: bool
) -> tuple[Split, Split]:
    x, y = pool
    labels = y.numpy() if stratify else None
    keep, held = split_indices(len(y), fraction=fraction, rng=rng, labels=labels)
    keep_rows, held_rows = torch.from_numpy(keep), torch.from_numpy(held)
    return (x[keep_rows], y[keep_rows]), (x[held_rows], y[held_rows])


def make_splits(
    raw: RawData, *, val_fraction: float, test_fraction: float, seed: int
) -> tuple[Split, Split | None, Split | None]:
    """Train, validation and test splits of ``raw``.

    Official splits are kept where the data set has them; otherwise ``test_fraction`` of all
    samples becomes the test split and ``val_fraction`` of what remains the validation split.
    A fraction of 0 gives None for that split.
    """
    rng = np.random.default_rng(seed)
    stratify = raw.task == "classification"
    pool: Split = (raw.x, raw.y)

    test: Split | None = None
    if raw.x_test is not None and raw.y_test is not None:
        test = (raw.x_test, raw.y_test)
    elif test_fraction > 0:
        pool, test = _hold_out(pool, fraction=test_fraction, rng=rng, stratify=stratify)

    val: Split | None = None
    if raw.x_val is not None and raw.y_val is not None:
        val = (raw.x_val, raw.y_val)
    elif val_fraction > 0:
        pool, val = _hold_out(pool, fraction=val_fraction, rng=rng, stratify=stratify)
    return pool, val, test
