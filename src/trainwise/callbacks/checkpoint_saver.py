"""Decide when to checkpoint: every N optimizer steps, every epoch, and mark the best."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from trainwise.callbacks.base import Callback
from trainwise.callbacks.monitor import MetricTracker
from trainwise.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from trainwise.trainer import Trainer


class CheckpointSaver(Callback):
    """Save a checkpoint through the trainer's checkpoint folder.

    Args:
        every_n_steps: also save every this many optimizer steps (None: only at epoch ends).
        every_epoch: save at the end of every epoch.
        monitor, mode, min_delta: the metric that decides ``best.pt`` and what counts as an
            improvement; a non-finite value never becomes best.

    Place it after every callback whose state should be in the checkpoint (the trainer does).
    """

    def __init__(self, *, every_n_steps: Optional[int] = None, every_epoch: bool = True,
                 monitor: str = "val_loss", mode: str = "auto", min_delta: float = 0.0) -> None:
        if every_n_steps is not None and every_n_steps <= 0:
            raise ConfigError(f"every_n_steps must be > 0, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.every_epoch = every_epoch
        self.tracker = MetricTracker(monitor, mode, min_delta)
        self._last_saved_step = -1

    def on_batch_end(self, trainer: "Trainer", loss: "torch.Tensor") -> None:
        every = self.every_n_steps
        if every and trainer.step % every == 0 and trainer.step != self._last_saved_step and trainer.step > 0:
            self._last_saved_step = trainer.step
            trainer.save_checkpoint()

    def on_epoch_end(self, trainer: "Trainer", logs: dict[str, float]) -> None:
        value = logs.get(self.tracker.monitor)
        improved = value is not None and self.tracker.update(value, trainer.epoch)
        if self.every_epoch or improved:
            self._last_saved_step = trainer.step
            trainer.save_checkpoint(best=improved)

    def state_dict(self) -> dict[str, Any]:
        return {"tracker": self.tracker.state_dict(), "last_saved_step": self._last_saved_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tracker.load_state_dict(state["tracker"])
        self._last_saved_step = state["last_saved_step"]
