"""``trainwise ARGS`` run by the CLI's own ``main`` inside the test process.

For mistakes the CLI refuses before anything trains: the same parser, handlers, messages and exit
codes as the command, without the 3-4 s in which a fresh interpreter imports torch (a third of the
suite's time went to such imports). Anything that trains, is killed or spawns processes runs as a
real process in its own test."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import traceback
import warnings
from pathlib import Path

from trainwise.cli import main


def cli_in_process(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """What ``python -m trainwise ARGS`` in ``cwd`` exits with and prints (an uncaught exception prints
    its traceback to stderr and exits 1, as the interpreter would)."""
    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's own usage errors
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Exception:  # noqa: BLE001 - what a user would see as a traceback
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(previous)
        root.handlers[:] = handlers  # main's logging.basicConfig must not leave a handler on a dead stream
        root.setLevel(level)
    return subprocess.CompletedProcess(["trainwise", *args], code, out.getvalue(), err.getvalue())
