"""The callback base class: one do-nothing method per event of the loop.

A callback reads the trainer's public attributes (``epoch``, ``step``, ``model``, ``optimizer``,
``history``, ``run_dir``) and stops training by setting ``trainer.should_stop = True``. A callback
with state implements ``state_dict`` / ``load_state_dict``; that state travels in checkpoints.

Example:
    >>> class PrintEpoch(Callback):
    ...     def on_epoch_end(self, trainer, logs):
    ...         print(trainer.epoch, logs["val_loss"])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from trainwise.trainer import Trainer

EVENTS = (
    "on_fit_start", "on_epoch_start", "on_batch_start", "on_before_optimizer_step", "on_batch_end",
    "on_validation_end", "on_epoch_end", "on_fit_end", "on_exception",
)


class Callback:
    """Base class; override only the events you need (the loop skips the others for free)."""

    def on_fit_start(self, trainer: "Trainer") -> None:
        """Once, before the first epoch (after a resume has restored state)."""

    def on_epoch_start(self, trainer: "Trainer") -> None:
        """At the start of each epoch; ``trainer.epoch`` is the epoch about to run (0-based)."""

    def on_batch_start(self, trainer: "Trainer", batch: tuple["torch.Tensor", "torch.Tensor"]) -> None:
        """Before the forward pass of each micro-batch."""

    def on_before_optimizer_step(self, trainer: "Trainer", optimizer: "torch.optim.Optimizer") -> None:
        """After backward (and gradient unscaling/clipping), just before ``optimizer.step()``."""

    def on_batch_end(self, trainer: "Trainer", loss: "torch.Tensor") -> None:
        """After each micro-batch; ``loss`` is the detached batch loss (reading it syncs the device)."""

    def on_validation_end(self, trainer: "Trainer", metrics: dict[str, float]) -> None:
        """After each validation pass, with ``val_*`` metrics."""

    def on_epoch_end(self, trainer: "Trainer", logs: dict[str, float]) -> None:
        """After each epoch, with the epoch's train and val metrics."""

    def on_fit_end(self, trainer: "Trainer") -> None:
        """Once, after training ends for any reason but an exception."""

    def on_exception(self, trainer: "Trainer", exception: BaseException) -> None:
        """When the loop raises; the exception propagates afterwards."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""


def overrides(callback: Callback, event: str) -> bool:
    """True when ``callback`` implements ``event`` itself (so the loop must call it)."""
    return getattr(type(callback), event) is not getattr(Callback, event)
