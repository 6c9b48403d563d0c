"""TorchScript (``.pt``) and ``torch.export`` (``.pt2``) artifacts.

TorchScript is deprecated in PyTorch (since 2.5; "in favor of torch.export" as of 2.11) but still
works in 2.13 and loads in C++ (libtorch) without Python, so it is offered with that warning in the
help. The model is traced; when the traced graph disagrees with eager PyTorch at other batch sizes
than the example's (control flow or shapes baked in by the trace) it is scripted instead.

``.pt2`` is what PyTorch recommends now: ``torch.export`` with a dynamic batch axis. Its loader
unpickles, so load only files you trust (the same holds for TorchScript).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainwise.errors import ExportError
from trainwise.export.verify import Runner, first_line, parse_meta, quiet

META_FILE = "trainwise.json"


def write_torchscript(module: nn.Module, example: torch.Tensor, path: Path, meta_json: str) -> dict[str, Any]:
    """Trace (or script, when tracing is not faithful) and save; returns ``{"method": ...}``."""
    with quiet():
        method, compiled = "trace", None
        try:
            compiled = torch.jit.trace(module, example, check_trace=False)
            if not _faithful(module, compiled, example):
                compiled = None
        except Exception:  # tracing refused: try scripting below
            compiled = None
        if compiled is None:
            method = "script"
            try:
                compiled = torch.jit.script(module)
            except Exception as error:
                raise ExportError(f"TorchScript: tracing {type(module.model).__name__} does not reproduce it at "
                                  f"other batch sizes and scripting fails ({first_line(error)}); use --format pt2 "
                                  "or onnx") from error
            if not _faithful(module, compiled, example):
                raise ExportError("TorchScript: neither the traced nor the scripted model reproduces the eager "
                                  "model at other batch sizes; use --format pt2 or onnx")
        torch.jit.save(compiled, str(path), _extra_files={META_FILE: meta_json})
    return {"method": method}


def load_torchscript(path: Path) -> tuple[Runner, dict[str, Any]]:
    extra = {META_FILE: ""}
    with quiet():
        try:
            loaded = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except Exception as error:
            raise ExportError(f"cannot load TorchScript file {path}: {first_line(error)}; is it a "
                              "torch.jit.save file (a training checkpoint is not)?") from error
    loaded.eval()
    return loaded, parse_meta(extra[META_FILE], path)


def write_pt2(module: nn.Module, example: torch.Tensor, path: Path, meta_json: str) -> dict[str, Any]:
    from trainwise.export.onnx_format import batch_shapes

    with quiet():
        try:
            program = torch.export.export(module, (example,), dynamic_shapes=batch_shapes(example))
        except Exception as error:
            raise ExportError(f"torch.export of {type(module.model).__name__} failed ({first_line(error)}); "
                              "try --format torchscript or onnx") from error
        torch.export.save(program, str(path), extra_files={META_FILE: meta_json})
    return {}


def load_pt2(path: Path) -> tuple[Runner, dict[str, Any]]:
    extra = {META_FILE: ""}
    with quiet():
        try:
            program = torch.export.load(str(path), extra_files=extra)
        except Exception as error:
            raise ExportError(f"cannot load .pt2 file {path}: {first_line(error)}") from error
    return program.module(), parse_meta(extra[META_FILE], path)


def _faithful(module: nn.Module, compiled: Any, example: torch.Tensor) -> bool:
    """Whether ``compiled`` matches eager ``module`` on two batch sizes other than the example's (and,
    for token ids, on other ids and a shorter sequence)."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for size in (1, len(example) + 3):
        batch = example.repeat(size // len(example) + 1, *[1] * (example.dim() - 1))[:size]
        if batch.is_floating_point():
            batches.append(batch + 0.01 * torch.randn(batch.shape, generator=generator))
        else:  # token ids: other ids of the same vocabulary
            batches.append(torch.randint(0, int(example.max()) + 1, batch.shape, generator=generator))
    if not example.is_floating_point() and example.dim() == 2 and example.shape[1] > 1:
        batches.append(batches[-1][:, : example.shape[1] // 2])
    for batch in batches:
        with torch.inference_mode():
            want, got = module(batch), compiled(batch)
        if not isinstance(got, torch.Tensor) or got.shape != want.shape or not torch.allclose(got, want, atol=1e-5,
                                                                                                 rtol=1e-4):
            return False
    return True
