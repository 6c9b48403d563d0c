"""The callbacks a run uses: the built-ins, replaced by a user's callback of the same kind, and
the run's one definition of "best"."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from trainwise.callbacks.base import Callback
from trainwise.callbacks.checkpoint_saver import CheckpointSaver
from trainwise.callbacks.early_stopping import EarlyStopping
from trainwise.callbacks.monitor import resolve_mode
from trainwise.callbacks.progress import ProgressBar
from trainwise.errors import ConfigError
from trainwise.engine.state import Best


def assemble_callbacks(*, has_val: bool, early_stopping: Any, monitor: Optional[str], mode: str, patience: int,
                        min_delta: float, user_callbacks: Sequence[Callback], saver: CheckpointSaver,
                        progress: Optional[ProgressBar]) -> tuple[list[Callback], Best]:
    """Built-ins, replaced by a user's callback of the same kind; and the run's one "best".

    Without validation data there is no early stopping unless it was asked for, and "best" is
    the lowest train loss; asking for a ``val_*`` monitor then fails before any training."""
    for callback in user_callbacks:
        if not isinstance(callback, Callback):
            raise ConfigError(f"callbacks must be trainwise.Callback instances, got {type(callback).__name__}")
    users = list(user_callbacks)
    if isinstance(early_stopping, EarlyStopping):
        users.insert(0, early_stopping)
    stoppers = [cb for cb in users if isinstance(cb, EarlyStopping)]
    savers = [cb for cb in users if isinstance(cb, CheckpointSaver)]
    bars = [cb for cb in users if isinstance(cb, ProgressBar)]
    for kind, found in (("EarlyStopping", stoppers), ("CheckpointSaver", savers), ("ProgressBar", bars)):
        if len(found) > 1:
            raise ConfigError(f"callbacks hold {len(found)} {kind}s; a run has one of each kind")
    stopper = stoppers[0] if stoppers else None
    if stopper is None and (early_stopping is True or (early_stopping is None and has_val)):
        stopper = EarlyStopping(monitor or ("val_loss" if has_val else "train_loss"), mode=mode, patience=patience,
                                min_delta=min_delta)
    saver = savers[0] if savers else saver
    watched = stopper.monitor if stopper is not None else saver.monitor or monitor
    if not has_val and watched is not None and watched.startswith("val_"):
        who = "early stopping" if stopper is not None else "the best-checkpoint monitor"
        raise ConfigError(f"{who} monitors {watched!r} but fit() got no validation data; pass validation data, "
                          "or monitor='train_loss', or early_stopping=False")
    if stopper is not None:
        if saver.monitor is not None and saver.monitor != stopper.monitor:
            raise ConfigError(f"CheckpointSaver monitors {saver.monitor!r} but EarlyStopping monitors "
                              f"{stopper.monitor!r}; a run has one 'best': drop one of the monitors")
        best = Best(stopper.monitor, stopper.mode, stopper.min_delta, restore=stopper.restore_best)
    else:
        watched = watched or ("val_loss" if has_val else "train_loss")
        best = Best(watched, saver.mode or resolve_mode(watched, mode), min_delta)
    others = [cb for cb in users if not isinstance(cb, (EarlyStopping, CheckpointSaver, ProgressBar))]
    ordered = ([stopper] if stopper is not None else []) + others + [saver] + (bars or ([progress] if progress else []))
    return ordered, best
