"""check_arrays, balanced_class_weights and apply_normalization."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight

from trainwise.data import apply_normalization, balanced_class_weights, check_arrays
from trainwise.errors import ConfigError, DataError


@pytest.mark.parametrize(
    ("x", "y", "task", "num_classes", "match"),
    [
        (
            torch.zeros(0, 3),
            torch.zeros(0, dtype=torch.long),
            "classification",
            2,
            r"my data: no samples \(x has shape \(0, 3\)\)",
        ),
        (
            torch.zeros(4, 3),
            torch.zeros(3, dtype=torch.long),
            "classification",
            2,
            "my data: x has 4 samples but y has 3",
        ),
        (
            torch.tensor([[0.0, 1.0], [1.0, float("nan")], [float("inf"), float("nan")]]),
            torch.zeros(3, dtype=torch.long),
            "classification",
            2,
            "my data: x has 3 NaN/Inf values, first in row 1; remove or impute",
        ),
        (
            torch.zeros(3, 2),
            torch.tensor([1.0, float("-inf"), 0.0]),
            "regression",
            None,
            "y has 1 NaN/Inf values, first in row 1",
        ),
        (
            torch.zeros(3, 2),
            torch.tensor([0.0, 1.0, 1.0]),
            "classification",
            2,
            "labels must be integer class indices, got dtype torch.float32",
        ),
        (
            torch.zeros(3, 2),
            torch.tensor([0, 1, -2]),
            "classification",
            2,
            "label -2 in row 2 is negative",
        ),
        (
            torch.zeros(3, 2),
            torch.tensor([0, 3, 1]),
            "classification",
            3,
            r"label 3 in row 1 is out of range for num_classes=3; labels must be in \[0, 2\]",
        ),
        (
            torch.zeros(3, 2),
            torch.zeros(3, 2, dtype=torch.long),
            "classification",
            3,
            r"one class index per sample, shape \(N,\), got \(3, 2\)",
        ),
        (torch.tensor(1.0), torch.tensor(1), "classification", 3, "one sample per row"),
    ],
)
def test_check_arrays_errors(
    x: torch.Tensor, y: torch.Tensor, task: str, num_classes: int | None, match: str
) -> None:
    with pytest.raises(DataError, match=match):
        check_arrays(x, y, task=task, num_classes=num_classes, where="my data")


def test_check_arrays_accepts_good_tensors_and_numpy_arrays() -> None:
    check_arrays(
        torch.zeros(4, 3),
        torch.tensor([0, 1, 2, 0]),
        task="classification",
        num_classes=3,
        where="t",
    )
    check_arrays(
        np.zeros((4, 3)), np.array([0, 5, 2, 0]), task="classification", num_classes=None, where="t"
    )
    check_arrays(
        np.ones((2, 1, 3)), np.ones((2, 2)), task="regression", num_classes=None, where="t"
    )
    huge = torch.full((4, 2), 3e38)  # the sum overflows, the values are finite
    check_arrays(huge, torch.zeros(4), task="regression", num_classes=None, where="t")
    with pytest.raises(ConfigError, match="task must be one of classification, regression"):
        check_arrays(huge, torch.zeros(4), task="ranking", num_classes=None, where="t")


def test_balanced_class_weights_exact() -> None:
    weights = balanced_class_weights(torch.tensor([0, 0, 0, 1]), 2)
    assert weights.dtype == torch.float32
    torch.testing.assert_close(weights, torch.tensor([4 / 6, 4 / 2]))


def test_balanced_class_weights_match_scikit_learn() -> None:
    y = torch.from_numpy(
        np.random.default_rng(0).choice(5, size=300, p=[0.5, 0.2, 0.15, 0.1, 0.05])
    )
    expected = compute_class_weight("balanced", classes=np.arange(5), y=y.numpy())
    torch.testing.assert_close(balanced_class_weights(y, 5), torch.from_numpy(expected).float())


@pytest.mark.parametrize(
    ("y", "num_classes", "error", "match"),
    [
        (torch.tensor([0, 0, 2]), 3, DataError, "class 1 has no samples in y"),
        (torch.tensor([0, 3]), 3, DataError, "label 3 in row 1 is out of range"),
        (torch.zeros(0, dtype=torch.long), 2, DataError, "y has no samples"),
        (torch.tensor([0, 1]), 0, ConfigError, "num_classes must be >= 1, got 0"),
    ],
)
def test_balanced_class_weights_errors(
    y: torch.Tensor, num_classes: int, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        balanced_class_weights(y, num_classes)


def test_apply_normalization_per_feature_and_per_channel() -> None:
    table = torch.tensor([[1.0, 10.0], [3.0, 14.0]])
    stats = {"mean": [2.0, 12.0], "std": [1.0, 2.0]}
    torch.testing.assert_close(
        apply_normalization(table, stats), torch.tensor([[-1.0, -1.0], [1.0, 1.0]])
    )
    assert table.tolist() == [[1.0, 10.0], [3.0, 14.0]]  # the input is left alone

    images = torch.stack([torch.full((2, 3, 3), 4.0), torch.full((2, 3, 3), 8.0)], dim=1)
    result = apply_normalization(images, {"mean": [4.0, 0.0], "std": [2.0, 4.0]})
    assert result.shape == (2, 2, 3, 3)
    assert result[:, 0].unique().tolist() == [0.0] and result[:, 1].unique().tolist() == [2.0]


@pytest.mark.parametrize(
    ("x", "stats", "match"),
    [
        (
            torch.zeros(2, 3, 4),
            {"mean": [0.0], "std": [1.0]},
            "normalization has 1 means and 1 stds, but x of shape \\(2, 3, 4\\) has 3",
        ),
        (torch.zeros(4), {"mean": [0.0], "std": [1.0]}, "needs a batch of samples"),
        (torch.zeros(2, 1), {"mean": [0.0]}, "must have keys 'mean' and 'std', got \\['mean'\\]"),
    ],
)
def test_apply_normalization_errors(x: torch.Tensor, stats: dict, match: str) -> None:
    with pytest.raises(DataError, match=match):
        apply_normalization(x, stats)
