"""A small residual network, 1-D or 2-D by the input's shape (He et al., 2016, BasicBlock)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from trainwise.models.checkpointing import run_checkpointed
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


class BasicBlock(nn.Module):
    """Two convs with a skip: ``act(norm(conv2(act(norm(conv1(x))))) + skip(x))``.

    The skip is the identity, or a 1x1 conv (and norm) when the stride or the channel count
    changes. ``conv2`` ends the residual branch and carries ``_residual_projection = True`` so
    that ``trainwise.models.init`` can scale it (the ``gpt`` scheme).

    Example:
        >>> block = BasicBlock(8, 16, dims=2, stride=2)
        >>> block(torch.randn(1, 8, 10, 10)).shape
        torch.Size([1, 16, 5, 5])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        dims: int,
        stride: int = 1,
        kernel_size: int = 3,
        norm: str = "batch",
        activation: str = "relu",
    ) -> None:
        super().__init__()
        bias = norm != "batch"
        self.conv1 = make_conv(
            dims, in_channels, out_channels, kernel_size, stride=stride, bias=bias
        )
        self.norm1 = make_conv_norm(norm, out_channels, dims)
        self.act1 = make_activation(activation)
        self.conv2 = make_conv(dims, out_channels, out_channels, kernel_size, bias=bias)
        self.conv2._residual_projection = True  # type: ignore[assignment]  # flag, not a Tensor
        self.norm2 = make_conv_norm(norm, out_channels, dims)
        self.act2 = make_activation(activation)
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.skip = nn.Sequential(
                make_conv(dims, in_channels, out_channels, 1, stride=stride, bias=bias),
                make_conv_norm(norm, out_channels, dims),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the block's output for ``x`` shaped ``(N, C, L)`` or ``(N, C, H, W)``."""
        branch = self.act1(self.norm1(self.conv1(x)))
        branch = self.norm2(self.conv2(branch))
        return self.act2(branch + self.skip(x))


class ResNet(nn.Module):
    """Stem conv, one BasicBlock per ``channels`` entry, global average pool, dense head.

    The stem is ``conv(kernel_size) → norm → activation → pool``, with ``channels[0]``
    channels. A block whose channel count differs from the previous one halves the size
    (stride 2); repeat an entry (``[16, 16, 32, 32]``) for several blocks per stage.

    Args:
        input_shape: ``(C, L)`` (``(L,)`` means one channel) or ``(C, H, W)``; no batch dim.
        num_outputs: number of outputs.
        channels: output channels of each residual block.
        kernel_size: odd kernel size of the stem and block convs.
        norm: ``"none"``, ``"batch"``, ``"group"`` or ``"layer"``; ``"batch"`` is the usual
            choice for a ResNet.
        pool: ``"max"``, ``"avg"`` or ``"none"``: the pooling after the stem.
        activation: one of ``trainwise.models.layers.ACTIVATIONS``.
        hidden: widths of hidden Linear layers in the head (none by default).
        dropout: dropout probability in the head, in [0, 1).

    Example:
        >>> model = ResNet((1, 40), 10, channels=[8, 16])
        >>> model(torch.randn(2, 1, 40)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        channels: Sequence[int] = (16, 32, 64),
        *,
        kernel_size: int = 3,
        norm: str = "none",
        pool: str = "max",
        activation: str = "relu",
        hidden: Sequence[int] = (),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        shape = check_input_shape(input_shape)
        check_num_outputs(num_outputs)
        widths = check_positive_ints("resnet channels", channels, allow_empty=False)
        sizes_hidden = check_positive_ints("resnet hidden", hidden, allow_empty=True)
        check_kernel_size(kernel_size)
        check_choice("resnet norm", norm, CONV_NORMS)
        check_choice("pool", pool, POOLS)
        check_choice("activation", activation, ACTIVATIONS)
        dropout = check_dropout(dropout)
        dims, in_channels, sizes = conv_layout("resnet", shape)

        stem: list[nn.Module] = [nn.Unflatten(1, (1, shape[0]))] if len(shape) == 1 else []
        stem += [
            make_conv(dims, in_channels, widths[0], kernel_size, bias=norm != "batch"),
            make_conv_norm(norm, widths[0], dims),
            make_activation(activation),
        ]
        if pool != "none":
            stem.append(make_pool(pool, dims))
            halve_sizes("resnet", sizes, shape)  # raises when the input is too small to pool
        self.stem = nn.Sequential(*stem)
        blocks = []
        previous = widths[0]
        for width in widths:
            stride = 1 if width == previous else 2
            blocks.append(
                BasicBlock(
                    previous,
                    width,
                    dims=dims,
                    stride=stride,
                    kernel_size=kernel_size,
                    norm=norm,
                    activation=activation,
                )
            )
            previous = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.Sequential(
            nn.AdaptiveAvgPool1d(1) if dims == 1 else nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.head = dense_head(previous, sizes_hidden, num_outputs, activation, dropout)
        self.trainwise_activation = activation
        self.checkpointing = False  # gradient checkpointing: the stem and each residual block (checkpointing.py)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a batch ``(N, *input_shape)`` to ``(N, num_outputs)``."""
        if self.checkpointing:
            return self.head(self.pool(run_checkpointed([self.stem, *self.blocks], x, self.training)))
        return self.head(self.pool(self.blocks(self.stem(x))))
