"""Build a model by name: a built-in one, or a user's ``package.module:factory``."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from trainwise.checks import did_you_mean
from trainwise.errors import ConfigError
from trainwise.models.cnn import CNN
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
)
from trainwise.models.mlp import MLP
from trainwise.models.recurrent import RecurrentNet
from trainwise.models.resnet import ResNet

MODEL_NAMES: tuple[str, ...] = ("mlp", "cnn", "resnet", "gru", "lstm", "gpt")

# Defaults when ``hidden`` / ``channels`` are None, per model.
DEFAULT_HIDDEN: dict[str, tuple[int, ...]] = {
    "mlp": (128,),
    "cnn": (128,),
    "resnet": (),
    "gru": (64,),
    "lstm": (64,),
    "gpt": (),
}
CHECKPOINTED_MODELS = ("mlp", "cnn", "resnet")  # the deep ones; a one-layer GRU/LSTM has nothing to split
DEFAULT_CHANNELS: dict[str, tuple[int, ...]] = {"cnn": (32, 64, 64), "resnet": (16, 32, 64)}


def build_model(
    name: str,
    *,
    input_shape: Sequence[int],
    num_outputs: int,
    hidden: list[int] | None = None,
    norm: str = "none",
    dropout: float = 0.0,
    activation: str = "relu",
    channels: list[int] | None = None,
    kernel_size: int = 3,
    pool: str = "max",
    args: dict[str, Any] | None = None,
    checkpointing: bool = False,
    layers: int = 4,
    heads: int = 4,
    width: int = 128,
    norm_position: str = "pre",
) -> nn.Module:
    """Return a freshly built model mapping ``(N, *input_shape)`` to ``(N, num_outputs)``.

    Built-in names are ``MODEL_NAMES``: ``mlp`` (uses hidden, norm, dropout, activation),
    ``cnn`` and ``resnet`` (also channels, kernel_size, pool), ``gru`` and ``lstm`` (hidden,
    dropout), ``gpt`` (token ids ``(N, T)`` with ``input_shape=(block_size,)`` to logits ``(N, T,
    num_outputs)``; uses layers, heads, width, dropout, norm_position). Every option is checked, whether or not the chosen model uses it, so a typo
    never passes silently. ``None`` for ``hidden`` or ``channels`` takes the model's default
    (``DEFAULT_HIDDEN``, ``DEFAULT_CHANNELS``).

    Any other name of the form ``package.module:factory`` imports ``package.module`` (the
    current directory is on ``sys.path``) and returns ``factory(**args)``; a factory parameter
    named ``input_shape`` or ``num_outputs`` that ``args`` does not set is filled in from the
    data.

    Raises:
        ConfigError: an unknown name or option (with a did-you-mean), a value out of range, or
            a user factory that cannot be imported, called, or does not return an ``nn.Module``.

    Example:
        >>> model = build_model("cnn", input_shape=(1, 40), num_outputs=10, norm="batch")
        >>> activation_of(model)
        'relu'
    """
    if not isinstance(name, str):
        raise ConfigError(f"model name must be a string, got {name!r}")
    if args is not None and not isinstance(args, dict):
        raise ConfigError(f"model args must be a mapping of keyword arguments, got {args!r}")
    shape = check_input_shape(input_shape)
    check_num_outputs(num_outputs)
    if checkpointing and name not in CHECKPOINTED_MODELS:
        raise ConfigError(f"model.checkpointing applies to the built-in {', '.join(CHECKPOINTED_MODELS)}, got model "
                          f"{name!r}; for a model of your own, call torch.utils.checkpoint.checkpoint(..., "
                          "use_reentrant=False) in its forward, or set model.checkpointing=false")
    if ":" in name:
        return load_user_model(name, args or {}, input_shape=shape, num_outputs=num_outputs)
    check_choice("model", name, MODEL_NAMES)
    if args:
        raise ConfigError(
            f"model args go to a user factory ('package.module:factory'); built-in model "
            f"{name!r} takes none, got {args!r}; remove them or set the model's own options"
        )
    check_choice("norm", norm, CONV_NORMS)
    check_choice("pool", pool, POOLS)
    check_choice("activation", activation, ACTIVATIONS)
    check_kernel_size(kernel_size)
    check_dropout(dropout)
    if channels is not None:
        check_positive_ints("channels", channels, allow_empty=False)
    sizes = DEFAULT_HIDDEN[name] if hidden is None else hidden
    if name == "gpt":
        return _gpt(shape, num_outputs, layers=layers, heads=heads, width=width, dropout=dropout,
                    norm_position=norm_position)
    if name == "mlp":
        model: nn.Module = MLP(
            shape, num_outputs, sizes, norm=norm, dropout=dropout, activation=activation
        )
    elif name in ("cnn", "resnet"):
        model_class = CNN if name == "cnn" else ResNet
        model = model_class(
            shape,
            num_outputs,
            DEFAULT_CHANNELS[name] if channels is None else channels,
            kernel_size=kernel_size,
            norm=norm,
            pool=pool,
            activation=activation,
            hidden=sizes,
            dropout=dropout,
        )
    else:
        model = RecurrentNet(shape, num_outputs, cell=name, hidden=sizes, dropout=dropout)
    if checkpointing:
        model.checkpointing = True
    # How to build it again (a Python run's config.yaml records it, so `trainwise evaluate` can).
    model.trainwise_config = {"name": name, "hidden": list(sizes), "norm": norm, "dropout": dropout,
                              "activation": activation, "channels": None if channels is None else list(channels),
                              "kernel_size": kernel_size, "pool": pool, "checkpointing": checkpointing}
    return model


def _gpt(shape: tuple[int, ...], vocab_size: int, **options: Any) -> nn.Module:
    from trainwise.models.gpt import GPT

    if len(shape) != 1:
        raise ConfigError(f"model gpt takes token windows of shape (block_size,), got samples of shape {shape}; "
                          "use it with data.dataset: text")
    model = GPT(vocab_size, shape[0], **options)
    model.trainwise_config = {"name": "gpt", **options}
    return model


def activation_of(model: nn.Module) -> str:
    """Return the activation ``model`` uses, for ``trainwise.models.init`` (``"relu"`` if it says none).

    Built-in models set ``model.trainwise_activation``; a user model may set it too.

    Example:
        >>> activation_of(nn.Linear(2, 2))
        'relu'
    """
    return str(getattr(model, "trainwise_activation", "relu"))


def load_user_model(
    spec: str, args: dict[str, Any], *, input_shape: tuple[int, ...], num_outputs: int
) -> nn.Module:
    """Import ``package.module:factory`` and return ``factory(**args)``, checked.

    Raises:
        ConfigError: naming the step that failed (import, lookup, call, return type) and the fix.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr.isidentifier():
        raise ConfigError(
            f"model {spec!r} must look like 'package.module:factory' (a module, a colon, a "
            f"function or class name), or be one of {', '.join(MODEL_NAMES)}"
        )
    factory = _find_factory(spec, module_name, attr)
    kwargs = dict(args)
    parameters: dict[str, inspect.Parameter] = {}
    try:
        signature = inspect.signature(factory)
        parameters = dict(signature.parameters)
    except (TypeError, ValueError):  # some builtins and C extensions have no signature
        signature = None
    for key, value in (("input_shape", input_shape), ("num_outputs", num_outputs)):
        if key in parameters and key not in kwargs:
            kwargs[key] = value
    if signature is not None:
        try:
            signature.bind(**kwargs)
        except TypeError as error:
            raise ConfigError(
                f"model args {args!r} do not fit {spec}{signature}: {error}; "
                f"set model.args to the factory's keyword arguments"
            ) from error
    try:
        model = factory(**kwargs)
    except Exception as error:
        raise ConfigError(
            f"calling {spec} with {kwargs!r} raised {type(error).__name__}: {error}"
        ) from error
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"{spec} returned a {type(model).__name__}, not a torch.nn.Module; make the factory "
            f"return the model instance"
        )
    return model


def _find_factory(spec: str, module_name: str, attr: str) -> Callable[..., Any]:
    # The CLI's sys.path[0] is the script's folder, not the user's: add the working directory
    # so that a module next to the config imports as it would with `python -c`.
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and (module_name + ".").startswith(error.name + "."):
            raise ConfigError(
                f"cannot import module {module_name!r} for model {spec!r}: no module named "
                f"{error.name!r}; run from the folder that holds it (the current directory "
                f"{cwd} is on sys.path), or pip install the package that provides it"
            ) from error
        raise ConfigError(
            f"importing module {module_name!r} for model {spec!r} failed: it needs "
            f"{error.name!r}, which is not installed; pip install it"
        ) from error
    except Exception as error:
        raise ConfigError(
            f"importing module {module_name!r} for model {spec!r} failed with "
            f"{type(error).__name__}: {error}; fix the error in "
            f"{module_name.replace('.', '/')}.py"
        ) from error
    if not hasattr(module, attr):
        callables = sorted(
            key
            for key, value in vars(module).items()
            if callable(value) and getattr(value, "__module__", None) == module.__name__
        )
        hint = did_you_mean(attr, callables)
        raise ConfigError(
            f"module {module_name!r} has no attribute {attr!r}{hint} "
            f"(callables in it: {', '.join(callables) or 'none'})"
        )
    factory = getattr(module, attr)
    if not callable(factory):
        raise ConfigError(
            f"{spec} is a {type(factory).__name__}, not callable; name a function or class "
            f"that returns a torch.nn.Module"
        )
    return factory
