"""Stop when the monitored metric stops improving; the best weights are put back at the end."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from trainwise.callbacks.base import Callback
from trainwise.callbacks.monitor import resolve_mode
from trainwise.checks import OTHER_CALLBACK_NAMES, arguments_of, check_bool, check_int, check_range, unknown_arguments
from trainwise.errors import UnknownArgumentError

if TYPE_CHECKING:
    from trainwise.callbacks.base import Trainer


class EarlyStopping(Callback):
    """Stop training after ``patience`` epochs in a row without improvement of ``monitor``.

    Its ``monitor``, ``mode`` and ``min_delta`` are the run's one definition of "best": ``best.pt``,
    ``best_epoch`` in summary.json and the weights restored at the end all follow them.

    Args:
        monitor: metric to watch, e.g. ``val_loss`` or ``val_accuracy``.
        mode: ``min``, ``max`` or ``auto``: the direction the words of the name say (``val_acc``,
            ``val_iou``, ``val_top2_accuracy``: max; ``val_loss``, ``val_rmse``: min); a name that
            does not say (``val_foo``) is refused here, with the fix (pass ``mode``).
        patience: the run stops at the end of the ``patience``-th epoch in a row without
            improvement (as in Keras; 0 and 1 both stop at the first such epoch).
        min_delta: an improvement must beat the best value by more than this.
        restore_best: at the end of training (before the test pass), load the weights of the best
            epoch, so the model you get back and the test figures are those of the best epoch
            (on by default; ``restore_best_weights``, Keras' name, is accepted too).

    Example:
        >>> Trainer(model, callbacks=[EarlyStopping(monitor="val_accuracy", patience=3)])
    """

    def __init__(self, monitor: str = "val_loss", *, mode: str = "auto", patience: int = 5,
                 min_delta: float = 0.0, restore_best: bool = True,
                 restore_best_weights: Optional[bool] = None, **unknown: Any) -> None:
        if unknown:  # Lightning's check_finite, Keras' baseline: what trainwise does instead, not a TypeError
            raise UnknownArgumentError(unknown_arguments("EarlyStopping", unknown, arguments_of(EarlyStopping.__init__),
                                                         OTHER_CALLBACK_NAMES))
        if restore_best_weights is not None:  # Keras' name for it
            restore_best = restore_best_weights
        self.monitor = monitor
        self.mode = resolve_mode(monitor, mode)
        self.patience = check_int("patience", patience, 0)
        self.min_delta = check_range("min_delta", min_delta, 0)
        self.restore_best = check_bool("restore_best", restore_best)
        self.wait = 0
        self.stopped_epoch: Optional[int] = None

    def on_epoch_end(self, trainer: "Trainer", logs: dict[str, float]) -> None:
        best = trainer.state.best
        if best.improved:
            self.wait = 0
            return
        self.wait += 1
        if self.wait >= max(self.patience, 1):
            self.stopped_epoch = trainer.state.epoch
            better = "higher" if best.mode == "max" else "lower"
            trainer.stop(
                f"early stopping: {self.monitor} did not improve for {self.wait} epochs "
                f"(best {best.value:.6g} at epoch {best.epoch}); {better} is better" if best.value is not None else
                f"early stopping: {self.monitor} was never finite in {self.wait} epochs")

    def state_dict(self) -> dict[str, Any]:
        return {"wait": self.wait, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.wait, self.stopped_epoch = state["wait"], state["stopped_epoch"]
