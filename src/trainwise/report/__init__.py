"""The report of a run folder: a self-contained report.html with SVG charts, and PNG plots on request.

Typical use after a run::

    from trainwise.report import write_report, write_run_plots

    write_report("runs/digits-mlp")                            # report.html, curves.svg, lr.svg
    write_run_plots("runs/digits-mlp", task="classification")  # curves.png, lr.png, ... (matplotlib)

The report needs no matplotlib; the PNG plots import it when first asked for (``plot_*`` and
``write_run_plots`` are loaded lazily), so ``import trainwise.report`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainwise.report.html import render_report, write_report
from trainwise.report.run_files import read_metrics

if TYPE_CHECKING:
    from trainwise.report.plots import plot_confusion, plot_curves, plot_lr, write_run_plots

__all__ = [
    "plot_confusion",
    "plot_curves",
    "plot_lr",
    "read_metrics",
    "render_report",
    "write_report",
    "write_run_plots",
]
_PLOTS = frozenset({"plot_confusion", "plot_curves", "plot_lr", "write_run_plots"})


def __getattr__(name: str) -> Any:
    if name in _PLOTS:
        from trainwise.report import plots

        return getattr(plots, name)
    raise AttributeError(f"module 'trainwise.report' has no attribute {name!r}")
