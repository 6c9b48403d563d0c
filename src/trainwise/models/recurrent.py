"""Recurrent classifiers (GRU, LSTM) that read the input as a sequence over its last axis."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from trainwise.errors import ConfigError
from trainwise.models.layers import (
    check_choice,
    check_dropout,
    check_input_shape,
    check_num_outputs,
    check_positive_ints,
)

RECURRENT_CELLS: tuple[str, ...] = ("gru", "lstm")


class RecurrentNet(nn.Module):
    """A stacked GRU or LSTM over time, and a Linear head on the last time step's output.

    Inputs are read as sequences: ``(N, C, L)`` becomes ``L`` steps of ``C`` features,
    ``(N, L)`` ``L`` steps of one feature, and an image ``(N, C, H, W)`` ``H`` steps (its rows)
    of ``C * W`` features.

    Args:
        input_shape: ``(L,)``, ``(C, L)`` or ``(C, H, W)``; no batch dimension.
        num_outputs: number of outputs.
        cell: ``"gru"`` or ``"lstm"``.
        hidden: the hidden size, once per layer; all layers share one size (``[64, 64]`` is two
            layers of 64).
        dropout: dropout between stacked layers and on the last output before the head.

    Example:
        >>> model = RecurrentNet((1, 40), 10, cell="lstm", hidden=[32, 32])
        >>> model(torch.randn(3, 1, 40)).shape
        torch.Size([3, 10])
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        *,
        cell: str = "gru",
        hidden: Sequence[int] = (64,),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        shape = check_input_shape(input_shape)
        check_num_outputs(num_outputs)
        check_choice("recurrent cell", cell, RECURRENT_CELLS)
        sizes = check_positive_ints(f"{cell} hidden", hidden, allow_empty=False)
        dropout = check_dropout(dropout)
        if len(set(sizes)) > 1:
            raise ConfigError(
                f"{cell} layers share one hidden size (hidden[0], repeated once per layer), "
                f"got hidden={sizes}; use e.g. {[sizes[0]] * len(sizes)}"
            )
        if len(shape) > 3:
            raise ConfigError(
                f"{cell} needs input_shape (L,), (C, L) or (C, H, W), got {shape}; "
                f"reshape the data or use model 'mlp'"
            )
        self.image_rows = len(shape) == 3
        features = 1 if len(shape) == 1 else shape[0] * (shape[2] if self.image_rows else 1)
        rnn_class = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn_class(
            features,
            sizes[0],
            num_layers=len(sizes),
            batch_first=True,
            dropout=dropout if len(sizes) > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(sizes[0], num_outputs)
        # The cells squash with tanh, so the head sees tanh outputs.
        self.trainwise_activation = "tanh"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a batch ``(N, *input_shape)`` to ``(N, num_outputs)``."""
        if x.dim() == 2:
            sequence = x.unsqueeze(-1)
        elif self.image_rows:
            sequence = x.permute(0, 2, 1, 3).flatten(2)
        else:
            sequence = x.transpose(1, 2)
        output, _ = self.rnn(sequence)
        return self.head(self.dropout(output[:, -1]))
