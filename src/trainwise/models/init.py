"""Weight initialization schemes, chosen by name and matched to the activation.

``initialize(model, scheme, activation=...)`` walks the model once and sets every layer it
knows: Linear and Conv weights by the scheme, their biases to zero, norm layers to weight 1 and
bias 0, and recurrent layers (RNN, GRU, LSTM) the same way under every scheme: hidden-to-hidden
weights orthogonal per gate, input weights Xavier-uniform per gate, biases zero except the LSTM
forget gate's, which starts at 1 so that the cell remembers by default (Jozefowicz et al., 2015).
``default`` leaves PyTorch's own initialization untouched. Embeddings are only set by ``gpt``.

Schemes and the weight variance they give (fan_in/fan_out count the receptive field of convs):

==================================  ======================================================
``xavier``, ``xavier_uniform``      uniform, var = 2 / (fan_in + fan_out) (Glorot, gain 1)
``xavier_normal``                   normal, same variance
``he``, ``kaiming_normal``          normal, var = gain² / fan_in, gain from the activation
``kaiming_uniform``                 uniform, same variance
``he_fan_out``, ...``_fan_out``     normal, var = gain² / fan_out
``lecun``                           normal, var = 1 / fan_in (made for SELU)
``orthogonal``                      orthogonal rows (or columns) scaled by the gain
``uniform``                         uniform[-1, 1] whatever the fan (var 1/3): the naive start
``normal``                          normal(0, 1) whatever the fan: the naive start the guides warn of
``gpt``                             normal, std 0.02; residual projections 0.02 / sqrt(2 L)
``lsuv``                            orthogonal, then each layer rescaled to unit output variance
``auto``                            he for ReLU-like, xavier for tanh/sigmoid, lecun for SELU
==================================  ======================================================

The gain is ``nn.init.calculate_gain`` of the activation. GELU, SiLU and ELU, which it does not
know, take ReLU's gain (sqrt 2), as common practice does; their exact second-moment gains are
1.53, 1.68 and 1.25. Xavier keeps Glorot's gain of 1, the textbook scheme it is named after.
"""

from __future__ import annotations

import logging
import math
from typing import Any, cast

import torch
from torch import nn

from trainwise.errors import ConfigError
from trainwise.models.lsuv import check_lsuv_settings, lsuv_rescale
from trainwise.models.layers import ACTIVATIONS, LEAKY_RELU_SLOPE, check_choice

logger = logging.getLogger(__name__)

INIT_SCHEMES: tuple[str, ...] = (
    "auto",
    "default",
    "xavier",
    "xavier_uniform",
    "xavier_normal",
    "he",
    "kaiming_normal",
    "kaiming_uniform",
    "he_fan_out",
    "kaiming_normal_fan_out",
    "lecun",
    "orthogonal",
    "uniform",
    "normal",
    "gpt",
    "lsuv",
)

_ALIASES = {
    "xavier": "xavier_uniform",
    "he": "kaiming_normal",
    "he_fan_out": "kaiming_normal_fan_out",
}
# ``auto`` starts the output layer small (no activation follows it, so no ReLU gain; scaled so the
# first outputs are near 0): the loss at init is then ln(classes) for classification and about the
# target variance for regression, as the guides' "check the loss at init" expects. With He on the
# head, an MLP on standardized diabetes targets starts as a random function of output variance ~2.
HEAD_GAIN = 0.1
_RELU_FAMILY = ("relu", "leaky_relu", "gelu", "silu", "elu")
# The layers a scheme sets; each has a ``weight`` Tensor and an optional ``bias``.
WeightedLayer = (
    nn.Linear
    | nn.Conv1d
    | nn.Conv2d
    | nn.Conv3d
    | nn.ConvTranspose1d
    | nn.ConvTranspose2d
    | nn.ConvTranspose3d
)
_NORMS: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())  # RMSNorm arrived in torch 2.4
_ATTENTION_WEIGHTS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
_RESIDUAL_NAMES = ("c_proj", "out_proj")
GPT_STD = 0.02


def resolve_scheme(scheme: str, activation: str) -> str:
    """Return the concrete scheme ``scheme`` stands for: aliases expanded, ``auto`` decided.

    Example:
        >>> resolve_scheme("auto", "tanh"), resolve_scheme("he", "relu")
        ('xavier_uniform', 'kaiming_normal')
    """
    check_choice("init scheme", scheme, INIT_SCHEMES)
    check_choice("activation", activation, ACTIVATIONS)
    if scheme == "auto":
        if activation in _RELU_FAMILY:
            return "kaiming_normal"
        return "lecun" if activation == "selu" else "xavier_uniform"
    return _ALIASES.get(scheme, scheme)


def activation_gain(activation: str) -> float:
    """Return ``nn.init.calculate_gain`` for ``activation`` (ReLU's for GELU, SiLU and ELU)."""
    check_choice("activation", activation, ACTIVATIONS)
    if activation == "leaky_relu":
        return nn.init.calculate_gain("leaky_relu", LEAKY_RELU_SLOPE)
    if activation in _RELU_FAMILY:
        return nn.init.calculate_gain("relu")
    return nn.init.calculate_gain(cast(Any, activation))  # tanh, sigmoid or selu


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """Return ``(fan_in, fan_out)`` of a weight: dims 1 and 0 times the receptive field."""
    receptive = math.prod(weight.shape[2:])
    fan_out = weight.shape[0] * receptive
    fan_in = weight.shape[1] * receptive if weight.dim() > 1 else weight.shape[0]
    return fan_in, fan_out


@torch.no_grad()
def init_weight(weight: torch.Tensor, scheme: str, activation: str) -> None:
    """Fill one weight tensor (Linear, Conv or attention) in place by a concrete ``scheme``.

    ``gpt`` and ``lsuv`` are model-level schemes; for one tensor they mean normal(0, 0.02) and
    orthogonal.
    """
    gain = activation_gain(activation)
    fan_in, fan_out = fans(weight)
    if scheme == "xavier_uniform":
        nn.init.xavier_uniform_(weight)
    elif scheme == "xavier_normal":
        nn.init.xavier_normal_(weight)
    elif scheme in ("kaiming_normal", "kaiming_uniform", "kaiming_normal_fan_out"):
        fan = fan_out if scheme.endswith("fan_out") else fan_in
        std = gain / math.sqrt(fan)
        if scheme == "kaiming_uniform":
            bound = math.sqrt(3.0) * std
            nn.init.uniform_(weight, -bound, bound)
        else:
            nn.init.normal_(weight, 0.0, std)
    elif scheme == "lecun":
        nn.init.normal_(weight, 0.0, 1.0 / math.sqrt(fan_in))
    elif scheme == "orthogonal":
        nn.init.orthogonal_(weight, gain=gain)
    elif scheme == "uniform":
        nn.init.uniform_(weight, -1.0, 1.0)
    elif scheme == "normal":
        nn.init.normal_(weight, 0.0, 1.0)
    elif scheme == "lsuv":
        nn.init.orthogonal_(weight)
    elif scheme == "gpt":
        nn.init.normal_(weight, 0.0, GPT_STD)
    else:
        raise ConfigError(f"init_weight needs a concrete scheme, got {scheme!r}")


@torch.no_grad()
def init_recurrent(module: nn.RNNBase) -> None:
    """Initialize an RNN, GRU or LSTM: orthogonal hidden, Xavier input per gate, zero biases.

    The LSTM forget gate's input bias is set to 1 (gate order i, f, g, o), so the total forget
    bias is 1 and the cell keeps its state early in training.
    """
    hidden = module.hidden_size
    for name, param in module.named_parameters(recurse=False):
        if name.startswith("weight_ih"):
            for chunk in param.split(hidden, dim=0):
                nn.init.xavier_uniform_(chunk)
        elif name.startswith(("weight_hh", "weight_hr")):
            chunks = param.split(hidden, dim=0) if name.startswith("weight_hh") else (param,)
            for chunk in chunks:
                nn.init.orthogonal_(chunk)
        elif name.startswith("bias"):
            param.zero_()
            if module.mode == "LSTM" and name.startswith("bias_ih"):
                param[hidden : 2 * hidden].fill_(1.0)


@torch.no_grad()
def init_norm(module: nn.Module) -> None:
    """Set a norm layer's affine weight to 1 and bias to 0 (those it has)."""
    weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
    if isinstance(weight, torch.Tensor):
        weight.fill_(1.0)
    if isinstance(bias, torch.Tensor):
        bias.zero_()


def residual_projections(model: nn.Module) -> dict[str, WeightedLayer]:
    """Return the modules that end a residual branch, by qualified name.

    A module counts when it sets ``_residual_projection = True`` (the built-in resnet's blocks
    do) or is named ``c_proj`` or ``out_proj`` (GPT-2 and ``nn.MultiheadAttention``).
    """
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, WeightedLayer)
        and (
            getattr(module, "_residual_projection", False)
            or name.rsplit(".", 1)[-1] in _RESIDUAL_NAMES
        )
    }


def count_residual_blocks(names: list[str]) -> int:
    """Count the blocks that hold residual projections, from the projections' names.

    A block is the name up to its first numeric part (``h.3`` of ``h.3.attn.c_proj``, a
    ModuleList index); names with no index all belong to one block, the model itself.
    """
    blocks = set()
    for name in names:
        parts = name.split(".")
        index = next((i for i, part in enumerate(parts) if part.isdigit()), None)
        blocks.add(".".join(parts[: index + 1]) if index is not None else "")
    return max(1, len(blocks))


def initialize(
    model: nn.Module,
    scheme: str = "auto",
    *,
    activation: str = "relu",
    sample_input: torch.Tensor | None = None,
    lsuv_tol: float = 0.05,
    lsuv_max_iters: int = 10,
) -> dict[str, Any]:
    """Initialize ``model`` in place by ``scheme`` and return what was done.

    Args:
        model: any ``nn.Module``; layers it does not know keep their initialization.
        scheme: one of ``INIT_SCHEMES`` (see the module docstring).
        activation: the activation that follows the layers, for the gain and for ``auto``;
            ``trainwise.models.activation_of(model)`` tells it for built-in models.
        sample_input: one batch, required by ``lsuv`` to measure output variances.
        lsuv_tol: ``lsuv`` stops rescaling a layer when its output variance is within
            ``lsuv_tol`` of 1.
        lsuv_max_iters: the most rescaling rounds per layer for ``lsuv``.

    Returns:
        ``{"scheme", "requested", "activation", "layers": {name: what was done}}``, plus for
        ``lsuv`` ``"lsuv": {name: {"std": output std, "iterations": rounds}}`` and for ``gpt``
        ``"residual_std"``.

    Raises:
        ConfigError: unknown scheme or activation, ``lsuv`` without ``sample_input``, or bad
            LSUV settings.

    Example:
        >>> model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
        >>> initialize(model, "he")["layers"]
        {'0': 'kaiming_normal', '2': 'kaiming_normal'}
    """
    resolved = resolve_scheme(scheme, activation)
    report: dict[str, Any] = {"scheme": resolved, "requested": scheme, "activation": activation}
    if resolved == "lsuv":
        sample = check_lsuv_settings(sample_input, lsuv_tol, lsuv_max_iters)
    if resolved == "default":
        report["layers"] = {}
        return report

    layers: dict[str, str] = {}
    for name, module in model.named_modules():
        if isinstance(module, WeightedLayer):
            init_weight(module.weight, resolved, activation)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
            layers[name] = resolved
        elif isinstance(module, nn.RNNBase):
            init_recurrent(module)
            layers[name] = "recurrent"
        elif isinstance(module, _NORMS):
            init_norm(module)
            layers[name] = "norm"
        elif isinstance(module, nn.MultiheadAttention):
            _init_attention(module, resolved, activation)
            layers[name] = resolved
        elif isinstance(module, nn.Embedding) and resolved == "gpt":
            nn.init.normal_(module.weight, 0.0, GPT_STD)
            layers[name] = resolved
    report["layers"] = layers

    head = _output_head(model) if scheme == "auto" else None
    if head is not None:
        name, layer = head
        fan_in, _ = fans(layer.weight)
        nn.init.normal_(layer.weight, 0.0, HEAD_GAIN / math.sqrt(fan_in))
        layers[name] = f"head normal(0, {HEAD_GAIN:g}/sqrt(fan_in))"
    if resolved == "gpt":
        report["residual_std"] = _scale_residuals(model)
    elif resolved == "lsuv":
        names = {module: name for name, module in model.named_modules() if isinstance(module, WeightedLayer)}
        report["lsuv"] = lsuv_rescale(model, sample, lsuv_tol, lsuv_max_iters, names)
    logger.debug("initialized %d layers with %s", len(layers), resolved)
    return report


def _output_head(model: nn.Module) -> tuple[str, nn.Linear] | None:
    """The model's last Linear layer when it is the last of several weighted layers: its output."""
    weighted = [(name, m) for name, m in model.named_modules() if isinstance(m, WeightedLayer)]
    if len(weighted) > 1 and isinstance(weighted[-1][1], nn.Linear):
        return weighted[-1]  # type: ignore[return-value]
    return None


@torch.no_grad()
def _init_attention(module: nn.MultiheadAttention, scheme: str, activation: str) -> None:
    # The packed q/k/v projections are plain Parameters, not Linear modules; out_proj is a
    # Linear and is reached by the main walk.
    for name in _ATTENTION_WEIGHTS:
        weight = getattr(module, name, None)
        if weight is not None:
            init_weight(weight, scheme, activation)
    if module.in_proj_bias is not None:
        module.in_proj_bias.zero_()
    for bias in (module.bias_k, module.bias_v):
        if bias is not None:
            bias.zero_()


@torch.no_grad()
def _scale_residuals(model: nn.Module) -> float | None:
    # GPT-2: scale each residual branch's last layer by 1/sqrt(2 L) so the residual stream's
    # variance does not grow with depth.
    projections = residual_projections(model)
    if not projections:
        return None
    std = GPT_STD / math.sqrt(2 * count_residual_blocks(list(projections)))
    for module in projections.values():
        nn.init.normal_(module.weight, 0.0, std)
    return std
