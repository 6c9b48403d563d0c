"""SIGTERM/SIGINT during a fit: the first one asks the loop to save and stop at the next micro-batch
(in a DDP job, once every rank knows of it); a second one stops at once (KeyboardInterrupt). Outside
the loop — the LR range test before it, the test pass after it — one ends that phase at once
(``Interrupted``), and the fit records why."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator, Optional


class StopSignals:
    """The signal this run received (``received``), or, in a DDP job, the one this rank received
    and has not yet shared with the others (``pending``). ``install``/``restore`` the handlers."""

    def __init__(self, distributed: bool) -> None:
        self.distributed = distributed
        self.received: Optional[int] = None
        self.pending = 0
        self.previous: dict[int, Any] = {}
        self.raise_now = False  # inside ``raising()``: a signal ends what runs at once

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum: int, frame: Any) -> None:
            if self.received is not None or self.pending:  # a second signal: stop now
                raise KeyboardInterrupt
            if self.raise_now and not self.distributed:  # a validation: its end may be far (an endless stream)
                self.received = signum
                raise Interrupted(signum)
            if self.distributed:  # DDP: all ranks stop at the micro-batch where they learn of it
                self.pending = signum
            else:
                self.received = signum

        for signum in (signal.SIGTERM, signal.SIGINT):
            self.previous[signum] = signal.signal(signum, handler)

    @contextmanager
    def raising(self) -> Iterator[None]:
        """While inside, a first signal raises ``Interrupted`` at once instead of waiting for a step's end
        (one process; the ranks of a DDP job stop together at a micro-batch, as before)."""
        self.raise_now = True
        try:
            yield
        finally:
            self.raise_now = False

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}

    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else "no signal"


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT outside the training loop (``signal_name``: SIGTERM, SIGINT)."""

    def __init__(self, signum: int) -> None:
        self.signal_name = signal.Signals(signum).name
        super().__init__(self.signal_name)


@contextmanager
def interrupting(enabled: bool = True) -> Iterator[None]:
    """SIGTERM and SIGINT raise ``Interrupted`` at once while inside (in the main thread of one process:
    a DDP job keeps its ranks' own handling); what was installed before comes back after."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler_before in previous.items():
            signal.signal(signum, handler_before)
