"""Checking an artifact against the model it came from, and writing files so that a failed or
interrupted export leaves nothing half-written.

An artifact is reloaded from disk and run; its outputs on a real batch must match PyTorch's
within ``atol + rtol * |reference|`` (as ``numpy.allclose``), at the example's batch size and at
others (the batch axis is dynamic), and its accuracy on the verification split must equal
PyTorch's within ``max_accuracy_gap`` points. Otherwise the export fails; it never only warns.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch

from trainwise.errors import DataNotFoundError, ExportError

Runner = Callable[[torch.Tensor], torch.Tensor]
CHUNK = 1024
ACCURACY_GAP_POINTS = 0.1  # fp32 artifacts: test accuracy within this many points of PyTorch's


def run_all(runner: Runner, x: torch.Tensor) -> torch.Tensor:
    """``runner`` over ``x`` in chunks, outputs concatenated (float32, CPU)."""
    with torch.inference_mode():
        return torch.cat([runner(chunk).float() for chunk in x.split(CHUNK)])


def compare_outputs(reference: Runner, artifact: Runner, x: torch.Tensor, *, atol: float, rtol: float,
                    label: str) -> float:
    """The max abs difference between the two on batches of 1, 8 and 64 of ``x`` (and, for token ids,
    on shorter sequences); raises when any element is outside the tolerance."""
    worst, checked = 0.0, set()
    batches = [x[:size] for size in (1, 8, 64)]
    tokens = not x.is_floating_point() and x.dim() == 2
    if tokens and x.shape[1] > 1:  # token ids: the sequence axis is dynamic too
        batches += [x[:8, : x.shape[1] // 2], x[:1, :1]]
    for batch in batches:
        if batch.shape in checked:
            continue
        checked.add(batch.shape)
        what = f"{len(batch)} x {batch.shape[1]} tokens" if tokens else f"{len(batch)}"
        with torch.inference_mode():
            want, got = reference(batch).float(), artifact(batch).float()
        if got.shape != want.shape:
            axis = "batch or sequence axis" if tokens else "batch axis"
            raise ExportError(f"{label}: outputs of shape {tuple(got.shape)} for a batch of {what}, PyTorch "
                              f"gives {tuple(want.shape)}; the {axis} is not dynamic in this artifact")
        diff = (got - want).abs()
        worst = max(worst, float(diff.max()))
        bad = ~(diff <= atol + rtol * want.abs())  # NaN is outside every tolerance
        if bool(bad.any()):
            raise ExportError(f"{label} disagrees with the PyTorch model: max abs diff {float(diff.max()):.3g} on a "
                              f"batch of {what} ({int(bad.sum())} of {bad.numel()} outputs outside "
                              f"atol={atol:g}, "
                              f"rtol={rtol:g}); the artifact was removed. Raise --atol/--rtol only if this "
                              "difference is acceptable")
    return worst


def accuracy(outputs: torch.Tensor, y: Optional[torch.Tensor], task: str) -> Optional[float]:
    """Classification accuracy in percent (None without targets or for regression); a language
    model's: of its next-token predictions, every position counted."""
    if y is None or task != "classification":
        return None
    if outputs.dim() >= 2 and outputs.shape[-1] > 1:
        predicted = outputs.argmax(dim=-1)
    else:
        predicted = (outputs.reshape(-1) > 0).long()
    return 100.0 * float((predicted.reshape(-1) == y.reshape(-1).long()).float().mean())


def rmse(outputs: torch.Tensor, y: Optional[torch.Tensor], task: str) -> Optional[float]:
    if y is None or task != "regression":
        return None
    return float(((outputs.reshape(len(y), -1) - y.reshape(len(y), -1).float()) ** 2).mean().sqrt())


def check_accuracy(reference: Optional[float], artifact: Optional[float], *, label: str, max_gap: float) -> None:
    if reference is None or artifact is None or abs(reference - artifact) <= max_gap:
        return
    raise ExportError(f"{label} accuracy {artifact:.2f}% differs from PyTorch's {reference:.2f}% by "
                      f"{abs(reference - artifact):.2f} points (allowed {max_gap:g}); the artifact was removed")


def latency_ms(runner: Runner, x: torch.Tensor, *, repeats: int = 7, calls: int = 10) -> float:
    """Median over ``repeats`` of the mean time of ``calls`` calls, in milliseconds."""
    times = []
    with torch.inference_mode():
        runner(x)
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(calls):
                runner(x)
            times.append((time.perf_counter() - start) / calls * 1e3)
    return statistics.median(times)


def check_out_path(path: Path, suffix: str) -> Path:
    """``path`` when its folder exists and it ends in ``suffix``; a clear error otherwise."""
    if path.suffix.lower() != suffix:
        raise ExportError(f"--out for this format must end in {suffix}, got {str(path)!r}; e.g. model{suffix}")
    if not path.parent.is_dir():
        raise DataNotFoundError(f"the folder of --out {str(path)!r} does not exist: {path.parent}; "
                                "create it first or choose another --out")
    if path.is_dir():
        raise ExportError(f"--out {str(path)!r} is a folder; give a file name ending in {suffix}")
    return path


def temporary_path(final: Path) -> Path:
    """A sibling of ``final`` with the same suffix, for writing before the rename; it names the
    writer's pid (``.model.tmp-<pid>.onnx``), which ``trainwise runs gc`` checks before removing it."""
    return final.with_name(f".{final.stem}.tmp-{os.getpid()}{final.suffix}")


def write_atomic(path: Path, text: str) -> None:
    tmp = temporary_path(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence exporters' progress prints and deprecation warnings (the help states them once)."""
    import io
    import logging
    import warnings

    loggers = [logging.getLogger(name) for name in ("", "torch.onnx", "torch.export", "torch._export")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def first_line(error: BaseException) -> str:
    """The error's type and its first two non-empty lines, on one line (at most 300 characters)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {' '.join(lines[:2])[:300]}"


def parse_meta(text: Optional[str], path: Path) -> dict[str, Any]:
    """An artifact's ``trainwise.json`` (``{}`` when absent); a damaged one is an ``ExportError``."""
    import json

    if not text:
        return {}
    try:
        meta = json.loads(text)
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise ExportError(f"the trainwise metadata in {path} is not a JSON object; the file is damaged or was not "
                          "written by trainwise export")
    return meta


def artifact_size(path: Path) -> int:
    return path.stat().st_size


def summary_row(**figures: Any) -> dict[str, Any]:
    return {key: value for key, value in figures.items() if value is not None}
