"""The run folder of a job: one writer (global rank 0, holding the folder's lock), one folder for
all ranks, and the same answer on every rank when that cannot be had.

Example (every rank runs it):
    >>> with writing_run_folder(run_dir):
    ...     train()    # rank 0 holds RUN_DIR/.lock; a second job on the folder fails on all its ranks
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from trainwise.distributed.ops import broadcast, is_main, main_then_all
from trainwise.runfolder import lock


def agreed_run_dir(run_dir: Path) -> Path:
    """Rank 0's ``run_dir`` on every rank (a default folder name holds the time, which ranks may read
    a second apart)."""
    return Path(broadcast(str(run_dir)))


@contextlib.contextmanager
def writing_run_folder(run_dir: Path) -> Iterator[None]:
    """Rank 0 holds ``run_dir``'s lock for the block; when another process holds it, every rank
    raises the same ``RunFolderBusyError`` before anything is written."""
    main_then_all(lambda: lock.acquire(run_dir))
    try:
        yield
    finally:
        if is_main():
            lock.release(run_dir)
