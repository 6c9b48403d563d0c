"""safetensors: the weights, with the run's config and data.json in the file's metadata; loading
reads no pickle at all (``trainwise.load_model``).

The weights are those of the model with its input normalization (``mean``/``std`` buffers), so
the rebuilt model takes raw inputs like every other artifact. The architecture comes from the
config: a built-in model is rebuilt by name; a user's class by ``package.module:Class`` when it
builds with no arguments, otherwise pass the module to load into (``model=``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from trainwise.errors import CheckpointError, ConfigError, DataNotFoundError
from trainwise.export.verify import Runner, first_line

META_KEY = "trainwise.json"


def write_safetensors(module: nn.Module, example: torch.Tensor, path: Path, meta_json: str) -> dict[str, Any]:
    from safetensors.torch import save_model

    save_model(module, str(path), metadata={META_KEY: meta_json, "format": "pt"})
    return {"tensors": len(module.state_dict())}


def read_metadata(path: Path) -> dict[str, Any]:
    """The ``trainwise.json`` metadata of a safetensors file (no tensors are read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            text = (handle.metadata() or {}).get(META_KEY)
    except Exception as error:  # safetensors raises its own error types for a bad header
        raise CheckpointError(f"cannot read safetensors file {path}: {first_line(error)}") from error
    return json.loads(text) if text else {}


def load_model(path: str | Path, model: Optional[nn.Module] = None) -> nn.Module:
    """Rebuild a model exported with ``format="safetensors"``, in eval mode, taking raw inputs.

    Args:
        path: the ``.safetensors`` file.
        model: for a user's own class, an instance of it (its weights are replaced); built-in
            models are rebuilt from the config in the file.

    Raises:
        DataNotFoundError: no such file. CheckpointError: the weights do not fit. ConfigError:
            the architecture cannot be rebuilt (pass ``model=``).

    Example:
        >>> model = trainwise.load_model("runs/digits/export/model.safetensors")
        >>> model(raw_inputs).argmax(1)
    """
    from safetensors.torch import load_model as load_into

    from trainwise.export._source import Deployable

    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"no such safetensors file: {path}; pass the file trainwise export wrote")
    meta = read_metadata(path)
    description = meta.get("data") or {}
    if not description:
        raise CheckpointError(f"{path} has no trainwise metadata; load it with safetensors.torch.load_file and "
                              "your own model")
    shape = tuple(int(size) for size in description["input_shape"])
    inner = model if model is not None else _rebuild(meta, path)
    target_normalization = description.get("target_normalization")
    if model is None and description.get("task") == "regression" and target_normalization:
        from trainwise.runfolder.saved import OriginalUnits

        inner = OriginalUnits(inner, target_normalization)
    module = Deployable(inner, shape, description.get("normalization") or None)
    try:
        load_into(module, str(path), strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"the weights in {path} do not fit the model ({first_line(error)}); pass model= "
                              "an instance of the class that was exported") from error
    return module.eval()


def load_safetensors(path: Path) -> tuple[Runner, dict[str, Any]]:
    return load_model(path), read_metadata(path)


def _rebuild(meta: dict[str, Any], path: Path) -> nn.Module:
    from trainwise.models import build_model

    spec = dict((meta.get("config") or {}).get("model") or {})
    description = meta["data"]
    name = spec.pop("name", None)
    if not name:
        raise ConfigError(f"{path} does not say which model it holds; pass model= an instance of it")
    options = {key: spec[key] for key in ("hidden", "norm", "dropout", "activation", "channels", "kernel_size",
                                          "pool", "args") if key in spec}
    if ":" in name and name.startswith("__main__:"):
        raise ConfigError(f"{path} holds a {name.split(':')[1]} defined in a script; pass model= an instance of it: "
                          f"trainwise.load_model({str(path)!r}, model={name.split(':')[1]}(...))")
    try:
        return build_model(name, input_shape=description["input_shape"], num_outputs=int(description["num_outputs"]),
                           **options)
    except ConfigError as error:
        raise ConfigError(f"cannot rebuild the model of {path}: {error}; or pass model= an instance of it") from error
