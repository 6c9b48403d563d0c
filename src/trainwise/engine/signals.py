"""SIGTERM/SIGINT during a fit: the first one asks the loop to save and stop at the next micro-batch
(in a DDP job, once every rank knows of it); a second one stops at once (KeyboardInterrupt)."""

from __future__ import annotations

import signal
import threading
from typing import Any, Optional


class StopSignals:
    """The signal this run received (``received``), or, in a DDP job, the one this rank received
    and has not yet shared with the others (``pending``). ``install``/``restore`` the handlers."""

    def __init__(self, distributed: bool) -> None:
        self.distributed = distributed
        self.received: Optional[int] = None
        self.pending = 0
        self.previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum: int, frame: Any) -> None:
            if self.received is not None or self.pending:  # a second signal: stop now
                raise KeyboardInterrupt
            if self.distributed:  # DDP: all ranks stop at the micro-batch where they learn of it
                self.pending = signum
            else:
                self.received = signum

        for signum in (signal.SIGTERM, signal.SIGINT):
            self.previous[signum] = signal.signal(signum, handler)

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}

    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else "no signal"
