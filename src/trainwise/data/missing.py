"""Missing values of a CSV's feature columns, filled when ``data.missing: fill`` asks (fastai's
FillMissing, the usual tabular default): a numeric column's gaps get the training split's median and
a ``<column>_missing`` 0/1 feature right after it (so the model can tell a filled value from a real
one); a text column's gaps are a category of their own, ``(missing)``. The medians come from the
training rows alone (nothing of validation or test leaks), are recorded in data.json
(``missing_fill``) and applied as they are by ``predict`` and ``evaluate``. A missing target is
never filled: that row has nothing to learn from.

Example:
    >>> is_missing("NA"), is_missing(" "), is_missing("0")
    (True, True, False)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

MARKERS = frozenset({"", "na", "n/a", "nan", "null", "none", "?", "-"})  # compared lower-case, stripped
MISSING_CATEGORY = "(missing)"
INDICATOR_SUFFIX = "_missing"


def is_missing(text: str) -> bool:
    return text.strip().lower() in MARKERS


def numeric_with_gaps(values: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """A numeric column's values as float64 (NaN where missing) and its 0/1 missing indicator."""
    gaps = np.array([is_missing(value) for value in values])
    numbers = np.array([np.nan if gap else float(value) for value, gap in zip(values, gaps)], dtype=np.float64)
    return numbers, gaps.astype(np.float32)


def text_with_gaps(values: Sequence[str]) -> list[str]:
    """A text column's values, its gaps named as the category ``(missing)``."""
    return [MISSING_CATEGORY if is_missing(value) else value for value in values]


def fill_from_train(splits: Sequence[tuple[torch.Tensor, ...] | None], positions: dict[str, int]) -> dict[str, float]:
    """Fill the NaN at each named feature position of every split (in place) with the training split's
    median there (0 when the training rows have none); returns the medians, by column name."""
    train_x = splits[0][0]
    medians = {}
    for name, position in positions.items():
        known = train_x[:, position][~torch.isnan(train_x[:, position])]
        medians[name] = float(known.median()) if len(known) else 0.0
        for split in splits:
            if split is not None:
                column = split[0][:, position]
                column[torch.isnan(column)] = medians[name]
    return medians
