"""``RunState``: the state of one run, owned by the loop and read by callbacks as ``trainer.state``.

Counting: ``step`` is the number of optimizer steps taken; ``epoch`` is the number of epochs
*completed* (0 before the first one ends). During an epoch the epoch being trained is
``epoch + 1``, which is how files and messages number it: a person reads 1-based epochs
everywhere (metrics.csv, summary.json, history, progress lines), code counts completed ones.

The state travels in every checkpoint as plain data (``to_dict``/``from_dict``), loadable with
``torch.load(weights_only=True)``. ``history`` is not in it: it grows with the run, and
metrics.csv already holds it, so a resume rebuilds it from there.

Example:
    >>> class PrintEpoch(Callback):
    ...     def on_epoch_end(self, trainer, logs):
    ...         print(trainer.state.epoch, trainer.state.step, logs["val_loss"])
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Optional

# How a run ended. "running" only while fit is in progress. "pruned": a search's pruner ended the
# trial early (a callback's ``trainer.stop(reason, status="pruned")``).
STATUSES = ("running", "completed", "stopped_early", "diverged", "failed", "interrupted", "pruned")


@dataclass
class Best:
    """The one definition of "best" for a run: the monitored metric, its direction and the
    improvement threshold, with the best value so far. ``best.pt``, ``summary.json``, the
    restored weights and the report's marker all read this object."""

    monitor: str = "val_loss"
    mode: str = "min"
    min_delta: float = 0.0
    value: Optional[float] = None
    epoch: Optional[int] = None  # 1-based epoch that reached ``value``
    step: Optional[int] = None  # the optimizer step it was measured after
    improved: bool = False  # the epoch that just ended improved on the best
    restore: bool = False  # put the best epoch's weights back when training ends

    def is_improvement(self, value: float) -> bool:
        if not math.isfinite(value):  # NaN never becomes best
            return False
        if self.value is None:
            return True
        if self.mode == "min":
            return value < self.value - self.min_delta
        return value > self.value + self.min_delta

    def update(self, value: float, epoch: int, step: Optional[int] = None) -> bool:
        self.improved = self.is_improvement(value)
        if self.improved:
            self.value, self.epoch, self.step = float(value), epoch, step
        return self.improved


@dataclass
class RunState:
    """Where a run is and how it is going. Written by the loop (and the trainer's verbs only)."""

    epoch: int = 0
    step: int = 0
    batch: int = 0  # micro-batches done in the current epoch
    batches_per_epoch: Optional[int] = 0  # None: a stream, whose length is known only at its end
    max_epochs: int = 0
    max_steps: Optional[int] = None
    start_step: int = 0  # first step of this fit (a second fit continues a run)
    start_epoch: int = 0
    lr: float = math.nan  # lr of the first parameter group
    status: str = "running"
    stop_reason: Optional[str] = None
    should_stop: bool = False
    samples_seen: int = 0
    epoch_samples: int = 0
    train_seconds: float = 0.0
    world_size: int = 1  # processes of a DDP job; a resume needs the same number
    last_val_step: Optional[int] = None  # the step the last validation ran after (a resume does not repeat it)
    best: Best = field(default_factory=Best)
    events: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def current_epoch(self) -> int:
        """The epoch being trained, counting from 1 (as files and messages number it)."""
        return self.epoch + 1

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a checkpoint; ``history`` stays out (metrics.csv has it)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("history", "best")}
        data["best"] = asdict(self.best)
        data["events"] = [dict(e) for e in self.events]
        data["warnings"] = list(self.warnings)
        return data

    def load_dict(self, data: dict[str, Any], *, keep: tuple[str, ...] = ()) -> None:
        """Take the values of ``to_dict`` in place (callbacks hold this object), except ``keep``."""
        for f in fields(self):
            if f.name in data and f.name not in keep and f.name not in ("best", "history"):
                setattr(self, f.name, data[f.name])
        if "best" in data:
            self.best = Best(**data["best"])
        self.events = [dict(e) for e in self.events]
        self.warnings = list(self.warnings)
