"""A progress bar (rich) with loss, metric, lr and samples/s; plain epoch lines when not a terminal."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from trainwise.callbacks.base import Callback

if TYPE_CHECKING:
    import torch

    from trainwise.callbacks.base import Trainer


def format_logs(logs: dict[str, float]) -> str:
    return "  ".join(f"{key} {value:.4g}" for key, value in logs.items())


class ProgressBar(Callback):
    """Shows progress; reads the loss (a device sync) at most every ``refresh_seconds``.

    Args:
        refresh_seconds: how often the bar's figures are refreshed.
        console: where to write; stdout by default. When it is not a terminal, one line per epoch.
    """

    def __init__(self, refresh_seconds: float = 0.5, console: Optional[Console] = None) -> None:
        self.console = console or Console(file=sys.stdout)
        self.live = self.console.is_terminal
        self.refresh_seconds = refresh_seconds
        self._progress: Optional[Progress] = None
        self._task = None
        self._next_refresh = 0.0
        self._batches = 0
        self._epoch_start = 0.0
        self._last_metric = ""

    def on_fit_start(self, trainer: "Trainer") -> None:
        if self.live:
            self._progress = Progress(
                TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[figures]}"), TimeElapsedColumn(), console=self.console, transient=False)
            self._progress.start()

    def on_epoch_start(self, trainer: "Trainer") -> None:
        self._batches = 0
        self._epoch_start = time.perf_counter()
        self._next_refresh = self._epoch_start + self.refresh_seconds
        if self._progress is not None:
            if self._task is not None:  # validations every N steps leave the epoch's task open
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task("train", total=trainer.state.batches_per_epoch,
                                                 epoch=f"{trainer.state.current_epoch}/{trainer.state.max_epochs}",
                                                 figures="")

    def on_batch_end(self, trainer: "Trainer", loss: "torch.Tensor") -> None:
        self._batches += 1
        if self._progress is None:
            return
        now = time.perf_counter()
        if now < self._next_refresh:
            return
        self._next_refresh = now + self.refresh_seconds
        rate = trainer.state.epoch_samples / max(now - self._epoch_start, 1e-9)
        figures = f"loss {loss.item():.4f}  lr {trainer.state.lr:.3g}  {rate:,.0f} samples/s{self._last_metric}"
        self._progress.update(self._task, completed=self._batches, figures=figures)

    def on_epoch_end(self, trainer: "Trainer", logs: dict[str, float]) -> None:
        seconds = time.perf_counter() - self._epoch_start
        state = trainer.state
        rate = state.epoch_samples / max(seconds, 1e-9)
        metric = next((k for k in ("val_accuracy", "val_rmse") if k in logs), None)
        self._last_metric = f"  {metric} {logs[metric]:.4f}" if metric else ""
        best = "  *best" if state.best.improved else ""
        inside = state.batch > 0  # a validation every N steps, inside the epoch
        where = f"step {state.step}  epoch {state.current_epoch}" if inside else f"epoch {state.epoch}/{state.max_epochs}"
        line = f"{where}  {format_logs(logs)}  lr {state.lr:.3g}  {rate:,.0f} samples/s  {seconds:.1f}s{best}"
        if self._progress is not None:
            self._progress.update(self._task, completed=self._batches, figures=format_logs(logs))
            if not inside:
                self._progress.remove_task(self._task)
                self._task = None
            self._progress.console.print(line)
        else:
            self.console.print(line, highlight=False, soft_wrap=True)

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def on_fit_end(self, trainer: "Trainer") -> None:
        self._stop()

    def on_exception(self, trainer: "Trainer", exception: BaseException) -> None:
        self._stop()
