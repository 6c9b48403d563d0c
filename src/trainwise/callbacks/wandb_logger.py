"""A Weights & Biases logger: one W&B run per trainwise run, written by global rank 0 only.

``Trainer(loggers=["wandb"])``, ``train.loggers: [wandb]`` (with ``train.wandb: {project, mode}``)
or ``WandbLogger(project=..., mode=...)``. The W&B run is named after the trainwise run, holds its
resolved config, each epoch's figures at the optimizer step (and the lr every
``log_every_n_steps`` steps), and its final figures in the summary; it ends with exit code 0, or 1
when the trainwise run failed, diverged or was interrupted.

Mode: ``mode`` or ``$WANDB_MODE`` when given; otherwise ``online`` only when an API key is set
and the W&B server answers within two seconds, else ``offline``: the run is written under
``<run folder>/wandb/offline-run-*`` and uploaded later with ``wandb sync <that folder>``.

A failure of W&B (a full disk, a server that goes away) never ends the training: the logger logs
one warning, records a ``logger_failed`` event in the run and stops logging.

Example:
    >>> Trainer(model, loggers=[WandbLogger(project="digits", mode="offline")])  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlparse

from trainwise.callbacks.base import Logger, Trainer
from trainwise.callbacks.logger_parts import final_figures, finite_figures, require_package
from trainwise.checks import check_choice

log = logging.getLogger(__name__)

MODES = ("online", "offline", "disabled")
_FAILED_STATUSES = ("failed", "diverged", "interrupted")


def wandb_mode(mode: Optional[str]) -> tuple[str, str]:
    """The mode to log in and why: ``mode``, ``$WANDB_MODE``, or online only when a key is set and
    the server is reachable."""
    if mode is not None:
        return check_choice("wandb mode", mode, MODES), "asked for"
    if os.environ.get("WANDB_MODE"):
        return check_choice("WANDB_MODE", os.environ["WANDB_MODE"], MODES), "$WANDB_MODE"
    if not (os.environ.get("WANDB_API_KEY") or _netrc_has_key()):
        return "offline", "no W&B API key (wandb login)"
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    try:
        with socket.create_connection((url.hostname or "api.wandb.ai", url.port or 443), timeout=2):
            return "online", "server reachable"
    except OSError as exc:
        return "offline", f"{url.hostname} unreachable ({exc})"


def _netrc_has_key() -> bool:
    import netrc

    try:
        hosts = netrc.netrc().hosts
    except (OSError, netrc.NetrcParseError):
        return False
    return any("wandb" in host for host in hosts)


class WandbLogger(Logger):
    """One W&B run per trainwise run. ``project`` defaults to ``$WANDB_PROJECT`` or ``trainwise``;
    ``mode``: online, offline or disabled (default: see the module's docstring); ``entity``, ``tags``
    as W&B takes them; ``dir``: where W&B writes (default: the run folder)."""

    def __init__(self, project: Optional[str] = None, mode: Optional[str] = None, entity: Optional[str] = None,
                 tags: Optional[list[str]] = None, dir: Optional[str | Path] = None) -> None:
        require_package("wandb", "wandb")
        if mode is not None:
            check_choice("wandb mode", mode, MODES)
        self.project = project or os.environ.get("WANDB_PROJECT") or "trainwise"
        self.mode, self.entity, self.tags, self.dir = mode, entity, list(tags or []), dir
        self.run: Any = None
        self.every = 50

    def on_fit_start(self, trainer: Trainer) -> None:
        from trainwise.distributed.ops import is_main

        if not is_main():
            return
        self._contained(trainer, self._start, trainer)

    def _start(self, trainer: Trainer) -> None:
        import wandb

        mode, why = wandb_mode(self.mode)
        folder = Path(self.dir) if self.dir is not None else Path(trainer.run_dir)
        folder.mkdir(parents=True, exist_ok=True)
        record = getattr(getattr(trainer, "run_record", None), "data", None) or {}
        self.run = wandb.init(project=self.project, entity=self.entity, name=getattr(trainer, "name", None),
                              id=record.get("id"), tags=self.tags or None, dir=str(folder), mode=mode,
                              config=getattr(trainer, "config", None) or {}, resume="allow", reinit="create_new",
                              settings=wandb.Settings(silent=True, console="off", x_disable_stats=True))
        self.run.config.update({"trainwise_run_dir": str(Path(trainer.run_dir).resolve())}, allow_val_change=True)
        self.every = max(int(getattr(trainer, "log_every_n_steps", 50)), 1)
        if mode == "offline":
            log.info("W&B: offline (%s); upload later with: wandb sync %s", why, self.run.dir.rsplit("/files", 1)[0])

    def on_step_end(self, trainer: Trainer) -> None:
        if self.run is not None and trainer.state.step % self.every == 0:
            self._contained(trainer, self.run.log, {"lr": trainer.state.lr}, step=trainer.state.step)

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        if self.run is not None:
            values = finite_figures({**logs, "lr": trainer.state.lr, "epoch": trainer.state.epoch})
            self._contained(trainer, self.run.log, values, step=trainer.state.step)

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.run is not None:
            self._contained(trainer, self._finish, trainer, trainer.state.status)

    def on_exception(self, trainer: Trainer, exception: BaseException) -> None:
        if self.run is not None:
            self._contained(trainer, self._finish, trainer, "interrupted" if isinstance(exception, KeyboardInterrupt)
                            else "failed")

    def _finish(self, trainer: Trainer, status: str) -> None:
        run, self.run = self.run, None
        run.summary.update({**final_figures(trainer), "status": status})
        run.finish(exit_code=1 if status in _FAILED_STATUSES else 0)

    def _contained(self, trainer: Trainer, action: Any, *args: Any, **kwargs: Any) -> None:
        """Run ``action``; on an error, warn once, record it in the run and stop logging to W&B."""
        try:
            action(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a logger never ends the training
            run, self.run = self.run, None
            message = f"W&B logging stopped: {type(exc).__name__}: {exc}"
            warn = getattr(trainer, "warn", None)  # trainwise's Trainer: the terminal and summary.json's warnings
            warn(message) if callable(warn) else log.warning(message)
            trainer.record_event("logger_failed", message)
            if run is not None:
                try:
                    run.finish(exit_code=1)
                except Exception:  # noqa: BLE001 - already failing; the first error is the one reported
                    pass
