"""The loaded data set as one object: splits plus everything a model and a report need to know."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

Split = tuple[torch.Tensor, torch.Tensor]

TASKS = ("classification", "regression")


@dataclass(repr=False)
class DataBundle:
    """Train, validation and test splits of one data set, ready for training.

    ``x`` is float32 in every split: images ``(N, C, H, W)``, sequences ``(N, C, L)``, tabular
    ``(N, n_features)``. ``y`` is int64 ``(N,)`` class indices for classification, float32
    ``(N,)`` or ``(N, k)`` for regression. All tensors live on the CPU.

    Attributes:
        train: ``(x, y)`` used to fit the model and the normalization statistics.
        val: ``(x, y)`` for early stopping and model selection, or None when there is none.
        test: ``(x, y)`` held out until the end, or None when there is none.
        task: ``"classification"`` or ``"regression"``.
        num_classes: Number of classes, None for regression.
        num_outputs: Width of the model's output: ``num_classes``, or the number of regression
            targets.
        input_shape: Shape of one sample, e.g. ``(1, 28, 28)`` for MNIST or ``(20,)`` for a
            table with 20 feature columns.
        normalization: ``{"mean": [...], "std": [...]}`` fitted on the train split (one value
            per channel for images and sequences, per feature for tables) and already applied to
            every split; None when normalization was turned off.
        class_names: Name of each class index, None for regression or when unknown.
        name: Short name for reports: the data set, or the file stem for csv/npz.
        target_normalization: ``{"mean": [...], "std": [...]}`` of the regression targets, one
            value per target column, fitted on the train split and already applied to ``y``
            of every split (so ``y`` is in standardized units); None for classification or
            when it was turned off. ``denormalize_target(y, target_normalization)`` turns
            targets or predictions back into the original units.
        details: What else data.json records about the source (an image folder's skipped files,
            a corpus's SHA-256 and token counts).
        tokenizer: The tokenizer of a text data set (``trainwise.data.text``), else None.

    Data read from disk that is not held in memory (``text``, an ``imagefolder`` too large to
    cache) has a ``Dataset`` or ``DataLoader`` in place of ``(x, y)``: ``in_memory`` tells which.

    Example:
        >>> from trainwise.data import load_data
        >>> bundle = load_data("digits", seed=0)
        >>> bundle.input_shape, bundle.num_classes
        ((1, 8, 8), 10)
    """

    train: Split
    val: Split | None
    test: Split | None
    task: str
    num_classes: int | None
    num_outputs: int
    input_shape: tuple[int, ...]
    normalization: dict[str, list[float]] | None
    class_names: list[str] | None
    name: str
    target_normalization: dict[str, list[float]] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    tokenizer: Any = None

    def __repr__(self) -> str:
        # The default dataclass repr would print every tensor in full.
        sizes = ", ".join(
            f"{split}={'None' if pair is None else _length(pair)}"
            for split, pair in (("train", self.train), ("val", self.val), ("test", self.test))
        )
        return (
            f"DataBundle(name={self.name!r}, task={self.task!r}, {sizes}, "
            f"input_shape={self.input_shape}, num_outputs={self.num_outputs})"
        )


    @property
    def in_memory(self) -> bool:
        """Whether every split is an ``(x, y)`` pair of tensors."""
        return all(isinstance(s, tuple) for s in (self.train, self.val, self.test) if s is not None)


def _length(split: Any) -> int:
    if isinstance(split, tuple):
        return len(split[0])
    dataset = getattr(split, "dataset", split)  # a DataLoader counts its data set's windows
    return len(dataset)


@dataclass
class RawData:
    """What a data source hands to ``load_data`` before splitting and normalization.

    ``x_val``/``x_test`` are the data set's official splits, None where it has none.
    """

    x: torch.Tensor
    y: torch.Tensor
    task: str
    num_classes: int | None
    class_names: list[str] | None
    name: str
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    details: dict[str, Any] = field(default_factory=dict)  # what data.json records of the source
