"""The callback base class: one do-nothing method per event of the loop.

A callback reads ``trainer.state`` (a ``RunState``: epoch, step, lr, history, best, events) and
``trainer.model`` / ``trainer.optimizer``, and acts through the trainer's verbs: ``stop(reason)``,
``log(name, value)``, ``record_event(kind, message)``, ``save_checkpoint()``. It never writes the
loop's state. A callback with state implements ``state_dict`` / ``load_state_dict``; that state
travels in checkpoints.

A user's ``EarlyStopping``, ``CheckpointSaver`` or ``ProgressBar`` replaces the built-in one of
its kind: there is never two of a kind.

Example:
    >>> class PrintEpoch(Callback):
    ...     def on_epoch_end(self, trainer, logs):
    ...         print(trainer.state.epoch, logs["val_loss"])  # state.epoch: epochs completed, from 1 here
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Protocol

if TYPE_CHECKING:
    import torch
    from torch import nn

    from trainwise.engine.state import RunState


class Trainer(Protocol):
    """What a callback sees of the trainer (``trainwise.Trainer`` is one): the run's state, the
    model and optimizer, and the verbs. Callbacks sit below the trainer and never import it."""

    state: "RunState"
    model: "nn.Module"
    optimizer: "torch.optim.Optimizer"
    run_dir: Path

    def stop(self, reason: str, status: str = "stopped_early") -> None: ...
    def log(self, name: str, value: float) -> None: ...
    def record_event(self, kind: str, message: str) -> None: ...
    def save_checkpoint(self, *, best: bool = False) -> Optional[Path]: ...

EVENTS = (
    "on_fit_start", "on_epoch_start", "on_batch_start", "on_before_optimizer_step", "on_step_end",
    "on_batch_end", "on_validation_end", "on_epoch_end", "on_fit_end", "on_exception",
)


class Callback:
    """Base class; override only the events you need (the loop skips the others for free).

    Two class attributes say how the loop treats a callback (``callbacks.dispatch``):
    ``rank_zero_only`` (only global rank 0 of a distributed job calls it: it writes something
    shared, such as event files or a tracking run) and ``contain_errors`` (an error after
    ``on_fit_start`` is a warning and an event, and training goes on). ``Logger`` sets both.
    """

    rank_zero_only: bool = False
    contain_errors: bool = False

    def on_fit_start(self, trainer: "Trainer") -> None:
        """Once, before the first epoch (after a resume has restored state)."""

    def on_epoch_start(self, trainer: "Trainer") -> None:
        """At the start of each epoch; ``trainer.state.current_epoch`` is the epoch about to run (from 1)."""

    def on_batch_start(self, trainer: "Trainer", batch: Any) -> None:
        """Before the forward pass of each micro-batch (``batch`` as the data gives it)."""

    def on_before_optimizer_step(self, trainer: "Trainer", optimizer: "torch.optim.Optimizer") -> None:
        """After backward (and gradient unscaling/clipping), just before ``optimizer.step()``."""

    def on_step_end(self, trainer: "Trainer") -> None:
        """After each optimizer step; ``trainer.state.step`` counts it and ``state.lr`` is the next step's lr."""

    def on_batch_end(self, trainer: "Trainer", loss: "torch.Tensor") -> None:
        """After each micro-batch; ``loss`` is the detached batch loss (reading it syncs the device)."""

    def on_validation_end(self, trainer: "Trainer", metrics: dict[str, float]) -> None:
        """After each validation pass, with ``val_*`` metrics."""

    def on_epoch_end(self, trainer: "Trainer", logs: dict[str, float]) -> None:
        """After each epoch, with the epoch's train and val metrics; ``trainer.state.epoch`` counts
        it and ``trainer.state.best.improved`` says whether it is the new best."""

    def on_fit_end(self, trainer: "Trainer") -> None:
        """Once, after training, the test pass and summary.json, for any ending but an exception."""

    def on_exception(self, trainer: "Trainer", exception: BaseException) -> None:
        """When the loop raises; the exception propagates afterwards."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""


class Logger(Callback):
    """A callback that sends the run's figures somewhere (TensorBoard, MLflow, ...): global rank 0
    alone calls it, and its failures during training cost telemetry, never the run."""

    rank_zero_only = True
    contain_errors = True


class LoggerUnavailable(Exception):
    """Raised by a logger whose backend cannot be reached (a tracking server that is down or does not
    answer): the loop switches that logger off at once, in any event ``on_fit_start`` included, with
    one warning in the run's summary; training goes on, and what the logger wrote before stays."""


def overrides(callback: Callback, event: str) -> bool:
    """True when ``callback`` implements ``event`` itself (so the loop must call it)."""
    return getattr(type(callback), event) is not getattr(Callback, event)
