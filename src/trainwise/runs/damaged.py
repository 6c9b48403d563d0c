"""Damaged files under a runs root: the index rebuilt, a broken run.json listed, nothing lost.

``runs.sqlite`` is a cache of the run folders. When it is not a database (garbage, a truncated
copy), lacks the runs table, or was written by a newer trainwise (a schema this one does not
know), reading it would print a traceback or misread it; instead it is moved aside to
``runs.sqlite.damaged-<time>`` (with its ``-wal``/``-shm`` files), rebuilt from the folders, and a
note says so. A run folder whose run.json cannot be parsed (truncated by a full disk, edited by
hand) is listed with the status ``damaged`` rather than dropped.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Optional

from trainwise.runfolder import index as run_index

log = logging.getLogger(__name__)

DAMAGED = "damaged"


def unreadable_reason(root: Path) -> Optional[str]:
    """Why ``root/runs.sqlite`` cannot serve as this version's index, or None when it can."""
    path = root / run_index.INDEX_FILE
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=run_index.BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as error:
        return f"it cannot be opened ({error})"
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > run_index.SCHEMA_VERSION:
            return (f"it was written by a newer trainwise (index schema {version}; this one reads "
                    f"{run_index.SCHEMA_VERSION})")
        if version == run_index.SCHEMA_VERSION:
            conn.execute(f"SELECT {', '.join(run_index.COLUMNS)} FROM runs LIMIT 1").fetchall()
    except sqlite3.DatabaseError as error:
        return f"it is not a readable index ({error})"
    finally:
        conn.close()
    return None


def set_aside_if_damaged(root: Path) -> Optional[str]:
    """Move a damaged index (and its -wal/-shm files) aside; returns the note's start, None if sound."""
    reason = unreadable_reason(root)
    if reason is None:
        return None
    path = root / run_index.INDEX_FILE
    kept = path.with_name(f"{run_index.INDEX_FILE}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    for suffix in ("", "-wal", "-shm"):  # a stale WAL must not be replayed into the new file
        side = Path(f"{path}{suffix}")
        if side.exists():
            os.replace(side, Path(f"{kept}{suffix}"))
    return f"note: {path} was set aside as {kept.name} because {reason}"


def rebuild_if_damaged(root: Path, reindex: Callable[[Path], int]) -> Optional[str]:
    """Set a damaged index aside and rebuild it with ``reindex``; returns the note (None if sound)."""
    note = set_aside_if_damaged(root)
    if note is None:
        return None
    count = reindex(root)
    folders = "1 run folder" if count == 1 else f"{count} run folders"
    note += (f"; the index was rebuilt from the {folders} under {root} (the folders are the record; "
             "nothing in them changed)")
    log.warning(note)
    return note


def damaged_run(root: Path, folder: Path) -> dict[str, Any]:
    """A run.json stand-in for a folder whose run.json cannot be read: listed as ``damaged``."""
    relative = os.path.relpath(folder, root)
    try:
        started = (folder / "run.json").stat().st_mtime
    except OSError:
        started = None
    return {"id": f"damaged-{hashlib.sha1(relative.encode()).hexdigest()[:10]}", "name": folder.name,
            "status": DAMAGED, "started": started}
