"""A model rebuilt for weights read from a file, checked against the file before any memory is used.

A run folder's config.yaml and data.json, or a safetensors file's metadata, say how big the model
is; the file may come from anyone, and sizes edited to ``hidden: [1000000000, 1000000000]`` would
ask for terabytes. So the model is first built on PyTorch's ``meta`` device (shapes only, no
memory), every tensor of its state dict is compared with the file's, and it is built for real only
when they all fit: what it then allocates is what the file holds.

Example:
    >>> from trainwise.models import build_model
    >>> def build():
    ...     return build_model("mlp", input_shape=(4,), num_outputs=2, hidden=[8])
    >>> found = {key: tuple(t.shape) for key, t in build().state_dict().items()}
    >>> model = build_to_fit(build, found, refuse=ValueError)
    >>> misfit(build(), {**found, "layers.1.weight": (16, 4)})
    'layers.1.weight: expected shape (8, 4), found (16, 4)'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional

import torch
from torch import nn


def build_to_fit(build: Callable[[], nn.Module], found: Mapping[str, Sequence[int]], *,
                 refuse: Callable[[str], Exception]) -> nn.Module:
    """``build()`` for real, once its skeleton on the meta device fits the tensors ``found``.

    Args:
        build: makes the model; called twice (first under ``torch.device("meta")``). Use it for
            code whose tensors all follow the default device (the built-in models do).
        found: the file's tensors, name to shape (a checkpoint's state dict, a safetensors header).
        refuse: turns the first misfit (``misfit``'s phrase) into the exception raised.

    Raises:
        whatever ``refuse`` returns, before anything real is allocated; whatever ``build`` raises.
    """
    with torch.device("meta"):
        skeleton = build()
    problem = misfit(skeleton, found)
    if problem is not None:
        raise refuse(problem)
    del skeleton
    return build()


def misfit(model: nn.Module, found: Mapping[str, Sequence[int]]) -> Optional[str]:
    """None when the tensors ``found`` (name to shape) are those of ``model``'s state dict, else
    the first that differs, in the model's order: ``'layers.1.weight: expected shape (8, 4), found
    (16, 4)'``, ``'... not in the file'`` or ``'...: found shape (3,), which the model has no place
    for'``. A tensor the model shares between names (tied weights) may be in the file under one.
    """
    tensors = {key: value for key, value in model.state_dict(keep_vars=True).items()
               if isinstance(value, torch.Tensor)}
    names_of: dict[int, list[str]] = {}
    for key, tensor in tensors.items():
        names_of.setdefault(id(tensor), []).append(key)
    for key, tensor in tensors.items():
        expected = tuple(tensor.shape)
        if key in found:
            shape = _shape(found[key])
            if shape != expected:
                return f"{key}: expected shape {_shown(expected)}, found {_shown(shape)}"
        elif not any(other in found for other in names_of[id(tensor)]):
            return f"{key}: expected shape {_shown(expected)}, not in the file"
    for key, extra in found.items():
        if key not in tensors:
            return f"{key}: found shape {_shown(_shape(extra))}, which the model has no place for"
    return None


def too_many_layers(name: str, options: Mapping[str, Any], tensors: int) -> Optional[str]:
    """The option of built-in model ``name`` that asks for more layers than the file has tensors
    (each layer has at least one), as ``'model.layers 1000000000 asks for more layers than the
    file's 29 tensors'``; None when none does. Checked before the meta build, which makes one
    Python object per layer: a million layers would take minutes and gigabytes even there.
    """
    counts = {"layers": options.get("layers")} if name == "gpt" else {
        key: len(value) for key in ("hidden", "channels")
        if isinstance(value := options.get(key), (list, tuple))}
    for key, count in counts.items():
        if isinstance(count, int) and not isinstance(count, bool) and count > tensors:
            return f"model.{key} asks for {count} layers, more than the file's {tensors} tensors"
    return None


def tensor_shapes(state: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Name to shape of the tensors of a state dict (entries that are not tensors are left out)."""
    return {key: tuple(value.shape) for key, value in state.items() if isinstance(value, torch.Tensor)}


def _shape(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(size) for size in shape)


def _shown(shape: tuple[int, ...]) -> str:
    return f"({shape[0]},)" if len(shape) == 1 else str(shape)
