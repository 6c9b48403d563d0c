"""The run store's reading side (floor 4): list, show, compare, remove and collect runs.

The writing side is on floor 1, so ``Trainer.fit`` can write without importing this package:
``trainwise.runfolder.record`` (run.json) and ``trainwise.runfolder.index`` (the SQLite index). Nothing here
imports torch: ``trainwise runs list`` starts in a fraction of a second.
"""

from trainwise.runs.filter import FilterError, parse_filter
from trainwise.runs.store import Run, load_runs, reindex, resolve

__all__ = ["FilterError", "Run", "load_runs", "parse_filter", "reindex", "resolve"]
