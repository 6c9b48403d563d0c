"""Bits per character of a language model, from its per-token validation loss (the evaluation
gives the perplexity itself)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from trainwise.callbacks.base import Callback
from trainwise.data.text_data import bits_per_char

if TYPE_CHECKING:
    from trainwise.callbacks.base import Trainer


def token_summary(summary: dict[str, Any], chars_per_token: float) -> dict[str, float]:
    """``test_bits_per_char`` (and ``test_perplexity`` when missing) from a summary's ``test_loss``."""
    loss = summary.get("test_loss")
    if loss is None or not math.isfinite(loss):
        return {}
    figures = {"test_bits_per_char": bits_per_char(loss, chars_per_token)}
    if "test_perplexity" not in summary:
        figures["test_perplexity"] = math.exp(min(loss, 700.0))
    return figures


class TokenFigures(Callback):
    """Logs ``val_bits_per_char`` after each validation (the progress line, the history) and puts
    the best epoch's perplexity and bits per character into summary.json (``best_val_perplexity``,
    ``best_val_bits_per_char``).

    The best figures are read from the run's history, which a resumed run rebuilds from
    metrics.csv: a run resumed after its best epoch (or after its last one, with nothing left to
    train) reports the same figures as one that was never interrupted.

    Args:
        chars_per_token: characters of text per token (``trainwise.data.text_data.bits_per_char``).
    """

    def __init__(self, chars_per_token: float = 1.0) -> None:
        self.chars_per_token = chars_per_token

    def on_fit_start(self, trainer: "Trainer") -> None:
        self._publish_best(trainer)  # a resumed run: its best validation may be behind it

    def on_validation_end(self, trainer: "Trainer", metrics: dict[str, float]) -> None:
        loss = metrics.get("val_loss")
        if loss is not None and math.isfinite(loss):
            trainer.log("val_bits_per_char", bits_per_char(loss, self.chars_per_token))

    def on_epoch_end(self, trainer: "Trainer", logs: dict[str, float]) -> None:
        self._publish_best(trainer)

    def _publish_best(self, trainer: "Trainer") -> None:
        """``best_val_perplexity`` and ``best_val_bits_per_char`` of the history row of the best
        validation (the row summary.json's other ``best_`` figures come from)."""
        best = trainer.state.best
        if best.step is not None:  # validations every N steps: one row per validation
            row = next((r for r in trainer.state.history if r.get("step") == best.step), None)
        else:
            row = next((r for r in trainer.state.history if r.get("epoch") == best.epoch), None) if best.epoch else None
        loss = row.get("val_loss") if row else None
        if row is None or loss is None or not math.isfinite(loss):
            return
        figures = {"best_val_perplexity": row.get("val_perplexity", math.exp(min(loss, 700.0))),
                   "best_val_bits_per_char": row.get("val_bits_per_char", bits_per_char(loss, self.chars_per_token))}
        trainer.summary_extra.update(figures)  # type: ignore[attr-defined]  # trainwise.Trainer's, not the protocol's
