"""Which step-numbered checkpoints retention deletes, and deleting them on their own."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from trainwise.checkpoint._manifest import read_manifest, write_manifest
from trainwise.errors import CheckpointError, ConfigError

logger = logging.getLogger(__name__)

STEP_NAME_PATTERN = re.compile(r"step-(\d{8,})\.pt")


def check_keep_last(keep_last: int) -> None:
    if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0:
        raise ConfigError(f"keep_last must be an int >= 0, got {keep_last!r}")


def step_files(folder: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the regular step-numbered files directly inside ``folder``."""
    if not folder.is_dir():
        return []
    found = []
    for entry in os.scandir(folder):
        match = STEP_NAME_PATTERN.fullmatch(entry.name)
        if match and entry.is_file(follow_symlinks=False):
            found.append((int(match.group(1)), Path(entry.path)))
    return found


def doomed_files(
    folder: Path,
    keep_last: int,
    checkpoints: dict[str, Any],
    *,
    protect: Iterable[Path] = (),
    adding: str | None = None,
) -> list[Path]:
    """The step files beyond the newest ``keep_last``: unrecorded ones first, then the lowest steps.

    ``adding`` names a step file about to be committed (and recorded): it counts as if it were
    there. Protected paths neither go nor count toward ``keep_last``.
    """
    protected = {Path(path).resolve() for path in protect}
    found = {path.name: (step, path) for step, path in step_files(folder)}
    match = STEP_NAME_PATTERN.fullmatch(adding) if adding is not None else None
    if match:
        found[adding] = (int(match.group(1)), folder / adding)
    recorded = set(checkpoints) | ({adding} if match else set())
    ordered = sorted(found.values(), key=lambda step_path: (step_path[1].name in recorded, step_path[0]))
    old = ordered[: max(len(ordered) - keep_last, 0)]
    return [path for _, path in old if path.name != adding and path.resolve() not in protected]


def delete_unrecorded(doomed: Iterable[Path], *, note: str = "") -> None:
    """Delete retention's files once the manifest no longer lists them."""
    for path in doomed:
        try:
            path.unlink(missing_ok=True)
        except OSError as error:
            raise CheckpointError(
                f"cannot delete old checkpoint {path}: {error.strerror or error}; check the "
                f"folder's permissions{note}"
            ) from error


def apply_retention(
    folder: str | Path, keep_last: int, *, protect: Iterable[Path] = ()
) -> list[Path]:
    """Delete the oldest step-numbered checkpoints in ``folder`` beyond the newest ``keep_last``.

    Only regular files named ``step-<8 or more digits>.pt`` directly inside ``folder``
    are ever deleted: never ``best.pt``, ``last.pt``, a path in ``protect`` (pass the
    checkpoint resumed from), another file or anything outside. Files the manifest does
    not record (left by a crash mid-save) go first, then the lowest steps; protected
    files do not count toward ``keep_last``. The manifest is updated before files go.
    ``save_checkpoint(..., keep_last=...)`` does the same inside its own manifest write.

    Returns:
        The deleted paths, unrecorded ones first, then oldest first.

    Example:
        >>> apply_retention(folder, keep_last=3, protect=[resumed_from])
        [PosixPath('.../step-00000040.pt')]
    """
    check_keep_last(keep_last)
    folder = Path(folder)
    checkpoints = read_manifest(folder)
    doomed = doomed_files(folder, keep_last, checkpoints, protect=protect)
    if not doomed:
        return []
    doomed_names = {path.name for path in doomed}
    try:
        if doomed_names & checkpoints.keys():
            kept = {name: entry for name, entry in checkpoints.items() if name not in doomed_names}
            write_manifest(folder, kept, fsync=True)
    except OSError as error:
        raise CheckpointError(
            f"cannot delete old checkpoint in {folder}: {error.strerror or error}; check the "
            "folder's permissions"
        ) from error
    delete_unrecorded(doomed)
    logger.debug("retention deleted %s", ", ".join(path.name for path in doomed))
    return doomed
