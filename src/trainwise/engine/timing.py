"""Where a run's time goes: a phase clock cheap enough to stay on, peak memory, and the bottleneck
said in words.

The clock is a stopwatch with one hand: at any moment the run is in exactly one phase, and
``switch(phase)`` charges the time since the last switch to the phase it leaves. The phases
therefore cover the run with no gap and no overlap, and add up to its wall time. Each switch is a
``time.perf_counter()`` call and a dict update (well under a microsecond); the loop makes four per
micro-batch. On an accelerator the host runs ahead of the device, so the clock synchronizes the
device at the end of each epoch (and of the run) only: an epoch's total is exact, and within it
device time is charged to the phase in which the host waited for the device.

Example:
    >>> clock = PhaseClock()
    >>> _ = clock.switch("data")
    >>> _ = clock.switch("forward_backward")
    >>> sorted(clock.seconds) == sorted(PHASES)
    True
"""

from __future__ import annotations

import math
import resource
import sys
import time
from typing import Any, Optional

import torch

PHASES = ("setup", "data", "forward_backward", "optimizer", "evaluation", "checkpoint", "other")
PHASE_LABELS = {
    "setup": "setup (data checks, model probe, lr range test)",
    "data": "waiting for data",
    "forward_backward": "forward and backward",
    "optimizer": "optimizer step (clipping, step, schedule)",
    "evaluation": "evaluation (validation and test)",
    "checkpoint": "checkpointing",
    "other": "other (callbacks, logging, files)",
}
# A phase named as the bottleneck when it takes at least this share of the run.
THRESHOLDS = {"data": 0.25, "evaluation": 0.25, "checkpoint": 0.10, "setup": 0.30, "other": 0.20}
NAMED_SHARE = 0.25  # every phase above this share of the run is named, whatever its advice threshold
ADVICE = {
    "data": "data-bound: {pct} of the run waits for data; raise the DataLoader's num_workers "
            "(Trainer(num_workers=N)), or pass the data as in-memory tensors",
    "evaluation": "evaluation is {pct} of the run: evaluate less often or on less data (data.val_fraction), "
                  "or raise data.eval_batch_size",
    "checkpoint": "checkpointing is {pct} of the run: save less often (train.checkpoint.every_n_steps, "
                  "train.checkpoint.every_epoch=false)",
    "setup": "setup is {pct} of the run (data checks, the lr range test when optimizer.lr is auto): "
             "train longer, or set optimizer.lr to skip the range test",
    "other": "callbacks, logging and files take {pct} of the run: raise train.log_every_n_steps or check "
             "your callbacks",
}


class PhaseClock:
    """Seconds per phase of one fit, and per epoch.

    Args:
        device: the training device; on CUDA the clock synchronizes at epoch ends and reads the
            allocator's peak memory, elsewhere it reads the process's peak resident set size.
        start: ``time.perf_counter()`` value the fit started at (default: now).
    """

    __slots__ = ("seconds", "phase", "last", "device", "epochs", "_epoch_start", "_epoch_seconds")

    def __init__(self, device: Optional[torch.device] = None, start: Optional[float] = None) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.phase = "setup"
        self.last = time.perf_counter() if start is None else start
        self.device = device if device is not None else torch.device("cpu")
        self.epochs: list[dict[str, Any]] = []
        self._epoch_start = self.last
        self._epoch_seconds = dict(self.seconds)

    def switch(self, phase: str, now: Optional[float] = None) -> str:
        """Charge the time since the last switch to the current phase, enter ``phase``; returns
        the phase left (to switch back to after a nested phase such as a checkpoint)."""
        if now is None:
            now = time.perf_counter()
        self.seconds[self.phase] += now - self.last
        self.last = now
        previous, self.phase = self.phase, phase
        return previous

    def start_epoch(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.switch("other")
        self._epoch_start, self._epoch_seconds = self.last, dict(self.seconds)

    def end_epoch(self, epoch: int) -> None:
        """Record epoch ``epoch`` (counting from 1): its seconds per phase and the peak memory."""
        self._sync()
        self.switch(self.phase)
        seconds = {p: round(self.seconds[p] - self._epoch_seconds[p], 6) for p in PHASES}
        self.epochs.append({"epoch": epoch, "wall_seconds": round(self.last - self._epoch_start, 6),
                            "seconds": seconds, "peak_memory_mb": round(peak_memory_mb(self.device), 1)})

    def finish(self, now: Optional[float] = None) -> dict[str, Any]:
        """The whole fit's breakdown for summary.json (``timings``); ends the current phase."""
        self._sync()
        self.switch("other", now)
        total = sum(self.seconds.values())
        fractions = {p: round(s / total, 4) if total > 0 else 0.0 for p, s in self.seconds.items()}
        peaks = [e["peak_memory_mb"] for e in self.epochs] + [round(peak_memory_mb(self.device), 1)]
        return {"wall_seconds": round(total, 4), "seconds": {p: round(s, 4) for p, s in self.seconds.items()},
                "fractions": fractions, "epoch_fractions": epoch_shares(self.epochs),
                "bottleneck": bottleneck(fractions, epoch_shares(self.epochs)), "peak_memory_mb": max(peaks),
                "memory": memory_kind(self.device), "epochs": self.epochs}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: the allocator's peak since the last reset; otherwise the process's peak RSS so far."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def memory_kind(device: torch.device) -> str:
    if device.type == "cuda":
        return "cuda max_memory_allocated (per epoch, reset at each epoch start)"
    return "process peak resident set size (ru_maxrss, high-water since the process started)"


def bottleneck(fractions: dict[str, float], epoch_fractions: Optional[dict[str, float]] = None) -> list[str]:
    """The run's bottlenecks in words, the largest first: every phase past its advice threshold or
    above ``NAMED_SHARE`` of the run; a compute-bound run gets one sentence. With
    ``epoch_fractions`` (the epochs' own shares, setup excluded) a last line names the epochs' top
    phase, which a long setup (the lr range test, data checks) would otherwise hide.

    Example:
        >>> bottleneck({"data": 0.6, "forward_backward": 0.3, "optimizer": 0.1})[0][:10]
        'data-bound'
    """
    found = sorted((p for p in PHASES if fractions.get(p, 0.0) >= THRESHOLDS.get(p, math.inf)
                    or (p in THRESHOLDS and fractions.get(p, 0.0) > NAMED_SHARE)), key=lambda p: -fractions[p])
    lines = [ADVICE[p].format(pct=_percent(fractions[p])) for p in found]
    compute = fractions.get("forward_backward", 0.0) + fractions.get("optimizer", 0.0)
    if not found:
        lines.append(f"compute-bound: {_percent(compute)} of the run is forward, backward and the optimizer step, "
                     "as it should be; a larger batch, train.precision=bf16 on a GPU, or train.compile=true may help")
    elif compute > NAMED_SHARE:
        lines.append(f"forward, backward and the optimizer step take {_percent(compute)} of the run")
    if epoch_fractions and "setup" in found:
        top = sorted((p for p in PHASES if p != "setup"), key=lambda p: -epoch_fractions.get(p, 0.0))
        shares = ", ".join(f"{PHASE_LABELS[p]} {_percent(epoch_fractions[p])}" for p in top[:2]
                           if epoch_fractions.get(p, 0.0) > 0)
        advice = ADVICE.get(top[0]) if epoch_fractions.get(top[0], 0.0) >= THRESHOLDS.get(top[0], math.inf) else None
        lines.append(f"within the epochs (setup excluded): {shares}"
                     + (f"; {advice.format(pct=_percent(epoch_fractions[top[0]])).replace('of the run', 'of the epochs')}"
                        if advice else ""))
    return lines


def epoch_shares(epochs: list[dict[str, Any]]) -> dict[str, float]:
    """Each phase's share of the epochs' time together (setup is never inside an epoch)."""
    totals = {p: sum(e["seconds"].get(p, 0.0) for e in epochs) for p in PHASES}
    wall = sum(totals.values())
    return {p: round(s / wall, 4) for p, s in totals.items()} if wall > 0 else {}


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.0f}%"
