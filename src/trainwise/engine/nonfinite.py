"""What the loop does when training goes wrong: non-finite values and loss spikes.

The guard holds the policy and its bookkeeping; the loop applies it where the bad value is found
(a loss before backward, a gradient norm before the step, or, on accelerators, a loss read at a
log step after the update was applied)."""

from __future__ import annotations

import statistics
from collections import deque
from typing import Any, Optional

from trainwise.errors import ConfigError

NONFINITE_POLICIES = ("rollback", "skip", "stop")

DIVERGED_ADVICE = ("try a lower learning rate (optimizer.lr, or lr=auto), gradient clipping (train.grad_clip=1.0), "
                   "warmup (schedule.warmup=0.05), or bf16 instead of fp16")


class NonFiniteGuard:
    """The policy for a NaN/Inf loss or gradient, and its bookkeeping.

    Args:
        policy: ``rollback`` restores the last good checkpoint, multiplies the lr by ``lr_factor`` and
            skips the offending batch, at most ``max_rollbacks`` times; ``skip`` drops the batch;
            ``stop`` ends the run as ``diverged``.
    """

    def __init__(self, policy: str = "rollback", *, max_rollbacks: int = 3, lr_factor: float = 0.5) -> None:
        if policy not in NONFINITE_POLICIES:
            raise ConfigError(f"on_nonfinite must be one of {', '.join(NONFINITE_POLICIES)}, got {policy!r}")
        if max_rollbacks < 0:
            raise ConfigError(f"max_rollbacks must be >= 0, got {max_rollbacks}")
        if not 0 < lr_factor < 1:
            raise ConfigError(f"rollback_lr_factor must be in (0, 1), got {lr_factor}")
        self.policy = policy
        self.max_rollbacks = max_rollbacks
        self.lr_factor = lr_factor
        self.rollbacks = 0
        self.skipped = 0
        self.lr_scale = 1.0  # product of every rollback's lr_factor
        self.skip_batches: set[tuple[int, int]] = set()  # (epoch, batch index) never to train on again

    def can_roll_back(self) -> bool:
        return self.rollbacks < self.max_rollbacks

    def state_dict(self) -> dict[str, Any]:
        return {"rollbacks": self.rollbacks, "skipped": self.skipped, "lr_scale": self.lr_scale,
                "skip_batches": [list(item) for item in sorted(self.skip_batches)]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rollbacks, self.skipped, self.lr_scale = state["rollbacks"], state["skipped"], state["lr_scale"]
        self.skip_batches = {(int(e), int(i)) for e, i in state["skip_batches"]}


class SpikeCounter:
    """Counts steps whose loss exceeds ``factor`` × the median of the recent losses.

    A loss near zero is not a spike whatever the ratio (0.002 after a median of 1e-4 is noise on a
    converged model): a spike must also exceed ``floor_fraction`` of the loss the run started at
    (the median of its first ``refresh`` losses). The median is recomputed every ``refresh``
    observations so the per-step cost is one comparison.
    """

    def __init__(self, factor: float = 10.0, window: int = 100, refresh: int = 25,
                 floor_fraction: float = 0.1) -> None:
        if factor <= 1:
            raise ConfigError(f"spike_factor must be > 1, got {factor}")
        self.floor_fraction = floor_fraction
        self.floor: Optional[float] = None
        self.factor = factor
        self.recent: deque[float] = deque(maxlen=window)
        self.refresh = refresh
        self.threshold: Optional[float] = None
        self.count = 0
        self._since_refresh = 0

    def observe(self, loss: float) -> bool:
        """Record one finite loss; True when it is a spike."""
        spike = self.threshold is not None and loss > self.threshold
        self.count += spike
        self.recent.append(loss)
        self._since_refresh += 1
        if self._since_refresh >= self.refresh and len(self.recent) >= self.refresh:
            median = statistics.median(self.recent)
            if self.floor is None:
                self.floor = self.floor_fraction * median
            self.threshold = max(self.factor * median, self.floor)
            self._since_refresh = 0
        return spike

    def state_dict(self) -> dict[str, Any]:
        return {"recent": list(self.recent), "threshold": self.threshold, "count": self.count,
                "since_refresh": self._since_refresh, "floor": self.floor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.recent = deque(state["recent"], maxlen=self.recent.maxlen)
        self.threshold, self.count, self._since_refresh = state["threshold"], state["count"], state["since_refresh"]
        self.floor = state.get("floor")
