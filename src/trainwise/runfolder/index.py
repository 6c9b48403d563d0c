"""The run index: one SQLite file (``runs.sqlite``) under the runs root, a cache of the run folders.

The run folders stay the source of truth; ``trainwise runs reindex`` rebuilds this file from
them. It is written when a run starts, when its status changes and when it ends, never per
step. Every write is one ``BEGIN IMMEDIATE`` transaction on a WAL database with a 30 s busy
timeout, so parallel runs and a ``runs list`` in a loop never see "database is locked", and a
writer killed mid-transaction leaves the previous state. A failure to write the index is logged
as a warning and never stops training.

Where the runs root is (the folder holding ``runs.sqlite``):

- for a run being written: ``$TRAINWISE_RUNS`` when the run folder is inside it; else the nearest
  ancestor named ``runs``; else the run folder's parent. So ``runs/tune/<study>/trial-3`` is
  indexed in ``runs/runs.sqlite``. (No search upwards for an existing index: one stray
  ``runs.sqlite`` in a home folder would otherwise capture every run below it.)
- for ``trainwise runs``: ``--root``; else ``$TRAINWISE_RUNS``; else, from the working directory
  upwards, the first folder holding ``runs.sqlite`` or a ``runs/runs.sqlite``; else ``./runs``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Optional

log = logging.getLogger(__name__)

INDEX_FILE = "runs.sqlite"
ENV_ROOT = "TRAINWISE_RUNS"
BUSY_TIMEOUT_MS = 30_000
SCHEMA_VERSION = 1
COLUMNS = ("id", "name", "folder", "status", "pid", "pid_start", "host", "started", "ended", "heartbeat",
           "git_commit", "git_dirty", "config", "summary", "env", "indexed")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, name TEXT, folder TEXT NOT NULL, status TEXT, pid INTEGER, pid_start INTEGER,
    host TEXT, started REAL, ended REAL, heartbeat REAL, git_commit TEXT, git_dirty INTEGER,
    config TEXT, summary TEXT, env TEXT, indexed REAL);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started);
CREATE INDEX IF NOT EXISTS runs_name ON runs (name);
"""


def writer_root(run_dir: Path) -> Path:
    """The runs root whose index records the run in ``run_dir`` (rules in the module docstring)."""
    folder = Path(os.path.abspath(run_dir))
    env = os.environ.get(ENV_ROOT)
    if env:
        root = Path(os.path.abspath(env))
        if root in folder.parents:
            return root
    return next((parent for parent in folder.parents if parent.name == "runs"), folder.parent)


def reader_root(explicit: Optional[str] = None) -> Path:
    """The runs root of ``trainwise runs`` (rules in the module docstring)."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_ROOT)
    if env:
        return Path(env)
    here = Path.cwd()
    for folder in (here, *here.parents):  # a project's runs/ wins over an index further up
        for candidate in (folder, folder / "runs"):
            if (candidate / INDEX_FILE).exists():
                return candidate
    return here / "runs"


def connect(root: Path, *, create: bool = True) -> sqlite3.Connection:
    """A connection to ``root/runs.sqlite`` in WAL mode with a busy timeout; the schema is created
    under ``user_version`` inside an immediate transaction, so two first writers do not race."""
    path = root / INDEX_FILE
    if create:
        root.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: no fsync per commit; the index is a cache
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:  # never write rows of this schema into a newer one
        conn.close()
        raise sqlite3.DatabaseError(f"{path} was written by a newer trainwise (index schema {version}, this one "
                                    f"writes {SCHEMA_VERSION})")
    if version < SCHEMA_VERSION:
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        with transaction(conn):
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                for statement in _SCHEMA.strip().split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return conn


class transaction:
    """``with transaction(conn):`` — BEGIN IMMEDIATE, COMMIT, or ROLLBACK on an error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        self.conn.execute("COMMIT" if kind is None else "ROLLBACK")


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"optimizer": {"lr": 0.1}}`` → ``{"optimizer.lr": 0.1}``; lists stay values."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict) and value:
                out.update(flatten(value, name + "."))
            else:
                out[name] = value
    return out


def summary_figures(summary: Optional[dict[str, Any]]) -> dict[str, Any]:
    """The scalar figures of summary.json (numbers, strings, booleans; not events or matrices)."""
    out: dict[str, Any] = {}
    for key, value in (summary or {}).items():
        if isinstance(value, bool) or isinstance(value, str) or value is None:
            out[key] = value
        elif isinstance(value, (int, float)):
            out[key] = value if math.isfinite(value) else None
    return out


def row_for(root: Path, folder: Path, run: dict[str, Any], *, config: Optional[dict[str, Any]],
            summary: Optional[dict[str, Any]]) -> tuple[Any, ...]:
    git = run.get("git") or {}
    try:
        relative = Path(os.path.abspath(folder)).relative_to(Path(os.path.abspath(root))).as_posix()
    except ValueError:
        relative = str(Path(os.path.abspath(folder)))
    values = {
        **{key: run.get(key) for key in ("id", "name", "status", "pid", "pid_start", "host", "started", "ended",
                                         "heartbeat")},
        "folder": relative, "git_commit": git.get("commit"),
        "git_dirty": None if git.get("dirty") is None else int(bool(git["dirty"])),
        "config": json.dumps(flatten(config or {}), default=str),
        "summary": json.dumps(summary_figures(summary), default=str),
        "env": json.dumps(run.get("environment") or {}, default=str), "indexed": time.time(),
    }
    return tuple(values[column] for column in COLUMNS)


def upsert(conn: sqlite3.Connection, rows: Iterable[tuple[Any, ...]]) -> None:
    marks = ", ".join("?" for _ in COLUMNS)
    conn.executemany(f"INSERT OR REPLACE INTO runs ({', '.join(COLUMNS)}) VALUES ({marks})", list(rows))


def record_run(folder: Path, run: dict[str, Any], *, config: Optional[dict[str, Any]],
               summary: Optional[dict[str, Any]]) -> bool:
    """Write one run's row (a run starting, changing status, ending). A failure warns, returns False."""
    root = writer_root(folder)
    try:
        if config is None:
            config = _read_config(folder)
        with _writers_lock:  # fits in several threads of one process share the connection
            conn = _writer_connection(root)
            with transaction(conn):
                upsert(conn, [row_for(root, folder, run, config=config, summary=summary)])
    except (sqlite3.Error, OSError, ValueError) as exc:
        _writers.pop(str(root), None)
        log.warning("warning: could not update the run index for %s (%s); training goes on, and "
                    "`trainwise runs reindex` rebuilds the index from the run folders", folder, exc)
        return False
    return True


# One connection per runs root and process, kept open: closing the last connection checkpoints and
# deletes the WAL (two fsyncs), which would cost every short fit of a search ~15 ms.
_writers: dict[str, tuple[sqlite3.Connection, int]] = {}
_writers_lock = threading.Lock()


def _writer_connection(root: Path) -> sqlite3.Connection:
    """The process's connection to ``root``'s index, reopened when the file was replaced or
    deleted since (a reindex after ``rm runs.sqlite``), so no write goes to an unlinked file."""
    key = str(root)
    cached = _writers.get(key)
    try:
        inode = (root / INDEX_FILE).stat().st_ino
    except OSError:
        inode = None
    if cached is not None and cached[1] == inode:
        return cached[0]
    if cached is not None:
        cached[0].close()
    conn = connect(root)
    _writers[key] = (conn, (root / INDEX_FILE).stat().st_ino)
    return conn


def _read_config(folder: Path) -> dict[str, Any]:
    """config.yaml of the folder (for a row written without the config in hand)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when there: reindex reads thousands
    try:
        data = yaml.load((folder / "config.yaml").read_text(), Loader=loader)
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}
