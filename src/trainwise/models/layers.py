"""Building blocks shared by the built-in models: checked choices, activations, norms, pooling.

Every option a user can mistype (an activation, a norm, a pooling) is checked here with one
message that names the value given, the closest valid one and the full list.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from torch import nn

from trainwise.checks import did_you_mean
from trainwise.errors import ConfigError

ACTIVATIONS: tuple[str, ...] = (
    "relu",
    "leaky_relu",
    "gelu",
    "silu",
    "elu",
    "tanh",
    "sigmoid",
    "selu",
)
DENSE_NORMS: tuple[str, ...] = ("none", "batch", "layer")
CONV_NORMS: tuple[str, ...] = ("none", "batch", "group", "layer")
POOLS: tuple[str, ...] = ("max", "avg", "none")

# nn.LeakyReLU's default slope; init.py reads it to compute the matching gain.
LEAKY_RELU_SLOPE = 0.01

_ACTIVATION_CLASSES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "selu": nn.SELU,
}


def has_batchnorm(model: nn.Module) -> bool:
    """Whether the model holds a BatchNorm layer (1d/2d/3d, lazy or synchronized), which cannot train on one sample."""
    return any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in model.modules())


def check_choice(what: str, value: Any, valid: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``valid``, else raise a did-you-mean ConfigError.

    Args:
        what: the option's name as the user knows it, e.g. ``"mlp norm"``.
        value: the value given.
        valid: the accepted values.

    Raises:
        ConfigError: ``unknown mlp norm 'bach'; did you mean 'batch'? (valid: none, batch, layer)``.
    """
    if isinstance(value, str) and value in valid:
        return value
    hint = did_you_mean(value, valid) if isinstance(value, str) else ""
    raise ConfigError(f"unknown {what} {value!r}{hint} (valid: {', '.join(valid)})")


def check_positive_ints(what: str, values: Iterable[Any], *, allow_empty: bool) -> list[int]:
    """Return ``values`` as a list of ints, each > 0, or raise ConfigError."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ConfigError(f"{what} must be a list of positive integers, got {values!r}")
    result = list(values)
    if not result and not allow_empty:
        raise ConfigError(f"{what} must name at least one size, got []")
    for value in result:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{what} must hold integers > 0, got {result!r}")
    return result


def check_input_shape(input_shape: Any) -> tuple[int, ...]:
    """Return ``input_shape`` (one sample's shape, no batch dimension) as a tuple of ints > 0."""
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Iterable):
        raise ConfigError(f"input_shape must be a tuple of positive integers, got {input_shape!r}")
    shape = tuple(input_shape)
    if not shape or any(
        isinstance(size, bool) or not isinstance(size, int) or size <= 0 for size in shape
    ):
        raise ConfigError(
            f"input_shape must be a non-empty tuple of integers > 0 (one sample, no batch "
            f"dimension), got {input_shape!r}"
        )
    return shape


def check_num_outputs(num_outputs: Any) -> int:
    """Return ``num_outputs`` if it is an int >= 1, else raise ConfigError."""
    if isinstance(num_outputs, bool) or not isinstance(num_outputs, int) or num_outputs < 1:
        raise ConfigError(f"num_outputs must be an integer >= 1, got {num_outputs!r}")
    return num_outputs


def check_dropout(dropout: Any) -> float:
    """Return ``dropout`` as a float in [0, 1), or raise ConfigError."""
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
        raise ConfigError(f"dropout must be a number in [0, 1), got {dropout!r}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
    return float(dropout)


def check_kernel_size(kernel_size: Any) -> int:
    """Return ``kernel_size`` if it is a positive odd int (padding then keeps the size)."""
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
        raise ConfigError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
    if kernel_size % 2 == 0:
        raise ConfigError(
            f"kernel_size must be odd so that padding keeps the length, got {kernel_size}; "
            f"use {kernel_size + 1}"
        )
    return kernel_size


def make_activation(name: str) -> nn.Module:
    """Return a fresh activation module for a name from ``ACTIVATIONS``."""
    check_choice("activation", name, ACTIVATIONS)
    if name == "leaky_relu":
        return nn.LeakyReLU(LEAKY_RELU_SLOPE)
    return _ACTIVATION_CLASSES[name]()


def make_dense_norm(name: str, features: int) -> nn.Module:
    """Return the norm layer for a Linear output of ``features`` values (``Identity`` for none)."""
    check_choice("norm", name, DENSE_NORMS)
    if name == "batch":
        return nn.BatchNorm1d(features)
    if name == "layer":
        return nn.LayerNorm(features)
    return nn.Identity()


def group_count(channels: int) -> int:
    """Groups for GroupNorm: the largest divisor of ``channels`` up to 32 with >= 2 channels each.

    32 groups is Wu & He's default; the two-channel floor keeps a group from collapsing into
    instance norm. One channel gives one group.
    """
    for groups in range(min(32, channels // 2), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


def make_conv_norm(name: str, channels: int, dims: int) -> nn.Module:
    """Return the norm layer for a conv output with ``channels`` channels and ``dims`` (1 or 2).

    ``layer`` normalizes over all channels and positions of one sample (GroupNorm with one group),
    the usual meaning of layer norm for convolutions.
    """
    check_choice("norm", name, CONV_NORMS)
    if name == "batch":
        return nn.BatchNorm1d(channels) if dims == 1 else nn.BatchNorm2d(channels)
    if name == "group":
        return nn.GroupNorm(group_count(channels), channels)
    if name == "layer":
        return nn.GroupNorm(1, channels)
    return nn.Identity()


def make_conv(
    dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    stride: int = 1,
    bias: bool = True,
) -> nn.Module:
    """Return a 1-D or 2-D convolution padded by ``kernel_size // 2`` (odd kernels keep the size).

    Pass ``bias=False`` before a batch norm, whose own shift makes a conv bias redundant.
    """
    conv_class = nn.Conv1d if dims == 1 else nn.Conv2d
    return conv_class(
        in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=bias
    )


def make_pool(name: str, dims: int) -> nn.Module:
    """Return a halving pool (kernel 2, stride 2) of kind ``name``, or ``Identity`` for none."""
    check_choice("pool", name, POOLS)
    if name == "max":
        return nn.MaxPool1d(2) if dims == 1 else nn.MaxPool2d(2)
    if name == "avg":
        return nn.AvgPool1d(2) if dims == 1 else nn.AvgPool2d(2)
    return nn.Identity()


def dense_head(
    in_features: int, hidden: Sequence[int], num_outputs: int, activation: str, dropout: float
) -> nn.Sequential:
    """Return Linear → activation → dropout per hidden size, then the output Linear.

    With no hidden sizes the dropout applies to the features entering the output Linear, so a
    dropout the user asked for is never silently dropped.
    """
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden:
        layers += [nn.Linear(width, size), make_activation(activation)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    if not hidden and dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(width, num_outputs))
    return nn.Sequential(*layers)


def conv_layout(model: str, input_shape: tuple[int, ...]) -> tuple[int, int, list[int]]:
    """Return ``(dims, in_channels, spatial_sizes)`` for a conv model over ``input_shape``.

    ``(L,)`` is read as one channel of length L, ``(C, L)`` as 1-D, ``(C, H, W)`` as 2-D.
    """
    if len(input_shape) == 1:
        return 1, 1, [input_shape[0]]
    if len(input_shape) in (2, 3):
        return len(input_shape) - 1, input_shape[0], list(input_shape[1:])
    raise ConfigError(
        f"{model} needs input_shape (L,), (C, L) or (C, H, W), got {input_shape}; "
        f"reshape the data or use model 'mlp'"
    )


def halve_sizes(model: str, sizes: list[int], input_shape: tuple[int, ...]) -> list[int]:
    """Return ``sizes`` after a kernel-2 stride-2 pool, or raise if a size is already 1."""
    if min(sizes) < 2:
        raise ConfigError(
            f"{model} pools its input_shape {input_shape} down to size {sizes} and cannot pool "
            f"again; use fewer channels entries or pool 'none'"
        )
    return [size // 2 for size in sizes]
