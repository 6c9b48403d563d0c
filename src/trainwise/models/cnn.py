"""The plain convolutional network, 1-D or 2-D by the input's shape."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from trainwise.models.checkpointing import run_checkpointed, segments_of
from trainwise.models.layers import (
    ACTIVATIONS,
    CONV_NORMS,
    POOLS,
    check_choice,
    check_dropout,
    check_input_shape,
    check_kernel_size,
    check_num_outputs,
    check_positive_ints,
    conv_layout,
    dense_head,
    halve_sizes,
    make_activation,
    make_conv,
    make_conv_norm,
    make_pool,
)

# Feature maps up to this many values are flattened into the head (position matters on small
# inputs: flattening beats global pooling on MNIST and MNIST-1D); larger ones are averaged.
FLATTEN_LIMIT = 4096


class CNN(nn.Module):
    """Conv blocks, then a fully connected head.

    Each entry of ``channels`` adds ``conv(kernel_size, same padding) → norm → activation →
    pool(2)``. The feature map is then flattened when it holds at most ``FLATTEN_LIMIT`` values
    per sample, otherwise globally averaged over positions; ``hidden`` Linear layers (each
    followed by the activation and dropout) and a final Linear make the head.

    Args:
        input_shape: ``(C, L)`` for 1-D convolutions (``(L,)`` means one channel) or
            ``(C, H, W)`` for 2-D ones; no batch dimension.
        num_outputs: number of outputs.
        channels: output channels of each conv block, in order.
        kernel_size: odd kernel size of every conv.
        norm: ``"none"``, ``"batch"``, ``"group"`` or ``"layer"`` after each conv.
        pool: ``"max"``, ``"avg"`` or ``"none"``, halving the size after each block.
        activation: one of ``trainwise.models.layers.ACTIVATIONS``.
        hidden: widths of the head's hidden Linear layers.
        dropout: dropout probability in the head, in [0, 1).

    Example:
        >>> model = CNN((1, 28, 28), 10)
        >>> model(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        channels: Sequence[int] = (32, 64),
        *,
        kernel_size: int = 3,
        norm: str = "none",
        pool: str = "max",
        activation: str = "relu",
        hidden: Sequence[int] = (128,),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        shape = check_input_shape(input_shape)
        check_num_outputs(num_outputs)
        widths = check_positive_ints("cnn channels", channels, allow_empty=False)
        sizes_hidden = check_positive_ints("cnn hidden", hidden, allow_empty=True)
        check_kernel_size(kernel_size)
        check_choice("cnn norm", norm, CONV_NORMS)
        check_choice("pool", pool, POOLS)
        check_choice("activation", activation, ACTIVATIONS)
        dropout = check_dropout(dropout)
        dims, in_channels, sizes = conv_layout("cnn", shape)

        blocks: list[nn.Module] = [nn.Unflatten(1, (1, shape[0]))] if len(shape) == 1 else []
        for width in widths:
            blocks.append(make_conv(dims, in_channels, width, kernel_size, bias=norm != "batch"))
            if norm != "none":
                blocks.append(make_conv_norm(norm, width, dims))
            blocks.append(make_activation(activation))
            if pool != "none":
                blocks.append(make_pool(pool, dims))
                sizes = halve_sizes("cnn", sizes, shape)
            in_channels = width
        features = in_channels * math.prod(sizes)
        if features > FLATTEN_LIMIT:
            pooling = nn.AdaptiveAvgPool1d(1) if dims == 1 else nn.AdaptiveAvgPool2d(1)
            blocks.append(pooling)
            features = in_channels
        blocks.append(nn.Flatten())
        self.features = nn.Sequential(*blocks)
        self.head = dense_head(features, sizes_hidden, num_outputs, activation, dropout)
        self.trainwise_activation = activation
        self.checkpointing = False  # gradient checkpointing, one segment per conv block (checkpointing.py)
        self._segments = segments_of(self.features, (nn.Conv1d, nn.Conv2d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a batch ``(N, *input_shape)`` to ``(N, num_outputs)``."""
        if self.checkpointing:
            return self.head(run_checkpointed(self._segments, x, self.training))
        return self.head(self.features(x))
