"""What a range test recorded and what it suggests, and the files that show it.

``LRFinderResult`` is plain data (``to_json``); ``save_lr_find`` writes it into a run folder as
``lr_find.json`` and ``lr_find.png``, the files the report reads. Both are re-exported by
``trainwise.lr.finder``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainwise.lr.suggest import DIVERGENCE_DECADES, SUGGESTION_RULES, smooth_in_decades

__all__ = ["LRFinderResult", "save_lr_find"]


@dataclass
class LRFinderResult:
    """What a range test recorded and what it suggests.

    Attributes:
        lrs: The learning rate of each step that was run and recorded.
        losses: The bias-corrected exponentially smoothed loss at each of those steps.
        raw_losses: The loss of each step's batch, unsmoothed.
        suggestion: The learning rate ``rule`` suggests, or None when the curve has none.
        rule: The suggestion rule that produced ``suggestion``.
        reason: Why ``suggestion`` is None (too few points, flat curve, divergence from
            the start); None when there is a suggestion.
        suggestions: Every rule's suggestion, for the report and the plot.
        repeats: When the curve is the mean of several tests over different batch orders (a
            retry), the raw losses of each, cut to the steps all recorded; empty otherwise.
        calm_edge: The curve needed the retry and its loss did not diverge near the floor's edge
            (``suggest.calm_edge``), so the ``edge`` rule read that edge without backing off
            (``suggest.CALM_EDGE_BACKOFF``).
        unread_curve: Why the curve itself gave no reading when ``suggestion`` was instead read
            ``suggest.DIVERGENCE_DECADES`` decades of lr under where the retried test diverged (the
            last of ``lrs``); None otherwise.
    """

    lrs: list[float]
    losses: list[float]
    raw_losses: list[float]
    suggestion: float | None
    rule: str
    reason: str | None
    suggestions: dict[str, float | None] = field(default_factory=dict)
    repeats: list[list[float]] = field(default_factory=list)
    calm_edge: bool = False
    unread_curve: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: lrs, losses, raw_losses, suggestion, rule, reason, suggestions, repeats, calm_edge,
        unread_curve."""
        return asdict(self)


def save_lr_find(result: LRFinderResult, run_dir: str | Path) -> tuple[Path, Path]:
    """Write ``lr_find.json`` and ``lr_find.png`` into ``run_dir`` (created if missing).

    The plot shows the smoothed loss against the lr on a log axis, every rule's suggestion
    as a dot, and the chosen one labeled, with a vertical line.

    Returns:
        The paths of the JSON file and the PNG file.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, png_path = folder / "lr_find.json", folder / "lr_find.png"
    json_path.write_text(json.dumps(result.to_json(), indent=2, allow_nan=False) + "\n")
    # A Figure with its own Agg canvas: no pyplot global state, no backend switch.
    figure = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(figure)
    _draw_curve(figure.add_subplot(), result)
    figure.tight_layout()
    figure.savefig(png_path, dpi=100)
    return json_path, png_path


def _draw_curve(axes: Any, result: LRFinderResult) -> None:
    axes.set_xlabel("learning rate")
    axes.set_ylabel("smoothed training loss")
    title = f"LR range test: {result.reason}" if result.reason else "LR range test"
    if result.unread_curve:
        title = (f"LR range test: {result.unread_curve}; suggestion read {DIVERGENCE_DECADES:g} decades under where "
                 "it diverged")
    axes.set_title(title, fontsize=9, wrap=True)
    if not result.lrs:
        axes.text(0.5, 0.5, "no step recorded", ha="center", va="center", transform=axes.transAxes)
        return
    axes.set_xscale("log")
    mean_of = f"mean of {len(result.repeats)} tests, " if result.repeats else ""
    axes.plot(result.lrs, result.losses, color="C0", label=f"loss ({mean_of}moving average)")
    # Clip the divergence tail, which would otherwise flatten the part worth reading.
    lowest = int(np.argmin(result.losses))
    bottom, top = result.losses[lowest], max(result.losses[: lowest + 1])
    curves = {}  # the curve each rule reads, where it is not the moving average
    if result.rule == "edge" and len(result.raw_losses) == len(result.lrs):
        # what the edge rule reads: the raw losses smoothed over decades of lr, without the moving average's lag
        read = smooth_in_decades(np.asarray(result.lrs), np.asarray(result.raw_losses))
        axes.plot(result.lrs, read, color="C0", linestyle=":", label=f"{mean_of}raw loss, smoothed over decades")
        bottom, curves["edge"] = min(bottom, float(read.min())), read
        for number, raw in enumerate(result.repeats):  # the tests averaged, each as the rule would read it alone
            alone = smooth_in_decades(np.asarray(result.lrs), np.asarray(raw))
            axes.plot(result.lrs, alone, color="0.6", linewidth=0.8, linestyle=":",
                      label="each test (batch orders), smoothed" if number == 0 else None)
            bottom = min(bottom, float(alone.min()))  # each test's floor stays in view
    span = (top - bottom) or abs(top) or 1.0
    axes.set_ylim(bottom - 0.1 * span, top + 0.3 * span)
    colors = {rule: f"C{number}" for number, rule in enumerate(SUGGESTION_RULES, start=1)}
    for rule, lr in result.suggestions.items():
        if lr is not None:
            loss = float(np.interp(np.log(lr), np.log(result.lrs), curves.get(rule, result.losses)))
            is_chosen = rule == result.rule
            axes.plot(lr, loss, "o", color=colors.get(rule, "C9"), markersize=9 if is_chosen else 6,
                      markeredgecolor="black" if is_chosen else None, label=f"{rule}: {lr:.2e}")
            if is_chosen:
                axes.axvline(lr, color=colors.get(rule, "C9"), linestyle="--", linewidth=1)
                axes.annotate(f"suggestion ({rule}): {lr:.2e}", (lr, loss),
                              textcoords="offset points", xytext=(8, 8))
    axes.legend(loc="best", fontsize=8)
