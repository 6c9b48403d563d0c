"""Reading the run index: runs with an honest status, a RUN argument resolved, the index rebuilt
from the folders (``reindex``), forgotten rows and trash collected (``gc``), a run removed (``rm``).

A run whose index row (or run.json) still says ``running`` is shown as ``crashed`` when its
process is gone: on this host the pid no longer exists (or is now another process: its start time
differs), on another host the heartbeat is older than ``STALE_SECONDS``. A run whose folder was
deleted by hand is shown as ``missing`` until ``runs gc`` forgets it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from trainwise.runfolder import index as run_index
from trainwise.runs.damaged import damaged_run, rebuild_if_damaged, set_aside_if_damaged
from trainwise.runfolder.index import COLUMNS as COLUMN_NAMES
from trainwise.errors import ConfigError, DataNotFoundError
from trainwise.runfolder.record import RUN_FILE, STALE_SECONDS, process_start_time, read_run_json

log = logging.getLogger(__name__)
TRASH = ".trash"
# Temporary files that name their writer's pid: an export's (``.model.tmp-<pid>.onnx``, its sidecars,
# ``.export.tmp-<pid>.json``) and a report's PNGs (``.confusion.png.<pid>.partial``).
WRITER_PID = re.compile(r"^\..*?\.(?:tmp-(\d+)(?:\..*)?|(\d+)\.partial)$")
RUN_FIELDS = ("id", "name", "status", "host", "folder", "started", "ended", "duration", "git.commit", "git.dirty")


class Run:
    """One run as the index (or its run.json) describes it, with its status reconciled. The config,
    summary and environment are parsed from the index on first use (a list of 2,000 runs that
    filters on one key parses one JSON column per run, not three)."""

    def __init__(self, *, id: str, name: str, folder: str, status: str, recorded_status: str,
                 host: Optional[str] = None, pid: Optional[int] = None, started: Optional[float] = None,
                 ended: Optional[float] = None, heartbeat: Optional[float] = None, git_commit: Optional[str] = None,
                 git_dirty: Optional[bool] = None, config: str = "{}", summary: str = "{}", env: str = "{}") -> None:
        self.id, self.name, self._folder, self.status, self.recorded_status = id, name, folder, status, recorded_status
        self.host, self.pid, self.started, self.ended, self.heartbeat = host, pid, started, ended, heartbeat
        self.git_commit, self.git_dirty = git_commit, git_dirty
        self._raw = {"config": config, "summary": summary, "env": env}
        self._parsed: dict[str, dict[str, Any]] = {}
        self.extracted: dict[str, tuple[bool, Any]] = {}  # keys SQLite already read out of the JSON

    def _json(self, column: str) -> dict[str, Any]:
        if column not in self._parsed:
            value = json.loads(self._raw[column] or "{}")
            if column == "summary":
                value.pop("status", None)  # the run's status is the reconciled one
            self._parsed[column] = value
        return self._parsed[column]

    @property
    def folder(self) -> Path:
        return Path(self._folder)

    @property
    def config(self) -> dict[str, Any]:
        return self._json("config")

    @property
    def summary(self) -> dict[str, Any]:
        return self._json("summary")

    @property
    def env(self) -> dict[str, Any]:
        return self._json("env")

    @property
    def live(self) -> bool:
        return self.status == "running"

    def field(self, key: str) -> tuple[bool, Any]:
        """``(found, value)`` of a filter/sort key: a run field, a summary figure, a config key
        (dotted keys are looked up in the config first, so a filter on one parses only it)."""
        if key in _RUN_ATTRIBUTES:
            return True, getattr(self, _RUN_ATTRIBUTES[key])
        if key == "duration":
            return True, None if self.started is None or self.ended is None else self.ended - self.started
        if key == "folder":
            return True, self._folder
        if key in self.extracted:
            return self.extracted[key]
        for column in (("config", "summary") if "." in key else ("summary", "config")):
            source = self._json(column)
            if key in source:
                return True, source[key]
        return False, None


_RUN_ATTRIBUTES = {"id": "id", "name": "name", "status": "status", "host": "host", "started": "started",
                   "ended": "ended", "git.commit": "git_commit", "git.dirty": "git_dirty"}


def is_alive(pid: Optional[int], pid_start: Optional[int]) -> bool:
    """Whether ``pid`` is still the process that wrote the run (same start time where known)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    started = process_start_time(pid)
    return pid_start is None or started is None or started == pid_start


def reconcile(status: Optional[str], *, host: Optional[str], pid: Optional[int], pid_start: Optional[int],
              heartbeat: Optional[float], now: Optional[float] = None) -> str:
    """The status to show: ``running`` only while the process is alive (rules in the module doc)."""
    if status != "running":
        return status or "unknown"
    if host == socket.gethostname():
        return "running" if is_alive(pid, pid_start) else "crashed"
    fresh = heartbeat is not None and (now or time.time()) - heartbeat <= STALE_SECONDS
    return "running" if fresh else "crashed"


def _run_from_row(root: str, row: sqlite3.Row) -> Run:
    folder = os.path.join(root, row["folder"])  # an absolute folder stays itself
    status, heartbeat, pid, pid_start, host = row["status"], row["heartbeat"], row["pid"], row["pid_start"], row["host"]
    if status == "running":  # the folder's run.json is fresher than the index (heartbeat, a missed end)
        current = read_run_json(Path(folder)) or {}
        status = current.get("status", status)
        heartbeat, pid, pid_start = current.get("heartbeat", heartbeat), current.get("pid", pid), current.get(
            "pid_start", pid_start)
    shown = reconcile(status, host=host, pid=pid, pid_start=pid_start, heartbeat=heartbeat)
    if not os.path.isdir(folder):
        shown = "missing"
    return Run(id=row["id"], name=row["name"] or "", folder=folder, status=shown, recorded_status=status or "",
               host=host, pid=pid, started=row["started"], ended=row["ended"], heartbeat=heartbeat,
               git_commit=row["git_commit"], git_dirty=None if row["git_dirty"] is None else bool(row["git_dirty"]),
               config=row["config"], summary=row["summary"], env=row["env"])


def open_index(root: Path) -> sqlite3.Connection:
    if not (root / run_index.INDEX_FILE).exists():
        raise DataNotFoundError(f"no run index at {root / run_index.INDEX_FILE}; train a run first, run "
                                "`trainwise runs reindex --root FOLDER` on a folder of runs, or pass --root / set "
                                f"{run_index.ENV_ROOT}")
    rebuild_if_damaged(root, reindex)  # a cache: garbage or a newer schema is set aside and rebuilt, with a note
    conn = run_index.connect(root)
    conn.row_factory = sqlite3.Row
    return conn


def load_runs(root: Path, keys: Iterable[str] = ()) -> list[Run]:
    """Every indexed run, newest first. ``keys`` (those a filter or sort will read) are read out of
    the config and summary JSON by SQLite, so a query over thousands of runs parses no JSON."""
    pushed = [key for key in dict.fromkeys(keys) if key not in _RUN_ATTRIBUTES and _PLAIN_KEY.fullmatch(key)]
    extra = "".join(f", json_type(config, ?), json_extract(config, ?), json_type(summary, ?), "
                    f"json_extract(summary, ?)" for _ in pushed)
    params = [f'$."{key}"' for key in pushed for _ in range(4)]
    conn = open_index(root)
    try:
        rows = conn.execute(f"SELECT *{extra} FROM runs ORDER BY started DESC", params).fetchall()
    finally:
        conn.close()
    runs = []
    for row in rows:
        run = _run_from_row(str(root), row)
        for index, key in enumerate(pushed):
            found = _extracted(row, len(COLUMN_NAMES) + 4 * index, config_first="." in key)
            if found is not None:
                run.extracted[key] = found
        runs.append(run)
    return runs


_PLAIN_KEY = re.compile(r"[\w.\-/:]+")
_JSON_CONSTANTS = {"true": True, "false": False, "null": None}


def _extracted(row: sqlite3.Row, start: int, *, config_first: bool) -> Optional[tuple[bool, Any]]:
    """``(found, value)`` from json_type/json_extract pairs; None for an array or object (the full
    JSON is parsed then, so a list compares as Python reads it)."""
    pairs = [(row[start], row[start + 1]), (row[start + 2], row[start + 3])]
    for kind, value in (pairs if config_first else pairs[::-1]):
        if kind is None:
            continue
        if kind in ("array", "object"):
            return None
        return True, _JSON_CONSTANTS[kind] if kind in _JSON_CONSTANTS else value
    return False, None


def known_keys(runs: list[Run]) -> set[str]:
    keys = set(RUN_FIELDS)
    for run in runs:
        keys.update(run.summary)
        keys.update(run.config)
    return keys


def resolve(runs: list[Run], spec: str) -> Run:
    """A RUN argument: an id, a unique id prefix, a name, or a folder path (or a folder's name)."""
    path = Path(spec)
    if path.is_dir():
        target = path.resolve()
        for run in runs:
            if run.folder.resolve() == target:
                return run
        raise DataNotFoundError(f"folder {spec} is not in the run index; run `trainwise runs reindex`")
    exact = [run for run in runs if run.id == spec]
    if exact:
        return exact[0]
    prefixed = [run for run in runs if run.id.startswith(spec)]
    named = [run for run in runs if run.name == spec] or [run for run in runs if run.folder.name == spec]
    candidates = prefixed or named
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        from trainwise.checks import did_you_mean

        raise ConfigError(f"no run matches {spec!r} (an id, a unique id prefix, a name, or a folder)"
                          f"{did_you_mean(spec, sorted({r.name for r in runs}))}; `trainwise runs list` shows them")
    listing = ", ".join(f"{r.id} ({r.name}, {r.folder.name})" for r in candidates[:10])
    more = f" and {len(candidates) - 10} more" if len(candidates) > 10 else ""
    raise ConfigError(f"{spec!r} matches {len(candidates)} runs: {listing}{more}; give a longer id prefix")


def _run_folders(root: Path) -> Iterator[Path]:
    """Run folders under ``root``, at any depth (a folder is a run when it holds run.json)."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in (TRASH, "checkpoints")]
        if RUN_FILE in files:
            yield Path(folder)


def reindex(root: Path) -> int:
    """Rebuild the index from the run folders under ``root``; returns how many runs it holds."""
    rows = []
    for folder in _run_folders(root):
        run = read_run_json(folder)
        if run is None or not run.get("id"):  # unreadable (truncated, not JSON): listed, not dropped
            rows.append(run_index.row_for(root, folder, damaged_run(root, folder), config=None, summary=None))
            continue
        summary = _read_json(folder / "summary.json")
        if summary.get("status") and run.get("status") not in ("running",):
            run["status"] = summary["status"]
        rows.append(run_index.row_for(root, folder, run, config=run_index._read_config(folder), summary=summary))
    note = set_aside_if_damaged(root) if (root / run_index.INDEX_FILE).exists() else None
    if note:
        log.warning(f"{note}; rebuilding it from the run folders")
    conn = run_index.connect(root)
    try:
        with run_index.transaction(conn):
            conn.execute("DELETE FROM runs")
            run_index.upsert(conn, rows)
    finally:
        conn.close()
    return len(rows)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def forget(root: Path, ids: list[str]) -> None:
    conn = run_index.connect(root)
    try:
        with run_index.transaction(conn):
            conn.executemany("DELETE FROM runs WHERE id = ?", [(i,) for i in ids])
    finally:
        conn.close()


def remove(root: Path, run: Run, *, force: bool) -> Optional[Path]:
    """Move a finished run's folder to ``<root>/.trash/`` (``force``: delete it at once) and forget
    it. A live run is refused. Returns where the folder went (None when deleted or already gone)."""
    if run.live:
        raise ConfigError(f"run {run.id} ({run.name}) is running (pid {run.pid} on {run.host}); stop it first "
                          "(Ctrl-C or kill -TERM saves a checkpoint), then remove it")
    moved = None
    if run.folder.is_dir():
        if force:
            shutil.rmtree(run.folder)
        else:
            moved = root / TRASH / run.id
            moved.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(run.folder), moved)
    forget(root, [run.id])
    return moved


def collect(root: Path, runs: list[Run]) -> dict[str, int]:
    """``runs gc``: forget rows whose folder is gone, empty the trash, delete temporary files left by
    killed writers in finished runs' folders (also an export's, in ``export/``; one whose name
    carries the pid of a process still alive on this host is kept). Returns the counts."""
    gone = [run.id for run in runs if run.status == "missing"]
    if gone:
        forget(root, gone)
    trash = root / TRASH
    trashed = sum(1 for _ in trash.iterdir()) if trash.is_dir() else 0
    if trash.is_dir():
        shutil.rmtree(trash)
    leftovers = 0
    for run in runs:
        if run.live or not run.folder.is_dir():
            continue
        for path in {*run.folder.glob("*.tmp"), *run.folder.glob(".*.partial"), *run.folder.glob("checkpoints/*.tmp"),
                     *run.folder.glob("export/.*.tmp-*")}:
            match = WRITER_PID.match(path.name)
            pid = int(match.group(1) or match.group(2)) if match else 0
            if 0 < pid < 2**31 and is_alive(pid, None):
                continue  # an export or a report of this run being written now
            path.unlink(missing_ok=True)
            leftovers += 1
    return {"forgotten": len(gone), "trash_emptied": trashed, "temporary_files": leftovers}
