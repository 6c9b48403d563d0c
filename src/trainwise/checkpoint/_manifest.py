"""The manifest and the disk side: atomic writes, fsync, verification by SHA-256.

The manifest is ``manifest.json`` in the checkpoint folder::

    {"format_version": 1,
     "checkpoints": {"step-00000120.pt": {"sha256": "...", "size": 1234, "step": 120,
                                          "epoch": 3, "format_version": 1,
                                          "saved_at": "2024-05-01T12:00:00.000000+00:00"}}}

Every write goes to a hidden ``.<name>.<pid>.trainwise-tmp`` file in the same folder and
is renamed into place, so a reader never sees a partial file.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from trainwise.errors import CheckpointError

logger = logging.getLogger(__name__)

FORMAT_VERSION: int = 1
MANIFEST_NAME = "manifest.json"
# Temporary files carry the writer's pid; with one writer per folder any other pid's is stale.
TMP_SUFFIX = ".trainwise-tmp"
TMP_NAME_PATTERN = re.compile(r"\..+\.(\d+)" + re.escape(TMP_SUFFIX))
ENTRY_KEYS = frozenset({"sha256", "size", "step", "epoch", "format_version", "saved_at"})
HASH_CHUNK_BYTES = 1 << 20


def manifest_entry(sha256: str, size: int, *, step: int, epoch: int) -> dict[str, Any]:
    saved_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
    return {
        "sha256": sha256,
        "size": size,
        "step": step,
        "epoch": epoch,
        "format_version": FORMAT_VERSION,
        "saved_at": saved_at,
    }


def tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")


def write_tmp(path: Path, data: bytes | memoryview, *, fsync: bool) -> Path:
    """Write ``data`` to the temporary sibling of ``path``; on OSError leave no file."""
    tmp = tmp_path(path)
    try:
        with open(tmp, "wb") as file:
            file.write(data)
            file.flush()
            if fsync:
                os.fsync(file.fileno())
    except OSError:
        remove_quietly(tmp)
        raise
    return tmp


def link_or_copy_to_tmp(src: Path, dst: Path) -> Path:
    tmp = tmp_path(dst)
    remove_quietly(tmp)
    try:
        os.link(src, tmp)
    except OSError as error:
        logger.debug("hard link %s -> %s failed (%s); copying", src, tmp, error)
        try:
            shutil.copyfile(src, tmp)
            with open(tmp, "rb+") as file:
                os.fsync(file.fileno())
        except OSError:
            remove_quietly(tmp)
            raise
    return tmp


def write_manifest(folder: Path, checkpoints: dict[str, Any], *, fsync: bool) -> None:
    """Replace the manifest atomically; on OSError the old one is untouched and no tmp is left."""
    manifest = {"format_version": FORMAT_VERSION, "checkpoints": checkpoints}
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    path = folder / MANIFEST_NAME
    tmp = write_tmp(path, text.encode("utf-8"), fsync=fsync)
    try:
        os.replace(tmp, path)
    except OSError:
        remove_quietly(tmp)
        raise
    fsync_folder(folder, fsync=fsync)


def fsync_folder(folder: Path, *, fsync: bool) -> None:
    """Make renames in ``folder`` durable; a file system that cannot is logged, not fatal."""
    if not fsync or os.name != "posix":
        return
    try:
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError as error:
        logger.warning("could not fsync folder %s: %s", folder, error)


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def remove_stale_tmp_files(folder: Path) -> None:
    """Delete temporary files a killed writer left behind (only one process writes a folder)."""
    for entry in os.scandir(folder):
        match = TMP_NAME_PATTERN.fullmatch(entry.name)
        if match and int(match.group(1)) != os.getpid() and entry.is_file(follow_symlinks=False):
            logger.info("removing %s left by an interrupted save", entry.path)
            remove_quietly(Path(entry.path))


def write_error(path: Path, error: OSError) -> CheckpointError:
    if error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        advice = "free disk space or save checkpoints to a disk with room"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "check that the folder is writable by this user and not on a read-only disk"
    elif error.errno in (errno.ENOTDIR, errno.EEXIST, errno.ENOENT):
        advice = f"check that {path.parent} is a folder, not a file"
    else:
        advice = "check free disk space and the folder's permissions"
    return CheckpointError(
        f"cannot write checkpoint {path}: {error.strerror or error}; {advice}. The folder "
        "still holds a valid manifest that lists only complete checkpoints"
    )


# --- reading ------------------------------------------------------------------------------


def read_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """Return the manifest's ``{file name: entry}``; empty when there is no manifest."""
    path = folder / MANIFEST_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise CheckpointError(
            f"cannot read {path}: {error.strerror or error}; check its permissions"
        ) from error
    try:
        manifest = json.loads(raw.decode("utf-8"))  # not UTF-8: a ValueError, reported below
        version, checkpoints = manifest["format_version"], manifest["checkpoints"]
        valid = isinstance(version, int) and all(map(_is_entry, checkpoints.values()))
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
        raise CheckpointError(
            f"{path} is not a valid trainwise manifest ({' '.join(str(error).split())[:200]}); move it aside to start a "
            "new one (the files it listed then load only from Python, with load_checkpoint(path, "
            "verify=False), for files you trust)"
        ) from None
    if not valid:
        raise CheckpointError(
            f"{path} is not a valid trainwise manifest: each entry needs {sorted(ENTRY_KEYS)}, "
            "sha256 and saved_at as strings, the others as ints; move it aside to start a new one"
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format_version {version}, newer than the {FORMAT_VERSION} this "
            "trainwise reads; upgrade trainwise"
        )
    return checkpoints


def _is_entry(entry: Any) -> bool:
    if not isinstance(entry, dict) or not ENTRY_KEYS <= entry.keys():
        return False
    texts = (entry["sha256"], entry["saved_at"])
    counts = (entry["size"], entry["step"], entry["epoch"], entry["format_version"])
    return all(isinstance(text, str) for text in texts) and all(
        isinstance(count, int) and not isinstance(count, bool) for count in counts
    )


def entry_problem(entry: dict[str, Any] | None) -> str | None:
    if entry is None:
        return (
            f"not in {MANIFEST_NAME}, so it cannot be verified (written but never recorded, "
            "e.g. the run stopped mid-save, or copied from elsewhere)"
        )
    if entry["format_version"] > FORMAT_VERSION:
        return (
            f"format_version {entry['format_version']} is newer than the {FORMAT_VERSION} this "
            "trainwise reads; upgrade trainwise"
        )
    return None


def content_problem(entry: dict[str, Any], size: int, sha256: str | None) -> str | None:
    """Say how a file of ``size`` bytes (and ``sha256``, when known) differs from ``entry``."""
    if size < entry["size"]:
        return f"truncated: {size} bytes on disk, {MANIFEST_NAME} says {entry['size']}"
    if size > entry["size"]:
        return f"size mismatch: {size} bytes on disk, {MANIFEST_NAME} says {entry['size']}"
    if sha256 is not None and sha256 != entry["sha256"]:
        return (
            f"checksum mismatch: sha256 {sha256[:16]}... on disk, {MANIFEST_NAME} says "
            f"{entry['sha256'][:16]}..."
        )
    return None


def verify_file(path: Path, entry: dict[str, Any] | None) -> str | None:
    """Return why ``path`` cannot be trusted, or ``None`` when it matches ``entry``."""
    problem = entry_problem(entry)
    if problem is not None:
        return problem
    try:
        size = path.stat().st_size
        return content_problem(entry, size, sha256_of_file(path) if size == entry["size"] else None)
    except FileNotFoundError:
        return f"listed in {MANIFEST_NAME} but missing on disk"
    except OSError as error:
        return f"unreadable: {error.strerror or error}"


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
