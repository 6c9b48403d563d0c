"""Stop when a monitored metric stops improving, and put the best weights back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import torch

from trainwise.callbacks.base import Callback
from trainwise.callbacks.monitor import MetricTracker, require_metric
from trainwise.errors import ConfigError

if TYPE_CHECKING:
    from trainwise.trainer import Trainer


class EarlyStopping(Callback):
    """Stop training after ``patience`` epochs without improvement of ``monitor``.

    Args:
        monitor: metric to watch, e.g. ``val_loss`` or ``val_accuracy``.
        mode: ``min``, ``max`` or ``auto`` (max for accuracy-like names).
        patience: number of epochs in a row without improvement that are tolerated; the run stops
            at the next one. ``patience=0`` stops at the first epoch that does not improve.
        min_delta: an improvement must beat the best value by more than this.
        restore_best: at the end of training, load the weights of the best epoch (on by default:
            the model you get back, and the test figures, are those of the best epoch).

    Example:
        >>> Trainer(model, callbacks=[EarlyStopping(monitor="val_accuracy", patience=3)])
    """

    def __init__(self, monitor: str = "val_loss", *, mode: str = "auto", patience: int = 5,
                 min_delta: float = 0.0, restore_best: bool = True) -> None:
        if patience < 0:
            raise ConfigError(f"patience must be >= 0, got {patience}")
        self.tracker = MetricTracker(monitor, mode, min_delta)
        self.patience = patience
        self.restore_best = restore_best
        self.wait = 0
        self.stopped_epoch: Optional[int] = None
        self.best_weights: Optional[dict[str, torch.Tensor]] = None

    @property
    def monitor(self) -> str:
        return self.tracker.monitor

    def on_epoch_end(self, trainer: "Trainer", logs: dict[str, float]) -> None:
        value = require_metric(self.monitor, logs, "early stopping")
        if self.tracker.update(value, trainer.epoch):
            self.wait = 0
            if self.restore_best:
                self.best_weights = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
            return
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_epoch = trainer.epoch
            best = self.tracker.best
            trainer.request_stop(
                f"early stopping: {self.monitor} did not improve for {self.wait} epochs "
                f"(best {best:.6g} at epoch {self.tracker.best_epoch})" if best is not None else
                f"early stopping: {self.monitor} was never finite in {self.wait} epochs",
                status="stopped_early",
            )

    def on_fit_end(self, trainer: "Trainer") -> None:
        if self.restore_best and self.best_weights is not None:
            trainer.model.load_state_dict(self.best_weights)
            trainer.record_event("restore_best", f"restored the weights of epoch {self.tracker.best_epoch} "
                                 f"({self.monitor} {self.tracker.best:.6g})")

    def state_dict(self) -> dict[str, Any]:
        return {"tracker": self.tracker.state_dict(), "wait": self.wait, "stopped_epoch": self.stopped_epoch,
                "best_weights": self.best_weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tracker.load_state_dict(state["tracker"])
        self.wait = state["wait"]
        self.stopped_epoch = state["stopped_epoch"]
        self.best_weights = state["best_weights"]
