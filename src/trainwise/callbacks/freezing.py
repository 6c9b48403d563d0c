"""Freeze named modules for the first epochs of fine-tuning, then unfreeze them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from trainwise.callbacks.base import Callback
from trainwise.optim import freeze_schedule

if TYPE_CHECKING:
    from trainwise.callbacks.base import Trainer


class ModuleFreezer(Callback):
    """Keep each named module frozen until its epoch.

    Args:
        unfreeze_at: module name (as in ``model.named_modules()``) → the number of epochs it stays
            frozen (``{"backbone": 2}``: frozen in epochs 1 and 2, trains from epoch 3). A pure function of the epoch, so resume needs no state.

    Example:
        >>> Trainer(model, callbacks=[ModuleFreezer({"backbone": 2})])  # head only for 2 epochs
    """

    def __init__(self, unfreeze_at: Mapping[str, int]) -> None:
        self.unfreeze_at = dict(unfreeze_at)
        self._frozen: list[str] | None = None

    def on_epoch_start(self, trainer: "Trainer") -> None:
        frozen = freeze_schedule(trainer.model, self.unfreeze_at, trainer.state.epoch)
        if frozen != self._frozen:
            message = f"frozen: {', '.join(frozen)}" if frozen else "all modules train"
            trainer.record_event("freeze", message)
            self._frozen = frozen
