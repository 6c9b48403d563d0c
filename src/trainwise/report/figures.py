"""Figures drawn off-screen on matplotlib's Agg canvas, never through pyplot: a library must not
switch a user's backend (a notebook would stop showing its own plots) or leave figures in pyplot's
registry."""

from __future__ import annotations

from typing import Any


def agg_figure(nrows: int = 1, ncols: int = 1, **kwargs: Any) -> tuple[Any, Any]:
    """``plt.subplots`` without pyplot: ``(figure, axes)`` on an Agg canvas, saved with ``savefig``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=kwargs.pop("figsize", None))
    FigureCanvasAgg(figure)
    return figure, figure.subplots(nrows, ncols, **kwargs)
