"""Which callbacks each event calls, honouring what a callback says of itself.

Two class attributes of ``Callback`` are honoured here, in one place, for every callback:

- ``rank_zero_only``: only global rank 0 of a distributed job calls it (a logger writing event
  files or a tracking run would otherwise write one per process: two TensorBoard files in one
  folder, which the reader does not merge; one MLflow run per GPU).
- ``contain_errors``: an exception it raises after ``on_fit_start`` becomes a warning and a
  ``logger_failed`` event, and training goes on; after ``MAX_CONSECUTIVE_FAILURES`` failures in a
  row it is switched off for the rest of the run (``logger_disabled``, a warning in the summary). A
  failure in ``on_fit_start`` (a wrong URI, a folder it cannot create) stops the run before step 0
  as one ``LoggerError`` line; under DDP the loop tells every rank (``ops.run_together``), so none
  waits at a collective for rank 0. A ``LoggerUnavailable`` (its server is down) switches the
  logger off at once, ``on_fit_start`` included: training goes on without it.

``Logger`` sets both; ``TensorBoardLogger`` and ``MLflowLogger`` are ``Logger``s, and so is any
logger written on the same pattern. A rank-0-only callback must never run a collective.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

from trainwise.callbacks.base import EVENTS, Callback, LoggerUnavailable, Trainer, overrides
from trainwise.errors import LoggerError, TrainwiseError

MAX_CONSECUTIVE_FAILURES = 3
_SETUP_EVENT = "on_fit_start"


class Guarded:
    """Stands in for a callback in the dispatch table: the same event methods, with the rank
    check and the containment its attributes ask for."""

    def __init__(self, callback: Callback) -> None:
        self.callback = callback
        self.name = type(callback).__name__
        self.failures, self.disabled, self.warned = 0, False, set()  # type: int, bool, set[str]
        self._main: bool | None = None
        for event in EVENTS:
            if overrides(callback, event):
                setattr(self, event, self._wrap(event, getattr(callback, event)))

    def _wrap(self, event: str, method: Callable[..., None]) -> Callable[..., None]:
        def call(trainer: Trainer, *args: Any) -> None:
            if self.disabled or not self._on_this_rank():
                return
            if not self.callback.contain_errors:
                method(trainer, *args)
                return
            try:
                method(trainer, *args)
            except LoggerUnavailable as error:
                kept = "" if event == _SETUP_EVENT else " (what it logged before stays)"
                self._switch_off(trainer, event, f"{self.name} switched off in {event}: {_one_line(error)}; "
                                                 f"training goes on without it{kept}")
            except Exception as error:  # contained after the start: telemetry is lost, the run is not
                if event == _SETUP_EVENT and isinstance(error, TrainwiseError):
                    raise
                if event == _SETUP_EVENT:
                    raise LoggerError(f"{self.name} could not start ({type(error).__name__}: {_one_line(error)}); "
                                      "fix the folder or URI it names, or run without this logger") from error
                self._contain(trainer, event, error)
            else:
                self.failures = 0

        return call

    def _on_this_rank(self) -> bool:
        if not self.callback.rank_zero_only:
            return True
        if self._main is None:
            from trainwise.distributed.ops import is_main

            self._main = is_main()
        return self._main

    def _contain(self, trainer: Trainer, event: str, error: Exception) -> None:
        self.failures += 1
        message = f"{self.name} failed in {event} ({type(error).__name__}: {_one_line(error)}); training goes on"
        if self.failures >= MAX_CONSECUTIVE_FAILURES:
            self._switch_off(trainer, event, f"{message}; switched off after {self.failures} failures in a row")
            return
        kind = type(error).__name__
        if kind not in self.warned:  # once per kind of error
            self.warned.add(kind)
            warnings.warn(message, RuntimeWarning, stacklevel=3)
            _record(trainer, "logger_failed", message)

    def _switch_off(self, trainer: Trainer, event: str, message: str) -> None:
        """Off for the rest of the run: one warning (the terminal, summary.json, the report) and a
        ``logger_disabled`` event (short: the warning says why)."""
        self.disabled = True
        warn = getattr(trainer, "warn", None)
        if callable(warn):
            warn(message)
        else:  # a trainer of the user's own, without trainwise's verb
            warnings.warn(message, RuntimeWarning, stacklevel=3)
        _record(trainer, "logger_disabled", f"{self.name} switched off in {event}")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:300]


def _record(trainer: Trainer, kind: str, message: str) -> None:
    try:
        trainer.record_event(kind, message)
    except Exception:  # noqa: BLE001 - the event is a courtesy; the warning already told the user
        pass


def dispatch_table(callbacks: list[Callback]) -> dict[str, list[Any]]:
    """For each event, what the loop calls, in order: a callback itself, or its ``Guarded``
    stand-in when it is rank-0-only or contains its errors (the others pay nothing)."""
    stand_ins: dict[int, Any] = {}
    for callback in callbacks:
        marked = getattr(callback, "rank_zero_only", False) or getattr(callback, "contain_errors", False)
        stand_ins[id(callback)] = Guarded(callback) if marked else callback
    return {event: [stand_ins[id(cb)] for cb in callbacks if overrides(cb, event)] for event in EVENTS}
