"""safetensors: the weights, with the run's config and data.json in the file's metadata; loading
reads no pickle at all (``trainwise.load_model``).

The weights are those of the model with its input normalization (``mean``/``std`` buffers), so
the rebuilt model takes raw inputs like every other artifact. The architecture comes from the
config: a built-in model is rebuilt by name from a closed registry; a user's class is never imported
because the file names it (a file is data): pass the module to load into (``model=``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from trainwise.errors import CheckpointError, ConfigError, DataNotFoundError
from trainwise.export.verify import Runner, first_line
from trainwise.models.to_fit import build_to_fit, misfit, too_many_layers

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
    if not text:
        return {}
    try:
        meta = json.loads(text)
    except ValueError as error:
        raise CheckpointError(f"the trainwise metadata of {path} is not valid JSON ({error}); the file is damaged or "
                              "was not written by trainwise export") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"the trainwise metadata of {path} is not a JSON object; the file is damaged or was "
                              "not written by trainwise export")
    return meta


def _description(meta: dict[str, Any], path: Path) -> tuple[dict[str, Any], tuple[int, ...]]:
    """data.json as the metadata carries it, and its input shape, checked (the file is not trusted)."""
    from trainwise.runfolder.description import description_problem

    description = meta.get("data") or {}
    if not description:
        raise CheckpointError(f"{path} has no trainwise metadata; load it with safetensors.torch.load_file and "
                              "your own model")
    if not isinstance(description, dict):
        raise CheckpointError(f"the trainwise metadata of {path} holds no data description (data is "
                              f"{type(description).__name__}); the file is damaged or was not written by trainwise "
                              "export")
    problem = description_problem(description, required=("input_shape", "num_outputs"))
    if problem is not None:
        raise CheckpointError(f"the trainwise metadata of {path}: data.{problem}; the file is damaged or was not "
                              "written by trainwise export")
    return description, tuple(description["input_shape"])


def _file_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Name to shape of the file's tensors, from its header (no tensor is read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except Exception as error:  # safetensors raises its own error types for a bad header
        raise CheckpointError(f"cannot read safetensors file {path}: {first_line(error)}") from error


def load_model(path: str | Path, model: Optional[nn.Module] = None) -> nn.Module:
    """Rebuild a model exported with ``format="safetensors"``, in eval mode, taking raw inputs.

    Args:
        path: the ``.safetensors`` file.
        model: for a user's own class, an instance of it (its weights are replaced); built-in
            models are rebuilt from the config in the file. A class named in the file is never
            imported: the file may come from anyone.

    Raises:
        DataNotFoundError: no such file. CheckpointError: the weights do not fit. ConfigError:
            the architecture cannot be rebuilt (pass ``model=``).

    Example:
        >>> model = trainwise.load_model("runs/digits/export/model.safetensors")
        >>> model(raw_inputs).argmax(1)
    """
    from safetensors.torch import load_model as load_into

    from trainwise.export._source import Deployable, takes_token_ids

    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"no such safetensors file: {path}; pass the file trainwise export wrote")
    if path.suffix.lower() in (".pt", ".pt2"):
        raise ConfigError(f"{path.name} is a TorchScript/torch.export program, not weights: loading it runs code "
                          "it contains; load_model reads .safetensors only. If you trust the file, load it with "
                          f"trainwise.export.load_artifact({str(path)!r}, format="
                          f"{'pt2' if path.suffix.lower() == '.pt2' else 'torchscript'!r})")
    if model is not None and not isinstance(model, nn.Module):
        raise ConfigError(f"model= must be an instance of your torch.nn.Module, got {type(model).__name__}; e.g. "
                          "model=YourNet(...)")
    meta = read_metadata(path)
    description, shape = _description(meta, path)
    found = _file_shapes(path)

    def refuse(problem: str) -> CheckpointError:
        what, fix = (("the model given (model=)", "pass model= an instance of the class that was exported")
                     if model is not None else ("the model its metadata describes", "the file is damaged; or pass "
                                                "model= an instance of the class that was exported (CLI: "
                                                "--model package.module:factory)"))
        return CheckpointError(f"the weights in {path} do not fit {what} ({problem}); {fix}")

    def build() -> nn.Module:
        inner = model if model is not None else _rebuild(meta, path, tensors=len(found), refuse=refuse)
        target_normalization = description.get("target_normalization")
        if model is None and description.get("task") == "regression" and target_normalization:
            from trainwise.runfolder.saved import OriginalUnits

            inner = OriginalUnits(inner, target_normalization)
        try:
            tokens = takes_token_ids(description)
            return Deployable(inner, shape, None if tokens else description.get("normalization") or None,
                              token_ids=tokens)
        except (TypeError, ValueError, RuntimeError, AttributeError):
            raise CheckpointError(f"the normalization in {path}'s metadata is not lists of numbers per channel; the "
                                  "file is damaged or was not written by trainwise export") from None

    if model is not None:  # the user's instance, built already: compared as it is
        module = build()
        problem = misfit(module, found)
        if problem is not None:
            raise refuse(problem)
    else:  # sizes read from the metadata allocate nothing until the file's tensors confirm them
        module = build_to_fit(build, found, refuse=refuse)
    try:
        load_into(module, str(path), strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"the weights in {path} do not fit the model ({first_line(error)}); pass model= "
                              "an instance of the class that was exported") from error
    return module.eval()


def load_safetensors(path: Path, model: Optional[nn.Module] = None) -> tuple[Runner, dict[str, Any]]:
    return load_model(path, model=model), read_metadata(path)


def _rebuild(meta: dict[str, Any], path: Path, *, tensors: int,
             refuse: Callable[[str], Exception]) -> nn.Module:
    """A built-in model from the metadata's config; a name outside the registry is refused, never imported."""
    from trainwise.models import build_model
    from trainwise.models.from_file import builtin_name_from_file

    spec = (meta.get("config") or {}).get("model") or {}
    spec = dict(spec) if isinstance(spec, dict) else {}
    description = meta["data"]
    name = builtin_name_from_file(spec.pop("name", None), where=f"{path.name}'s metadata",
                                  fix=f"build the model yourself and pass it: trainwise.load_model({str(path)!r}, "
                                      "model=YourNet(...)) (CLI: trainwise predict --model package.module:factory)")
    options = {key: spec[key] for key in ("hidden", "norm", "dropout", "activation", "channels", "kernel_size",
                                          "pool", "layers", "heads", "width", "norm_position") if key in spec}
    problem = too_many_layers(name, options, tensors)
    if problem is not None:
        raise refuse(problem)
    try:
        return build_model(name, input_shape=description["input_shape"], num_outputs=int(description["num_outputs"]),
                           **options)
    except (ConfigError, TypeError, ValueError) as error:
        raise ConfigError(f"cannot rebuild the model of {path}: {error}; or pass model= an instance of it") from error
