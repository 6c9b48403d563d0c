"""Plots and the self-contained HTML report of a run folder.

Typical use after a run::

    from trainwise.report import write_report, write_run_plots

    write_run_plots("runs/digits-mlp", task="classification")  # curves.png, lr.png, ...
    write_report("runs/digits-mlp")                            # report.html, one file
"""

from __future__ import annotations

from trainwise.report.html import write_report
from trainwise.report.plots import plot_confusion, plot_curves, plot_lr, write_run_plots
from trainwise.report.run_files import read_metrics

__all__ = [
    "plot_confusion",
    "plot_curves",
    "plot_lr",
    "read_metrics",
    "write_report",
    "write_run_plots",
]
