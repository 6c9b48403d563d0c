"""One writer per run folder: an operating-system lock on ``RUN_DIR/.lock``, held for as long as a
process trains into the folder.

A second process that tries to write the folder (the same command started twice, a second torchrun
job, a search worker pointed at the same ``--run-dir``) is refused with one line that says who holds
it. The kernel releases the lock when the holder's process ends however it ends (SIGKILL included),
so a killed run never blocks its own ``--resume auto``; a stale ``.lock`` file without a live lock
means nothing. Within one process the lock is re-entrant (the CLI holds it around ``fit``, which takes
it too).

It is a POSIX record lock (``fcntl.lockf``), not ``flock``: an ``flock`` belongs to the open file,
which forked children (DataLoader workers, persistent ones included) inherit, so the folder would stay
locked after the run while they live, and the same process could not take it again. A POSIX lock
belongs to the process and is not inherited; it also works over NFS. Its one pitfall (closing any
descriptor of the file releases it) is avoided by opening ``.lock`` only here.

Example:
    >>> acquire(Path("runs/a"))    # a second process here gets RunFolderBusyError
    >>> release(Path("runs/a"))
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import socket
from pathlib import Path

from trainwise.errors import TrainwiseError

LOCK_NAME = ".lock"
_held: dict[str, tuple[int, int, bool]] = {}  # resolved folder -> (descriptor, holds in this process, created it)


class RunFolderBusyError(TrainwiseError, RuntimeError):
    """Another process is writing the run folder."""


def acquire(run_dir: Path) -> None:
    """Take the folder's lock for this process (again, if it holds it already); raise
    ``RunFolderBusyError`` when another process holds it."""
    key = str(Path(run_dir).resolve())
    if key in _held:
        fd, count, created = _held[key]
        _held[key] = (fd, count + 1, created)
        return
    created = not Path(run_dir).exists()
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    path = Path(run_dir) / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(fd)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                os.close(fd)
                raise
            holder = _read_holder(fd)
            os.close(fd)
            raise RunFolderBusyError(f"run folder {run_dir} is being written by another process ({holder}); wait for "
                                     "it to end or stop it, or choose another --run-dir (Python: run_dir=)") from None
        if _same_file(fd, path):
            break
        os.close(fd)  # the holder removed the file between our open and our lock: lock the one there now
    _write_holder(fd)
    _held[key] = (fd, 1, created)


def release(run_dir: Path) -> None:
    """Give one hold back; the last one unlocks the folder. The ``.lock`` file stays unless nothing
    else was written: a run refused before its first file (bad data, a bad config) leaves no folder
    behind, or only the folder it found."""
    key = str(Path(run_dir).resolve())
    if key not in _held:
        return
    fd, count, created = _held.pop(key)
    if count > 1:
        _held[key] = (fd, count - 1, created)
        return
    folder = Path(run_dir)
    try:
        if [entry.name for entry in folder.iterdir()] == [LOCK_NAME]:
            (folder / LOCK_NAME).unlink()  # still locked: a process waiting on the old file re-opens (acquire)
            if created:
                folder.rmdir()
    except OSError:  # the folder is someone else's to clean now; the lock is released below all the same
        pass
    os.close(fd)  # closing it releases the lock


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _lock(fd: int) -> None:
    import fcntl

    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _write_holder(fd: int) -> None:
    since = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since}) + "\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)


def _read_holder(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"pid {holder['pid']} on {holder['host']}, since {holder['since']}"
    except (ValueError, KeyError, OSError):  # the holder has not written its name yet
        return "a process that has just started"
