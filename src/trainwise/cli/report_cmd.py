"""``trainwise report RUN_DIR [--png]``: re-render a run's report.html from its folder's files.

The page and its SVG charts (curves.svg, lr.svg) take milliseconds and need no matplotlib; with
``--png`` the matplotlib figures (curves.png, lr.png, confusion.png) are drawn too and linked from
the page. Only the run folder's files are read: no checkpoint, model or data set is loaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from trainwise.errors import DataNotFoundError

# A folder holding none of these is not a run folder.
RUN_FILES = ("metrics.csv", "summary.json", "config.yaml")


def report(args: argparse.Namespace) -> int:
    from trainwise.report.html import write_report
    from trainwise.report.run_contents import load_run

    folder = check_run_folder(args.run_dir)
    task = load_run(folder).task  # summary.json's, data.json's or the config's, else what was logged
    written = []
    if args.png:
        from trainwise.report.plots import write_run_plots

        written = write_run_plots(folder, task=task)
    page = write_report(folder, task=task)
    svgs = [name for name in ("curves.svg", "lr.svg") if (folder / name).is_file()]
    print(f"report: {page}")
    if svgs:
        print(f"charts: {', '.join(str(folder / name) for name in svgs)}")
    if written:
        print(f"png: {', '.join(str(path) for path in written)}")
    return 0


def check_run_folder(run_dir: str) -> Path:
    """``run_dir`` as a Path, or DataNotFoundError when it is missing or not a run folder."""
    folder = Path(run_dir)
    if not folder.is_dir():
        raise DataNotFoundError(f"run folder not found: {run_dir!r} is not a directory")
    if not any((folder / name).is_file() for name in RUN_FILES):
        raise DataNotFoundError(f"{run_dir!r} is not a run folder: it holds none of {', '.join(RUN_FILES)}")
    return folder
