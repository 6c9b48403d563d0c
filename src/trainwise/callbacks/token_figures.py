"""Perplexity and bits per character of a language model, from its per-token validation loss."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from trainwise.callbacks.base import Callback

if TYPE_CHECKING:
    from trainwise.callbacks.base import Trainer


def token_figures(loss_nats: float, chars_per_token: float = 1.0) -> dict[str, float]:
    """``perplexity`` = exp(loss) and ``bits_per_char`` = loss / ln 2 / characters per token."""
    return {"perplexity": math.exp(min(loss_nats, 700.0)),
            "bits_per_char": loss_nats / math.log(2) / chars_per_token}


class TokenFigures(Callback):
    """Logs ``val_perplexity`` and ``val_bits_per_char`` after each validation (the progress line,
    metrics.csv) and puts the best epoch's into summary.json (``best_val_perplexity``, ...).

    Args:
        chars_per_token: characters of text per token: 1 for a char tokenizer; below 1 for bytes
            of a text with multi-byte characters.
    """

    def __init__(self, chars_per_token: float = 1.0) -> None:
        self.chars_per_token = chars_per_token
        self.by_epoch: dict[int, dict[str, float]] = {}

    def on_validation_end(self, trainer: "Trainer", metrics: dict[str, float]) -> None:
        loss = metrics.get("val_loss")
        if loss is None or not math.isfinite(loss):
            return
        figures = token_figures(loss, self.chars_per_token)
        for name, value in figures.items():
            trainer.log(f"val_{name}", value)
        self.by_epoch[trainer.state.current_epoch] = figures

    def on_epoch_end(self, trainer: "Trainer", logs: dict[str, float]) -> None:
        best = self.by_epoch.get(trainer.state.best.epoch or -1)
        if best is not None:
            for name, value in best.items():
                trainer.summary_extra[f"best_val_{name}"] = value
