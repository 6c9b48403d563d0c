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

    Args:
        chars_per_token: characters of text per token (``trainwise.data.text_data.bits_per_char``).
    """

    def __init__(self, chars_per_token: float = 1.0) -> None:
        self.chars_per_token = chars_per_token
        self.by_epoch: dict[int, dict[str, float]] = {}

    def on_validation_end(self, trainer: "Trainer", metrics: dict[str, float]) -> None:
        loss = metrics.get("val_loss")
        if loss is None or not math.isfinite(loss):
            return
        figures = {"bits_per_char": bits_per_char(loss, self.chars_per_token),
                   "perplexity": metrics.get("val_perplexity", math.exp(min(loss, 700.0)))}
        trainer.log("val_bits_per_char", figures["bits_per_char"])
        self.by_epoch[trainer.state.current_epoch] = figures

    def on_epoch_end(self, trainer: "Trainer", logs: dict[str, float]) -> None:
        best = self.by_epoch.get(trainer.state.best.epoch or -1)
        if best is not None:
            for name, value in best.items():
                trainer.summary_extra[f"best_val_{name}"] = value
