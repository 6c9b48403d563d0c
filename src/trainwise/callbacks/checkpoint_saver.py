"""Decide when to checkpoint: every N optimizer steps, at epoch ends (at a cadence the cost of a save
allows), whenever the run's best improves, and at the last epoch."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Optional

from trainwise.callbacks.base import Callback
from trainwise.callbacks.monitor import resolve_mode
from trainwise.checks import OTHER_CALLBACK_NAMES, arguments_of, check_bool, check_int, unknown_arguments
from trainwise.errors import ConfigError, UnknownArgumentError

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
        max_cost_share: the epoch-end cadence: an epoch end saves only when the last save cost at
            most this share of the training time since it (a save of 50 ms waits for 0.5 s of
            training at 0.1), and when the saves so far and this one fit in this share of the run
            so far (the best epoch's saves, which always happen, count too). Saving then costs
            about 10% of the run at most, and a crash loses at most ``last save / max_cost_share``
            seconds of training, more after costly best saves. The best epoch and the last epoch
            always save. None saves at every epoch end, and so does a run with ``every_n_steps``
            (it chose its cadence).

    ``best.pt`` is written at every epoch that improves on the run's best. The trainer runs this
    callback after every other one that holds state, so a checkpoint includes their state.
    """

    def __init__(self, *, every_n_steps: Optional[int] = None, every_epoch: bool = True,
                 monitor: Optional[str] = None, mode: str = "auto", keep_last: int = 3,
                 max_cost_share: Optional[float] = 0.1, **unknown: Any) -> None:
        if unknown:  # Lightning's save_top_k, Keras' save_best_only: what trainwise does instead, not a TypeError
            raise UnknownArgumentError(unknown_arguments("CheckpointSaver", unknown, arguments_of(CheckpointSaver.__init__),
                                                         OTHER_CALLBACK_NAMES))
        if every_n_steps is not None:
            check_int("every_n_steps", every_n_steps, 1)
        self.keep_last = check_int("keep_last", keep_last, 1)
        self.every_n_steps = every_n_steps
        self.every_epoch = check_bool("every_epoch", every_epoch)
        self.monitor = monitor
        self.mode = resolve_mode(monitor, mode) if monitor is not None else None
        if max_cost_share is not None and not 0 < max_cost_share <= 1:
            raise ConfigError(f"max_cost_share must be in (0, 1] or None, got {max_cost_share!r}")
        self.max_cost_share = max_cost_share
        self._last_saved_step = -1
        self._save_seconds = 0.0  # what the last save cost
        self._saved_at: Optional[float] = None  # when it ended (perf_counter)
        self._started: Optional[float] = None  # when the fit started
        self._spent = 0.0  # seconds of every save of this fit
        self.skipped = 0  # epoch ends that did not save: the cadence at work

    def on_fit_start(self, trainer: "Trainer") -> None:
        self._started, self._spent = time.perf_counter(), 0.0

    def on_step_end(self, trainer: "Trainer") -> None:
        every, step = self.every_n_steps, trainer.state.step
        if every and step % every == 0 and step != self._last_saved_step:
            self._last_saved_step = step
            self._timed_save(trainer, best=False)

    def on_epoch_end(self, trainer: "Trainer", logs: dict[str, float]) -> None:
        s = trainer.state
        improved = s.best.improved
        final = s.should_stop or (s.max_epochs is not None and s.epoch >= s.max_epochs) or \
            (s.max_steps is not None and s.step >= s.max_steps)
        if improved or (self.every_epoch and (final or self._worth_saving())):
            self._last_saved_step = s.step
            self._timed_save(trainer, best=improved)
        elif self.every_epoch:
            self.skipped += 1

    def _worth_saving(self) -> bool:
        """Whether the training since the last save is worth what a save costs (a run that asked for
        step checkpoints chose its own cadence: its epoch ends save as they always did)."""
        if self.max_cost_share is None or self._saved_at is None or self.every_n_steps:
            return True
        now = time.perf_counter()
        within_run = self._started is None or \
            self._spent + self._save_seconds <= self.max_cost_share * (now - self._started)
        return within_run and self._save_seconds <= self.max_cost_share * (now - self._saved_at)

    def _timed_save(self, trainer: "Trainer", *, best: bool) -> None:
        start = time.perf_counter()
        trainer.save_checkpoint(best=best)
        self._saved_at = time.perf_counter()
        self._save_seconds = self._saved_at - start
        self._spent += self._save_seconds

    def state_dict(self) -> dict[str, Any]:
        return {"last_saved_step": self._last_saved_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._last_saved_step = state["last_saved_step"]
