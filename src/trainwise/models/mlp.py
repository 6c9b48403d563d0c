"""The multilayer perceptron: flatten, then Linear → norm → activation → dropout per hidden size."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from trainwise.models.checkpointing import run_checkpointed, segments_of
from trainwise.models.layers import (
    ACTIVATIONS,
    DENSE_NORMS,
    check_choice,
    check_dropout,
    check_input_shape,
    check_num_outputs,
    check_positive_ints,
    make_activation,
    make_dense_norm,
)


class MLP(nn.Module):
    """A fully connected network over the flattened input.

    Each hidden size adds ``Linear → norm → activation → dropout``; a final ``Linear`` maps to
    ``num_outputs``. With no hidden sizes it is a linear model (dropout then applies to the
    input features).

    Args:
        input_shape: one sample's shape, without the batch dimension; it is flattened.
        num_outputs: number of outputs (classes, or regression targets).
        hidden: the width of each hidden layer, in order.
        norm: ``"none"``, ``"batch"`` or ``"layer"``, applied after each hidden Linear.
        dropout: probability of zeroing a hidden unit in training, in [0, 1).
        activation: one of ``trainwise.models.layers.ACTIVATIONS``.

    Example:
        >>> model = MLP((1, 8, 8), 10, hidden=[32], norm="batch")
        >>> model(torch.randn(4, 1, 8, 8)).shape
        torch.Size([4, 10])
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        hidden: Sequence[int] = (128,),
        *,
        norm: str = "none",
        dropout: float = 0.0,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        shape = check_input_shape(input_shape)
        check_num_outputs(num_outputs)
        sizes = check_positive_ints("mlp hidden", hidden, allow_empty=True)
        check_choice("mlp norm", norm, DENSE_NORMS)
        check_choice("activation", activation, ACTIVATIONS)
        dropout = check_dropout(dropout)

        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(shape)
        for size in sizes:
            layers.append(nn.Linear(width, size))
            if norm != "none":
                layers.append(make_dense_norm(norm, size))
            layers.append(make_activation(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        if not sizes and dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(width, num_outputs))
        self.layers = nn.Sequential(*layers)
        self.trainwise_activation = activation
        self.checkpointing = False  # gradient checkpointing, one segment per hidden layer (checkpointing.py)
        self._segments = segments_of(self.layers, (nn.Linear,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a batch ``(N, *input_shape)`` to ``(N, num_outputs)``."""
        if self.checkpointing:
            return run_checkpointed(self._segments, x, self.training)
        return self.layers(x)
