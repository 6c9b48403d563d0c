"""int8: dynamic quantization (int8 weights, activations quantized on the fly) of Linear, LSTM
and GRU layers, measured against the fp32 model: size, CPU latency at batch 1 and 64, and
accuracy on the verification split.

Two paths work in torch 2.13 and were measured side by side (``benchmarks/export_int8.py``):

- onnxruntime's ``quantize_dynamic`` on the fp32 ONNX file: not deprecated, one ``.onnx`` file
  that runs anywhere onnxruntime does, and the smaller file for Linear layers (digits MLP
  212 kB → 61 kB, against 215 kB → 72 kB for torch's; same accuracy). But it leaves GRU/LSTM
  weights in fp32 (GRU 85 kB → 83 kB, LSTM 105 kB → 103 kB), so
- models with a GRU or LSTM go through ``torch.ao.quantization.quantize_dynamic`` and a traced
  TorchScript file, which halves them (GRU 68 kB → 35 kB, LSTM 87 kB → 42 kB). That API is
  deprecated (removal planned in favour of torchao, which is slower on CPU without compilation)
  and warns; it is the only path here that quantizes recurrent weights.

A model with none of these layers (a pure conv net) is refused with a message naming its layers:
dynamic quantization would change nothing.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainwise.errors import ExportError
from trainwise.export import gates
from trainwise.export._source import ExportSource
from trainwise.export.verify import Runner, accuracy, first_line, latency_ms, quiet, rmse, run_all

QUANTIZABLE = (nn.Linear, nn.LSTM, nn.GRU)
RECURRENT = (nn.LSTM, nn.GRU)
MAX_DROP_POINTS = 1.0


def int8_suffix(module: nn.Module) -> str:
    """``.onnx`` (onnxruntime path) or ``.pt`` (torch path, for recurrent models)."""
    check_quantizable(module)
    return ".pt" if any(isinstance(layer, RECURRENT) for layer in module.modules()) else ".onnx"


def check_quantizable(module: nn.Module) -> None:
    if any(isinstance(layer, QUANTIZABLE) for layer in module.modules()):
        return
    inner = getattr(module, "model", module)
    kinds = Counter(type(layer).__name__ for layer in inner.modules() if not list(layer.children()))
    listed = ", ".join(f"{name} x{count}" for name, count in kinds.most_common()) or "none"
    raise ExportError(f"--format int8 quantizes Linear, LSTM and GRU layers; {type(inner).__name__} has none "
                      f"(its layers: {listed}), so int8 would change nothing; export it as onnx or torchscript")


def write_int8(source: ExportSource, fp32_module: nn.Module, path: Path, meta_json: str) -> dict[str, Any]:
    """Quantize, save to ``path``, and return the before/after figures (the caller verifies)."""
    if path.suffix == ".pt":
        return _torch_path(source, fp32_module, path, meta_json)
    return _onnx_path(source, fp32_module, path, meta_json)


def _onnx_path(source: ExportSource, fp32_module: nn.Module, path: Path, meta_json: str) -> dict[str, Any]:
    from trainwise.export.onnx_format import load_onnx, require, write_onnx

    quantization = require("onnxruntime.quantization", "int8 quantization")
    fp32_path = path.with_name(path.name.replace(".onnx", ".fp32.onnx"))
    try:
        write_onnx(fp32_module, source.example, fp32_path, meta_json)
        with quiet():
            quantization.quantize_dynamic(str(fp32_path), str(path), weight_type=quantization.QuantType.QInt8,
                                          op_types_to_quantize=["MatMul", "Gemm", "LSTM"])
        _add_onnx_meta(path, meta_json)
        fp32_runner, _ = load_onnx(fp32_path)
        int8_runner, _ = load_onnx(path)
        return _figures(source, fp32_runner, int8_runner, fp32_path.stat().st_size, path.stat().st_size,
                        "onnxruntime.quantization.quantize_dynamic on the fp32 ONNX file")
    finally:
        fp32_path.unlink(missing_ok=True)


def _torch_path(source: ExportSource, fp32_module: nn.Module, path: Path, meta_json: str) -> dict[str, Any]:
    from trainwise.export.torchscript_format import META_FILE

    with quiet():
        try:
            quantized = torch.ao.quantization.quantize_dynamic(fp32_module, set(QUANTIZABLE), dtype=torch.qint8)
            scripted = torch.jit.trace(quantized, source.example, check_trace=False)
            fp32_scripted = torch.jit.trace(fp32_module, source.example, check_trace=False)
        except Exception as error:
            raise ExportError(f"int8 quantization with torch failed: {first_line(error)}") from error
        torch.jit.save(scripted, str(path), _extra_files={META_FILE: meta_json})
        fp32_path = path.with_name(path.name.replace(".pt", ".fp32.pt"))
        try:
            torch.jit.save(fp32_scripted, str(fp32_path))
            fp32_size = fp32_path.stat().st_size
        finally:
            fp32_path.unlink(missing_ok=True)
        loaded = torch.jit.load(str(path))
    return _figures(source, fp32_scripted, loaded, fp32_size, path.stat().st_size,
                    "torch.ao.quantization.quantize_dynamic, traced to TorchScript")


def _figures(source: ExportSource, fp32: Runner, int8: Runner, fp32_bytes: int, int8_bytes: int,
             method: str) -> dict[str, Any]:
    """Size, interleaved latency (median of repeats, batch 1 and 64) and accuracy, fp32 vs int8."""
    figures: dict[str, Any] = {"method": method, "fp32_bytes": fp32_bytes, "int8_bytes": int8_bytes,
                               "size_ratio": round(int8_bytes / fp32_bytes, 3)}
    for size in (1, 64):
        batch = source.eval_x[:size]
        if len(batch) < size:
            batch = batch.repeat(size // len(batch) + 1, *[1] * (batch.dim() - 1))[:size]
        before, after = [], []
        for _ in range(3):  # interleaved, so a busy machine slows both alike
            before.append(latency_ms(fp32, batch, repeats=3))
            after.append(latency_ms(int8, batch, repeats=3))
        figures[f"fp32_ms_batch{size}"] = round(sorted(before)[1], 4)
        figures[f"int8_ms_batch{size}"] = round(sorted(after)[1], 4)
    outputs_fp32, outputs_int8 = run_all(fp32, source.eval_x), run_all(int8, source.eval_x)
    gates.check_finite(outputs_int8, who="the int8 export gives", fix="the artifact was removed")
    gates.check_varies(source.eval_x, outputs_int8, who="the int8 export gives", fix="the artifact was removed")
    figures["max_abs_diff"] = float((outputs_fp32 - outputs_int8).abs().max())
    figures.update(gates.int8_agreement(outputs_fp32, outputs_int8, source.task))  # needs no labels
    fp32_accuracy = accuracy(outputs_fp32, source.eval_y, source.task)
    int8_accuracy = accuracy(outputs_int8, source.eval_y, source.task)
    if fp32_accuracy is not None and int8_accuracy is not None:
        figures.update(fp32_accuracy=round(fp32_accuracy, 3), int8_accuracy=round(int8_accuracy, 3),
                       accuracy_delta=round(int8_accuracy - fp32_accuracy, 3))
    fp32_rmse = rmse(outputs_fp32, source.eval_y, source.task)
    int8_rmse = rmse(outputs_int8, source.eval_y, source.task)
    if fp32_rmse is not None and int8_rmse is not None:
        figures.update(fp32_rmse=fp32_rmse, int8_rmse=int8_rmse)
    return figures


def check_drop(figures: dict[str, Any], max_drop: float) -> None:
    delta = figures.get("accuracy_delta")
    if delta is not None and -delta > max_drop:
        raise ExportError(f"int8 accuracy {figures['int8_accuracy']:.2f}% is {-delta:.2f} points below fp32's "
                          f"{figures['fp32_accuracy']:.2f}% (allowed {max_drop:g}); the artifact was removed; "
                          "ship the fp32 onnx or torchscript export instead")


def _add_onnx_meta(path: Path, meta_json: str) -> None:
    import onnx

    from trainwise.export.onnx_format import META_KEY

    model = onnx.load(str(path))
    if not any(entry.key == META_KEY for entry in model.metadata_props):
        entry = model.metadata_props.add()
        entry.key, entry.value = META_KEY, meta_json
    onnx.save(model, str(path))
