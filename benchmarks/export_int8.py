"""Which int8 path `trainwise export --format int8` takes, by measurement: torch's
``quantize_dynamic`` (then a traced TorchScript file) against onnxruntime's ``quantize_dynamic`` on
the fp32 ONNX file, on an MLP, a GRU and an LSTM trained on digits (rows as sequences).

For each path: file size fp32 → int8, CPU latency fp32 → int8 at batch 1 and 64 (median of
interleaved rounds, all four runners taking turns so a busy machine slows them alike), and test
accuracy fp32 → int8. Writes ``results/export_int8.json``.

    .venv/bin/python benchmarks/export_int8.py [--quick] [--threads 1]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from common import base_parser, machine_info, pin_threads, quiet_logs, write_result

MODELS = {"mlp": dict(hidden=[256, 128]), "gru": dict(hidden=[64]), "lstm": dict(hidden=[64])}


def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16
    y = torch.tensor(data.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def train(name: str, x: torch.Tensor, y: torch.Tensor, epochs: int) -> nn.Module:
    from trainwise.models import build_model

    torch.manual_seed(0)
    model = build_model(name, input_shape=(1, 8, 8), num_outputs=10, **MODELS[name])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for start in range(0, len(x), 64):
            loss = F.cross_entropy(model(x[start:start + 64]), y[start:start + 64])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def latency(runner: Callable[[torch.Tensor], Any], x: torch.Tensor, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        runner(x)
    return (time.perf_counter() - start) / calls * 1e3


def measure(model: nn.Module, x_test: torch.Tensor, y_test: torch.Tensor, folder: Path, rounds: int,
            calls: int) -> dict[str, Any]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from trainwise.export.onnx_format import load_onnx, write_onnx
    from trainwise.export.verify import quiet

    example = x_test[:8]
    with quiet(), torch.no_grad():
        fp32_ts = torch.jit.trace(model, example, check_trace=False)
        int8_ts = torch.jit.trace(torch.ao.quantization.quantize_dynamic(model, {nn.Linear, nn.GRU, nn.LSTM},
                                                                         dtype=torch.qint8), example, check_trace=False)
        torch.jit.save(fp32_ts, str(folder / "fp32.pt"))
        torch.jit.save(int8_ts, str(folder / "int8.pt"))
        write_onnx(model, example, folder / "fp32.onnx", "{}")
        quantize_dynamic(str(folder / "fp32.onnx"), str(folder / "int8.onnx"), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gemm", "LSTM"])
    with quiet():
        runners = {"torch_fp32": torch.jit.load(str(folder / "fp32.pt")),
                   "torch_int8": torch.jit.load(str(folder / "int8.pt")),
                   "ort_fp32": load_onnx(folder / "fp32.onnx")[0], "ort_int8": load_onnx(folder / "int8.onnx")[0]}
    files = {"torch_fp32": "fp32.pt", "torch_int8": "int8.pt", "ort_fp32": "fp32.onnx", "ort_int8": "int8.onnx"}
    row: dict[str, Any] = {}
    with torch.inference_mode():
        for key, runner in runners.items():
            predicted = torch.cat([runner(chunk) for chunk in x_test.split(256)]).argmax(1)
            row[key] = {"bytes": (folder / files[key]).stat().st_size,
                        "accuracy": round(100 * float((predicted == y_test).float().mean()), 2)}
        for size in (1, 64):
            times: dict[str, list[float]] = {key: [] for key in runners}
            for _ in range(rounds):  # interleaved
                for key, runner in runners.items():
                    times[key].append(latency(runner, x_test[:size], calls))
            for key in runners:
                row[key][f"ms_batch{size}"] = round(statistics.median(times[key]), 4)
    for path in ("torch", "ort"):
        fp32, int8 = row[f"{path}_fp32"], row[f"{path}_int8"]
        row[path] = {"size_ratio": round(int8["bytes"] / fp32["bytes"], 3),
                     "accuracy_delta": round(int8["accuracy"] - fp32["accuracy"], 2),
                     "latency_ratio_batch1": round(int8["ms_batch1"] / fp32["ms_batch1"], 3),
                     "latency_ratio_batch64": round(int8["ms_batch64"] / fp32["ms_batch64"], 3)}
    return row


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    pin_threads(args.threads)
    quiet_logs()
    x, y, x_test, y_test = digits()
    epochs, rounds, calls = (1, 2, 3) if args.quick else (15, 9, 30)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in (["mlp"] if args.quick else MODELS):
            folder = Path(tmp) / name
            folder.mkdir()
            results[name] = measure(train(name, x, y, epochs), x_test, y_test, folder, rounds, calls)
            print(name, {path: results[name][path] for path in ("torch", "ort")}, flush=True)
    # trainwise's choice: onnxruntime for Linear-only models, torch for recurrent ones.
    chosen = {"mlp": "ort", "gru": "torch", "lstm": "torch"}
    meets = all(results[name][path]["size_ratio"] <= 0.6 and results[name][path]["accuracy_delta"] >= -1.0
                for name, path in chosen.items() if name in results)
    headline = ", ".join(f"{name}: torch {row['torch']['size_ratio']}x / ort {row['ort']['size_ratio']}x size"
                         for name, row in results.items())
    write_result(args.out, "export_int8", {
        "figure": "int8 file size / fp32 file size per path (torch quantize_dynamic→TorchScript, onnxruntime "
                  "quantize_dynamic on ONNX), with latency and accuracy before/after",
        "headline": headline, "target": "the chosen path (ort for mlp, torch for gru/lstm) <= 0.6x size, "
                                        ">= -1 point accuracy", "meets_target": meets, "chosen": chosen,
        "models": results, "quick": args.quick, "machine": machine_info()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
