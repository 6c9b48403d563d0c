"""ONNX: torch's default (``dynamo=True``, torch.export-based) exporter, a dynamic batch axis, one
self-contained file, ``onnx.checker``, and onnxruntime to run it.

The exporter writes weights to a ``.onnx.data`` sidecar when given a file name; saving through
``ONNXProgram.save`` keeps them inside, and a sidecar that appears anyway is folded back in (a file
under 2 GB), so the artifact is always one file. The run's config and data.json travel in the
model's ``metadata_props`` under ``trainwise.json``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainwise.errors import ConfigError, ExportError
from trainwise.export.verify import Runner, first_line, parse_meta, quiet

META_KEY = "trainwise.json"
MAX_BATCH = 1 << 20
_TWO_GB = 2**31 - 1


def require(module: str, purpose: str) -> Any:
    """Import an optional dependency or say which ``pip install`` fixes it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ConfigError(f"{purpose} needs the {module.split('.')[0]!r} package, which is not installed "
                          f"({error}); pip install 'trainwise[export]'") from None


def batch_shapes(example: torch.Tensor) -> tuple[dict[int, Any], ...]:
    """A dynamic batch axis; token ids ``(N, T)`` also get a dynamic sequence axis, up to the example's
    length (the block size)."""
    dims = {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}
    if not example.is_floating_point() and example.dim() == 2:
        dims[1] = torch.export.Dim("tokens", min=1, max=int(example.shape[1]))
    return (dims,)


def write_onnx(module: nn.Module, example: torch.Tensor, path: Path, meta_json: str) -> dict[str, Any]:
    """Export ``module`` to ``path`` (one file) and check it; returns graph facts for the table."""
    require("onnxscript", "ONNX export (torch's default exporter)")
    onnx = require("onnx", "ONNX export")
    try:
        with quiet():
            program = torch.onnx.export(module, (example,), dynamo=True, dynamic_shapes=batch_shapes(example),
                                        input_names=["input"], output_names=["output"], verbose=False)
            assert program is not None  # dynamo=True always returns the program
            program.save(str(path))
    except Exception as error:  # the exporter raises many types; each becomes one message
        raise ExportError(f"ONNX export of {type(_inner(module)).__name__} failed ({first_line(error)}); "
                          f"{_unsupported_hint(module)}try --format torchscript or pt2") from error
    model = onnx.load(str(path))  # also reads a .data sidecar, if the exporter wrote one
    entry = model.metadata_props.add()
    entry.key, entry.value = META_KEY, meta_json
    if model.ByteSize() > _TWO_GB:
        raise ExportError(f"the ONNX model is {model.ByteSize() / 2**30:.1f} GB, over protobuf's 2 GB limit for "
                          "one file; export it with torch.onnx.export(..., external_data=True) yourself")
    onnx.save(model, str(path), save_as_external_data=False)
    Path(f"{path}.data").unlink(missing_ok=True)
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as error:
        raise ExportError(f"the exported ONNX file fails onnx.checker: {first_line(error)}") from error
    ops = sorted({node.op_type for node in model.graph.node})
    return {"opset": int(model.opset_import[0].version), "batchnorm_nodes": ops.count("BatchNormalization"),
            "ops": ops}


def load_onnx(path: Path) -> tuple[Runner, dict[str, Any]]:
    """An onnxruntime session on ``path`` as a tensor → tensor function, and its metadata."""
    ort = require("onnxruntime", "running an ONNX model")
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(torch.get_num_threads(), 1)
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:
        raise ExportError(f"onnxruntime cannot load {path}: {first_line(error)}") from error
    name = session.get_inputs()[0].name
    token_ids = session.get_inputs()[0].type == "tensor(int64)"  # a language model's
    meta = session.get_modelmeta().custom_metadata_map.get(META_KEY)

    def run(x: torch.Tensor) -> torch.Tensor:
        x = x.detach().cpu()
        return torch.from_numpy(session.run(None, {name: (x.long() if token_ids else x.float()).numpy()})[0])

    return run, parse_meta(meta, path)


def _inner(module: nn.Module) -> nn.Module:
    return getattr(module, "model", module)


def _unsupported_hint(module: nn.Module) -> str:
    """Name layers the exporter is known to refuse (quantized and sparse modules)."""
    odd = [f"{name} ({type(layer).__name__})" for name, layer in module.named_modules()
           if "quantized" in type(layer).__module__]
    return f"layers it cannot take: {', '.join(odd[:5])}; " if odd else ""
