"""Decide when to checkpoint: every N optimizer steps, every epoch, and whenever the run's best improves."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from trainwise.callbacks.base import Callback
from trainwise.callbacks.monitor import resolve_mode
from trainwise.checks import check_bool, check_int

if TYPE_CHECKING:
    from trainwise.callbacks.base import Trainer


class CheckpointSaver(Callback):
    """Save checkpoints into the run's ``checkpoints/`` folder.

    Args:
        every_n_steps: also save every this many optimizer steps (None: only at epoch ends).
        every_epoch: save at the end of every epoch.
        keep_last: how many step-numbered checkpoints to keep (``best.pt`` and ``last.pt`` always stay).
        monitor, mode: leave them unset to follow the run's one "best" (early stopping's metric).
            Set them to define best yourself when the run has no early stopping; a monitor that
            disagrees with early stopping's is refused when the Trainer is built.

    ``best.pt`` is written at every epoch that improves on the run's best. The trainer runs this
    callback after every other one that holds state, so a checkpoint includes their state.
    """

    def __init__(self, *, every_n_steps: Optional[int] = None, every_epoch: bool = True,
                 monitor: Optional[str] = None, mode: str = "auto", keep_last: int = 3) -> None:
        if every_n_steps is not None:
            check_int("every_n_steps", every_n_steps, 1)
        self.keep_last = check_int("keep_last", keep_last, 1)
        self.every_n_steps = every_n_steps
        self.every_epoch = check_bool("every_epoch", every_epoch)
        self.monitor = monitor
        self.mode = resolve_mode(monitor, mode) if monitor is not None else None
        self._last_saved_step = -1

    def on_step_end(self, trainer: "Trainer") -> None:
        every, step = self.every_n_steps, trainer.state.step
        if every and step % every == 0 and step != self._last_saved_step:
            self._last_saved_step = step
            trainer.save_checkpoint()

    def on_epoch_end(self, trainer: "Trainer", logs: dict[str, float]) -> None:
        improved = trainer.state.best.improved
        if self.every_epoch or improved:
            self._last_saved_step = trainer.state.step
            trainer.save_checkpoint(best=improved)

    def state_dict(self) -> dict[str, Any]:
        return {"last_saved_step": self._last_saved_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._last_saved_step = state["last_saved_step"]
