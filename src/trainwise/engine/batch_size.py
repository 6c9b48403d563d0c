"""The batch-size finder: the largest batch that fits (accelerators) or the knee of samples/s (CPU).

Every candidate is a power of two, tried with real training steps on the real model and optimizer:
forward, backward and ``optimizer.step()``; the model's weights, buffers and the RNG are put back
afterwards, so the run that follows starts exactly as it would have. The finder never returns a
size it did not run.

- ``mode="memory"`` (the default on CUDA): double from 1 (2 for a model with batch norm) until a step runs out of memory (or
  ``max_size``); the answer is the largest size that ran, or the one below it when its peak memory
  left less than ``margin`` of the device's memory free (a safety margin for fragmentation and the
  evaluation pass).
- ``mode="throughput"`` (the default elsewhere): double from 1 and time each size (after a
  warm-up step, at least ``steps`` steps and ``min_seconds`` of them; the fastest step counts, the
  estimate least disturbed by other processes on a shared machine); the *knee* is the smallest size whose samples/s is
  within ``knee_tolerance`` (10%) of the best measured. Bigger batches past it buy little speed
  and cost generalization and steps. Doubling stops at ``max_size``, at an out-of-memory error,
  when a step takes longer than ``max_step_seconds``, or two sizes after the throughput stopped
  rising.

Example:
    >>> result = find_batch_size(model, make_optimizer, (x, y), loss_fn=F.cross_entropy, mode="throughput")
    >>> result.batch_size, result.trials[0]
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import nn

from trainwise.checks import check_choice, check_int, check_range
from trainwise.errors import BatchSizeError
from trainwise.models.layers import has_batchnorm

log = logging.getLogger(__name__)

MODES = ("memory", "throughput")
_MAX_TIMED_STEPS = 50
_OOM_MARKERS = ("out of memory", "can't allocate memory", "cudnn_status_not_supported", "not enough memory")


@dataclass
class Trial:
    batch_size: int
    fits: bool
    samples_per_second: Optional[float] = None
    step_seconds: Optional[float] = None
    peak_memory_mb: Optional[float] = None
    error: Optional[str] = None


@dataclass
class BatchSizeResult:
    """The chosen size, how it was chosen, and every size tried (in order)."""

    batch_size: int
    mode: str
    rule: str
    trials: list[Trial] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "mode": self.mode, "rule": self.rule,
                "trials": [asdict(t) for t in self.trials]}


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA/CPU allocator's out-of-memory error (``torch.OutOfMemoryError`` or its message)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in _OOM_MARKERS)


def find_batch_size(model: nn.Module, make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
                    train: tuple[torch.Tensor, ...], *, loss_fn: Callable[..., torch.Tensor],
                    device: Optional[torch.device] = None, mode: Optional[str] = None, max_size: int = 4096,
                    margin: float = 0.1, knee_tolerance: float = 0.1, steps: int = 3, min_seconds: float = 0.2,
                    max_step_seconds: float = 1.0,
                    autocast_dtype: Optional[torch.dtype] = None) -> BatchSizeResult:
    """Find the batch size for ``model`` on ``train`` (``(inputs, targets)`` tensors); see the module.

    Args:
        make_optimizer: builds a fresh optimizer for the model (each trial gets one, so its state
            memory counts, and the real optimizer is left untouched).
        mode: ``memory`` or ``throughput``; default ``memory`` on CUDA, else ``throughput``.
        max_size: the largest size tried (also capped by the number of training samples).

    Raises:
        BatchSizeError: the model does not run at batch size 1 (out of memory).
    """
    device = device or next(model.parameters()).device
    mode = check_choice("mode", mode or ("memory" if device.type == "cuda" else "throughput"), MODES)
    check_int("max_size", max_size, 1)
    check_range("margin", margin, 0, 1, high_open=True)
    check_range("knee_tolerance", knee_tolerance, 0, 1, high_open=True)
    check_int("steps", steps, 1)
    x, y = train[0], train[1]
    limit = min(max_size, len(x))
    saved = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    was_training = model.training
    trials: list[Trial] = []
    smallest = 2 if has_batchnorm(model) else 1
    try:
        size = smallest  # batch norm cannot train on one sample
        while size <= limit:
            model.load_state_dict(saved)  # every trial from the initial weights: steps on one batch, repeated
            # for many trials, would drive the weights to saturation (and denormal floats, slow on a CPU)
            trial = _try(model, make_optimizer, x, y, size, loss_fn, device, (steps, min_seconds), autocast_dtype)
            trials.append(trial)
            log.info("batch size %d: %s", size, _describe(trial))
            if not trial.fits or _stop(trials, mode, knee_tolerance, max_step_seconds):
                break
            size *= 2
    finally:
        model.load_state_dict(saved)
        torch.set_rng_state(rng)
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    ran = [t for t in trials if t.fits]
    if not ran:
        raise BatchSizeError(
            f"the model does not fit in memory on {device} at batch size {smallest}: a training step (forward, backward, "
            f"optimizer) ran out of memory ({trials[0].error}); make the model smaller, set "
            "model.checkpointing=true or train.precision=bf16, or use a device with more memory")
    if mode == "memory":
        return _largest_that_fits(ran, trials, device, margin)
    return knee(trials, knee_tolerance)


def _try(model: nn.Module, make_optimizer: Callable, x: torch.Tensor, y: torch.Tensor, size: int,
         loss_fn: Callable, device: torch.device, budget: tuple[int, float],
         autocast_dtype: Optional[torch.dtype]) -> Trial:
    """A warm-up step, then timed steps (``budget``: at least that many and that many seconds, at
    most ``_MAX_TIMED_STEPS``) at ``size``; an out-of-memory error is a non-fit."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    optimizer = None
    try:
        optimizer = make_optimizer(model)
        xb, yb = x[:size].to(device), y[:size].to(device)
        times: list[float] = []
        model.train()
        index = 0
        while index <= budget[0] or (sum(times) < budget[1] and index <= _MAX_TIMED_STEPS):
            index += 1
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if cuda:
                torch.cuda.synchronize(device)
            if index > 1:
                times.append(time.perf_counter() - start)
        step = min(times)
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None
        return Trial(size, True, samples_per_second=round(size / step, 1), step_seconds=round(step, 6),
                     peak_memory_mb=None if peak is None else round(peak, 1))
    except (RuntimeError, torch.OutOfMemoryError) as exc:
        if not is_out_of_memory(exc):
            raise
        return Trial(size, False, error=str(exc).strip().splitlines()[0][:200])
    finally:
        del optimizer
        model.zero_grad(set_to_none=True)
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()


def _stop(trials: list[Trial], mode: str, tolerance: float, max_step_seconds: float) -> bool:
    """Throughput mode stops past the knee (two sizes without a new best) or when steps get slow."""
    if mode == "memory":
        return False
    last = trials[-1]
    if last.step_seconds is not None and last.step_seconds > max_step_seconds:
        return True
    speeds = [t.samples_per_second or 0.0 for t in trials]
    best_at = speeds.index(max(speeds))
    return len(speeds) - 1 - best_at >= 2


def _largest_that_fits(ran: list[Trial], trials: list[Trial], device: torch.device, margin: float) -> BatchSizeResult:
    largest = ran[-1]
    total = torch.cuda.get_device_properties(device).total_memory / 2**20 if device.type == "cuda" else None
    if total is not None and largest.peak_memory_mb is not None and len(ran) > 1 \
            and largest.peak_memory_mb > (1 - margin) * total:
        chosen = ran[-2]
        rule = (f"largest power of two that ran ({largest.batch_size}) peaked at {largest.peak_memory_mb:,.0f} MB of "
                f"{total:,.0f} MB, within the {margin:.0%} safety margin: one size down")
        return BatchSizeResult(chosen.batch_size, "memory", rule, trials)
    ended = "out of memory at the next size" if not trials[-1].fits else "the largest size tried"
    rule = f"largest power of two that ran a real training step ({ended})"
    return BatchSizeResult(largest.batch_size, "memory", rule, trials)


def knee(trials: list[Trial], tolerance: float = 0.1) -> BatchSizeResult:
    """The smallest size that ran whose samples/s is within ``tolerance`` of the best that ran."""
    ran = [t for t in trials if t.fits]
    best = max(t.samples_per_second or 0.0 for t in ran)
    chosen = next(t for t in ran if (t.samples_per_second or 0.0) >= (1 - tolerance) * best)
    rule = (f"knee of samples/s: the smallest size within {tolerance:.0%} of the best throughput measured "
            f"({best:,.0f} samples/s)")
    return BatchSizeResult(chosen.batch_size, "throughput", rule, trials)


def with_accumulation(batch_size: int, effective: Optional[int], tested: list[int]) -> tuple[int, int]:
    """``(micro_batch, accumulate)`` keeping the effective batch the user asked for: the largest tested
    size no larger than ``batch_size`` that divides ``effective``, and as many micro-batches as make
    ``effective``. Without a target effective batch, ``(batch_size, 1)``.

    Example:
        >>> with_accumulation(64, 256, [1, 2, 4, 8, 16, 32, 64])
        (64, 4)
    """
    if effective is None:
        return batch_size, 1
    check_int("effective batch size", effective, 1)
    micro = max(size for size in tested if size <= min(batch_size, effective) and effective % size == 0)
    return micro, effective // micro


def _describe(trial: Trial) -> str:
    if not trial.fits:
        return f"out of memory ({trial.error})"
    memory = f", peak {trial.peak_memory_mb:,.0f} MB" if trial.peak_memory_mb is not None else ""
    return f"{trial.samples_per_second:,.0f} samples/s ({trial.step_seconds * 1e3:.1f} ms per step{memory})"


def describe_trials(result: BatchSizeResult) -> list[str]:
    """One line per size tried, the chosen one marked; for the CLI."""
    return [f"{'*' if t.batch_size == result.batch_size else ' '} {t.batch_size:>6}  {_describe(t)}"
            for t in result.trials]

